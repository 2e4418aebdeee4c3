"""The review loop end to end, as a user runs it: a guard log from the embedded model, labels
given with ``spill-guard review label``, then ``spill-guard calibrate --from-log``.

Before the fix every record of a single-question ``ask`` (and the longest row of a batch) held a
``null`` Δ for its skipped ``z_(T+1)`` step, ``ScoredAnswer.from_record`` refused it, and
``calibrate --from-log`` said the log "has no labelled records with a scored trace".
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spill_guard import SpillGuard
from spill_guard.calibration import Calibration
from spill_guard.review import ReviewRecord, open_log, redact_patterns
from spill_guard.spans import make_locator
from spill_guard.tasks import judge, load_task

pytestmark = pytest.mark.model

# Capitals of the built-in task (dev split) the embedded model answers right, and wrong.
RIGHT = ["AE", "AF", "AL", "AT", "BE", "CH", "CL", "CR", "CZ", "DO", "EE", "EG", "ER", "ET", "FI", "FR", "GR", "HU", "ID", "IE"]
WRONG = ["AS", "BS", "CC", "CG", "CX", "FJ", "FM", "GA", "GG", "GN", "GT", "GU", "GY", "HT", "IM", "JE", "KG", "KI", "KY", "LI"]
BY_CLI = 4  # records labelled through the command line (the rest through the library, to keep the test short)


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see test_calibrate_cli: one torch thread on a shared machine
    env.pop("SPILL_GUARD_LOG", None)
    return subprocess.run([sys.executable, "-m", "spill_guard.cli.main", *args], capture_output=True, text=True,
                          timeout=900, env=env)


@pytest.fixture(scope="module")
def labelled_log(spill_model, tmp_path_factory):
    """A JSONL log written by SpillGuard (4 single asks, then a batch), every record labelled."""
    wanted = {f"capital-{c}" for c in RIGHT + WRONG}
    items = [it for it in load_task("capitals") if it.id in wanted]
    path = tmp_path_factory.mktemp("loop") / "guard.jsonl"
    with SpillGuard(spill_model, log=path, max_new_tokens=24) as guard:
        verdicts = [guard.ask(it.question) for it in items[:BY_CLI]]  # each ends on its stop token
        verdicts += guard.ask_batch([it.question for it in items[BY_CLI:]])
    full = make_locator("full")
    labels = {}
    for it, v in zip(items, verdicts):
        span = full.locate(v.original_answer)
        labels[v.record_id] = "correct" if span is not None and judge(span.text, it.answers) else "incorrect"
    ids = list(labels)
    for rid in ids[:BY_CLI]:
        proc = cli("review", "label", rid[:10], labels[rid], "--log", str(path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    with open_log(path) as log:
        for rid in ids[BY_CLI:]:
            log.set_label(rid, labels[rid])
    return path, labels, verdicts[0]


def test_calibrate_from_a_guard_log_uses_every_labelled_record(labelled_log, tmp_path):
    path, labels, _ = labelled_log
    with open_log(path) as log:
        records = log.labelled()
    assert len(records) == len(labels)
    skipped_step = [r for r in records if r.scored["spilled_energy"][-1] is None]
    assert len(skipped_step) >= BY_CLI, "the single asks must end on their stop token with z_(T+1) skipped"
    out = tmp_path / "cal.json"
    proc = cli("calibrate", "--from-log", str(path), "-o", str(out), "--strategy", "false-flag", "--target", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cal = Calibration.load(out)
    assert cal.data_source.kind == "review-log" and "skipped" not in cal.data_source.detail
    assert cal.sample.n == len(labels) and cal.sample.n_skipped == 0
    assert cal.sample.n_incorrect == sum(v == "incorrect" for v in labels.values())
    assert "skipped record" not in proc.stdout


def test_a_record_calibration_cannot_use_is_named_with_its_reason(labelled_log, tmp_path):
    """Records stored without a trace are left out one by one, each with why; the rest still calibrate."""
    path, labels, verdict = labelled_log
    copy = tmp_path / "guard.jsonl"
    copy.write_bytes(path.read_bytes())
    without = ReviewRecord.from_verdict(verdict, include_scored=False)
    dropped = redact_patterns(scored="drop")(ReviewRecord.from_verdict(verdict))
    with open_log(copy) as log:
        for rec in (without, dropped):
            log.write(rec)
            log.set_label(rec.id, "correct")
    out = tmp_path / "cal.json"
    proc = cli("calibrate", "--from-log", str(copy), "-o", str(out), "--strategy", "false-flag", "--target", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rec in (without, dropped):
        assert f"skipped record {rec.short_id}: no trace stored" in proc.stdout
    cal = Calibration.load(out)
    assert cal.sample.n == len(labels) and "2 labelled records skipped" in cal.data_source.detail


def test_a_log_with_nothing_usable_says_why_per_record(labelled_log, tmp_path):
    verdict = labelled_log[2]
    log_path = tmp_path / "bare.sqlite"
    rec = ReviewRecord.from_verdict(verdict, include_scored=False)
    with open_log(log_path) as log:
        log.write(rec)
        log.set_label(rec.id, "incorrect")
    proc = cli("calibrate", "--from-log", str(log_path), "-o", str(tmp_path / "c.json"))
    assert proc.returncode == 2
    assert f"record {rec.short_id}: no trace stored" in proc.stderr and "Traceback" not in proc.stderr


def test_review_health_gives_the_calibrations_numbers_on_the_same_labels(labelled_log, spill_model, tmp_path):
    """``spill-guard review health`` (and ``threshold_health``) measure a rule on the log's labels with the
    calibration's own functions: on the labels a calibration was fitted on, its recorded numbers come back."""
    import json

    from spill_guard.calibration.health import threshold_health
    from spill_guard.calibration.validation import binomial_ci
    from spill_guard.guard.rule_from_calibration import resolve_rule

    path, labels, _ = labelled_log
    out = tmp_path / "cal.json"
    proc = cli("calibrate", "--from-log", str(path), "-o", str(out), "--strategy", "false-flag", "--target", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cal = Calibration.load(out)

    rule = resolve_rule(spill_model, threshold=None, calibration=cal, spec=None, locator=None, override=False)
    health = threshold_health(path, rule, target=cal.target)
    assert health.rule_version == cal.version and health.labelled == cal.sample.n
    assert health.metrics == cal.metrics  # AUROC, its bootstrap CI, false-flag rate, recall, F1, ...
    assert health.false_flags == round(cal.metrics.false_flag_rate * health.correct)
    assert health.false_flag_ci == binomial_ci(health.false_flags, health.correct)
    assert health.holds == (health.false_flag_ci[0] <= 0.2)
    assert sum(d.records for d in health.by_day) == len(labels)

    shown = cli("review", "health", "--log", str(path), "--calibration", str(out), "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    printed = json.loads(shown.stdout)
    assert printed["metrics"]["auroc"] == cal.metrics.auroc and printed["rule_version"] == cal.version
    assert printed["false_flags"] == health.false_flags and printed["holds"] == health.holds
    text = cli("review", "health", "--log", str(path))  # the rule that judged the newest record: the packaged one
    assert text.returncode == 0, text.stdout + text.stderr
    assert "AUROC" in text.stdout and "false flags:" in text.stdout
    assert "the packaged calibration that judged the newest record" in text.stdout
    missing = cli("review", "health", "--log", str(tmp_path / "none.jsonl"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
