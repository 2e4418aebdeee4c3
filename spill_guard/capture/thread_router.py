"""One forward hook per model, routing each forward pass to the capture of the calling thread."""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol

import torch

from spill_guard.errors import CaptureError


class ForwardHookTarget(Protocol):
    """What the router calls for each forward pass of the attaching thread (a StreamingCapture)."""

    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None: ...


class ThreadRouter:
    """One forward hook per model, passing each forward to the capture of the calling thread.

    Several threads may generate with one model at once (a framework's ``batch()``). A hook
    per capture would see every thread's forwards, and registering/removing hooks while
    other threads run forwards races inside torch (a hook can be called without its
    kwargs). So the hook is registered when the first capture on a model starts and removed
    when the last one ends, under a lock, and routes by thread.
    """

    _lock = threading.Lock()
    _routers: weakref.WeakKeyDictionary[torch.nn.Module, ThreadRouter] = weakref.WeakKeyDictionary()

    def __init__(self, model: torch.nn.Module):
        self.active: dict[int, ForwardHookTarget] = {}
        self.handle = model.register_forward_hook(self._dispatch, with_kwargs=True)

    @classmethod
    def attach(cls, model: torch.nn.Module, capture: ForwardHookTarget) -> None:
        with cls._lock:
            router = cls._routers.get(model)
            if router is None:
                router = cls._routers[model] = cls(model)
            thread = threading.get_ident()
            if thread in router.active:
                raise CaptureError("a StreamingCapture is already active on this model in this thread; nest none.")
            router.active[thread] = capture

    @classmethod
    def detach(cls, model: torch.nn.Module, capture: ForwardHookTarget) -> None:
        with cls._lock:
            router = cls._routers.get(model)
            if router is None or router.active.get(threading.get_ident()) is not capture:
                return
            del router.active[threading.get_ident()]
            if not router.active:
                router.handle.remove()
                del cls._routers[model]

    def _dispatch(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        capture = self.active.get(threading.get_ident())
        if capture is not None:
            capture._hook(module, args, kwargs, output)
