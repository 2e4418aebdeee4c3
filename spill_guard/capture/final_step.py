"""When the extra forward step for ``z_(T+1)`` is worth running.

``generate`` stops right after choosing the last token ``x_T``; the logits that follow it
(``z_(T+1)``) cost one more forward step (1.9–2.0 % of a 48-token call on CPU, measured with
``bench/overhead.py``). Only the last token's Δ, partition shift and JSD read them.

- ``"always"``: run the step whenever generation did not (the ``score`` CLI's JSON contract
  promises every token's Δ).
- ``"auto"``: skip it when every row that reached the last generated column ended there on a
  stop token that carries no text (a special token such as ``<|im_end|>``). Such a token has an
  empty character span, so no answer span (:func:`~spill_guard.spans.char_span_to_token_range`)
  can include it; the guard's verdicts never read its Δ. A row that hit ``max_new_tokens`` or
  ended on a stop token with text still gets the step.

Rows shorter than the longest already have their ``z_(T+1)``: the batch's next decode step
computed it. The step therefore runs on the rows that reached the last column only (taken from
the KV cache, :mod:`spill_guard.capture.cache_rows`): a batch of 8 where one row was cut by
``max_new_tokens`` pays a one-row forward, not a batch-of-8 one. Under ``"auto"`` a row that ended
on a stop token without text drops that ``z_(T+1)`` wherever it ended (its last Δ is NaN,
``trace.final_step`` False), so a row's values never depend on the rest of its batch: an answer
from a batch (``ask_batch``, a second opinion's samples) equals the same answer generated alone.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from spill_guard.errors import InvalidParameterError

FINAL_STEP_MODES = ("always", "auto")


def check_final_step_mode(mode: Any) -> str:
    if mode not in FINAL_STEP_MODES:
        raise InvalidParameterError(
            f"final_step must be one of {list(FINAL_STEP_MODES)}, got {mode!r}; 'auto' skips the extra "
            "forward step after an answer that ended on a stop token without text, 'always' never skips it."
        )
    return mode


def textless_stop_ids(tokenizer: Any, stop_token_ids: Collection[int]) -> frozenset[int]:
    """The stop tokens after which ``"auto"`` may skip the step: those the tokenizer marks special.

    Special tokens decode to no text (``skip_special_tokens``) and get an empty span in
    :class:`~spill_guard.ScoredAnswer.tokens`; a stop token with text could sit inside a span.
    """
    special = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}
    return frozenset(int(i) for i in stop_token_ids if int(i) in special)


def skip_ids_for(mode: str, tokenizer: Any, stop_token_ids: Collection[int]) -> frozenset[int]:
    """Token ids after which the final step is skipped under ``mode`` (none for ``"always"``)."""
    if check_final_step_mode(mode) == "always":
        return frozenset()
    return textless_stop_ids(tokenizer, stop_token_ids)


def final_step_needed(
    last_token_ids: Sequence[int],
    lengths: Sequence[int],
    stopped: Sequence[bool],
    n_tokens: int,
    skip_after: Collection[int],
) -> bool:
    """True if some row of length ``n_tokens`` needs ``z_(T+1)``.

    ``last_token_ids[b]`` is row ``b``'s token in the last generated column; ``lengths`` and
    ``stopped`` are the rows' answer lengths and whether they ended on a stop token.
    """
    for token, length, ended in zip(last_token_ids, lengths, stopped):
        if length == n_tokens and not (ended and int(token) in skip_after):
            return True
    return False
