"""``spill-guard review serve``: the review studio, a web page to label the guard's review log.

Binds 127.0.0.1 unless ``--host`` says otherwise. Reviewers sign in with a named token
(``--reviewer NAME=TOKEN``, repeatable, or ``--reviewers-file``); without tokens the studio is
open to anyone who can reach it (a warning; another address than loopback is refused unless
``--read-only``). Needs the extra ``review-ui``.
"""

from __future__ import annotations

import argparse
import os
import sys

from spill_guard.errors import InvalidParameterError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument(
        "--reviewer",
        action="append",
        default=[],
        metavar="NAME=TOKEN",
        help="a reviewer and their sign-in token (repeatable); labels carry the name",
    )
    p.add_argument("--reviewers-file", action="append", default=[], metavar="FILE", help="lines of 'NAME TOKEN'")
    p.add_argument("--read-only", action="store_true", help="browse and measure only: no label can be given")
    p.add_argument("--lease", type=float, default=600.0, metavar="SECONDS", help="how long an item stays leased")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--calibration", default=None, metavar="FILE", help="the rule the health page measures")
    rule.add_argument("--threshold", type=float, default=None, help="measure this threshold instead")
    p.add_argument("--target", type=float, default=None, help="false-flag target (default: the calibration's)")
    p.add_argument("--model", default=None, help="model new calibrations are fitted for (default: the embedded one)")
    p.add_argument("--calibrations-dir", default=None, metavar="DIR", help="where fitted calibrations are written")
    p.add_argument("--keep-pii", action="store_true", help="store notes and corrected answers without redaction")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))


def settings_of(args: argparse.Namespace, location: str) -> object:
    from pathlib import Path

    from spill_guard.review.redaction import redact_patterns
    from spill_guard.studio.auth import Reviewers
    from spill_guard.studio.settings import StudioSettings

    reviewers = Reviewers.parse(list(args.reviewer), list(args.reviewers_file))
    env_tokens = os.environ.get("SPILL_GUARD_REVIEWERS")
    if env_tokens:  # NAME=TOKEN,NAME=TOKEN: keeps tokens off the command line (and out of `ps`)
        for spec in env_tokens.split(","):
            name, _, token = spec.partition("=")
            reviewers.add(name.strip(), token.strip())
    if args.lease <= 0:
        raise InvalidParameterError(f"--lease must be a positive number of seconds, got {args.lease}.")
    if args.target is not None and not 0.0 <= args.target <= 1.0:
        raise InvalidParameterError(f"--target must be between 0 and 1, got {args.target}.")
    if args.host not in LOOPBACK and reviewers.open and not args.read_only:
        raise InvalidParameterError(
            f"refusing to serve labels on {args.host} without reviewer tokens: anyone who can reach it could label. "
            "Give --reviewer NAME=TOKEN (or --reviewers-file), or add --read-only."
        )
    return StudioSettings(
        log=location,
        reviewers=reviewers,
        read_only=args.read_only,
        lease_seconds=args.lease,
        calibration=args.calibration,
        threshold=args.threshold,
        target=args.target,
        model=args.model,
        calibrations_dir=Path(args.calibrations_dir) if args.calibrations_dir else None,
        redact=None if args.keep_pii else redact_patterns(),
    )


def run(args: argparse.Namespace, location: str) -> int:
    from spill_guard.studio import create_studio_app, require_review_ui

    require_review_ui()
    import uvicorn

    settings = settings_of(args, location)
    app = create_studio_app(settings)
    reviewers = settings.reviewers  # type: ignore[attr-defined]
    if reviewers.open:
        print(
            f"warning: no reviewer tokens: anyone who can reach {args.host}:{args.port} can sign in with any name"
            + ("" if args.read_only else " and label")
            + " (give --reviewer NAME=TOKEN).",
            file=sys.stderr,
        )
    print(
        f"spill-guard review serve: http://{args.host}:{args.port}/ over {location}"
        + (" (read-only)" if args.read_only else ""),
        file=sys.stderr,
        flush=True,
    )
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0
