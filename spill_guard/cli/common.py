"""Options shared by commands that load a model, and quiet library logging for terminals."""

from __future__ import annotations

import argparse
from typing import Any

# Lives with the loader (below the server and the vLLM backend, which call it too); re-exported for the commands.
from spill_guard.models.loader import quiet_transformers

__all__ = ["add_model_options", "load_spill_model", "quiet_transformers"]


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="embedded name (smollm2-135m-instruct [default], gemma3-270m), hub id, local folder or .gguf file",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1 ...")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on cuda, fp32 on cpu), float32, bfloat16, float16")
    parser.add_argument("--beta", type=float, default=1.0, help="inverse temperature β of the energies (default 1)")


def load_spill_model(args: argparse.Namespace, **kwargs: Any) -> Any:
    from spill_guard.spill_model import SpillModel

    quiet_transformers()
    return SpillModel.load(args.model, device=args.device, dtype=args.dtype, beta=args.beta, **kwargs)
