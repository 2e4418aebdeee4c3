"""Property: any generation-cache file either opens (every entry reading back as an answer) or
raises a SpillGuardError naming the file; never TypeError, KeyError, UnicodeDecodeError, ...
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from fuzz_inputs import apply_edits, binary, edit_lists, hostile_json_text, json_values, paths_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spill_guard.errors import SpillGuardError
from spill_guard.evaluation.cache import JsonlCache
from spill_guard.evaluation.runner import cached_answer

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER = {"kind": "generations", "model": "m"}
HEADER_LINE = json.dumps({"header": HEADER}).encode() + b"\n"

entry_lines = st.one_of(
    binary,
    hostile_json_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"key": json_values, "value": json_values}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"key": st.text(max_size=4), "value": json_values}).map(lambda v: json.dumps(v).encode()),
)


def open_and_read_all(data: bytes) -> None:
    """Open the cache file ``data`` and read every entry as a cached answer."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generations.jsonl"
        path.write_bytes(data)
        try:
            cache = JsonlCache(path, HEADER)
            for key in list(cache._entries):
                cached_answer(cache, key)
        except SpillGuardError as exc:
            assert str(path) in str(exc)


@FUZZ
@given(binary)
def test_any_bytes_open_or_raise_a_spill_guard_error(data):
    open_and_read_all(data)


@FUZZ
@given(st.lists(entry_lines, max_size=4))
def test_any_entry_lines_open_or_raise_a_spill_guard_error(lines):
    open_and_read_all(HEADER_LINE + b"\n".join(lines))


@FUZZ
@given(st.one_of(json_values, hostile_json_text))
def test_any_header_line_opens_or_raises_a_spill_guard_error(header):
    text = header if isinstance(header, str) else json.dumps(header)
    open_and_read_all(text.encode("utf-8", "surrogatepass") + b"\n")


@pytest.fixture(scope="module")
def valid_entry(spill_model):
    answer = spill_model.generate(["What is 2 + 2?"], max_new_tokens=3)[0]
    return {"record": answer.to_record(), "seconds": 0.1}


@pytest.mark.model
def test_a_valid_entry_with_fields_replaced_or_removed_reads_or_raises_a_spill_guard_error(valid_entry):
    entry_paths = [p for p in paths_of(valid_entry) if p]

    @FUZZ
    @given(edit_lists(entry_paths))
    def check(edits):
        value = apply_edits(valid_entry, edits)
        open_and_read_all(HEADER_LINE + json.dumps({"key": "k", "value": value}).encode() + b"\n")

    open_and_read_all(HEADER_LINE + json.dumps({"key": "k", "value": valid_entry}).encode() + b"\n")
    check()
