"""``spill-guard calibrate`` end to end with the real embedded model: a user JSONL task, then its
generation cache read back as a bench folder, selection, and clear failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from spill_guard.calibration import Calibration
from spill_guard.tasks import load_task

pytestmark = pytest.mark.model

# Capitals the embedded model answers right (first list) and wrong (second), from the dev
# split of the built-in task; short answers, so 16 new tokens keep the judgement unchanged.
RIGHT = ["AE", "AF", "AL", "AT", "BE", "CH", "CL", "CR", "CZ", "DO", "EE", "EG", "ER", "ET", "FI", "FR", "GR", "HU", "ID", "IE"]
WRONG = ["AS", "BS", "CC", "CG", "CX", "FJ", "FM", "GA", "GG", "GN", "GT", "GU", "GY", "HT", "IM", "JE", "KG", "KI", "KY", "LI"]


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    wanted = {f"capital-{c}" for c in RIGHT + WRONG}
    items = [it for it in load_task("capitals") if it.id in wanted]
    assert len(items) == 40
    path = tmp_path_factory.mktemp("task") / "my_capitals.jsonl"
    path.write_text("\n".join(it.model_dump_json(exclude_none=True) for it in items) + "\n", encoding="utf-8")
    return path


def calibrate(*args: str) -> subprocess.CompletedProcess:
    # One torch thread: on the shared 2-core machine, OpenMP spin-waiting with more threads than
    # free cores made generation several times slower (measured 18 s vs 132 s for 16 answers).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "spill_guard.cli.main", "calibrate", "--no-progress", *args],
                          capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def cached_run(task_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    cache, out = root / "cache", root / "cal.json"
    proc = calibrate(str(task_file), "-o", str(out), "--cache", str(cache), "--split", "all",
                     "--max-new-tokens", "16", "--strategy", "false-flag", "--target", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, cache, out


def test_calibrate_on_a_user_jsonl_task(cached_run):
    proc, cache, out = cached_run
    cal = Calibration.load(out)
    assert cal.model == "smollm2-135m-instruct" and cal.spec == "spilled_energy:mean" and cal.locator == "full"
    assert (cal.strategy, cal.target) == ("false-flag", 0.2)
    assert cal.sample.n == 40 and cal.sample.n_correct >= 10 and cal.sample.n_incorrect >= 10
    assert cal.metrics.false_flag_rate <= 0.2
    assert cal.data_source.kind == "task" and cal.data_source.label_locator == "full"
    assert f"n=40 ({cal.sample.n_correct} correct" in proc.stdout
    assert "false-flag rate" in proc.stdout and f"wrote {out}" in proc.stdout
    assert (cache / "generations.jsonl").is_file()


def test_calibrate_from_a_bench_folder_gives_the_same_threshold(cached_run, task_file, tmp_path):
    _, cache, first = cached_run
    out = tmp_path / "from_bench.json"
    proc = calibrate(str(task_file), "--from-bench", str(cache), "-o", str(out), "--strategy", "false-flag", "--target", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = Calibration.load(first), Calibration.load(out)
    assert b.data_source.kind == "bench"
    assert (a.threshold, a.direction, a.sample) == (b.threshold, b.direction, b.sample)


def test_calibrate_with_select_reports_the_pick_against_the_default(cached_run, task_file, tmp_path):
    _, cache, _ = cached_run
    out = tmp_path / "sel.json"
    proc = calibrate(str(task_file), "--from-bench", str(cache), "-o", str(out), "--select", "--folds", "3",
                     "--strategy", "conformal", "--target", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cal = Calibration.load(out)
    sel = cal.selection
    assert sel is not None and sel.k == 3 and sel.default is not None
    assert (cal.spec, cal.locator) == (sel.chosen.spec, sel.chosen.locator)
    assert sel.chosen.cv_auroc_mean >= sel.default.cv_auroc_mean
    assert sel.improvement == pytest.approx(sel.chosen.cv_auroc_mean - sel.default.cv_auroc_mean)
    assert "3-fold cross-validated AUROC" in proc.stdout and "better" in proc.stdout


def test_calibrate_errors_exit_2_with_a_message(task_file, tmp_path):
    proc = calibrate("-o", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and "nothing to calibrate on" in proc.stderr
    proc = calibrate(str(task_file), "-o", str(tmp_path / "x.json"), "--locator", "nowhere")
    assert proc.returncode == 2 and "unknown locator 'nowhere'" in proc.stderr
    proc = calibrate("capitals", "--from-bench", str(tmp_path), "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and "no generations.jsonl" in proc.stderr


def test_calibrate_from_a_labelled_review_log(cached_run, task_file, tmp_path, spill_model):
    """Answers logged with their trace and labelled by a human give the same fit as the judge's labels."""
    from spill_guard.calibration.data import label_answers, read_bench_dir
    from spill_guard.evaluation.runner import cached_answer, generation_keys
    from spill_guard.review import JsonlSink, ReviewRecord

    _, cache_dir, first = cached_run
    _, cache, _ = read_bench_dir(cache_dir)
    items = load_task(str(task_file))
    keys = generation_keys(spill_model, items)
    items = [it for it in items if keys[it.id] in cache]
    answers = {it.id: cached_answer(cache, keys[it.id])[0] for it in items}
    judged = {a.group: a for a in label_answers(items, answers, "full", "t")}
    log = tmp_path / "review.jsonl"
    with JsonlSink(log) as sink:
        for it in items:
            ans = answers[it.id]
            rid = sink.write(ReviewRecord(question=it.question, answer=ans.answer, original_answer=ans.answer,
                                          action="passed", flagged=False, score=ans.score(), spec="spilled_energy:mean",
                                          model=ans.model, scored=ans.to_record()))
            sink.set_label(rid, "incorrect" if judged[it.id].incorrect else "correct")
        sink.write(ReviewRecord(question="unlabelled", answer="x", original_answer="x", action="passed",
                                flagged=False, score=None, spec="spilled_energy:mean"))
    out = tmp_path / "from_log.json"
    proc = calibrate("--from-log", str(log), "-o", str(out), "--strategy", "false-flag", "--target", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = Calibration.load(first), Calibration.load(out)
    assert b.data_source.kind == "review-log" and b.data_source.label_locator is None
    assert (a.threshold, a.direction, a.sample) == (b.threshold, b.direction, b.sample)


def test_stale_cache_same_task_file_name_other_folder_regenerates(spill_model, tmp_path, monkeypatch):
    """v1/questions.jsonl then v2/questions.jsonl share the default cache folder (named after the file
    stem): v2's answers must be v2's (before: v2 was labelled with v1's cached answers)."""
    from spill_guard.calibration import from_task

    monkeypatch.setenv("SPILL_GUARD_CACHE", str(tmp_path / "cache"))  # the model is already loaded
    versions = {
        "v1": [{"id": "1", "question": "What is 2 + 2?", "answers": ["4"]},
               {"id": "2", "question": "What is the capital of Italy?", "answers": ["Rome"]}],
        "v2": [{"id": "1", "question": "What is the capital of France?", "answers": ["Paris"]},
               {"id": "2", "question": "What is the chemical symbol of gold?", "answers": ["Au"]}],
    }
    sets = {}
    for version, items in versions.items():
        path = tmp_path / version / "questions.jsonl"
        path.parent.mkdir()
        path.write_text("\n".join(json.dumps(i) for i in items) + "\n", encoding="utf-8")
        sets[version] = from_task(spill_model, [str(path)], split="all", max_new_tokens=6, progress=False)
    for item, labelled in zip(versions["v2"], sorted(sets["v2"].answers, key=lambda a: a.group)):
        assert labelled.question == item["question"] and item["question"] in labelled.answer.prompt
    cache_files = list((tmp_path / "cache").rglob("generations.jsonl"))
    assert len(cache_files) == 1 and len(cache_files[0].read_text().splitlines()) == 1 + 4


def test_from_bench_does_not_read_a_path_named_in_results_json(spill_model, tmp_path):
    """A crafted results.json naming a file as its task must not make calibrate read (and echo) it."""
    from spill_guard.calibration import CalibrationError, from_bench
    from spill_guard.evaluation.runner import generation_header

    secret = tmp_path / "secret.jsonl"
    secret.write_text("TOP-SECRET first line\n")
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "generations.jsonl").write_text(json.dumps({"header": generation_header(spill_model, 48)}) + "\n")
    (folder / "results.json").write_text(json.dumps({"task": str(secret), "split": "dev"}))
    with pytest.raises(CalibrationError) as caught:
        from_bench(spill_model, [folder])
    assert "TOP-SECRET" not in str(caught.value) and "not a built-in task" in str(caught.value)
