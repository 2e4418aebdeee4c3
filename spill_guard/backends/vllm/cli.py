"""Loading the vLLM backend for a CLI command (``spill-guard score --backend vllm``).

vLLM logs to stdout by default, which would corrupt ``--json`` output: its log stream goes
to stderr and only warnings are shown, unless the user set those variables already.
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def load_vllm_model(args: argparse.Namespace, **kwargs: Any) -> Any:
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from spill_guard.backends.vllm.model import VllmSpillModel
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    return VllmSpillModel.load(args.model, device=args.device, dtype=args.dtype, beta=args.beta, **kwargs)
