"""Instrumentation: every scored answer reaches a registered handler with the core's numbers;
SpillReviewHandler writes the flagged ones to a review log."""

from __future__ import annotations

import json

import pytest

from delta_support import assert_same_deltas

pytestmark = pytest.mark.model

Q = "Who wrote the novel Dracula?"


def test_event_carries_the_core_numbers(make_llm, spill_model, captured_events):
    from li_support import ALWAYS, MAX_NEW

    from spill_guard.models.prompting import chat_prompt_ids

    llm = make_llm(threshold=ALWAYS)
    response = llm.complete(Q)
    [event] = captured_events
    ids = chat_prompt_ids(spill_model.tokenizer, [{"role": "user", "content": Q}])
    [core] = spill_model.generate_from_ids([ids], max_new_tokens=MAX_NEW)
    span = event.verdict.span
    assert event.answer == core.answer == response.text
    assert event.score == pytest.approx(core.score("spilled_energy:mean", span.token_start, span.token_end), abs=1e-5)
    assert_same_deltas(event.verdict.token_scores, core.spilled_energy, abs=1e-5,
                       last_is_textless_stop=core.stopped_on_eos and core.tokens[-1].special)
    assert event.flagged is True and event.threshold == ALWAYS and event.spec == "spilled_energy:mean"
    assert event.verdict.scored.answer_ids == core.answer_ids
    assert event.model_dump()["class_name"] == "SpillScoredEvent"


def test_one_event_per_answer_including_streams(llm, captured_events):
    list(llm.stream_complete(Q))
    llm.complete(Q)
    assert len(captured_events) == 2
    assert captured_events[0].answer == captured_events[1].answer  # greedy: same answer both ways


def test_review_handler_writes_only_flagged(make_llm, tmp_path):
    from llama_index.core.instrumentation import get_dispatcher

    from li_support import ALWAYS, NEVER
    from spill_guard_llama_index import SpillReviewHandler

    log = tmp_path / "review.jsonl"
    handler = SpillReviewHandler(log=log)
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        flagged = make_llm(threshold=ALWAYS).complete(Q)
        make_llm(threshold=NEVER).complete(Q)  # passes: not written
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not handler]
        handler.close()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert handler.written == 1 and handler.last_error is None
    [record] = lines
    assert record["flagged"] is True and record["action"] == "flagged"
    assert record["original_answer"] == flagged.text
    assert record["score"] == pytest.approx(flagged.additional_kwargs["spill_guard"]["score"])
    assert record["scored"]["trace"]  # full ScoredAnswer: re-scorable later
    assert "llama_index" in record["tags"]


def test_review_handler_rejects_a_bad_log():
    from spill_guard.errors import SpillGuardError
    from spill_guard_llama_index import SpillReviewHandler

    with pytest.raises(SpillGuardError):
        SpillReviewHandler(log=42)
    with pytest.raises(SpillGuardError):
        SpillReviewHandler(log="review.txt")
