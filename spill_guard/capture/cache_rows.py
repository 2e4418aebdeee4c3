"""A view of some batch rows of the KV cache ``generate`` returned, for the ``z_{T+1}`` step.

Only the rows that reached the last generated column need the extra forward step (the others
got ``z_{T+1}`` from the batch's next decode step), so the step runs on those rows alone. The
view is a shallow copy: a new cache object whose layers hold the selected rows
(``index_select``, a copy of ``k`` rows) or, with every row selected, the original tensors. A
``DynamicLayer`` grows by concatenation (``keys = cat(keys, new)``), which rebinds the copy's
attribute and leaves the caller's cache exactly as ``generate`` returned it.

Only dynamic caches whose layers are plain ``DynamicLayer`` / ``DynamicSlidingWindowLayer``
are viewed this way; anything else (static, quantized, offloaded, linear-attention or
KV-sharing caches, legacy tuples) gets ``None`` and the caller runs the step on the whole
batch with the cache as it is.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


def _viewable_layer_types() -> tuple[type, ...]:
    try:
        from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
    except ImportError:  # a transformers without layered caches: no view, full-batch step
        return ()
    return (DynamicLayer, DynamicSlidingWindowLayer)


def select_cache_rows(cache: Any, rows: torch.Tensor | None) -> Any:
    """A cache holding batch ``rows`` of ``cache`` (all rows if None), or None if ``cache`` cannot be viewed."""
    types = _viewable_layer_types()
    layers = getattr(cache, "layers", None)
    if (
        not types
        or not isinstance(layers, list)
        or not layers
        or getattr(cache, "offloading", False)
        or any(type(layer) not in types for layer in layers)
    ):
        return None
    view = copy.copy(cache)
    view.layers = []
    for layer in layers:
        copied = copy.copy(layer)
        if rows is not None and layer.is_initialized and layer.keys is not None and layer.keys.numel():
            index = rows.to(layer.keys.device)
            copied.keys = layer.keys.index_select(0, index)
            copied.values = layer.values.index_select(0, index)
        view.layers.append(copied)
    return view


def has_room(cache: Any, length: int) -> bool:
    """Whether ``cache`` can take a token at position ``length - 1`` (the ``z_{T+1}`` step's write).

    A fixed-size full-attention layer (``StaticLayer``; sliding-window layers roll instead) is
    sized by ``generate`` for the prompt plus ``max_new_tokens - 1`` tokens, one short of the
    extra step; the caller then runs that step as a full pass without the cache.
    """
    try:
        from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer
    except ImportError:  # no layered caches: nothing of fixed size to overflow
        return True
    for layer in getattr(cache, "layers", None) or ():
        if isinstance(layer, StaticLayer) and not isinstance(layer, StaticSlidingWindowLayer):
            capacity = layer.get_max_length()
            if 0 <= capacity < length:
                return False
    return True
