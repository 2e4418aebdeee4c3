"""Property: any calibration file either loads into a usable Calibration or raises a SpillGuardError
(CalibrationFileError naming the file); never UnicodeDecodeError, RecursionError, ValueError, ...
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fuzz_inputs import apply_edits, binary, edit_lists, hostile_json_text, json_values, paths_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spill_guard.calibration import Calibration, default_calibration
from spill_guard.errors import SpillGuardError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = json.loads(default_calibration("smollm2-135m-instruct").to_json())
VALID_PATHS = [p for p in paths_of(VALID) if p]


def assert_loads_or_spill_guard_error(load) -> None:
    try:
        cal = load()
    except SpillGuardError:
        return
    assert isinstance(cal, Calibration)
    # A file that loads must be usable: its spec resolves and it can decide on a score.
    assert cal.spec and isinstance(cal.decide(0.0), bool)


def load_bytes(data: bytes) -> Calibration:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cal.json"
        path.write_bytes(data)
        return Calibration.load(path)


@FUZZ
@given(st.one_of(binary, hostile_json_text.map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_any_bytes_load_or_raise_a_spill_guard_error(data):
    assert_loads_or_spill_guard_error(lambda: load_bytes(data))


@FUZZ
@given(st.one_of(json_values, st.dictionaries(st.sampled_from(sorted(VALID)), json_values, max_size=6)))
def test_any_json_value_loads_or_raises_a_spill_guard_error(value):
    assert_loads_or_spill_guard_error(lambda: Calibration.from_json(json.dumps(value), "fuzz.json"))


@FUZZ
@given(edit_lists(VALID_PATHS))
def test_a_valid_file_with_fields_replaced_or_removed_loads_or_raises_a_spill_guard_error(edits):
    value = apply_edits(VALID, edits)
    assert_loads_or_spill_guard_error(lambda: load_bytes(json.dumps(value).encode()))


def test_the_valid_seed_loads():
    assert Calibration.from_json(json.dumps(VALID)).threshold == VALID["threshold"]
