"""``spill-guard`` entry point: parses the command and turns library errors into exit codes.

Exit codes: 0 success, 2 bad input or configuration (a ``SpillGuardError``), 3 the model
produced non-finite logits on the answer.
"""

from __future__ import annotations

import argparse
import sys

from spill_guard.errors import NonFiniteLogitsError, SpillGuardError


def build_parser() -> argparse.ArgumentParser:
    from spill_guard.cli import bench, score

    parser = argparse.ArgumentParser(
        prog="spill-guard",
        description="Score a local model's answers for hallucination from its raw logits (spilled energy).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    score.register(sub)
    bench.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from spill_guard import __version__

        print(__version__)
        return 0
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except NonFiniteLogitsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except SpillGuardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
