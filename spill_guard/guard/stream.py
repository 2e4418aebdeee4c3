"""Stream one answer token by token, with its energies, while the model generates it.

Generation runs in a worker thread; a capture listener turns each :class:`TokenStep` into a
:class:`TokenEvent` on a queue, which the caller's thread yields from. Errors raised in the
worker are re-raised in the caller's thread. A :class:`StreamCancel` passed to ``generate``
as a stop hook lets the caller end the generation when its consumer stops reading.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from spill_guard.capture.streaming import TokenStep
from spill_guard.guard.verdict import TokenEvent

_DONE = object()


class StreamCancel:
    """A stop hook that ends every row once :meth:`set` is called (from any thread)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self, tokens: Sequence[int | None], length: int) -> bool:
        return self._event.is_set()


class TextIncrements:
    """Decoded text added by each token, holding back split multi-byte characters."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character split across tokens: wait for its other bytes
            return ""
        piece, self.emitted = text[self.emitted :], len(text)
        return piece


def stream_generation(
    run: Callable[[Callable[[TokenStep], None]], Any],
    tokenizer: Any,
    beta: float,
) -> Iterator[TokenEvent | Any]:
    """Yield a :class:`TokenEvent` per token, then whatever ``run(listener)`` returned.

    ``run`` must generate a single answer (batch of one) and call ``listener`` per token.
    """
    events: queue.Queue = queue.Queue()
    text = TextIncrements(tokenizer)

    def listener(step: TokenStep) -> None:
        energy, marginal, delta = (float(v[0]) for v in step.energies(beta))
        token = int(step.token_ids[0])
        events.put(
            TokenEvent(
                index=step.index,
                token_id=token,
                text=text.push(token),
                token_energy=energy,
                marginal_energy=marginal,
                spilled_energy=delta,
            )
        )

    outcome: dict[str, Any] = {}

    def worker() -> None:
        try:
            outcome["result"] = run(listener)
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome["error"] = exc
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=worker, name="spill-guard-stream", daemon=True)
    thread.start()
    while True:
        item = events.get()
        if item is _DONE:
            break
        yield item
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["result"]
