"""Property: every record the guard's record code writes reads back through ``ScoredAnswer.from_record``.

Records are built the way the writers build them: a ``ScoredAnswer`` from
``build_scored_answer`` (the builder of the guard, the server, vLLM and both integrations)
over a generated trace, then the guard's decision path that the guard (``_decide``) and the
server (``engine._choice``) both run (``assess`` -> policy -> ``verdict_from`` -> ``log``,
which calls ``ReviewRecord.from_verdict``), into a real JSONL or SQLite log with or without
a redaction hook. Traces cover answers that ended on their stop token with the ``z_(T+1)``
step skipped (NaN last Δ) or computed (a batch row that finished early), cut at the token
limit, stopped early by the guard, empty, with non-finite steps, with ``stats="energy"``;
policies Flag, Abstain, Raise and Retry (several attempts); answers holding e-mail
addresses and phone numbers, which redaction rewrites.

What must hold: the log line is strict JSON, ``from_record`` reads the stored answer back
(before the fix a skipped Δ, stored as ``null``, failed pydantic's float check), every number
equals what was written (non-finite ones read back as NaN), the span the guard scores maps to
the same tokens (also after redaction), and calibration's reader accepts the record.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from spill_guard import SpillGuard
from spill_guard.calibration.data import review_record_answer
from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import SpillGuardError
from spill_guard.guard.assess import assess
from spill_guard.policy import Abstain, Flag, Raise, Retry, apply_policy
from spill_guard.report import ScoredAnswer, build_scored_answer
from spill_guard.review import open_log, redact_patterns

pytestmark = pytest.mark.model

PIECES = ["The", " capital", " is", " Paris", ".", " 42", "\n", "  ", " bob@example.org", " call 555-123-4567",
          " é", " 東京", "!"]
ENDINGS = ("stop, z_(T+1) skipped", "stop, z_(T+1) computed", "cut", "early stopped")
POLICIES = {
    "flag": Flag, "abstain": Abstain, "raise": Raise,
    "retry": lambda: Retry(attempts=3, fallback=Flag()), "retry-abstain": lambda: Retry(attempts=2),
}
REDACTIONS = {"none": None, "drop_prompt": "drop_prompt", "drop": "drop", "keep": "keep"}
QUESTION = "What is the capital of France? Mail bob@example.org"
finite = st.floats(-40, 40, allow_nan=False)


def _floats(draw, n: int, strategy=finite) -> np.ndarray:
    return np.array(draw(st.lists(strategy, min_size=n, max_size=n)), dtype=np.float64)


@st.composite
def answers(draw, spill_model) -> tuple[ScoredAnswer, bool]:
    """A ScoredAnswer as build_scored_answer makes it, and whether the guard stopped it early."""
    tok = spill_model.tokenizer
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    text = "".join(draw(st.lists(st.sampled_from(PIECES), max_size=6)))
    ids = list(tok.encode(text, add_special_tokens=False))
    ending = draw(st.sampled_from(ENDINGS))
    if ending.startswith("stop") or not ids:
        ending = ending if ending.startswith("stop") else ENDINGS[0]
        ids.append(stop)
    n = len(ids)
    final_step = ending != ENDINGS[0]
    betas = draw(st.sampled_from([(1.0,), (1.0, 0.5)]))
    chosen = _floats(draw, n)
    log_partition = np.stack([_floats(draw, n + 1) for _ in betas])
    previous = _floats(draw, n)
    previous[0] = np.nan
    full_stats = draw(st.booleans())
    entropy = _floats(draw, n, st.floats(0, 10)) if full_stats else np.full(n, np.nan)
    jsd = _floats(draw, n, st.floats(0, 1)) if full_stats else np.full(n, np.nan)
    nonfinite = np.zeros(n + 1, dtype=bool)
    if draw(st.integers(0, 7)) == 0:  # NaN/+inf logits at one step
        step = draw(st.integers(0, n if final_step else n - 1))
        nonfinite[step] = True
        log_partition[:, step] = draw(st.sampled_from([math.inf, math.nan]))
        if step < n:
            chosen[step] = draw(st.sampled_from([-math.inf, math.nan]))
    if not final_step:
        log_partition[:, n] = np.nan
        jsd[n - 1] = np.nan
    trace = TokenTrace(
        token_ids=np.array(ids, dtype=np.int64), betas=betas, chosen_logit=chosen, previous_logit=previous,
        log_partition=log_partition, entropy=entropy, jsd_next=jsd, nonfinite=nonfinite,
        vocab_size=len(tok), distribution_stats=full_stats, final_step=final_step,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "NaN/+inf logits": pooled left out, as drawn
        scored = build_scored_answer(tokenizer=tok, model_name=spill_model.loaded.name,
                                     prompt_ids=spill_model.prompt_ids(QUESTION), trace=trace,
                                     stopped_on_eos=ending.startswith("stop"))
    return scored, ending == "early stopped"


def same_numbers(a, b) -> bool:
    """Equal where finite; non-finite on one side is NaN (or non-finite) on the other."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(np.where(np.isfinite(a) | np.isfinite(b), a == b, True)))


def same_trace(a: TokenTrace, b: TokenTrace) -> bool:
    return (np.array_equal(a.token_ids, b.token_ids) and a.betas == b.betas and a.vocab_size == b.vocab_size
            and np.array_equal(a.nonfinite, b.nonfinite) and a.final_step == b.final_step
            and a.distribution_stats == b.distribution_stats
            and all(same_numbers(getattr(a, f), getattr(b, f))
                    for f in ("chosen_logit", "previous_logit", "log_partition", "entropy", "jsd_next")))


def outcome(fn):
    try:
        return fn()
    except SpillGuardError as exc:
        return type(exc)


def strict_json_lines(path: Path) -> list[dict]:
    def refuse(constant: str):
        raise AssertionError(f"non-strict JSON constant {constant} in {path.name}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text("utf-8").splitlines() if line]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_record_the_guard_writes_reads_back_through_from_record(spill_model, data):
    first, early = data.draw(answers(spill_model), label="first answer")
    policy_name = data.draw(st.sampled_from(sorted(POLICIES)), label="policy")
    retries = [data.draw(answers(spill_model), label=f"retry {i}") for i in range(2)] if "retry" in policy_name else []
    redaction = data.draw(st.sampled_from(sorted(REDACTIONS)), label="redaction")
    suffix = data.draw(st.sampled_from([".jsonl", ".sqlite"]), label="log")
    threshold = data.draw(st.floats(-5, 5), label="threshold")
    hook = None if REDACTIONS[redaction] is None else redact_patterns(scored=REDACTIONS[redaction])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"log{suffix}"
        guard = SpillGuard(spill_model, threshold=threshold, policy=POLICIES[policy_name](),
                           log=open_log(path, redact=hook))
        pending = iter(retries)

        def regenerate(strategy, attempt):
            scored, cut = next(pending)
            return assess(scored, QUESTION, guard.rule, guard.locator, strategy=strategy.name, early_stopped=cut)

        # The decision path of SpillGuard._decide and of the server's engine._choice.
        decision = apply_policy(guard.policy, assess(first, QUESTION, guard.rule, guard.locator, early_stopped=early),
                                regenerate)
        verdict = guard.verdict_from(decision, question=QUESTION)
        guard.log(verdict, tags=("property",), metadata={"choice": 0})
        guard.close()
        if suffix == ".jsonl":
            strict_json_lines(path)
        with open_log(path) as log:
            [record] = log.records()
    original = verdict.scored
    event(f"{policy_name}, {redaction}, {suffix}, {verdict.action.value}")
    event(f"final step computed: {original.trace.final_step}; stopped on eos: {original.stopped_on_eos}")
    assert record.id == verdict.record_id
    assert same_numbers([math.nan if record.score is None else record.score],
                        [math.nan if verdict.score is None else verdict.score])
    if redaction == "drop":
        assert record.scored is None
        assert "no trace stored" in review_record_answer(record)[1]
        return
    back = ScoredAnswer.from_record(record.scored)
    assert same_trace(back.trace, original.trace)
    for name in ("token_energy", "marginal_energy", "spilled_energy"):
        assert same_numbers(getattr(back, name), getattr(original, name)), name
    assert back.pooled == original.pooled and back.answer_ids == original.answer_ids
    assert (back.stopped_on_eos, back.nonfinite_steps, back.beta) == (
        original.stopped_on_eos, original.nonfinite_steps, original.beta)
    if redaction in ("none", "keep"):
        assert back.model_dump_json() == original.model_dump_json()  # the whole contract, NaN/inf as null
    else:  # redacted: the tokens still index the (redacted) answer, and cover the same text span
        assert back.prompt == "" and back.prompt_ids == [] and "bob@" not in back.answer
        assert all(back.answer[t.start:t.end] == t.text for t in back.tokens)
    assert outcome(back.text_range) == outcome(original.text_range)
    # The guard's number on the guard's span (and score()'s default span) is the same after the round trip.
    assert outcome(lambda: back.score(guard.rule.spec)) == outcome(lambda: original.score(guard.rule.spec))
    span = verdict.span
    if span is not None:
        assert outcome(lambda: back.score(guard.rule.spec, span.token_start, span.token_end)) == outcome(
            lambda: original.score(guard.rule.spec, span.token_start, span.token_end))
    used, why = review_record_answer(record)
    assert used is not None, why
