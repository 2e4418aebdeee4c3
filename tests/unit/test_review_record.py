"""ReviewRecord: defaults, strict JSON, validation, from_verdict."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from spill_guard.review import InvalidLabelError, ReviewRecord


def make(**kw) -> ReviewRecord:
    base = dict(question="q", answer="a", original_answer="a", action="passed", flagged=False, score=0.1,
                spec="spilled_energy:mean")
    base.update(kw)
    return ReviewRecord(**base)


def test_defaults_id_time_and_schema():
    a, b = make(), make()
    assert re.fullmatch(r"[0-9a-f]{32}", a.id) and a.id != b.id
    assert a.created_at.endswith("+00:00") and a.created_at <= b.created_at
    assert a.schema_version == 1 and a.label is None and a.short_id == a.id[:8]


def test_non_finite_numbers_become_null_everywhere_including_numpy():
    r = make(score=np.float32("nan"), threshold=float("inf"), tokens=["a", "b"],
             token_scores=[np.float32("inf"), np.float64(0.5)],
             scored={"trace": {"chosen_logit": [float("-inf"), 1.0]}, "ids": [np.int64(3)]},
             metadata={"m": float("nan")}, attempts=[{"score": float("inf")}])
    assert r.score is None and r.threshold is None and r.token_scores == [None, 0.5]
    line = r.to_json()
    assert "\n" not in line
    data = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert data["scored"] == {"trace": {"chosen_logit": [None, 1.0]}, "ids": [3]}
    assert ReviewRecord.from_json(line) == r


def test_validation_errors_name_the_problem():
    with pytest.raises(ValidationError, match="action 'maybe'"):
        make(action="maybe")
    with pytest.raises(ValidationError, match="2 tokens but 1 token_scores"):
        make(tokens=["a", "b"], token_scores=[0.1])
    with pytest.raises(ValidationError):
        make(label="unsure")


def test_with_label_validates_and_stamps_time():
    r = make().with_label("incorrect", "n")
    assert (r.label, r.label_note) == ("incorrect", "n") and r.labelled_at
    with pytest.raises(InvalidLabelError, match="'yes'"):
        make().with_label("yes")


class _Span(BaseModel):
    start: int
    end: int
    text: str
    token_start: int
    token_end: int


class _Attempt(BaseModel):
    answer: str
    score: float | None
    flagged: bool
    strategy: str


class _Scored:
    model = "SmolLM2-135M-Instruct"

    def to_record(self) -> dict:
        return {"answer": "Madrid", "trace": {"token_ids": [1, 2]}}


def _verdict(**kw):
    from enum import Enum

    class Action(str, Enum):
        abstained = "abstained"

    base = dict(question="Capital of France?", context=None, answer="I don't know.", original_answer="Madrid",
                action=Action.abstained, flagged=True, score=2.5, threshold=1.0, spec="spilled_energy:mean",
                locator="full", span=_Span(start=0, end=6, text="Madrid", token_start=0, token_end=2),
                tokens=["Mad", "rid"], token_scores=[2.0, 3.0],
                attempts=[_Attempt(answer="Madrid", score=2.5, flagged=True, strategy="greedy")], scored=_Scored())
    base.update(kw)
    return SimpleNamespace(**base)


def test_from_verdict_reads_the_guard_contract_by_attribute():
    r = ReviewRecord.from_verdict(_verdict(), tags=("prod",), metadata={"user": "u1"})
    assert r.action == "abstained" and r.flagged and r.score == 2.5 and r.answer == "I don't know."
    assert r.span == {"start": 0, "end": 6, "text": "Madrid", "token_start": 0, "token_end": 2}
    assert r.attempts == [{"answer": "Madrid", "score": 2.5, "flagged": True, "strategy": "greedy"}]
    assert r.model == "SmolLM2-135M-Instruct" and r.tags == ["prod"] and r.metadata == {"user": "u1"}
    assert r.scored == {"answer": "Madrid", "trace": {"token_ids": [1, 2]}}
    lean = ReviewRecord.from_verdict(_verdict(span=None, scored=None), model="m", include_scored=False)
    assert lean.scored is None and lean.span is None and lean.model == "m"


def test_values_json_cannot_hold_are_kept_as_their_repr():
    r = make(metadata={"when": frozenset({1}), "span": _Span(start=0, end=1, text="a", token_start=0, token_end=1)})
    assert r.metadata == {"when": "frozenset({1})", "span": {"start": 0, "end": 1, "text": "a", "token_start": 0,
                                                            "token_end": 1}}
    assert ReviewRecord.from_json(r.to_json()) == r


def test_a_stray_nan_token_from_a_lenient_writer_reads_as_null():
    line = make(tokens=["a"], token_scores=[1.0]).to_json().replace('"token_scores":[1.0]', '"token_scores":[NaN]')
    assert ReviewRecord.from_json(line).token_scores == [None]


@pytest.mark.model
def test_a_stored_scored_answer_can_be_rescored_without_the_model(spill_model, tmp_path):
    from spill_guard import ScoredAnswer
    from spill_guard.review import open_log, redact_patterns

    scored = spill_model.score_answer("Who wrote Dracula? Mail bob@example.org", "Bram Stoker wrote it.")
    base = dict(question="Who wrote Dracula?", answer=scored.answer, original_answer=scored.answer,
                action="passed", flagged=False, score=scored.score(), spec="spilled_energy:mean",
                tokens=[t.text for t in scored.tokens], token_scores=scored.spilled_energy, scored=scored.to_record())
    for redact in (None, redact_patterns()):
        with open_log(tmp_path / f"log{redact is None}.jsonl", redact=redact) as log:
            log.write(ReviewRecord(**base))
            [back] = log.records()
        again = ScoredAnswer.from_record(back.scored)
        for spec in ("spilled_energy:mean", "spilled_energy:min", "nll:sum", "entropy:max"):
            assert again.score(spec) == pytest.approx(scored.score(spec), rel=1e-9)
        assert again.score("token_energy:max", start=1, end=3) == pytest.approx(scored.score("token_energy:max", 1, 3))
        if redact is not None:
            assert "bob@" not in back.model_dump_json() and again.prompt == "" and again.prompt_ids == []
