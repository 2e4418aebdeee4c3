"""Loading the vLLM backend for a CLI command (``spill-guard score --backend vllm``).

vLLM logs to stdout by default, which would corrupt ``--json`` output: its log stream goes
to stderr and only warnings are shown, unless the user set those variables already.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from spill_guard.backends.vllm.backend import NAME


def add_engine_option(p: argparse.ArgumentParser) -> None:
    """``--engine-option KEY=VALUE`` (repeatable): a vLLM engine setting, read by :func:`engine_options`."""
    p.add_argument(
        "--engine-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a vLLM engine setting with --backend vllm, e.g. max_model_len=2048 (repeatable)",
    )


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--engine-option`` values as a mapping; refused unless ``--backend vllm`` (checked before any load)."""
    from spill_guard.backends.options import parse_engine_options
    from spill_guard.errors import InvalidParameterError

    options = parse_engine_options(getattr(args, "engine_option", None) or [])
    if options and getattr(args, "backend", None) not in (None, NAME):
        raise InvalidParameterError(f"engine options {options} are vLLM settings; use them with --backend {NAME}.")
    return options


def quiet_vllm() -> None:
    """vLLM's log stream to stderr, warnings only (unless the user set these variables already)."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
