"""The second opinion in the one decision path, on the embedded model: a first answer in the band is sampled
again, its final risk is the cascade's blend (checked by brute force against plain generation and the
project's judge), one-pass verdicts are unchanged, seeds repeat the samples, and Retry(Resample) takes the
samples as its candidates instead of generating them twice."""

from __future__ import annotations

import pytest

from spill_guard import Flag, Resample, Retry, SpillGuard
from spill_guard.calibration.cascade import Cascade
from spill_guard.calibration.consistency import AGREEMENT_LOCATOR, Consistency, same_answer
from spill_guard.errors import InvalidParameterError
from spill_guard.review import open_log
from spill_guard.spans import make_locator

pytestmark = pytest.mark.model

QUESTION = "Who wrote the novel Dracula?"
EVERYWHERE = Cascade(-100.0, 100.0, 0.5)


def guard_of(spill_model, **kw) -> SpillGuard:
    return SpillGuard(spill_model, threshold=0.0, max_new_tokens=20, **kw)


def test_a_sampled_verdict_equals_its_brute_force(spill_model, tmp_path):
    consistency = Consistency(samples=3, temperature=1.0, cascade=EVERYWHERE)
    from prometheus_client import CollectorRegistry

    log = tmp_path / "guard.jsonl"
    registry = CollectorRegistry()
    with guard_of(spill_model, second_opinion=consistency, log=log, metrics=registry) as guard:
        verdict = guard.ask(QUESTION)
        one_pass = guard_of(spill_model).ask(QUESTION)
        prompt = guard.prompt(QUESTION)
        plain = [spill_model.generate_params([prompt.ids], p)[0] for p in consistency.sample_params(guard.params)]
    opinion = verdict.second_opinion
    assert opinion is not None and opinion.samples == 3
    assert opinion.one_pass_risk == one_pass.score  # the one-pass part is exactly today's verdict
    assert [a.answer for a in opinion.answers] == [p.answer for p in plain]  # samples = plain seeded generation
    where = make_locator(AGREEMENT_LOCATOR)  # what Consistency compares: the answer part of each answer
    first = where.locate(verdict.original_answer, question=QUESTION)
    spans = [where.locate(p.answer, question=QUESTION) for p in plain]
    agrees = [s is not None and first is not None and same_answer(first.text, s.text) for s in spans]
    assert [a.agrees for a in opinion.answers] == agrees
    assert opinion.agreement == sum(agrees) / 3
    assert verdict.score == pytest.approx(EVERYWHERE.combine(one_pass.score, opinion.agreement), abs=1e-12)
    assert verdict.flagged == (verdict.score > 0.0)
    assert "second opinion" in verdict.reason
    with open_log(log) as sink:
        [record] = sink.records()
    assert record.second_opinion["agreement"] == opinion.agreement and len(record.second_opinion["answers"]) == 3
    assert registry.get_sample_value("spill_guard_second_opinions_total") == 1
    assert registry.get_sample_value("spill_guard_second_opinion_agreement_count") == 1
    assert registry.get_sample_value("spill_guard_second_opinion_agreement_sum") == opinion.agreement


def test_the_same_seed_gives_the_same_samples_and_verdict(spill_model):
    consistency = Consistency(samples=2, temperature=1.0, cascade=EVERYWHERE)
    first = guard_of(spill_model, second_opinion=consistency).ask(QUESTION)
    again = guard_of(spill_model, second_opinion=consistency).ask(QUESTION)
    assert first.second_opinion == again.second_opinion and first.score == again.score


def test_outside_the_band_one_pass_decides_as_before(spill_model):
    far = Consistency(samples=2, cascade=Cascade(100.0, 200.0, 0.5))
    with_opinion = guard_of(spill_model, second_opinion=far).ask(QUESTION)
    without = guard_of(spill_model).ask(QUESTION)
    assert with_opinion.second_opinion is None
    assert with_opinion.model_dump_json() == without.model_dump_json()  # JSON: a skipped step is NaN in both


def test_retry_resample_takes_the_samples_instead_of_drawing_them_again(spill_model):
    consistency = Consistency(samples=2, temperature=1.0, cascade=EVERYWHERE)
    policy = Retry(attempts=3, strategy=Resample(temperature=1.0, top_p=1.0), fallback=Flag())
    guard = SpillGuard(spill_model, threshold=-100.0, max_new_tokens=20, policy=policy, second_opinion=consistency)
    calls = []
    real = spill_model.generate_params

    def counted(prompts, params, **kw):
        calls.append(params)
        return real(prompts, params, **kw)

    guard.model.generate_params = counted  # type: ignore[method-assign]
    try:
        verdict = guard.ask(QUESTION)
    finally:
        del guard.model.generate_params
    assert len(verdict.attempts) == 3  # every answer is flagged at threshold -100: all three attempts run
    assert [a.answer for a in verdict.attempts[1:]] == [a.answer for a in verdict.second_opinion.answers]
    assert len(calls) == 2, "the first answer, then both samples in one call; the retries reused the samples"
    assert calls[1] == consistency.sample_params(guard.params)  # one row per sample, each with its own seed


def test_a_question_s_samples_are_one_batched_call_equal_to_drawing_them_one_by_one(spill_model):
    """The guard's model has per-row seeds: the K samples are one generate call of K rows, and each row is the
    answer a one-row call with its seed draws (a door without ``generate_rows`` draws them so)."""
    consistency = Consistency(samples=4, temperature=1.0, cascade=EVERYWHERE)
    guard = guard_of(spill_model, second_opinion=consistency)
    assert guard.row_generator is not None
    prompt = guard.prompt(QUESTION)
    first = guard.generate([prompt], guard.params)[0]

    def decide(generate_rows):
        return guard.judge.decide(
            first,
            prompt=prompt,
            params=guard.params,
            policy=Flag(),
            generate=lambda prompt, params: guard.generate([prompt], params)[0],
            generate_rows=generate_rows,
        )

    batched, one_by_one = decide(guard.row_generator), decide(None)
    ours, theirs = batched.second_opinion, one_by_one.second_opinion
    made = [(a.answer, a.span, a.agrees) for a in ours.answers]
    assert made == [(a.answer, a.span, a.agrees) for a in theirs.answers]
    assert ours.agreement == theirs.agreement and batched.score == one_by_one.score  # the final risk: exactly
    # each sample's own risk is its row's, from a batch of four instead of one: equal up to float rounding
    assert [a.risk for a in ours.answers] == pytest.approx([a.risk for a in theirs.answers], abs=1e-4)
    assert len({a.answer for a in batched.second_opinion.answers}) > 1  # per-row seeds: the rows differ


def test_a_guard_needs_the_band_of_its_second_opinion(spill_model):
    with pytest.raises(InvalidParameterError, match="needs its band"):
        guard_of(spill_model, second_opinion=Consistency(samples=2))
    with pytest.raises(InvalidParameterError, match="Consistency"):
        guard_of(spill_model, second_opinion="5 samples")


def test_stream_and_ask_batch_decide_as_ask(spill_model):
    """stream: the first answer's tokens, then the verdict after the samples; ask_batch: one batched first
    generation, then each question's second opinion, each verdict equal to ask's (same seeds, same samples)."""
    from spill_guard.guard.verdict import TokenEvent, Verdict

    consistency = Consistency(samples=2, temperature=1.0, cascade=EVERYWHERE)
    guard = guard_of(spill_model, second_opinion=consistency)
    asked = guard.ask(QUESTION)
    items = list(guard.stream(QUESTION))
    assert all(isinstance(i, TokenEvent) for i in items[:-1]) and isinstance(items[-1], Verdict)
    streamed = items[-1]
    assert "".join(e.text for e in items[:-1]).strip() == streamed.original_answer.strip()
    assert streamed.second_opinion == asked.second_opinion and streamed.score == asked.score
    second = "What is the capital of Peru?"
    batch = guard.ask_batch([QUESTION, second])
    alone = guard.ask(second)
    for got, want in ((batch[0], asked), (batch[1], alone)):
        assert got.original_answer == want.original_answer
        assert [a.answer for a in got.second_opinion.answers] == [a.answer for a in want.second_opinion.answers]
        assert got.second_opinion.agreement == want.second_opinion.agreement


def test_check_compares_an_answer_from_elsewhere_with_samples_and_never_retries(spill_model):
    consistency = Consistency(samples=2, temperature=1.0, cascade=EVERYWHERE)
    policy = Retry(attempts=3, strategy=Resample(temperature=1.0, top_p=1.0), fallback=Flag())
    guard = SpillGuard(spill_model, threshold=-100.0, max_new_tokens=20, policy=policy, second_opinion=consistency)
    asked = guard_of(spill_model, second_opinion=consistency).ask(QUESTION)  # the same samples (same prompt, seeds)
    checked = guard.check(QUESTION, "Bram Stoker wrote Dracula.")
    assert checked.original_answer == checked.answer == "Bram Stoker wrote Dracula." and len(checked.attempts) == 1
    assert [a.answer for a in checked.second_opinion.answers] == [a.answer for a in asked.second_opinion.answers]
    assert checked.second_opinion.agreement == consistency.compare(
        "Bram Stoker wrote Dracula.", [a.answer for a in asked.second_opinion.answers], QUESTION).agreement


def test_calibration_draws_the_very_samples_a_guard_draws(spill_model):
    """With per-row seeds, ``draw_samples`` (calibrate --second-opinion, bench --second-opinion) puts every
    question's K samples in one call, each row seeded as the guard seeds it: the same answers as the guard's."""
    from spill_guard.calibration.consistency import draw_samples, draws_as_the_guard

    consistency = Consistency(samples=3, temperature=1.0, cascade=EVERYWHERE)
    guard = guard_of(spill_model, second_opinion=consistency)
    questions = [QUESTION, "What is the capital of Peru?"]
    verdicts = guard.ask_batch(questions)
    assert draws_as_the_guard(spill_model)
    drawn = draw_samples(spill_model, [guard.prompt(q).ids for q in questions], consistency, guard.params)
    assert drawn == [[a.answer for a in v.second_opinion.answers] for v in verdicts]
