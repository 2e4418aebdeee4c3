"""The one place a backend name is read: names → loaders.

``load_backend("transformers", ...)`` / ``load_backend("vllm", ...)`` build a
:class:`~spill_guard.backends.base.Backend`; ``load_async_backend`` an
:class:`~spill_guard.backends.base.AsyncBackend` where the backend has one. Everything else
(the :class:`~spill_guard.SpillModel` facade, the CLI's ``--backend``, the server's config)
passes the name through to here, or asks :func:`backend_names` / :func:`check_backend_name`;
what a backend can do is read from its :class:`~spill_guard.backends.base.Capabilities`,
never from its name. Loaders are imported when first used, so naming a backend whose
engine is not installed fails only when it is loaded, with the install hint.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spill_guard.errors import InvalidParameterError

#: A loader: ``loader(name_or_path, *, device, dtype, beta, extra_betas, engine_options) -> backend``;
#: or ``"module:attribute"`` naming one, imported on first use.
Loader = Callable[..., Any] | str


@dataclass(frozen=True)
class _Entry:
    loader: Loader
    async_loader: Loader | None = None
    #: Raises (naming the extra to install) when the backend's engine is not importable; ``None``: always is.
    check: Loader | None = None


def _transformers(name_or_path: str | None, **options: Any) -> Any:
    from spill_guard.backends.transformers.backend import TransformersBackend

    return TransformersBackend.load(name_or_path, **options)


def _vllm(name_or_path: str | None, **options: Any) -> Any:
    from spill_guard.backends.vllm.backend import VllmBackend

    return VllmBackend.load(name_or_path, **options)


def _async_vllm(name_or_path: str | None, **options: Any) -> Any:
    from spill_guard.backends.vllm.backend import AsyncVllmBackend

    return AsyncVllmBackend.load(name_or_path, **options)


_REGISTRY: dict[str, _Entry] = {
    "transformers": _Entry(_transformers),
    "vllm": _Entry(_vllm, _async_vllm, "spill_guard.backends.vllm.engine:require_vllm"),
}

#: The backend ``SpillModel.load`` and the CLI use when none is named.
DEFAULT_BACKEND = "transformers"
#: The backend ``AsyncSpillModel.load`` uses when none is named (the only built-in one with an async engine).
DEFAULT_ASYNC_BACKEND = "vllm"


def register_backend(name: str, loader: Loader, *, async_loader: Loader | None = None) -> None:
    """Make ``name`` loadable by :func:`load_backend` (and :func:`load_async_backend` with ``async_loader``).

    A loader takes ``(name_or_path, *, device, dtype, beta, extra_betas, engine_options)`` and
    returns a backend; registering a taken name replaces it.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError(f"a backend name must be non-empty text, got {name!r}.")
    for what, value in (("loader", loader), ("async_loader", async_loader)):
        if value is not None and not (callable(value) or (isinstance(value, str) and ":" in value)):
            raise InvalidParameterError(f"{what} must be callable or 'module:attribute', got {value!r}.")
    _REGISTRY[name] = _Entry(loader, async_loader)


def require_engine(name: str) -> None:
    """Fail fast, before a server or a Ray cluster starts, when backend ``name``'s engine is not installed
    (the error names the extra to install); nothing to check for in-process backends."""
    entry = _REGISTRY[check_backend_name(name)]
    if entry.check is not None:
        _resolve(entry.check)()


def backend_names() -> tuple[str, ...]:
    """The registered backend names (for ``--backend`` choices and config checks)."""
    return tuple(_REGISTRY)


def check_backend_name(name: Any) -> str:
    """``name`` if a backend is registered under it; else an error listing the known names."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise InvalidParameterError(f"unknown backend {name!r}; choose one of {list(_REGISTRY)}.")
    return name


def load_backend(
    name: str,
    name_or_path: str | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    beta: float = 1.0,
    extra_betas: Sequence[float] = (),
    engine_options: Mapping[str, Any] | None = None,
) -> Any:
    """Load ``name_or_path`` (default: the embedded model) on the backend registered as ``name``."""
    loader = _resolve(_REGISTRY[check_backend_name(name)].loader)
    return loader(
        name_or_path,
        device=device,
        dtype=dtype,
        beta=beta,
        extra_betas=tuple(extra_betas),
        engine_options=dict(engine_options or {}),
    )


def has_async_engine(name: str) -> bool:
    """Whether backend ``name`` has an async engine (:func:`load_async_backend` loads it)."""
    return _REGISTRY[check_backend_name(name)].async_loader is not None


def load_async_backend(
    name: str,
    name_or_path: str | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    beta: float = 1.0,
    extra_betas: Sequence[float] = (),
    engine_options: Mapping[str, Any] | None = None,
) -> Any:
    """Like :func:`load_backend`, for an event loop; refused for backends without an async engine."""
    entry = _REGISTRY[check_backend_name(name)]
    if entry.async_loader is None:
        has = [n for n, e in _REGISTRY.items() if e.async_loader is not None]
        raise InvalidParameterError(
            f"the {name!r} backend has no async engine (backends with one: {has}); use "
            "load_backend and run its generate in a worker thread."
        )
    loader = _resolve(entry.async_loader)
    return loader(
        name_or_path,
        device=device,
        dtype=dtype,
        beta=beta,
        extra_betas=tuple(extra_betas),
        engine_options=dict(engine_options or {}),
    )


def _resolve(loader: Loader) -> Callable[..., Any]:
    if callable(loader):
        return loader
    module, _, attribute = loader.partition(":")
    target: Any = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target
