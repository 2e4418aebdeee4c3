"""The calibrations shipped in ``spill_guard/calibration/data``, found for a model by what it is.

:func:`~spill_guard.calibration.file.default_calibration` looks one up by model name; a model
loaded under another name (the converted cache path of the embedded model, a drop-in's label
for a ``ChatHuggingFace`` or ``HuggingFaceLLM`` over it) is matched by its
:class:`~spill_guard.calibration.fingerprint.ModelFingerprint`.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from spill_guard.calibration.file import Calibration, default_calibration
from spill_guard.calibration.fingerprint import model_fingerprint


@functools.lru_cache(maxsize=1)
def packaged_calibrations() -> tuple[Calibration, ...]:
    """Every packaged calibration, parsed once (they are frozen: sharing them is safe)."""
    folder = resources.files("spill_guard.calibration").joinpath("data")
    found = sorted((r for r in folder.iterdir() if r.name.endswith(".json") and r.is_file()), key=lambda r: r.name)
    return tuple(
        Calibration.from_json(r.read_text(encoding="utf-8"), f"<packaged calibration {r.name}>") for r in found
    )


def packaged_calibration(spill_model: Any) -> Calibration | None:
    """The packaged calibration for ``spill_model``'s model: by its name, else by its fingerprint; or None."""
    by_name = default_calibration(spill_model.loaded.name)
    if by_name is not None:
        return by_name
    fingerprint = model_fingerprint(getattr(spill_model.loaded, "model", None))
    if fingerprint is None:
        return None
    return next(
        (
            cal
            for cal in packaged_calibrations()
            if cal.model_fingerprint is not None and cal.model_fingerprint.matches(fingerprint)
        ),
        None,
    )
