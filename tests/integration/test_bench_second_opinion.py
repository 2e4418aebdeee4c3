"""``spill-guard bench --second-opinion K`` end to end with the embedded model, on a tiny run.

The ``consistency_only`` numbers are recomputed by brute force from the files the run leaves
(the generation cache, the sample cache) with ``Consistency.compare``; a rerun samples nothing;
a calibration's band is used as it is; bad options fail fast with one line and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spill_guard.calibration import SecondOpinionFit, default_calibration
from spill_guard.calibration.consistency import DEFAULT_TEMPERATURE, Consistency
from spill_guard.evaluation.cache import content_key
from spill_guard.evaluation.metrics import auroc, auroc_ci
from spill_guard.evaluation.splits import select
from spill_guard.spans import make_locator
from spill_guard.tasks import judge, load_task

#: The bench's sample cache of K = 2 at the default temperature.
SAMPLE_FILE = f"second_opinion-k2-t{DEFAULT_TEMPERATURE:g}.jsonl"

RUN = ["--task", "capitals", "--n", "12", "--locators", "full", "--bootstrap", "50", "--max-new-tokens", "24"]


def bench(*args: str) -> subprocess.CompletedProcess:
    # One torch thread: on a shared 2-core box more threads only slow the tiny model down.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "spill_guard.cli.main", "bench", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def without_timings(results: dict) -> dict:
    return {k: v for k, v in results.items() if not k.startswith("seconds")}


def cache_entries(path) -> tuple[dict, dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines[0]["header"], {e["key"]: e["value"] for e in lines[1:]}


@pytest.mark.model
def test_bench_second_opinion_end_to_end_rerun_and_calibration_band(tmp_path):
    out = tmp_path / "out"
    proc = bench(*RUN, "--out", str(out), "--second-opinion", "2")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    so = results["second_opinion"]
    assert set(so) >= {
        "auroc",
        "auroc_ci",
        "sampled_fraction",
        "samples",
        "temperature",
        "extra_tokens_per_question",
        "band_from",
        "one_pass_auroc",
        "consistency_only",
    }
    assert set(so["consistency_only"]) >= {
        "auroc",
        "auroc_ci",
        "sampled_fraction",
        "samples",
        "extra_tokens_per_question",
    }
    assert so["samples"] == 2 and so["temperature"] == DEFAULT_TEMPERATURE and so["band_from"] == "cross-fitted:5-fold"
    assert 0.0 <= so["sampled_fraction"] <= 1.0 and len(so["bands"]) == 5
    # The default row is the one-pass rule measured on the same items.
    default = results["default"]
    assert (default["spec"], default["locator"]) == ("spilled_energy:mean", "full")
    assert so["n"] == default["n"] == 12 and so["one_pass_auroc"] == pytest.approx(default["auroc"])
    assert so["auroc"] is not None and 0.0 <= so["auroc"] <= 1.0
    assert so["auroc_ci"][0] <= so["auroc"] <= so["auroc_ci"][1]

    # consistency alone, by brute force from the caches and Consistency.compare.
    items = select(load_task("capitals"), "all", 12)
    _, generations = cache_entries(out / "generations.jsonl")
    header, samples = cache_entries(out / SAMPLE_FILE)
    assert (header["samples"], header["temperature"], header["max_new_tokens"]) == (2, DEFAULT_TEMPERATURE, 24)
    assert len(samples) == len({content_key(g["record"]["prompt_ids"]) for g in generations.values()})
    consistency, full = Consistency(samples=2), make_locator("full")
    agreement, incorrect, tokens = [], [], []
    for item in items:
        (record,) = [g["record"] for g in generations.values() if item.question in g["record"]["prompt"]]
        drawn = samples[content_key(record["prompt_ids"])]
        assert len(drawn["samples"]) == 2 and all(n >= 1 for n in drawn["tokens"])
        agreement.append(consistency.compare(record["answer"], drawn["samples"], item.question).agreement)
        span = full.locate(record["answer"], question=item.question)
        incorrect.append(span is None or not judge(span.text, item.answers))
        tokens.append(sum(drawn["tokens"]))
    score, y = 1.0 - np.array(agreement), np.array(incorrect)
    co = so["consistency_only"]
    assert co["samples"] == 2 and co["sampled_fraction"] == 1.0
    assert co["auroc"] == pytest.approx(auroc(score, y))
    assert co["auroc_ci"] == pytest.approx(list(auroc_ci(score, y, n_boot=50, seed=0)))
    assert co["extra_tokens_per_question"] == pytest.approx(np.mean(tokens))
    assert 0.0 <= so["extra_tokens_per_question"] <= co["extra_tokens_per_question"]
    markdown = (out / "results.md").read_text()
    assert "## Second opinion" in markdown and "consistency alone" in markdown and "one pass (default)" in markdown

    # A rerun samples (and generates) nothing and measures the same.
    sample_file = (out / SAMPLE_FILE).read_bytes()
    generation_file = (out / "generations.jsonl").read_bytes()
    again = bench(*RUN, "--out", str(out), "--second-opinion", "2")
    assert again.returncode == 0, again.stderr
    assert (out / SAMPLE_FILE).read_bytes() == sample_file
    assert (out / "generations.jsonl").read_bytes() == generation_file
    assert without_timings(json.loads((out / "results.json").read_text())) == without_timings(results)

    # A calibration's band, used as it is: a band holding every risk samples every question, and its final
    # risk then orders answers by inconsistency alone (weight 1), as consistency alone does.
    base = default_calibration("smollm2-135m-instruct")
    assert base is not None
    fit = SecondOpinionFit(
        samples=2,
        temperature=DEFAULT_TEMPERATURE,  # as the run above sampled: its samples are reused
        top_p=1.0,
        locator=consistency.locator,
        equivalence="judge",
        low=-100.0,
        high=100.0,
        weight=1.0,
        budget=1.0,
        sampled_share=1.0,
        one_pass_auroc=0.5,
        auroc=0.5,
        consistency_auroc=0.5,
        max_new_tokens=24,
    )
    cal = tmp_path / "cal.json"
    base.model_copy(update={"second_opinion": fit}).save(cal)
    banded = bench(*RUN, "--out", str(out), "--second-opinion-calibration", str(cal))
    assert banded.returncode == 0, banded.stderr
    assert (out / SAMPLE_FILE).read_bytes() == sample_file  # the same samples, reused
    so = json.loads((out / "results.json").read_text())["second_opinion"]
    assert so["band_from"] == f"calibration:{cal}" and so["budget"] is None
    assert so["sampled_fraction"] == 1.0 and so["bands"] == [{"low": -100.0, "high": 100.0, "weight": 1.0}]
    assert so["auroc"] == pytest.approx(co["auroc"])
    assert so["extra_tokens_per_question"] == pytest.approx(co["extra_tokens_per_question"])

    # Without --second-opinion the results hold no second_opinion key.
    plain = bench(*RUN, "--out", str(out))
    assert plain.returncode == 0, plain.stderr
    assert "second_opinion" not in json.loads((out / "results.json").read_text())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--second-opinion", "65"], "must be an integer from 1 to 64, got 65"),
        (["--second-opinion", "2", "--second-opinion-temperature", "0"], "must be in (0, 10], got 0.0"),
        (["--second-opinion-calibration", "CAL"], "has no second_opinion"),
    ],
)
def test_bad_second_opinion_options_fail_fast_with_one_line(tmp_path, args, message):
    cal = tmp_path / "one-pass.json"
    base = default_calibration("smollm2-135m-instruct")
    assert base is not None
    base.save(cal)
    args = [str(cal) if a == "CAL" else a for a in args]
    proc = bench(*RUN, "--out", str(tmp_path / "out"), *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "out").exists()
