"""A calibration fitted with a second opinion, on the embedded model: ``spill-guard calibrate --second-opinion K``
(band and threshold fitted together, checked by brute force from the same samples), the file's record, and
every place a guard takes its rule from such a file (ask, check, recalibrate, a given equivalence, conflicts,
the drop-in path that cannot sample, ``Calibration.decide``)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from spill_guard import SpillGuard
from spill_guard.calibration import Calibration, CalibrationFileError, SecondOpinionFit, ThresholdCalibrator
from spill_guard.calibration.cascade import Cascade
from spill_guard.calibration.consistency import DEFAULT_TEMPERATURE, Consistency, draw_samples
from spill_guard.calibration.data import from_task
from spill_guard.errors import InvalidParameterError
from spill_guard.models.params import GenerationParams

pytestmark = pytest.mark.model

MAX_NEW = 16


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    from test_calibrate_cli import RIGHT, WRONG

    from spill_guard.tasks import load_task

    wanted = {f"capital-{c}" for c in RIGHT[:16] + WRONG[:16]}
    items = [it for it in load_task("capitals") if it.id in wanted]
    path = tmp_path_factory.mktemp("task") / "few_capitals.jsonl"
    path.write_text("\n".join(it.model_dump_json(exclude_none=True) for it in items) + "\n", encoding="utf-8")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    from test_calibrate_cli import calibrate  # `spill-guard calibrate --no-progress ...`, one torch thread

    return calibrate(*args)


def test_calibrate_with_a_second_opinion_equals_its_brute_force(task_file, tmp_path):
    from spill_guard import SpillModel
    from spill_guard.calibration.data import CALIBRATION_EXTRA_BETAS

    spill_model = SpillModel.load(device="cpu", extra_betas=CALIBRATION_EXTRA_BETAS)  # the CLI's capture
    out, cache = tmp_path / "cal.json", tmp_path / "cache"
    done = run_cli(str(task_file), "--split", "all", "--max-new-tokens", str(MAX_NEW), "--cache", str(cache),
                   "--second-opinion", "2", "--second-opinion-budget", "1.0", "-o", str(out))
    assert done.returncode == 0, done.stderr
    cal = Calibration.load(out)
    # The same labelled answers (the CLI's cache) and the same samples (same prompts, batches and seeds).
    cset = from_task(spill_model, [str(task_file)], split="all", cache_dir=cache, max_new_tokens=MAX_NEW,
                     progress=False)
    subset = cset.scores(cal.spec, cal.locator)
    by_key = {a.key: a for a in cset.answers}
    kept = [by_key[k] for k in subset.keys]
    consistency = Consistency(samples=2)  # the CLI samples at the default temperature
    drawn = draw_samples(spill_model, [a.answer.prompt_ids for a in kept], consistency,
                         GenerationParams(max_new_tokens=MAX_NEW), batch_size=8)
    agreement = np.array([consistency.compare(a.answer.answer, d, a.question).agreement for a, d in zip(kept, drawn)])
    risk = cal.direction * subset.scores
    if cal.second_opinion is None:  # no band beat one pass on these answers: said, and one pass kept
        assert "keeps one pass" in done.stdout
        assert cal.threshold == ThresholdCalibrator("conformal", 0.1).fit(subset.scores, subset.labels).threshold
        return
    so = cal.second_opinion
    assert (so.samples, so.temperature, so.top_p, so.budget, so.max_new_tokens) == (2, DEFAULT_TEMPERATURE, 1.0, 1.0, MAX_NEW)
    assert so.equivalence == "judge" and so.locator == consistency.locator
    cascade = cal.cascade()
    final = cascade.scores(risk, agreement)
    refit = ThresholdCalibrator("conformal", 0.1).fit(final, subset.labels)
    assert cal.threshold == refit.threshold  # the threshold is fitted on the final risk
    assert cal.metrics.auroc == pytest.approx(so.auroc) == pytest.approx(refit.metrics.auroc)
    assert so.sampled_share == pytest.approx(float(cascade.sampled(risk).mean()))
    assert so.auroc >= so.one_pass_auroc + 0.01  # a band is kept only where it beats one pass
    one_pass = ThresholdCalibrator("conformal", 0.1).fit(subset.scores, subset.labels)
    # a better ranking that flags fewer wrong answers at the same target is said, not hidden
    assert ("flags fewer wrong answers" in done.stdout) == (cal.metrics.recall < one_pass.metrics.recall)
    assert "second opinion: 2 samples" in done.stdout and "threshold is on the final risk" in done.stdout


def test_bad_second_opinion_arguments_fail_before_the_model_loads(task_file, tmp_path):
    for args, words in (
        (["--second-opinion", "0"], "--second-opinion"),
        (["--second-opinion", "2", "--second-opinion-temperature", "0"], "--second-opinion-temperature must be in (0, 10]"),
        (["--second-opinion", "2", "--second-opinion-budget", "1.5"], "--second-opinion-budget"),
    ):
        done = run_cli(str(task_file), "-o", str(tmp_path / "x.json"), *args)
        assert done.returncode != 0 and words in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and not (tmp_path / "x.json").exists()


# -- a guard on a calibration that carries a second opinion --------------------------------------------------

def with_opinion(spill_model, **fit) -> Calibration:
    """The packaged calibration of the embedded model, given a second opinion over every risk."""
    from spill_guard.calibration.packaged import packaged_calibration

    base = packaged_calibration(spill_model)
    record = dict(samples=2, temperature=1.0, top_p=1.0, locator=Consistency().locator, equivalence="judge",
                  low=-100.0, high=100.0, weight=0.5, budget=1.0, sampled_share=1.0, one_pass_auroc=0.7,
                  auroc=0.75, consistency_auroc=0.7, max_new_tokens=MAX_NEW)
    return base.model_copy(update={"second_opinion": SecondOpinionFit(**{**record, **fit})})


def test_a_guard_takes_the_calibrations_second_opinion(spill_model, tmp_path):
    cal = with_opinion(spill_model)
    path = cal.save(tmp_path / "cal.json")
    assert Calibration.load(path) == cal and Calibration.load(path).version == cal.version
    guard = SpillGuard(spill_model, calibration=path, max_new_tokens=MAX_NEW)
    assert guard.rule.second_opinion == Consistency(samples=2, temperature=1.0, cascade=Cascade(-100.0, 100.0, 0.5))
    verdict = guard.ask("What is the capital of Peru?")
    assert verdict.second_opinion is not None and verdict.second_opinion.samples == 2
    assert verdict.rule_version == cal.version
    assert verdict.score == pytest.approx(cal.cascade().combine(verdict.second_opinion.one_pass_risk,
                                                                verdict.second_opinion.agreement))
    # check(): an answer produced elsewhere gets the second opinion of this guard's model, never a retry
    checked = guard.check("What is the capital of Peru?", "The capital of Peru is Lima.")
    assert checked.second_opinion is not None and len(checked.attempts) == 1
    # a new threshold on the same final risk keeps the second opinion
    guard.recalibrate(threshold=1.5)
    assert guard.rule.second_opinion == cal.consistency()
    with pytest.raises(InvalidParameterError, match="second opinion's final risk"):
        cal.decide(0.3)


def test_a_given_second_opinion_must_match_the_files(spill_model):
    cal = with_opinion(spill_model)
    with pytest.raises(InvalidParameterError, match="fitted with a second opinion of 2 samples"):
        SpillGuard(spill_model, calibration=cal, second_opinion=Consistency(samples=3))
    with pytest.raises(InvalidParameterError, match="band"):
        SpillGuard(spill_model, calibration=cal,
                   second_opinion=Consistency(samples=2, cascade=Cascade(0.0, 1.0, 0.5)))
    # another temperature (here Consistency's default, the file says 1.0): refused, the error says both
    with pytest.raises(InvalidParameterError, match=f"at temperature 1.0.*given samples 2 at temperature {DEFAULT_TEMPERATURE}"):
        SpillGuard(spill_model, calibration=cal, second_opinion=Consistency(samples=2, equivalence=lambda a, b: True))
    # the same sampling, with your equivalence: taken, with the file's band
    guard = SpillGuard(spill_model, calibration=cal, max_new_tokens=MAX_NEW,
                       second_opinion=Consistency(samples=2, temperature=1.0, equivalence=lambda a, b: True))
    assert guard.rule.second_opinion.cascade == cal.cascade()
    assert guard.ask("What is the capital of Peru?").second_opinion.agreement == 1.0
    custom = with_opinion(spill_model, equivalence="custom")
    with pytest.raises(InvalidParameterError, match="your own equivalence"):
        SpillGuard(spill_model, calibration=custom)


def test_the_drop_in_path_refuses_a_rule_it_cannot_sample(spill_model):
    from spill_guard.guard.dropin import DropIn

    guard = SpillGuard(spill_model, calibration=with_opinion(spill_model))
    with pytest.raises(InvalidParameterError, match="cannot draw"):
        DropIn(spill_model.loaded.model, spill_model.tokenizer, who="Door", where="door.model",
               default_name="unused", guard=guard)


def test_a_malformed_second_opinion_is_a_file_error(spill_model, tmp_path):
    data = json.loads(with_opinion(spill_model).to_json())
    for change, words in (({"low": 2.0, "high": 1.0}, "above high"), ({"locator": "nowhere"}, "locator"),
                          ({"samples": 0}, "second_opinion.samples")):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({**data, "second_opinion": {**data["second_opinion"], **change}}))
        with pytest.raises(CalibrationFileError, match=words):
            Calibration.load(path)
