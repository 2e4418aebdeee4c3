"""Device and dtype resolution: ``"auto"`` picks CUDA + bf16 when available, else CPU + fp32."""

from __future__ import annotations

import torch

from spill_guard.errors import InvalidParameterError

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → ``cuda`` if a GPU is visible, else ``cpu``; anything else is validated."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidParameterError(
            f"device {device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:1'."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"device {device!r} was requested but no CUDA GPU is visible; use device='cpu' or 'auto'."
        )
    return resolved


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | None = None) -> torch.dtype:
    """``"auto"`` → bf16 on CUDA (fp16 on GPUs without bf16), fp32 on CPU and elsewhere.

    fp32 on CPU because CPU half-precision matmuls are slow and the captured energies are
    compared across runs; on GPU bf16 keeps fp32's range, so logits do not overflow.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        device = device or resolve_device("auto")
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise InvalidParameterError(f"dtype {dtype!r} is not supported; use 'auto' or one of {sorted(_DTYPES)}.")
