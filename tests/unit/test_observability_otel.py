"""OpenTelemetry ``gen_ai.evaluation.result`` events: attributes, destinations (log-based / span events),
parenting, switches, failure isolation, no-op without opentelemetry, and the guard emitting one event
per verdict on the real model (SDK in-memory exporters, no global providers touched)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs: pip install 'spill-guard[otel]' opentelemetry-sdk")

from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor  # noqa: E402
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from spill_guard.errors import InvalidParameterError  # noqa: E402
from spill_guard.guard.verdict import Verdict  # noqa: E402
from spill_guard.observability import otel  # noqa: E402
from spill_guard.policy.base import Action  # noqa: E402

EVENT = "gen_ai.evaluation.result"


def verdict(action=Action.FLAGGED, score=0.75, record_id=None, **extra):
    return Verdict(question="Where is Acme based?", answer="Tampere", original_answer="Tampere", action=action,
                   flagged=action is not Action.PASSED, score=score, threshold=0.25,
                   reason="risk 0.750 > threshold 0.250", spec="spilled_energy:mean", locator="full",
                   model="smollm2-135m-instruct", tokens=["T", "ampere"], token_scores=[0.5, 1.0],
                   record_id=record_id, **extra)


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch):
    monkeypatch.delenv(otel.ENV_VAR, raising=False)
    otel.reset()
    yield
    otel.reset()


@pytest.fixture()
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


@pytest.fixture()
def logs():
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    otel.configure(logger_provider=provider)
    return exporter


def finished(exporter):
    return {s.name: s for s in exporter.get_finished_spans()}


def test_attributes_follow_the_genai_semconv_and_add_spill_guard_details():
    attrs = otel.evaluation_attributes(verdict(record_id="rec-1"), response_id="resp-9")
    assert attrs["gen_ai.evaluation.name"] == "hallucination"
    assert attrs["gen_ai.evaluation.score.value"] == 0.75
    assert attrs["gen_ai.evaluation.score.label"] == "flagged"
    assert attrs["gen_ai.evaluation.explanation"] == "risk 0.750 > threshold 0.250"
    assert attrs["gen_ai.response.id"] == "resp-9"
    assert attrs["spill_guard.threshold"] == 0.25 and attrs["spill_guard.spec"] == "spilled_energy:mean"
    assert attrs["spill_guard.flagged"] is True and attrs["spill_guard.record_id"] == "rec-1"
    assert attrs["spill_guard.answer_tokens"] == 2


def test_unscorable_answer_has_no_score_value_and_labels_every_action():
    assert "gen_ai.evaluation.score.value" not in otel.evaluation_attributes(verdict(score=None))
    assert "gen_ai.evaluation.score.value" not in otel.evaluation_attributes(verdict(score=float("nan")))
    labels = {otel.evaluation_attributes(verdict(action=a))["gen_ai.evaluation.score.label"] for a in Action}
    assert labels == {"passed", "flagged", "abstained", "raised"}


def test_nothing_is_emitted_without_a_recording_span_or_logger(spans):
    assert otel.emit_evaluation(verdict()) == ()


def test_auto_puts_a_span_event_on_the_current_span_when_no_logger_records(spans):
    tracer, exporter = spans
    with tracer.start_as_current_span("request"):
        with tracer.start_as_current_span("llm"):
            assert otel.emit_evaluation(verdict()) == ("span",)
    got = finished(exporter)
    [event] = got["llm"].events
    assert event.name == EVENT and event.attributes["gen_ai.evaluation.score.value"] == 0.75
    assert not got["request"].events


def test_explicit_span_receives_the_event(spans):
    tracer, exporter = spans
    llm_span = tracer.start_span("llm")
    with tracer.start_as_current_span("elsewhere"):
        assert otel.emit_evaluation(verdict(), span=llm_span) == ("span",)
    llm_span.end()
    got = finished(exporter)
    assert len(got["llm"].events) == 1 and not got["elsewhere"].events


def test_auto_prefers_a_log_based_event_parented_to_the_span(spans, logs):
    tracer, exporter = spans
    with tracer.start_as_current_span("llm") as span:
        assert otel.emit_evaluation(verdict()) == ("log",)
    [record] = [r.log_record for r in logs.get_finished_logs()]
    assert record.event_name == EVENT and record.attributes["gen_ai.evaluation.name"] == "hallucination"
    assert record.span_id == span.get_span_context().span_id
    assert record.trace_id == span.get_span_context().trace_id
    assert record.severity_number.name == "WARN"  # flagged; passed answers are INFO
    assert not finished(exporter)["llm"].events  # no duplicate span event in auto


def test_log_record_of_an_explicit_span_carries_that_span(spans, logs):
    tracer, _ = spans
    llm_span = tracer.start_span("llm")
    with tracer.start_as_current_span("elsewhere"):
        otel.emit_evaluation(verdict(action=Action.PASSED), span=llm_span)
    llm_span.end()
    [record] = [r.log_record for r in logs.get_finished_logs()]
    assert record.span_id == llm_span.get_span_context().span_id and record.severity_number.name == "INFO"


@pytest.mark.parametrize("mode, expected", [("both", ("log", "span")), ("span", ("span",)), ("log", ("log",)),
                                            ("off", ())])
def test_configured_destinations(spans, logs, mode, expected):
    tracer, exporter = spans
    otel.configure(events=mode)
    with tracer.start_as_current_span("llm"):
        assert otel.emit_evaluation(verdict()) == expected
    assert len(finished(exporter)["llm"].events) == ("span" in expected)
    assert len(logs.get_finished_logs()) == ("log" in expected)


def test_environment_variable_switches_events_off_and_a_bad_value_falls_back_to_auto(spans, monkeypatch, caplog):
    tracer, _ = spans
    monkeypatch.setenv(otel.ENV_VAR, "off")
    with tracer.start_as_current_span("llm"):
        assert otel.emit_evaluation(verdict()) == ()
    otel.reset()
    monkeypatch.setenv(otel.ENV_VAR, "loud")
    with tracer.start_as_current_span("llm"):
        assert otel.emit_evaluation(verdict()) == ("span",)
    assert "'loud' is not one of" in caplog.text


def test_configure_refuses_an_unknown_mode():
    with pytest.raises(InvalidParameterError, match="'sometimes'"):
        otel.configure(events="sometimes")


def test_a_failing_telemetry_pipeline_never_reaches_the_caller(spans, caplog):
    class Broken(LogRecordProcessor):
        def on_emit(self, log_record):
            raise RuntimeError("exporter down")

        def enabled(self, **kwargs):
            raise RuntimeError("exporter down")

        def shutdown(self):
            pass

        def force_flush(self, timeout_millis=30000):
            return True

    provider = LoggerProvider()
    provider.add_log_record_processor(Broken())
    otel.configure(logger_provider=provider)
    tracer, _ = spans
    with tracer.start_as_current_span("llm"):
        assert otel.emit_evaluation(verdict()) == ()
    assert "could not emit" in caplog.text


def test_without_opentelemetry_installed_everything_is_a_no_op():
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"  # makes `import opentelemetry` raise ImportError
        "from spill_guard.observability import otel\n"
        "from spill_guard.guard.verdict import Verdict\n"
        "from spill_guard.policy.base import Action\n"
        "v = Verdict(question='q', answer='a', original_answer='a', action=Action.PASSED, flagged=False, score=0.1,"
        " threshold=1.0, reason='r', spec='spilled_energy:mean', locator='full', model='m')\n"
        "assert otel.available() is False and otel.emit_evaluation(v) == ()\n"
        "import spill_guard  # the core never needs opentelemetry\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -- the guard on the real model: one event per verdict, on the caller's span -----------------------
@pytest.mark.model
def test_guard_emits_one_event_per_verdict_on_the_callers_span(spill_model, spans):
    from spill_guard import Abstain, SpillGuard

    tracer, exporter = spans
    guard = SpillGuard(spill_model, threshold=-1e9, max_new_tokens=3, policy=Abstain(reply="Not sure."))
    with tracer.start_as_current_span("request"):
        with tracer.start_as_current_span("ask"):
            asked = guard.ask("Name a colour.")
        with tracer.start_as_current_span("ask_batch"):
            batch = guard.ask_batch(["Name a fruit.", "Name a planet."])
        with tracer.start_as_current_span("check"):
            checked = guard.check("Name a colour.", "Blue.")
    got = finished(exporter)
    assert not got["request"].events
    for name, verdicts in (("ask", [asked]), ("ask_batch", batch), ("check", [checked])):
        events = got[name].events
        assert [e.name for e in events] == [EVENT] * len(verdicts)
        for event, v in zip(events, verdicts):
            assert event.attributes["gen_ai.evaluation.score.label"] == "abstained" == v.action.value
            assert event.attributes["gen_ai.evaluation.score.value"] == pytest.approx(v.score)
            assert event.attributes["gen_ai.evaluation.explanation"] == v.reason


@pytest.mark.model
def test_guard_event_survives_a_failing_review_log(spill_model, spans):
    from spill_guard import SpillGuard

    class FullDisk:
        def write(self, record):
            raise OSError("No space left on device")

        def close(self):
            pass

    tracer, exporter = spans
    guard = SpillGuard(spill_model, threshold=1e9, max_new_tokens=2, log=FullDisk())
    with tracer.start_as_current_span("ask"):
        with pytest.raises(Exception, match="No space left"):
            guard.ask("Name a colour.")
    [event] = finished(exporter)["ask"].events
    assert event.attributes["gen_ai.evaluation.score.label"] == "passed"
    assert "spill_guard.record_id" not in event.attributes
