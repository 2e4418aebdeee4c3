"""Issue 19 item 13 (guard side): ``ask_batch`` writes its records with one sink call (one fsync
on a JSONL log), and a record that cannot be stored still fails alone, under both
``on_log_error`` settings; OpenTelemetry/metrics still count every verdict.

``os.fsync`` is wrapped with a counter (instrumentation: the real fsync runs).
"""

from __future__ import annotations

import os

import pytest

from spill_guard import SpillGuard, VerdictNotLoggedError, VerdictNotLoggedWarning
from spill_guard.review import JsonlSink, ReviewRecord

pytestmark = pytest.mark.model

QUESTIONS = ["What is the capital of France?", "What is 7 * 8?", "What is the chemical symbol for gold?"]


def refuse_the_second(record: ReviewRecord) -> ReviewRecord:
    """A redact hook that fails on one record (as a user's hook might on odd input)."""
    if "7 * 8" in record.question:
        raise ValueError("this hook cannot redact arithmetic")
    return record


@pytest.fixture
def fsyncs(monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return synced


def test_ask_batch_writes_its_records_with_one_fsync(spill_model, tmp_path, fsyncs):
    from prometheus_client import CollectorRegistry

    path = tmp_path / "guard.jsonl"
    registry = CollectorRegistry()
    guard = SpillGuard(spill_model, threshold=0.0, log=JsonlSink(path), max_new_tokens=4, metrics=registry)
    verdicts = guard.ask_batch(QUESTIONS)
    assert fsyncs == [str(path.resolve())]
    assert [r.id for r in guard.sink.records()] == [v.record_id for v in verdicts]
    counted = sum(registry.get_sample_value("spill_guard_answers_total", {"action": a}) or 0 for a in ("passed", "flagged"))
    assert counted == 3  # every verdict counted


@pytest.mark.parametrize("on_log_error", ["raise", "warn"])
def test_a_record_that_fails_in_a_batch_fails_alone(spill_model, tmp_path, fsyncs, on_log_error):
    path = tmp_path / "guard.jsonl"
    guard = SpillGuard(spill_model, threshold=0.0, log=JsonlSink(path, redact=refuse_the_second), max_new_tokens=4,
                       on_log_error=on_log_error)
    if on_log_error == "raise":
        with pytest.raises(VerdictNotLoggedError, match="cannot redact arithmetic") as info:
            guard.ask_batch(QUESTIONS)
        verdicts = info.value.verdicts
        assert info.value.verdict is verdicts[1] and isinstance(info.value.__cause__, ValueError)
    else:
        with pytest.warns(VerdictNotLoggedWarning, match="cannot redact arithmetic") as caught:
            verdicts = guard.ask_batch(QUESTIONS)
        assert len([w for w in caught if issubclass(w.category, VerdictNotLoggedWarning)]) == 1
    assert [v.question for v in verdicts] == QUESTIONS
    assert [v.record_id is None for v in verdicts] == [False, True, False]
    assert [r.id for r in guard.sink.records()] == [verdicts[0].record_id, verdicts[2].record_id]
    assert fsyncs == [str(path.resolve())]  # the other two still went out together
