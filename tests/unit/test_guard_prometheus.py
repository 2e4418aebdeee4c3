"""Prometheus metrics of the core guard: one count per verdict, the server's names, a private registry.

Every test builds its own ``CollectorRegistry`` (never prometheus-client's global one), and
reads it back through prometheus-client's own text exposition and parser.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from spill_guard.errors import InvalidParameterError  # noqa: E402
from spill_guard.guard.verdict import Verdict  # noqa: E402
from spill_guard.observability.verdict_metrics import VerdictMetrics, resolve_metrics, unscorable_reason  # noqa: E402
from spill_guard.policy.base import Action  # noqa: E402


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of the exposed samples ``name`` whose labels include ``labels``."""
    text = generate_latest(registry).decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def verdict(**changes) -> Verdict:
    fields = dict(question="q", answer="a", original_answer="a", action=Action.PASSED, flagged=False, score=-0.4,
                  threshold=0.0, reason="risk -0.400 <= threshold 0.000", spec="spilled_energy:mean",
                  locator="full", model="m", tokens=["a", "<eos>"], token_scores=[0.1, 0.2])
    return Verdict(**{**fields, **changes})


# -- the shared recorder, without a model -------------------------------------------------------
def test_a_verdict_is_counted_once_however_often_it_is_observed():
    registry = CollectorRegistry()
    metrics = VerdictMetrics(registry)
    v = verdict()
    assert metrics.observe_verdict(v) is True
    assert metrics.observe_verdict(v) is False  # a second layer seeing the same verdict
    assert metrics.observe_verdict(v.model_copy()) is True  # another verdict (e.g. a wrapper's decision)
    assert sample(registry, "spill_guard_answers_total", action="passed") == 2
    assert sample(registry, "spill_guard_risk_score_count") == 2
    # prometheus-client exposes no _sum for a histogram with negative buckets; the buckets place each score
    assert sample(registry, "spill_guard_risk_score_bucket", le="-0.5") == 0
    assert sample(registry, "spill_guard_risk_score_bucket", le="-0.25") == 2
    assert sample(registry, "spill_guard_generated_tokens_total") == 4


def test_unscorable_verdicts_are_counted_by_reason_not_in_the_histogram():
    registry = CollectorRegistry()
    metrics = VerdictMetrics(registry)
    no_span = verdict(score=None, flagged=True, action=Action.FLAGGED,
                      reason="no answer span found by locator 'numeric' (not_found)")
    non_finite = verdict(score=None, flagged=True, action=Action.ABSTAINED, reason="unscorable: NaN logits",
                         span={"start": 0, "end": 1, "text": "a", "token_start": 0, "token_end": 1},
                         token_scores=[float("nan"), 0.2])
    for v in (no_span, non_finite):
        metrics.observe_verdict(v, tokens=False)
    assert [unscorable_reason(no_span), unscorable_reason(non_finite)] == ["not_found", "non_finite_logits"]
    assert sample(registry, "spill_guard_unscorable_answers_total", reason="not_found") == 1
    assert sample(registry, "spill_guard_unscorable_answers_total", reason="non_finite_logits") == 1
    assert sample(registry, "spill_guard_answers_total", action="flagged") == 1
    assert sample(registry, "spill_guard_answers_total", action="abstained") == 1
    assert sample(registry, "spill_guard_risk_score_count") == 0
    assert sample(registry, "spill_guard_generated_tokens_total") == 0  # tokens=False: the caller counts them


def test_one_registry_holds_one_set_of_collectors():
    registry = CollectorRegistry()
    first = resolve_metrics(registry)
    assert resolve_metrics(registry) is first and resolve_metrics(first) is first
    assert resolve_metrics(None) is None and resolve_metrics(False) is None
    with pytest.raises(InvalidParameterError, match="already holds spill_guard metrics"):
        VerdictMetrics(registry)


def test_the_server_metrics_extend_the_shared_ones_on_the_same_registry():
    from spill_guard.observability.metrics import GuardMetrics

    registry = CollectorRegistry()
    server = GuardMetrics(registry)
    assert resolve_metrics(registry) is server  # a library object given the server's registry shares its collectors
    server.observe_verdict(verdict(), tokens=False)
    assert sample(registry, "spill_guard_answers_total", action="passed") == 1
    assert sample(registry, "spill_guard_errors_total") == 0  # the server's own metrics are still there


def test_a_wrong_metrics_value_is_refused_with_the_value():
    with pytest.raises(InvalidParameterError, match=r"got 'yes'"):
        resolve_metrics("yes")


def test_without_prometheus_client_the_core_imports_and_the_error_names_the_extra():
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"  # makes `import prometheus_client` raise ImportError
        "import spill_guard\n"
        "from spill_guard import SpillGuard\n"
        "from spill_guard.errors import SpillGuardError\n"
        "from spill_guard.observability.verdict_metrics import resolve_metrics\n"
        "assert resolve_metrics(None) is None\n"
        "try:\n"
        "    resolve_metrics(True)\n"
        "except SpillGuardError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'spill-guard[metrics]'" in out.stdout


# -- the guard on the real model ----------------------------------------------------------------
@pytest.mark.model
def test_guard_counts_every_verdict_of_ask_ask_batch_stream_and_check(spill_model):
    from spill_guard import SpillGuard

    registry = CollectorRegistry()
    guard = SpillGuard(spill_model, threshold=1e9, max_new_tokens=3, metrics=registry)
    verdicts = [guard.ask("Name a colour."), *guard.ask_batch(["Name a fruit.", "Name a planet."])]
    verdicts.append([item for item in guard.stream("Name a month.")][-1])
    verdicts.append(guard.check("Name a colour.", "Blue."))
    assert all(v.action is Action.PASSED for v in verdicts)
    assert sample(registry, "spill_guard_answers_total", action="passed") == 5
    assert sample(registry, "spill_guard_answers_total") == 5
    assert sample(registry, "spill_guard_risk_score_count") == 5
    for le in ("-1.0", "0.0", "1.0"):  # each score in its bucket (no _sum: the buckets go below 0)
        below = sum(v.score <= float(le) for v in verdicts)
        assert sample(registry, "spill_guard_risk_score_bucket", le=le) == below
    assert sample(registry, "spill_guard_generated_tokens_total") == sum(len(v.tokens) for v in verdicts)


@pytest.mark.model
def test_guard_counts_the_final_action_once_per_question_also_after_retries(spill_model):
    from spill_guard import Abstain, HallucinationDetected, Raise, Retry, SpillGuard

    registry = CollectorRegistry()
    retry = SpillGuard(spill_model, threshold=-1e9, max_new_tokens=2, policy=Retry(attempts=2), metrics=registry)
    retried = retry.ask("Name a colour.")
    assert len(retried.attempts) == 2  # two answers generated, one verdict
    assert sample(registry, "spill_guard_answers_total") == 1
    assert sample(registry, "spill_guard_answers_total", action=retried.action.value) == 1
    assert sample(registry, "spill_guard_risk_score_count") == 1

    registry = CollectorRegistry()
    abstain = SpillGuard(spill_model, threshold=-1e9, policy=Abstain(), metrics=registry)
    raising = SpillGuard(spill_model, threshold=-1e9, policy=Raise(), metrics=registry)
    assert raising.metrics is abstain.metrics  # one registry, one set of collectors
    abstain.check("Name a colour.", "Blue.")
    with pytest.raises(HallucinationDetected):
        raising.check("Name a colour.", "Blue.")
    assert sample(registry, "spill_guard_answers_total", action="abstained") == 1
    assert sample(registry, "spill_guard_answers_total", action="raised") == 1
    assert sample(registry, "spill_guard_answers_total") == 2


@pytest.mark.model
def test_guard_counts_an_unscorable_answer_by_reason(spill_model):
    from spill_guard import SpillGuard

    registry = CollectorRegistry()
    guard = SpillGuard(spill_model, threshold=1e9, locator="numeric", metrics=registry)
    unscorable = guard.check("What is the capital of France?", "Paris.")  # no number to locate
    assert unscorable.score is None and unscorable.flagged
    assert sample(registry, "spill_guard_unscorable_answers_total", reason="not_found") == 1
    assert sample(registry, "spill_guard_answers_total", action="flagged") == 1
    assert sample(registry, "spill_guard_risk_score_count") == 0


@pytest.mark.model
def test_guard_refuses_a_wrong_metrics_value_and_counts_nothing_by_default(spill_model):
    from spill_guard import SpillGuard

    with pytest.raises(InvalidParameterError, match="CollectorRegistry"):
        SpillGuard(spill_model, threshold=0.0, metrics="yes")
    assert SpillGuard(spill_model, threshold=0.0).metrics is None
