"""Door adapters of the parity test: the same questions, under one policy, through each way into the guard.

A *door* is one way a user reaches the guard's decision path. Each adapter drives its door with
the real components (no mocks), one question at a time, writes that door's review log to
``log_path`` and returns one :class:`DoorResult` per question, read from what the door gives
its user (falling back to its review record only for what the door does not return, e.g. the
server hides the original answer of an abstention):

- ``library``: ``SpillGuard(...).ask``;
- ``server``: the ``spill-guard serve`` app on 127.0.0.1 (uvicorn in a thread), driven by the
  real ``openai`` SDK;
- ``langchain``: ``SpillGuardedRunnable(SpillChatModel(...), policy)``;
- ``llama_index``: ``GuardedChatEngine(SimpleChatEngine(llm=SpillLLM(guard)), llm)`` (a plain
  conversation: no retrieval, so the prompt is the user's turn as given);
- ``chat_huggingface``: langchain-huggingface ``ChatHuggingFace`` over a transformers pipeline of
  the same torch model, scored by ``SpillCallbackHandler(model=..., guard=...)``, policy by
  ``SpillGuardedRunnable``;
- ``huggingface_llm``: llama-index ``HuggingFaceLLM`` on the same torch model, scored by
  ``spill_guard_llama_index.instrument``, policy by ``GuardedChatEngine`` over a ``SimpleChatEngine``.

Every door is given the same user turn. The library guard runs on ``SpillModel(loaded,
instruction=None)``, so its prompt is the chat template over the question alone, which is
what the chat doors send; :func:`first_prompt_diff` checks that the ids are identical.

:class:`DoorKit` holds what the doors share (the model, the threshold, the generation budget)
and builds each door's objects afresh per run. A backend other than transformers (the vLLM
variant, tests/vllm_backend) builds a kit on its own model with ``server_target`` (what
``create_app`` serves) and runs the doors that backend has (``library``, ``server``).

:func:`diff` compares two results field by field and says, per field, both values.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

DOORS = ("library", "server", "langchain", "llama_index", "chat_huggingface", "huggingface_llm")
REFERENCE = "library"
TOL = 1e-4

#: Record fields that differ by door by design: ids, times, the door's own tags and metadata, labels.
RECORD_IGNORED = ("id", "created_at", "tags", "metadata", "schema_version", "label", "label_note", "labelled_at")


@dataclass(frozen=True)
class AttemptResult:
    """One attempt of a decision: the strategy that made it, its answer, risk and prompt ids (None: not reported)."""

    strategy: str
    answer: str | None
    score: float | None
    prompt_ids: tuple[int, ...] | None


@dataclass
class DoorResult:
    """What one door did with one question."""

    door: str
    question: str
    action: str
    score: float | None
    shown: str
    original: str | None
    attempts: list[AttemptResult]
    first_prompt_ids: tuple[int, ...] | None
    record: dict[str, Any] | None  # the normalised review record (None: the door wrote none)
    notes: list[str] = field(default_factory=list)  # what the adapter had to take from elsewhere


# -- reading results -------------------------------------------------------------------------------

def _get(obj: Any, name: str) -> Any:
    """A field of a pydantic object or of its JSON dict (``None`` when absent)."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _ids(value: Any) -> tuple[int, ...] | None:
    """Prompt ids as a tuple; ``None`` when not reported (absent, or empty: no prompt is empty)."""
    return tuple(int(i) for i in value) if value else None


def _attempts(attempts: Sequence[Any], record: dict[str, Any] | None, notes: list[str]) -> list[AttemptResult]:
    """Attempts as a door reports them; an answer the door does not report is taken from its record."""
    logged = (record or {}).get("attempts") or []
    out = []
    for i, a in enumerate(attempts):
        answer = _get(a, "answer")
        if answer is None and i < len(logged) and "answer" in logged[i]:
            answer = logged[i]["answer"]
            notes.append(f"attempt {i} answer read from the review record (the door does not return it)")
        prompt_ids = _ids(_get(a, "prompt_ids"))
        if prompt_ids is None and i < len(logged) and logged[i].get("prompt_ids"):
            prompt_ids = _ids(logged[i]["prompt_ids"])  # the server keeps its JSON small: ids are in the log
            notes.append(f"attempt {i} prompt ids read from the review record (the door does not return them)")
        out.append(AttemptResult(str(_get(a, "strategy")), answer, _get(a, "score"), prompt_ids))
    return out


def _first_prompt(attempts: list[AttemptResult], record: dict[str, Any] | None) -> tuple[int, ...] | None:
    """The first attempt's prompt ids: reported on the attempt, else the record's scored answer when it is
    that attempt's (a single attempt)."""
    if attempts and attempts[0].prompt_ids is not None:
        return attempts[0].prompt_ids
    scored = (record or {}).get("scored") or {}
    if len(attempts) <= 1 and scored.get("prompt_ids") is not None:
        return _ids(scored["prompt_ids"])
    return None


def normalise_record(record: Any) -> dict[str, Any]:
    """A review record as a plain dict without the fields that differ by door by design."""
    data = record.model_dump(mode="json") if hasattr(record, "model_dump") else dict(record)
    return {k: v for k, v in data.items() if k not in RECORD_IGNORED}


def read_records(log_path: str) -> list[dict[str, Any]]:
    from spill_guard.review import open_log

    if not os.path.exists(log_path):
        return []
    with open_log(log_path) as sink:
        return [normalise_record(r) for r in sink.records()]


def _result(door: str, question: str, *, action: Any, score: Any, shown: str, original: str | None,
            attempts: Sequence[Any], record: dict[str, Any] | None) -> DoorResult:
    notes: list[str] = []
    if original is None and record is not None:
        original = record.get("original_answer")
        notes.append("original answer read from the review record (the door does not return it)")
    tried = _attempts(attempts, record, notes)
    return DoorResult(door, question, str(getattr(action, "value", action)), score, shown, original, tried,
                      _first_prompt(tried, record), record, notes)


def _with_records(door: str, log_path: str, questions: Sequence[str],
                  answers: list[dict[str, Any]]) -> list[DoorResult]:
    """Pair each question's answer with its review record (records are written in question order)."""
    records = read_records(log_path)
    results = []
    for i, (question, answer) in enumerate(zip(questions, answers)):
        record = records[i] if len(records) == len(questions) else None
        result = _result(door, question, record=record, **answer)
        if len(records) != len(questions):
            result.notes.append(f"the door wrote {len(records)} review records for {len(questions)} questions")
        results.append(result)
    return results


# -- comparing -------------------------------------------------------------------------------------

def _same(a: Any, b: Any, tol: float = TOL) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return abs(float(a) - float(b)) <= tol
    return a == b


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tree_diff(path: str, a: Any, b: Any, out: list[str], tol: float = TOL) -> None:
    """Every leaf where ``a`` and ``b`` differ (numbers within ``tol``), as ``path: a != b``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in b or key not in a:
                out.append(f"{path}.{key}: {'present' if key in a else 'absent'} vs "
                           f"{'present' if key in b else 'absent'}")
            else:
                _tree_diff(f"{path}.{key}", a[key], b[key], out, tol)
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b) or not all(isinstance(x, (int, float)) or x is None for x in [*a, *b]):
            if len(a) != len(b):
                out.append(f"{path}: length {len(a)} != {len(b)}: {_short(a)} != {_short(b)}")
                return
            for i, (x, y) in enumerate(zip(a, b)):
                _tree_diff(f"{path}[{i}]", x, y, out, tol)
            return
        bad = [i for i, (x, y) in enumerate(zip(a, b)) if not (x is None and y is None) and
               (x is None or y is None or not _same(x, y, tol))]
        if bad:
            i = bad[0]
            out.append(f"{path}: {len(bad)} of {len(a)} values differ, first at [{i}]: {a[i]!r} != {b[i]!r}")
        return
    if not _same(a, b, tol):
        out.append(f"{path}: {_short(a)} != {_short(b)}")


def first_prompt_diff(ref: DoorResult, got: DoorResult) -> str | None:
    """Why the two doors did not feed the model the same first prompt (None: they did)."""
    if ref.first_prompt_ids is None or got.first_prompt_ids is None:
        missing = [r.door for r in (ref, got) if r.first_prompt_ids is None]
        return f"first prompt ids unknown for {missing} (no attempt prompt ids and no single-attempt record)"
    if ref.first_prompt_ids != got.first_prompt_ids:
        return (f"first prompt ids differ: {ref.door} {list(ref.first_prompt_ids)} != "
                f"{got.door} {list(got.first_prompt_ids)}")
    return None


def diff(ref: DoorResult, got: DoorResult) -> list[str]:
    """Every field where ``got`` disagrees with ``ref``, in the order the parity test cares about.

    Values read ``reference != door``. Prompt ids must be reported by both (``None`` is a difference:
    every attempt is to carry the ids it was generated from).
    """
    out: list[str] = []
    if ref.first_prompt_ids is not None and got.first_prompt_ids is not None:  # unknown: see the attempts' ids
        why = first_prompt_diff(ref, got)
        if why is not None:
            out.append(why)
    for name in ("action", "score", "shown", "original"):
        _tree_diff(name, getattr(ref, name), getattr(got, name), out)
    if len(ref.attempts) != len(got.attempts):
        tried = [[(a.strategy, a.score) for a in r.attempts] for r in (ref, got)]
        out.append(f"attempts: {len(ref.attempts)} != {len(got.attempts)}: {tried[0]} != {tried[1]}")
    for i, (a, b) in enumerate(zip(ref.attempts, got.attempts)):
        for name in ("strategy", "answer", "score"):
            _tree_diff(f"attempts[{i}].{name}", getattr(a, name), getattr(b, name), out)
        if a.prompt_ids is None or b.prompt_ids is None:
            missing = [d for d, x in ((ref.door, a), (got.door, b)) if x.prompt_ids is None]
            out.append(f"attempts[{i}].prompt_ids: not reported by {missing}")
        elif a.prompt_ids != b.prompt_ids:
            out.append(f"attempts[{i}].prompt_ids: {list(a.prompt_ids)} != {list(b.prompt_ids)}")
    if ref.record is None or got.record is None:
        out.append(f"record: {'missing' if ref.record is None else 'present'} != "
                   f"{'missing' if got.record is None else 'present'}")
    else:
        record: list[str] = []
        _tree_diff("record", ref.record, got.record, record)
        out.extend(_first_per_field(record))
    return out


def parity_failure(reference: Sequence[DoorResult], got: Sequence[DoorResult], *, policy: str) -> str | None:
    """Why ``got`` (one door's results) does not decide like ``reference`` under ``policy`` (None: it does):
    every field that differs, per question, reference value first (the message of a failing parity cell)."""
    problems: list[str] = []
    fields: list[str] = []
    for ref, res in zip(reference, got):
        differences = diff(ref, res)
        if differences:
            problems.append(f"{ref.question!r}:\n    " + "\n    ".join(differences))
            fields += [f for f in (d.split(":", 1)[0] for d in differences) if f not in fields]
    if not problems:
        return None
    ref_door, door = reference[0].door, got[0].door
    notes = sorted({n for r in got for n in r.notes})
    return (f"{door} vs {ref_door} under {policy}: fields that differ: {fields}\n(values: {ref_door} != {door}"
            + (f"; adapter notes: {'; '.join(notes)}" if notes else "") + ")\n" + "\n".join(problems))


def _first_per_field(lines: list[str]) -> list[str]:
    """One line per top-level record field (its first difference), with how many more it has: a
    different answer makes every per-token list of ``record.scored`` differ too."""
    groups: dict[str, list[str]] = {}
    for line in lines:
        path = line.split(":", 1)[0]
        groups.setdefault(".".join(path.split(".")[:2]).split("[")[0], []).append(line)
    return [group[0] + (f"  (+{len(group) - 1} more under {key})" if len(group) > 1 else "")
            for key, group in groups.items()]


# -- the doors -------------------------------------------------------------------------------------

class DoorKit:
    """What the doors share: one model, one threshold, one generation budget.

    Args:
        spill_model: a :class:`~spill_guard.SpillModel` built with ``instruction=None`` (so the library
            prompt is the question as the chat doors send it); its torch model is shared by every door.
        threshold: the fixed threshold of every door's rule.
        max_new_tokens: the generation budget of every door.
        server_target: ``(policy, log_path) -> guard or GuardConfig`` the server door serves (default:
            a :class:`~spill_guard.SpillGuard` on this kit's model).
    """

    def __init__(self, spill_model: Any, *, threshold: float, max_new_tokens: int,
                 server_target: Callable[[Any, str], Any] | None = None):
        if getattr(spill_model, "instruction", None) is not None:
            raise ValueError(
                f"the kit's model adds the instruction {spill_model.instruction!r} to library questions, which the "
                "chat doors would not send; build it with instruction=None (SpillModel(loaded, instruction=None)).")
        self.model = spill_model
        self.threshold = threshold
        self.max_new_tokens = max_new_tokens
        self.server_target = server_target or (lambda policy, log_path: self.guard(policy, log_path))
        self._wrapped_generate = False  # a drop-in door wrapped the torch model's generate
        self._runners = {"library": self._library, "server": self._server, "langchain": self._langchain,
                         "llama_index": self._llama_index, "chat_huggingface": self._chat_huggingface,
                         "huggingface_llm": self._huggingface_llm}

    def chat_model_rule(self) -> dict[str, Any]:
        """The rule arguments of the LangChain door's SpillChatModel (the guard's rule, as arguments)."""
        return {"threshold": self.threshold}

    def guard(self, policy: Any, log_path: str | None) -> Any:
        from spill_guard import SpillGuard

        return SpillGuard(self.model, threshold=self.threshold, policy=policy, log=log_path,
                          max_new_tokens=self.max_new_tokens)

    def run(self, door: str, policy: Any, questions: Sequence[str], log_path: str) -> list[DoorResult]:
        """Ask ``questions`` one at a time through ``door`` under ``policy``; the door's log goes to ``log_path``."""
        if door not in self._runners:
            raise ValueError(f"unknown door {door!r}; doors: {DOORS}")
        return self._runners[door](policy, list(questions), str(log_path))

    def close(self) -> None:
        """Unwrap the torch model's generate (the drop-in doors wrap it once)."""
        from spill_guard.capture.recorder import GenerationRecorder

        if self._wrapped_generate:
            loaded = self.model.loaded
            GenerationRecorder.for_model(loaded.model, loaded.tokenizer).uninstall()

    # (1) the library guard
    def _library(self, policy: Any, questions: list[str], log_path: str) -> list[DoorResult]:
        answers = []
        with self.guard(policy, log_path) as guard:
            for q in questions:
                v = guard.ask(q)
                answers.append(dict(action=v.action, score=v.score, shown=v.answer, original=v.original_answer,
                                    attempts=v.attempts))
        return _with_records("library", log_path, questions, answers)

    # (2) the server, over loopback, through the openai SDK
    def _server(self, policy: Any, questions: list[str], log_path: str) -> list[DoorResult]:
        from openai import OpenAI

        from spill_guard.serving import ServerSettings, create_app

        target = self.server_target(policy, log_path)
        answers = []
        try:
            app = create_app(target, ServerSettings(max_batch=1, max_wait_ms=0))
            with _serving(app) as url:
                client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
                model = client.models.list().data[0].id
                for q in questions:
                    out = client.chat.completions.create(model=model, max_tokens=self.max_new_tokens,
                                                         messages=[{"role": "user", "content": q}])
                    choice = out.choices[0]
                    verdict = choice.model_extra["spill_guard"]
                    answers.append(dict(action=verdict["action"], score=verdict["score"],
                                        shown=choice.message.content, original=verdict.get("original_answer"),
                                        attempts=verdict["attempts"]))
        finally:
            close = getattr(target, "close", None)
            if callable(close):
                close()
        return _with_records("server", log_path, questions, answers)

    # (3) LangChain: SpillGuardedRunnable over SpillChatModel
    def _langchain(self, policy: Any, questions: list[str], log_path: str) -> list[DoorResult]:
        from spill_guard_langchain import SpillChatModel, SpillGuardedRunnable

        model = SpillChatModel(spill_model=self.model, max_tokens=self.max_new_tokens, **self.chat_model_rule())
        guarded = SpillGuardedRunnable(model, policy, log=log_path, log_all=True, include_verdict=True)
        answers = []
        try:
            for q in questions:
                out = guarded.invoke(q)
                v = out.verdict
                answers.append(dict(action=v.action, score=v.score, shown=out.output.content,
                                    original=v.original_answer, attempts=v.attempts))
        finally:
            guarded.sink.close()
        return _with_records("langchain", log_path, questions, answers)

    # (4) LlamaIndex: SpillLLM in a guarded plain chat engine
    def _llama_index(self, policy: Any, questions: list[str], log_path: str) -> list[DoorResult]:
        from spill_guard_llama_index import GuardedChatEngine, SpillLLM

        answers = []
        with self.guard(policy, log_path) as guard:
            llm = SpillLLM(guard)
            for q in questions:
                engine = GuardedChatEngine(_plain_chat_engine(llm, self.model.tokenizer), llm)
                answers.append(_llama_index_answer(engine.chat(q)))
        return _with_records("llama_index", log_path, questions, answers)

    # (5) drop-in: ChatHuggingFace over a transformers pipeline, SpillCallbackHandler, SpillGuardedRunnable
    def _chat_huggingface(self, policy: Any, questions: list[str], log_path: str) -> list[DoorResult]:
        from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
        from transformers import pipeline

        from spill_guard_langchain import SpillCallbackHandler, SpillGuardedRunnable

        loaded = self.model.loaded
        self._wrapped_generate = True
        pipe = pipeline("text-generation", model=loaded.model, tokenizer=loaded.tokenizer,
                        max_new_tokens=self.max_new_tokens, do_sample=False, return_full_text=False)
        chat = ChatHuggingFace(llm=HuggingFacePipeline(pipeline=pipe))
        handler = SpillCallbackHandler(model=chat, guard=self.guard(None, None))
        guarded = SpillGuardedRunnable(chat, policy, log=log_path, log_all=True, include_verdict=True)
        answers = []
        try:
            for q in questions:
                out = guarded.invoke(q, config={"callbacks": [handler]})
                v = out.verdict
                answers.append(dict(action=v.action, score=v.score, shown=out.output.content,
                                    original=v.original_answer, attempts=v.attempts))
        finally:
            guarded.sink.close()
        return _with_records("chat_huggingface", log_path, questions, answers)

    # (6) drop-in: HuggingFaceLLM instrumented, in a guarded plain chat engine
    def _huggingface_llm(self, policy: Any, questions: list[str], log_path: str) -> list[DoorResult]:
        from llama_index.llms.huggingface import HuggingFaceLLM

        from spill_guard_llama_index import GuardedChatEngine, instrument

        loaded = self.model.loaded
        self._wrapped_generate = True
        hf_llm = HuggingFaceLLM(model=loaded.model, tokenizer=loaded.tokenizer, max_new_tokens=self.max_new_tokens,
                                context_window=loaded.context_window)
        answers = []
        with self.guard(policy, log_path) as guard:
            scorer = instrument(hf_llm, guard)
            try:
                for q in questions:
                    engine = GuardedChatEngine(_plain_chat_engine(hf_llm, loaded.tokenizer), hf_llm)
                    answers.append(_llama_index_answer(engine.chat(q)))
            finally:
                scorer.uninstrument()
        return _with_records("huggingface_llm", log_path, questions, answers)


def _plain_chat_engine(llm: Any, tokenizer: Any) -> Any:
    """A LlamaIndex chat engine with no retrieval and no system prompt: the LLM sees the user's turn as given."""
    from llama_index.core.chat_engine import SimpleChatEngine
    from llama_index.core.memory import ChatMemoryBuffer

    memory = ChatMemoryBuffer.from_defaults(token_limit=4096, tokenizer_fn=tokenizer.encode)  # no tiktoken download
    return SimpleChatEngine.from_defaults(llm=llm, memory=memory)


def _llama_index_answer(response: Any) -> dict[str, Any]:
    v = response.metadata["spill_guard"]
    return dict(action=v["action"], score=v["score"], shown=response.response, original=v["original_answer"],
                attempts=v["attempts"])


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL, stops at exit."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="parity-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 600  # a bound (a GuardConfig target loads its model at start-up)
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the parity test's server did not start")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        _wait_ready(f"http://127.0.0.1:{port}", deadline)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=120)


def _wait_ready(url: str, deadline: float) -> None:
    import time

    import httpx

    while True:
        status = httpx.get(f"{url}/readyz", timeout=10).status_code
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the parity test's server was not ready (GET /readyz: {status})")
        time.sleep(0.1)
