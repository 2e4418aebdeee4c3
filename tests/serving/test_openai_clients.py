"""Real clients against a real loopback server: the official openai SDK (sync, async, streaming,
chat and completions, n > 1, logprobs) and LangChain's ChatOpenAI. Greedy verdict numbers
equal the core's on the same prompt ids."""

from __future__ import annotations

import asyncio

import pytest

from delta_support import assert_same_deltas

from serving_support import API_KEY, MODEL, guarded_app, running

pytestmark = pytest.mark.model

QUESTION = "What is the capital of France?"
MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def server(spill_model, tmp_path_factory):
    from spill_guard.serving import ServerSettings

    log = tmp_path_factory.mktemp("clients") / "review.jsonl"
    app = guarded_app(spill_model, log=str(log), settings=ServerSettings(api_key=API_KEY, max_batch=8, max_wait_ms=20))
    with running(app) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    with OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120) as c:
        yield c


def core_verdict(server, prompt_ids, max_tokens):
    """The core's numbers on the same prompt: SpillModel generation + the guard's assessment."""
    guard = server.state.engine.guard
    [scored] = guard.model.generate_from_ids([prompt_ids], max_new_tokens=max_tokens, stats=guard.capture_stats)
    return scored, guard.assess(scored, QUESTION)


def test_sync_chat_matches_the_core_on_the_same_prompt(server, client, spill_model):
    from spill_guard.models.prompting import chat_prompt_ids

    out = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8,
                                         extra_body={"spill_guard": {"token_scores": True}})
    choice = out.choices[0]
    sg = choice.model_extra["spill_guard"]
    scored, candidate = core_verdict(server, chat_prompt_ids(spill_model.tokenizer, MESSAGES), 8)
    assert choice.message.content == scored.answer
    assert sg["score"] == pytest.approx(candidate.risk, abs=1e-4)
    assert sg["threshold"] == pytest.approx(server.state.engine.guard.threshold)
    assert sg["action"] in ("passed", "flagged") and sg["flagged"] == candidate.flagged
    assert_same_deltas([t["spilled_energy"] for t in sg["token_scores"]], scored.spilled_energy, abs=1e-4,
                       last_is_textless_stop=scored.stopped_on_eos and scored.tokens[-1].special)
    assert sg["spec"] == "spilled_energy:mean" and sg["locator"] == "full" and sg["record_id"]
    assert sg["span"]["text"] and sg["reason"]
    assert choice.finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens == len(scored.prompt_ids)
    assert out.usage.completion_tokens == len(scored.answer_ids)


def test_chat_logprobs_are_the_raw_log_probabilities(server, client, spill_model):
    from spill_guard.models.prompting import chat_prompt_ids

    out = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, logprobs=True, top_logprobs=3)
    content = out.choices[0].logprobs.content
    scored, _ = core_verdict(server, chat_prompt_ids(spill_model.tokenizer, MESSAGES), 8)
    assert "".join(t.token for t in content) == out.choices[0].message.content
    expected = [float(v) for t, v in zip(scored.tokens, scored.trace.log_prob) if not t.special]
    assert [t.logprob for t in content] == pytest.approx(expected, abs=1e-4)
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.logprob - 1e-4  # the best alternative is at least as likely
        assert entry.logprob <= 0


def test_completions_with_n_and_logprobs(client):
    out = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=5, n=2, logprobs=2)
    assert [c.index for c in out.choices] == [0, 1]
    first, second = out.choices
    assert first.text == second.text  # greedy: both choices are the same answer
    assert first.model_extra["spill_guard"]["record_id"] != second.model_extra["spill_guard"]["record_id"]
    assert "".join(first.logprobs.tokens) == first.text
    assert all(len(top) <= 2 and tok in top for tok, top in zip(first.logprobs.tokens, first.logprobs.top_logprobs))
    assert out.usage.completion_tokens == 10


def test_stop_sequence_cuts_the_text_and_is_reported(client):
    out = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, stop=["."])
    choice = out.choices[0]
    assert "." not in choice.text and choice.text.strip() == "Paris"
    assert choice.finish_reason == "stop"
    assert choice.model_extra["spill_guard"]["stop_sequence"] == "."


def test_streaming_chat_carries_energies_then_the_verdict(client):
    whole = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8,
                                           extra_body={"spill_guard": {"token_scores": True}})
    expected = whole.choices[0].model_extra["spill_guard"]
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    tokens = [c.choices[0].model_extra["spill_guard"]["token"] for c in chunks
              if c.choices and c.choices[0].finish_reason is None]
    assert [t["spilled_energy"] for t in tokens] == pytest.approx(
        [t["spilled_energy"] for t in expected["token_scores"]], abs=1e-4)
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    verdict = final.choices[0].model_extra["spill_guard"]
    assert verdict["score"] == pytest.approx(expected["score"], abs=1e-4)
    assert verdict["action"] == expected["action"]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_streaming_completion(client):
    chunks = list(client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=5, stream=True))
    text = "".join(c.choices[0].text for c in chunks)
    whole = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=5)
    assert text == whole.choices[0].text
    assert chunks[-1].choices[0].model_extra["spill_guard"]["score"] == pytest.approx(
        whole.choices[0].model_extra["spill_guard"]["score"], abs=1e-4)


def test_seeded_sampling_repeats(client):
    kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=6,
                  temperature=1.0, seed=1234)
    first = client.chat.completions.create(**kwargs).choices[0]
    again = client.chat.completions.create(**kwargs).choices[0]
    assert first.message.content == again.message.content
    assert first.model_extra["spill_guard"]["score"] == pytest.approx(again.model_extra["spill_guard"]["score"], abs=1e-6)
    assert first.model_extra["spill_guard"]["attempts"][0]["strategy"] == "sample"


def test_async_client_concurrent_requests_match_sequential(server, client):
    from openai import AsyncOpenAI

    questions = ["What is 2 + 2?", "Who wrote Hamlet?", "What is the capital of Italy?", "What colour is the sky?"]
    sequential = [client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}], max_tokens=6)
                  for q in questions]

    async def ask_all():
        async with AsyncOpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120) as aclient:
            return await asyncio.gather(*(aclient.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": q}], max_tokens=6) for q in questions))

    concurrent = asyncio.run(ask_all())
    for seq, con in zip(sequential, concurrent):
        assert con.choices[0].message.content == seq.choices[0].message.content
        assert con.choices[0].model_extra["spill_guard"]["score"] == pytest.approx(
            seq.choices[0].model_extra["spill_guard"]["score"], abs=1e-4)


def test_models_route_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_langchain_chat_openai_invoke_and_stream(server):
    langchain_openai = pytest.importorskip("langchain_openai", reason="pip install langchain-openai")

    llm = langchain_openai.ChatOpenAI(model=MODEL, base_url=server.url + "/v1", api_key=API_KEY, max_tokens=8,
                                      temperature=0, max_retries=0)
    message = llm.invoke(QUESTION)
    assert "Paris" in message.content
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    streamed = "".join(chunk.content for chunk in llm.stream(QUESTION))
    assert streamed == message.content
