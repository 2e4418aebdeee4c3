"""``spill-guard bench`` end to end on a user JSONL file, with resume from the cache."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spill_guard.errors import InvalidInputError

pytestmark = pytest.mark.model

ITEMS = [
    {"id": "fr", "question": "What is the capital of France?", "answers": ["Paris"]},
    {"id": "it", "question": "What is the capital of Italy?", "answers": ["Rome"]},
    {"id": "au", "question": "What is the capital of Australia?", "answers": ["Canberra"]},
    {"id": "add", "question": "What is 2 + 2?", "answers": ["4"]},
    {"id": "mul", "question": "What is 47 * 89?", "answers": ["4183"]},
    {"id": "sub", "question": "What is 913 - 478?", "answers": ["435"]},
    {"id": "ctx", "question": "What colour is the door?", "answers": ["green"],
     "context": "The house at the end of the lane has a green door and a red roof."},
    {"id": "el", "question": "What is the chemical symbol of gold?", "answers": ["Au"]},
]


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spill_guard.cli.main", "bench", "--no-progress", "--bootstrap", "200", *args],
        capture_output=True, text=True, timeout=900,
    )


def test_bench_on_user_jsonl_and_resume(tmp_path):
    task = tmp_path / "mine.jsonl"
    task.write_text("\n".join(json.dumps(i) for i in ITEMS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = run_bench("--task", str(task), "--out", str(out), "--max-new-tokens", "24")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "mine" and results["n"] == len(ITEMS)
    assert set(results["default"]) >= {"scorer", "pooling", "locator", "auroc", "auroc_ci", "accuracy", "n"}
    combos = {(r["scorer"], r["pooling"], r["locator"]) for r in results["results"]}
    locators = {r["locator"] for r in results["results"]}
    assert {"full", "answer_is", "numeric", "llm_extractor"} <= locators
    assert ("spilled_energy", "min", "answer_is") in combos and ("nll", "sum", "full") in combos
    for r in results["results"]:
        assert 0.0 <= r["accuracy"] <= 1.0
        if r["auroc"] is not None:
            assert 0.0 <= r["auroc"] <= 1.0 and r["auroc_ci"][0] <= r["auroc"] <= r["auroc_ci"][1]
    assert (out / "results.md").read_text().startswith("# mine")
    generations = (out / "generations.jsonl").read_text().splitlines()
    assert len(generations) == 1 + len(ITEMS)

    # Resume: a second run with other locators re-scores from the cache, generating nothing.
    again = run_bench("--task", str(task), "--out", str(out), "--max-new-tokens", "24", "--locators", "full,numeric")
    assert again.returncode == 0, again.stderr
    assert (out / "generations.jsonl").read_text().splitlines() == generations
    # Other generation settings with the same cache are refused, not mixed.
    clash = run_bench("--task", str(task), "--out", str(out), "--max-new-tokens", "30")
    assert clash.returncode == 2 and "max_new_tokens" in clash.stderr


def test_bench_rejects_unknown_task(tmp_path):
    proc = run_bench("--task", "no-such-task", "--out", str(tmp_path))
    assert proc.returncode == 2 and "arithmetic" in proc.stderr


def test_stale_cache_other_task_same_out_dir_regenerates(spill_model, tmp_path):
    """Task B written to task A's --out folder, with the same item ids: B's questions are answered,
    not judged against A's cached answers (before: every B item read A's answer, accuracy 0.000)."""
    from spill_guard.evaluation.runner import run_bench
    from spill_guard.tasks import TaskItem

    task_a = [TaskItem(id="q1", question="What is 2 + 2?", answers=["4"]),
              TaskItem(id="q2", question="What is the capital of Italy?", answers=["Rome"])]
    task_b = [TaskItem(id="q1", question="What is the capital of France?", answers=["Paris"]),
              TaskItem(id="q2", question="What is the chemical symbol of gold?", answers=["Au"])]
    opts = dict(locators=["full", "llm_extractor"], max_new_tokens=6, batch_size=2, n_boot=20, progress=False)
    first = run_bench(spill_model, task_a, tmp_path, task="a", **opts)
    second = run_bench(spill_model, task_b, tmp_path, task="b", **opts)
    for item in task_b:
        assert item.question in second.answers[item.id].prompt
        assert second.answers[item.id].prompt != first.answers[item.id].prompt
    # Both tasks' answers now live in the cache; re-running A generates nothing and reads A's answers.
    lines = (tmp_path / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 4
    again = run_bench(spill_model, task_a, tmp_path, task="a", **opts)
    assert (tmp_path / "generations.jsonl").read_text().splitlines() == lines
    assert {k: a.answer for k, a in again.answers.items()} == {k: a.answer for k, a in first.answers.items()}
    assert len((tmp_path / "extractions.jsonl").read_text().splitlines()) == 1 + 4


def test_cache_written_by_an_older_version_keyed_by_item_id_is_refused(spill_model, tmp_path):
    from spill_guard.evaluation.runner import generation_header, run_bench
    from spill_guard.tasks import TaskItem

    old = {k: v for k, v in generation_header(spill_model, 6).items() if k not in ("entry_key", "dtype")}
    (tmp_path / "generations.jsonl").write_text(json.dumps({"header": old}) + "\n")
    with pytest.raises(InvalidInputError, match="entry_key"):
        run_bench(spill_model, [TaskItem(id="q1", question="What is 2 + 2?", answers=["4"])], tmp_path, task="a",
                  locators=["full"], max_new_tokens=6, n_boot=20, progress=False)
