"""What a review studio serves, and how: one object, built by the CLI or by hand."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from spill_guard.review.base import Redactor
from spill_guard.review.postgres_sink import is_postgres_url
from spill_guard.studio.auth import Reviewers


@dataclass
class StudioSettings:
    """``log``: a .jsonl / .sqlite path or a postgresql:// URL.

    ``calibration`` / ``threshold`` / ``target``: the rule the health page measures (default: the
    one that judged the newest record, as ``spill-guard review health``). ``model``: the model a
    new calibration is fitted for (loaded on the first fit; default: the embedded one).
    ``calibrations_dir``: where fitted calibrations are written (default: ``<log>.calibrations``
    beside a file log, ``./spill-guard-calibrations`` for PostgreSQL). ``redact``: the hook labels'
    notes and corrected answers go through before they are stored (default: e-mail / phone).
    """

    log: str
    reviewers: Reviewers = field(default_factory=Reviewers)
    read_only: bool = False
    lease_seconds: float = 600.0
    page_size: int = 50
    calibration: str | None = None
    threshold: float | None = None
    target: float | None = None
    model: str | None = None
    calibrations_dir: Path | None = None
    redact: Redactor | None = None

    def fitted_dir(self) -> Path:
        if self.calibrations_dir is not None:
            return Path(self.calibrations_dir)
        if is_postgres_url(self.log):
            return Path("spill-guard-calibrations")
        return Path(os.fspath(self.log) + ".calibrations")
