"""``spill-guard`` entry point: parses the command and turns library errors into exit codes.

Exit codes: 0 success, 2 bad input or configuration (a ``SpillGuardError``), 3 the model
produced non-finite logits on the answer.
"""

from __future__ import annotations

import argparse
import os
import sys

from spill_guard.errors import NonFiniteLogitsError, SpillGuardError


def command_modules() -> list:
    """Every module of :mod:`spill_guard.cli` that defines ``register(subparsers)``, by name.

    Discovered rather than listed so a new command is one new module and nothing else.
    """
    import importlib
    import pkgutil

    import spill_guard.cli as package

    modules = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if callable(getattr(module, "register", None)):
            modules.append(module)
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spill-guard",
        description="Score a local model's answers for hallucination from its raw logits (spilled energy).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules():
        module.register(sub)
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
    except BrokenPipeError:  # the reader went away (`spill-guard review list | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except NonFiniteLogitsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except SpillGuardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
