"""The JSONL task format: validation, error messages with file and line, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spill_guard.errors import InvalidInputError, SpillGuardError
from spill_guard.tasks import TaskFormatError, TaskItem, TaskNotFoundError, load_jsonl, save_jsonl


def write(tmp_path: Path, *lines: str, name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def error_for(tmp_path: Path, *lines: str) -> TaskFormatError:
    path = write(tmp_path, *lines)
    with pytest.raises(TaskFormatError) as info:
        load_jsonl(path)
    return info.value


GOOD = '{"question": "What is 2 + 2?", "answers": ["4"]}'


def test_minimal_lines_get_line_number_ids_and_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path, GOOD, "", "   ", '{"question": "Capital of France?", "answers": ["Paris"]}')
    items = load_jsonl(path)
    assert [i.id for i in items] == ["1", "4"]  # line numbers count blank lines, like an editor
    assert items[1].answers == ["Paris"] and items[1].context is None and items[1].meta is None


def test_int_ids_are_read_as_strings(tmp_path):
    items = load_jsonl(write(tmp_path, '{"id": 7, "question": "q?", "answers": ["a"]}'))
    assert items[0].id == "7"


def test_round_trip_keeps_every_field(tmp_path):
    items = [
        TaskItem(id="a", question="Capital of Colombia?", answers=["Bogota", "Bogotá"]),
        TaskItem(
            id="b",
            question="Who?",
            answers=["x"],
            context="A passage.\nWith a newline and “quotes”.",
            meta={"difficulty": 3, "tags": ["t"]},
        ),
    ]
    path = tmp_path / "sub" / "out.jsonl"
    save_jsonl(items, path)
    assert load_jsonl(path) == items
    text = path.read_text(encoding="utf-8")
    assert "Bogotá" in text  # UTF-8, not \u escapes
    assert len(text.splitlines()) == 2 and '"context"' not in text.splitlines()[0]


def test_utf8_bom_is_tolerated(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\n")
    assert load_jsonl(path)[0].answers == ["4"]


def test_invalid_json_names_file_line_and_column(tmp_path):
    err = error_for(tmp_path, GOOD, GOOD.replace('"id"', ""), '{"question": "q", "answers": ["a"],}')
    msg = str(err)
    assert "t.jsonl:3" in msg and "invalid JSON" in msg and "column" in msg
    assert err.line == 3 and err.path.endswith("t.jsonl")


def test_error_types_fit_the_hierarchy(tmp_path):
    err = error_for(tmp_path, "[1, 2]")
    assert isinstance(err, InvalidInputError) and isinstance(err, ValueError)
    assert isinstance(err, SpillGuardError)
    assert "expected a JSON object" in str(err) and "[1, 2]" in str(err)


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"question": "q"}', "missing required key 'answers'"),
        ('{"answers": ["a"]}', "missing required key 'question'"),
        ('{"question": "q", "answers": []}', "at least one accepted answer"),
        ('{"question": "q", "answers": "Paris"}', '["Paris"]'),
        ('{"question": "q", "answers": ["Paris", " "]}', "empty"),
        ('{"question": "  ", "answers": ["a"]}', "non-empty string"),
        ('{"question": "q", "answer": ["a"]}', "did you mean 'answers'"),
        ('{"question": "q", "answers": ["a"], "colour": 1}', "unknown key 'colour'"),
        ('{"question": "q", "answers": [1]}', "'answers.0'"),
        ('{"question": "q", "answers": ["a"], "meta": 3}', "'meta'"),
    ],
)
def test_schema_errors_say_what_is_wrong_and_where(tmp_path, line, expected):
    err = error_for(tmp_path, GOOD, line)
    assert "t.jsonl:2:" in str(err)
    assert expected in str(err)
    assert err.line == 2


def test_duplicate_ids_are_rejected_with_both_lines(tmp_path):
    err = error_for(
        tmp_path,
        '{"id": "x", "question": "q", "answers": ["a"]}',
        GOOD,
        '{"id": "x", "question": "r", "answers": ["b"]}',
    )
    assert "duplicate id 'x'" in str(err) and "line 1" in str(err) and err.line == 3


def test_default_id_clashing_with_explicit_id_is_a_duplicate(tmp_path):
    err = error_for(tmp_path, '{"id": "2", "question": "q", "answers": ["a"]}', GOOD)
    assert "duplicate id '2'" in str(err)


def test_non_utf8_line_is_reported(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + '{"question": "Bogotá?", "answers": ["x"]}'.encode("latin-1") + b"\n")
    with pytest.raises(TaskFormatError, match=r"latin1.jsonl:2: not valid UTF-8"):
        load_jsonl(path)


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(TaskFormatError, match="no task items"):
        load_jsonl(write(tmp_path, "", ""))


def test_missing_file(tmp_path):
    with pytest.raises(TaskNotFoundError, match="does not exist") as info:
        load_jsonl(tmp_path / "nope.jsonl")
    assert isinstance(info.value, FileNotFoundError)


def test_model_rejects_bad_items_directly():
    with pytest.raises(ValueError):
        TaskItem(id="1", question="q", answers=[])
    item = TaskItem(id="1", question="q", answers=["a"])
    assert json.loads(item.model_dump_json(exclude_none=True)) == {"id": "1", "question": "q", "answers": ["a"]}
