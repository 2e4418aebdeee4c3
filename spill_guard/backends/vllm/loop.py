"""The one plan → generate → final step → fetch loop of the vLLM backends, sync and async.

:func:`answer_loop` is a generator that *describes* the engine work of one call and never
touches an engine: it yields :class:`EngineRound` (requests to run to completion) and
:class:`Fetch` (the captured values of some keys), receives their results through ``send``,
and returns the answers. :func:`run_sync` drives it on ``vllm.LLM`` (``VllmBackend``),
:func:`run_async` on ``AsyncLLM`` (``AsyncVllmBackend``); so both make exactly the same requests,
and the only code that differs is how a round is submitted and how a failed call is cleaned up
(captured values discarded; on the async engine the requests are aborted too).

The steps: every answer request (one token over its budget, see
:func:`~spill_guard.backends.vllm.plan.answer_params`); then, for the answers that need it, a
1-token follow-up on ``prompt + answer`` for z_(T+1); then one fetch of every key's values;
then the traces. ``stats=None`` sends plain requests and stops after the first round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from spill_guard.backends.base import PlainAnswer
from spill_guard.backends.vllm.plan import (
    PlannedAnswer,
    Sampling,
    answer_params,
    chosen_source,
    follow_up_params,
    new_key,
    stopped_on_stop_token,
)
from spill_guard.backends.vllm.reduce import Columns
from spill_guard.errors import CaptureError


@dataclass(frozen=True)
class EngineRound:
    """Requests to run to completion; the result sent back is each request's final completion, in order."""

    prompts: list[list[int]]
    params: list[Any]
    request_ids: list[str]


@dataclass(frozen=True)
class Fetch:
    """Fetch (and release) the captured values of ``keys``; the result sent back is the worker's mapping."""

    keys: list[str]


@dataclass(frozen=True)
class CallSetup:
    """What one call needs besides its prompts and samplings (the backend's facts)."""

    stop_token_ids: Sequence[int]
    skip_after: Collection[int]
    greedy_reads_max: bool
    columns: Columns
    vocab_size: int
    tokenizer: Any


Step = EngineRound | Fetch
Loop = Generator[Step, Any, list[Any]]


def answer_loop(
    prompts: Sequence[list[int]],
    samplings: Sequence[Sampling],
    stats: str | None,
    setup: CallSetup,
    report: Callable[[list[int], Any, bool], Any],
) -> Loop:
    """The engine work of one call (see the module docstring); returns one answer per prompt.

    ``report(prompt, trace, stopped_on_stop_token)`` builds a scored answer; plain calls
    (``stats=None``) return :class:`~spill_guard.backends.base.PlainAnswer` s.
    """
    stops = setup.stop_token_ids
    plans = [
        PlannedAnswer(
            list(p),
            new_key(),
            new_key(),
            chosen=chosen_source(s, setup.greedy_reads_max) if stats is not None else "max",
        )
        for p, s in zip(prompts, samplings)
    ]
    params = [answer_params(s, stops, plan.key, stats=stats, chosen=plan.chosen) for plan, s in zip(plans, samplings)]
    completions = yield EngineRound([p.prompt for p in plans], params, [p.key for p in plans])
    for plan, completion, sampling in zip(plans, completions, samplings):
        plan.record_output(completion, sampling.max_new_tokens)
    if stats is None:
        return [_plain(plan, stops, setup.tokenizer) for plan in plans]
    needed = [plan for plan in plans if not plan.skip_follow_up(stops, setup.skip_after)]
    if needed:
        follow = [follow_up_params(stats, p.follow_key, p.key) for p in needed]
        yield EngineRound([p.follow_prompt for p in needed], follow, [p.follow_key for p in needed])
    fetched = yield Fetch(keys_of(plans))
    return [
        report(
            plan.prompt, plan.trace(fetched, setup.columns, setup.vocab_size, stats), stopped_on_stop_token(plan, stops)
        )
        for plan in plans
    ]


def keys_of(plans: Sequence[PlannedAnswer]) -> list[str]:
    return [k for plan in plans for k in (plan.key, plan.follow_key)]


def _plain(plan: PlannedAnswer, stops: Sequence[int], tokenizer: Any) -> PlainAnswer:
    ids = [int(t) for t in plan.token_ids or []]
    return PlainAnswer(
        prompt_ids=plan.prompt,
        answer_ids=ids,
        answer=tokenizer.decode(ids, skip_special_tokens=True),
        stopped_on_eos=stopped_on_stop_token(plan, stops),
    )


def run_sync(loop: Loop, llm: Any) -> list[Any]:
    """Drive :func:`answer_loop` on an offline ``vllm.LLM``; on failure, discard what was captured."""
    from vllm.inputs import TokensPrompt

    keys: list[str] = []
    try:
        step = next(loop)
        while True:
            if isinstance(step, EngineRound):
                keys.extend(step.request_ids)
                outputs = llm.generate(
                    [TokensPrompt(prompt_token_ids=p) for p in step.prompts], step.params, use_tqdm=False
                )
                result: Any = [o.outputs[0] for o in outputs]
            else:
                keys = list(dict.fromkeys([*keys, *step.keys]))
                result = llm.collective_rpc("spill_guard_fetch", args=(step.keys,))[0]
            step = loop.send(result)
    except StopIteration as done:
        return done.value
    except BaseException:
        if keys:
            llm.collective_rpc("spill_guard_discard", args=(keys,))
        raise


async def run_async(loop: Loop, engine: Any) -> list[Any]:
    """Drive :func:`answer_loop` on ``AsyncLLM``: one coroutine per request, all of a round at once.

    If the call is cancelled or fails, its requests are aborted and their captured values
    discarded (shielded from the cancellation), so the worker's store does not keep them.
    """
    from vllm.inputs import TokensPrompt

    keys: list[str] = []
    try:
        step = next(loop)
        while True:
            if isinstance(step, EngineRound):
                keys.extend(step.request_ids)
                async with asyncio.TaskGroup() as group:  # one request failing cancels the others
                    tasks = [
                        group.create_task(_last(engine.generate(TokensPrompt(prompt_token_ids=p), params, rid)))
                        for p, params, rid in zip(step.prompts, step.params, step.request_ids)
                    ]
                result: Any = [t.result().outputs[0] for t in tasks]
            else:
                keys = list(dict.fromkeys([*keys, *step.keys]))
                result = (await engine.collective_rpc("spill_guard_fetch", args=(step.keys,)))[0]
            step = loop.send(result)
    except StopIteration as done:
        return done.value
    except BaseExceptionGroup as group_error:
        await asyncio.shield(_cleanup(engine, keys))
        raise _first_cause(group_error) from None
    except BaseException:
        await asyncio.shield(_cleanup(engine, keys))
        raise


async def _cleanup(engine: Any, keys: list[str]) -> None:
    if keys:
        await engine.abort(keys)
        await engine.collective_rpc("spill_guard_discard", args=(keys,))


async def _last(stream: Any) -> Any:
    final = None
    async for output in stream:
        final = output
    if final is None:
        raise CaptureError("vLLM returned no output for the request.")
    return final


def _first_cause(group: BaseExceptionGroup) -> BaseException:
    for exc in group.exceptions:
        return _first_cause(exc) if isinstance(exc, BaseExceptionGroup) else exc
    return CaptureError("vLLM generation failed")
