"""Property: any task file either parses into valid items or raises a SpillGuardError (TaskFormatError).

Never a raw JSONDecodeError, UnicodeDecodeError, RecursionError, TypeError or pydantic error.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fuzz_inputs import binary, hostile_json_text, json_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spill_guard.errors import SpillGuardError
from spill_guard.tasks import TaskItem, load_jsonl, load_task, parse_jsonl_lines

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = ("id", "question", "answers", "context", "meta", "answer", "extra")
task_objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)
# Mostly well-typed values, so the validators past the type checks are reached too.
plausible_objects = st.fixed_dictionaries(
    {"question": st.one_of(st.text(max_size=10), json_values), "answers": st.one_of(st.lists(st.text(max_size=5), max_size=3), json_values)},
    optional={"id": st.one_of(st.integers(), st.text(max_size=5), json_values),
              "context": st.one_of(st.none(), st.text(max_size=5), json_values),
              "meta": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), json_values, max_size=2), json_values)},
)
lines = st.one_of(
    binary,
    hostile_json_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.one_of(task_objects, plausible_objects).map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
)


def assert_parses_or_spill_guard_error(parse) -> None:
    try:
        items = parse()
    except SpillGuardError:
        return
    assert items and all(isinstance(it, TaskItem) for it in items)
    assert all(it.question.strip() and it.answers and all(a.strip() for a in it.answers) for it in items)
    assert len({it.id for it in items}) == len(items)


@FUZZ
@given(st.lists(lines, max_size=5))
def test_any_lines_parse_or_raise_a_spill_guard_error(raw_lines):
    assert_parses_or_spill_guard_error(lambda: parse_jsonl_lines(raw_lines, "fuzz.jsonl"))
    text_lines = [ln.decode("utf-8", "replace") for ln in raw_lines]
    assert_parses_or_spill_guard_error(lambda: parse_jsonl_lines(text_lines, "fuzz.jsonl"))


@FUZZ
@given(st.lists(lines, max_size=5), st.sampled_from([b"\n", b"\r\n"]))
def test_any_file_loads_or_raises_a_spill_guard_error(raw_lines, newline):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.jsonl"
        path.write_bytes(newline.join(raw_lines))
        assert_parses_or_spill_guard_error(lambda: load_jsonl(path))
        assert_parses_or_spill_guard_error(lambda: load_task(str(path)))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_any_task_name_loads_or_raises_a_spill_guard_error(name):
    assert_parses_or_spill_guard_error(lambda: load_task(name))
