"""Regression tests of issue 11 (hardening) on the real embedded model: the guard, the model core
and the score / demo CLI. Each test is named after the defect it pins."""

from __future__ import annotations

import errno
import io
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from spill_guard import (
    EarlyStop, InvalidInputError, InvalidParameterError, Raise, SpillGuard, SpillGuardError, TokenEvent,
    VerdictNotLoggedError,
    VerdictNotLoggedWarning,
)
from spill_guard.cli.main import main
from spill_guard.review import open_log

pytestmark = pytest.mark.model

KNOWN = "What is the capital of France?"
REPO = Path(__file__).resolve().parents[2]


class FailingSink:
    """A user's own review sink (e.g. forwarding to a queue) whose writes fail on chosen calls."""

    def __init__(self, fail_on: set[int], error: Exception):
        self.fail_on, self.error, self.calls, self.written = fail_on, error, 0, []

    def write(self, record):
        self.calls += 1
        if self.calls in self.fail_on:
            raise self.error
        self.written.append(record)

    def close(self):
        pass


# -- 6. sink I/O errors lost the verdict --------------------------------------------------------
def test_sink_write_error_no_longer_loses_the_verdict(spill_model):
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    guard = SpillGuard(spill_model, threshold=0.0, log=FailingSink({1}, disk_full), max_new_tokens=4)
    with pytest.raises(VerdictNotLoggedError) as info:
        guard.ask(KNOWN)
    verdict = info.value.verdict
    assert verdict.question == KNOWN and verdict.original_answer and verdict.record_id is None
    assert info.value.__cause__ is disk_full and "No space left" in str(info.value)
    assert isinstance(info.value, SpillGuardError)


def test_full_disk_review_log_keeps_the_verdict(spill_model, tmp_path):
    """The real JSONL sink on a device that is always full (/dev/full): ENOSPC on every write."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available here")
    log = tmp_path / "full.jsonl"
    log.symlink_to("/dev/full")
    try:
        guard = SpillGuard(spill_model, threshold=0.0, log=log, max_new_tokens=4)
    except Exception as exc:  # a sink that refuses such a path up front is fine too
        pytest.skip(f"the JSONL sink refuses a log on /dev/full at open: {exc}")
    with pytest.raises(VerdictNotLoggedError) as info:
        guard.ask(KNOWN)
    assert info.value.verdict.original_answer and info.value.verdict.record_id is None


def test_on_log_error_warn_returns_the_verdict_unlogged(spill_model):
    guard = SpillGuard(spill_model, threshold=0.0, log=FailingSink({1}, PermissionError("read-only log")),
                       max_new_tokens=4, on_log_error="warn")
    with pytest.warns(VerdictNotLoggedWarning, match="read-only log"):
        verdict = guard.ask(KNOWN)
    assert verdict.original_answer and verdict.record_id is None


def test_ask_batch_log_error_carries_every_verdict_of_the_batch(spill_model):
    sink = FailingSink({2}, UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed"))
    guard = SpillGuard(spill_model, threshold=0.0, log=sink, max_new_tokens=4, policy=Raise())
    questions = [KNOWN, "What is 7 * 8?", "What is the chemical symbol for gold?"]
    with pytest.raises(VerdictNotLoggedError) as info:
        guard.ask_batch(questions)
    verdicts = info.value.verdicts
    assert [v.question for v in verdicts] == questions  # all decided, in order, under Raise() too
    assert [v.record_id is None for v in verdicts] == [False, True, False]  # the others were still logged
    assert info.value.verdict is verdicts[1] and len(sink.written) == 2


# -- 7. seed= was not honoured across threads ---------------------------------------------------
def test_seeded_sampling_is_reproducible_across_threads(spill_model):
    questions = ["Name a colour.", "Name an animal.", "Say a word.", "Name a fruit.",
                 "Name a city.", "Name a number.", "Name a tool.", "Name a sport."]

    def sample(i):
        [ans] = spill_model.generate(questions[i], do_sample=True, seed=100 + i, max_new_tokens=5)
        return ans.answer_ids

    one_by_one = [sample(i) for i in range(8)]
    concurrent = [None] * 8
    start = threading.Barrier(8)

    def run(i):
        start.wait()
        concurrent[i] = sample(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert concurrent == one_by_one
    assert len({tuple(ids) for ids in one_by_one}) > 1  # really sampled, not one constant answer


# -- 8. non-UTF-8 / lone-surrogate input raised a raw TypeError ---------------------------------
def test_lone_surrogate_input_raises_invalid_input_error(spill_model):
    guard = SpillGuard(spill_model, threshold=0.0, max_new_tokens=2)
    for call in (lambda: guard.ask("\udcff x"), lambda: guard.ask(KNOWN, context="bad \udcfe"),
                 lambda: spill_model.generate("\udcff x"), lambda: spill_model.score_answer(KNOWN, "Paris \udcff"),
                 lambda: guard.check(KNOWN, "\udcff")):
        with pytest.raises(InvalidInputError, match="lone surrogate"):
            call()


def test_score_cli_with_non_utf8_argv_exits_2_with_a_clear_error():
    """Real bytes on the command line: Python decodes them to lone surrogates."""
    proc = subprocess.run([sys.executable, "-m", "spill_guard.cli.main", "score", b"\xff\xfe what?"],
                          capture_output=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert b"not valid Unicode text" in proc.stderr and b"Traceback" not in proc.stderr


def test_demo_chat_survives_bad_bytes_and_an_over_long_question(spill_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("spill_guard.cli.demo.load_spill_model", lambda args, **kw: spill_model)
    too_long = b"word " * (spill_model.loaded.context_window + 100)
    stdin = io.TextIOWrapper(io.BytesIO(b"\xff\xfe bad bytes\n" + too_long + b"\n" + KNOWN.encode() + b"\n\n"),
                             encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    log = tmp_path / "chat.jsonl"
    assert main(["demo", "--chat", "--log", str(log), "--policy", "flag", "--max-new-tokens", "12"]) == 0
    out, err = capsys.readouterr()
    assert "not valid Unicode text" in err and "do not fit the model's context window" in err
    assert err.count("Ask another question.") == 2
    assert "bot> The capital of France is Paris" in out
    with open_log(log) as sink:
        assert [r.question for r in sink.records()] == [KNOWN]


# -- 9. EarlyStop(beta=...) was not validated ---------------------------------------------------
def test_early_stop_beta_the_model_does_not_capture_is_refused_at_guard_creation(spill_model):
    with pytest.raises(InvalidParameterError, match="early_stop needs beta 0.5"):
        SpillGuard(spill_model, threshold=0.0, early_stop=EarlyStop(1.0, beta=0.5))


# -- also: a stream consumer that stopped early left generation running, unlogged --------------
def test_stream_closed_early_stops_generation_and_logs_the_partial_answer(spill_model, tmp_path):
    log = tmp_path / "stream.jsonl"
    guard = SpillGuard(spill_model, threshold=0.0, log=log, max_new_tokens=64)
    stream = guard.stream("Write a long story about a dragon who learns to fly.", metadata={"user": "u1"})
    events = []
    for item in stream:
        assert isinstance(item, TokenEvent)
        events.append(item)
        if len(events) == 2:
            break
    stream.close()
    assert not any(t.name == "spill-guard-stream" and t.is_alive() for t in threading.enumerate())
    with open_log(log) as sink:
        [record] = sink.records()
    assert record.metadata["stream_closed_after_tokens"] == 2 and record.metadata["user"] == "u1"
    assert 2 <= len(record.tokens) < 64  # stopped near where the consumer left, not run to max_new_tokens
    guard.close()


# -- also: wrong parameter types raised raw AttributeError / ValueError -------------------------
@pytest.mark.parametrize("kwargs", [
    {"spec": 5}, {"threshold": "abc"}, {"threshold": True}, {"threshold": float("nan")},
    {"locator": 5}, {"log_all": "yes"}, {"override": 1}, {"on_log_error": "ignore"},
    {"threshold": 0.0, "spec": ["spilled_energy:mean"]},
])
def test_wrong_parameter_types_raise_invalid_parameter_error(spill_model, kwargs):
    with pytest.raises(InvalidParameterError):
        SpillGuard(spill_model, **kwargs)


def test_a_model_name_instead_of_a_spill_model_is_refused_clearly():
    with pytest.raises(InvalidParameterError, match=r"SpillModel.load\('smollm2-135m-instruct'\)"):
        SpillGuard("smollm2-135m-instruct", threshold=0.0)


# -- also: a FutureWarning about past_key_values on every run -----------------------------------
def test_generation_emits_no_past_key_values_future_warning(spill_model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spill_model.generate(KNOWN, max_new_tokens=2)
    assert not [w for w in caught if "past_key_values" in str(w.message)]


@pytest.mark.parametrize("kwargs", [{"tags": "demo"}, {"tags": [1]}, {"metadata": 5}, {"metadata": ["a"]}])
def test_wrong_tags_or_metadata_types_raise_invalid_input_error_before_generating(spill_model, kwargs):
    guard = SpillGuard(spill_model, threshold=0.0, max_new_tokens=2)
    for call in (lambda: guard.ask(KNOWN, **kwargs), lambda: guard.check(KNOWN, "Paris", **kwargs),
                 lambda: next(guard.stream(KNOWN, **kwargs))):
        with pytest.raises(InvalidInputError, match="tags|metadata"):
            call()
