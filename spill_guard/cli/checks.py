"""Checks of command arguments (model options, files, folders), made before anything slow is loaded.

A command that loads a model for a minute and then finds its ``--out`` is a file has wasted
that minute; these checks run first and raise :class:`InvalidParameterError` naming the
option, the value and the fix.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from spill_guard.errors import InvalidParameterError


def model_options(args: argparse.Namespace, extra_betas: Sequence[float] = ()) -> None:
    """``--device``, ``--dtype`` and ``--beta`` (with the extra β the command captures)."""
    from spill_guard.capture.step_stats import validate_betas
    from spill_guard.models.device import resolve_device, resolve_dtype

    validate_betas((args.beta, *extra_betas))
    resolve_dtype(args.dtype, resolve_device(args.device))


def _first_existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def _check_creatable(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder."""
    ancestor = _first_existing_ancestor(path)
    if not ancestor.is_dir():
        raise InvalidParameterError(
            f"{option} {os.fspath(path)!r}: {os.fspath(ancestor)!r} is a file, not a folder; choose another path."
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InvalidParameterError(
            f"{option} {os.fspath(path)!r}: folder {os.fspath(ancestor)!r} is not writable; choose another path."
        )


def output_folder(path: str | os.PathLike, option: str) -> Path:
    """A folder the command may create or reuse (e.g. ``bench --out``)."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise InvalidParameterError(
                f"{option} {os.fspath(p)!r} is an existing file, not a folder; "
                "give a folder (it is created if missing)."
            )
        if not os.access(p, os.W_OK | os.X_OK):
            raise InvalidParameterError(f"{option} {os.fspath(p)!r} is not writable; choose another folder.")
        return p
    _check_creatable(p, option)
    return p


def output_file(path: str | os.PathLike, option: str) -> Path:
    """A file the command may create or replace (e.g. ``calibrate -o``)."""
    p = Path(path)
    if p.is_dir():
        raise InvalidParameterError(
            f"{option} {os.fspath(p)!r} is a folder; give a file name, e.g. {os.fspath(p / 'calibration.json')!r}."
        )
    if p.exists() and not os.access(p, os.W_OK):
        raise InvalidParameterError(f"{option} {os.fspath(p)!r} exists and is not writable; choose another file.")
    _check_creatable(p, option)
    return p


def existing_folder(path: str | os.PathLike, option: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        what = "is a file" if p.exists() else "does not exist"
        raise InvalidParameterError(f"{option} {os.fspath(p)!r} {what}; give an existing folder.")
    return p


def existing_file(path: str | os.PathLike, option: str) -> Path:
    p = Path(path)
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "does not exist"
        raise InvalidParameterError(f"{option} {os.fspath(p)!r} {what}; give an existing file.")
    return p
