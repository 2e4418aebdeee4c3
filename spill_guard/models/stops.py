"""Stop sequences (OpenAI's and LangChain's ``stop``): where the returned text ends, in one answer or a stream.

The text is cut *before* the earliest stop sequence (which is not returned). Generation of
that row ends on the token that completes the sequence (see :mod:`spill_guard.serving.generation`),
and the verdict scores every token generated up to there: what the model actually produced.
"""

from __future__ import annotations

from collections.abc import Sequence


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """``text`` up to the earliest stop sequence, and which sequence matched (``None``: none)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop) if stop else -1
        if at >= 0 and (best is None or at < best[0]):
            best = (at, stop)
    return (text, None) if best is None else (text[: best[0]], best[1])


class StreamedText:
    """Releases streamed text up to a stop sequence, holding back a possible start of one."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.text = ""
        self.released = 0
        self.matched: str | None = None

    def push(self, piece: str) -> str:
        """Add the next piece; return what may be shown now."""
        if self.matched is not None:
            return ""
        self.text += piece
        cut, self.matched = cut_at_stop(self.text, self.stops)
        safe = len(cut) if self.matched is not None else len(self.text) - self._held_back()
        out = self.text[self.released : safe] if safe > self.released else ""
        self.released = max(self.released, safe)
        return out

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop sequence."""
        longest = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:k]):
                    longest = k
                    break
        return longest
