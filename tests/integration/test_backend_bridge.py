"""The views between sync and async backends (spill_guard/backends/bridge.py), on the real embedded model.

The server generates through ``model.asynchronous()`` on every backend; a guard over an async
engine holds ``async_model.synchronous()`` and its retries call it from threads. These check that
the views return the wrapped backend's own answers, run calls one at a time in the model's worker
thread, undo each other, and refuse what would hang (no loop bound, or a call on the loop's own
thread) with an error that says what to do.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from spill_guard import AsyncSpillModel, SpillModel
from spill_guard.backends.bridge import LoopBackend, ThreadedBackend, async_view, sync_view
from spill_guard.errors import InvalidParameterError
from spill_guard.models.params import GenerationParams

pytestmark = pytest.mark.model

PARAMS = GenerationParams(max_new_tokens=5)


@pytest.fixture(scope="module")
def prompts(spill_model):
    return [spill_model.prompt_ids(q) for q in ("What is the capital of France?", "Who wrote Hamlet?")]


def test_views_undo_each_other_and_keep_prompting(spill_model):
    backend = spill_model.backend
    threaded = async_view(backend)
    assert isinstance(threaded, ThreadedBackend) and sync_view(threaded) is backend
    looped = LoopBackend(threaded)
    assert async_view(looped) is threaded
    model = SpillModel(backend, instruction="Reply in one word.", system="Be terse.")
    view = model.asynchronous()
    assert isinstance(view, AsyncSpillModel)
    assert (view.instruction, view.system) == ("Reply in one word.", "Be terse.")
    assert view.prompt_ids("Hi?") == model.prompt_ids("Hi?")
    assert view.synchronous().backend is backend
    threaded.executor.shutdown()
    view.backend.executor.shutdown()


def test_concurrent_awaits_run_one_at_a_time_in_one_thread_with_the_backends_answers(spill_model, prompts):
    view = spill_model.asynchronous()
    threads: set[str] = set()

    def listener(step):
        threads.add(threading.current_thread().name)

    async def both():
        return await asyncio.gather(
            view.generate_params(prompts[:1], PARAMS, listeners=[listener]),
            view.generate_params(prompts[1:], PARAMS, listeners=[listener]),
        )

    first, second = asyncio.run(both())
    direct = spill_model.generate_params(prompts, PARAMS)
    assert [first[0].answer_ids, second[0].answer_ids] == [d.answer_ids for d in direct]
    assert len(threads) == 1 and next(iter(threads)).startswith("spill-guard-model")
    view.backend.executor.shutdown()


def test_the_sync_view_of_an_async_backend_needs_a_bound_running_loop(spill_model, prompts):
    threaded = ThreadedBackend(spill_model.backend)
    sync = SpillModel(LoopBackend(threaded))
    with pytest.raises(InvalidParameterError, match=r"bind\(loop\)"):
        sync.generate_params(prompts[:1], PARAMS)

    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        sync.backend.bind(loop)
        [answer] = sync.generate_params(prompts[:1], PARAMS)  # from this thread, run on the bound loop
        [direct] = spill_model.generate_params(prompts[:1], PARAMS)
        assert answer.answer_ids == direct.answer_ids

        async def on_the_loop():
            return sync.generate_params(prompts[:1], PARAMS)

        with pytest.raises(InvalidParameterError, match="wait for itself"):
            asyncio.run_coroutine_threadsafe(on_the_loop(), loop).result(60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()
        threaded.executor.shutdown()
