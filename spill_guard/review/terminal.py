r"""Terminal views of review records: a per-token risk heatmap and a full record report.

Colour follows the usual conventions: none when ``NO_COLOR`` is set (to anything non-empty,
see no-color.org) or the output is not a terminal; 24-bit colour when ``COLORTERM`` says
``truecolor``/``24bit``; otherwise the 256-colour palette, which every modern terminal has.
Without colour each token is printed as ``[token|value]`` so the numbers are still there.

Questions, answers and notes are untrusted text: printed raw, an ``ESC`` sequence could
clear the screen, retitle the window or fake lines of the report, and a bidi override could
reorder what the reviewer reads. Every piece of record text goes through :func:`printable`
(or :func:`visible` for tokens), which writes such characters as ``repr``-style escapes
(``\x1b``, ``\u202e``); only the colour codes this module emits itself reach the terminal.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Literal, TextIO

from spill_guard.errors import InvalidInputError
from spill_guard.review.colors import RGB, readable_text_rgb, risk_rgb, value_range
from spill_guard.review.record import ReviewRecord

ColorMode = Literal["none", "256", "truecolor"]
RESET = "\x1b[0m"
_VISIBLE = {"\n": "↵", "\t": "→", "\r": "␍"}


def color_mode(stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> ColorMode:
    """The colour support to use for ``stream`` (default stdout) under ``env`` (default os.environ)."""
    env = os.environ if env is None else env
    if env.get("NO_COLOR"):
        return "none"
    stream = sys.stdout if stream is None else stream
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return "none"
    if env.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return "truecolor"
    return "256"


# What a terminal acts on instead of showing: C0/C1 controls and DEL, line/paragraph
# separators, bidi embedding/override/isolate marks, and lone surrogates (which cannot even
# be encoded for output). Other invisible characters (zero-width joiners in emoji, NBSP)
# are harmless and stay, so ordinary text in any script prints as it is.
_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_CONTROL = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
# In JSON text every C0 control inside a string is already escaped by json.dumps, and a raw
# newline or tab is layout (indent=2), so only the others need escaping there.
_JSON_UNSAFE = re.compile(f"[{_BEYOND_C0}]")


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    r"""``repr``-style escape of one character: ``\n``, ``\x1b``, ``\u202e``."""
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    r"""``text`` safe to print: every control character as a ``repr``-style escape (see module doc).

    Newlines and tabs are escaped too (a newline shows as ``\n``), so a value can never start
    a line that looks like part of the report.
    """
    return _CONTROL.sub(lambda m: _escape(m.group()), text)


def json_for_terminal(text: str) -> str:
    r"""JSON text with the control characters :func:`printable` escapes written as ``\uXXXX``.

    Lossless: ``json.dumps`` already escapes C0 controls inside strings (a raw newline is
    layout), and the others can only occur inside string literals, where ``\uXXXX`` means
    the same character; ``json.loads`` gives back the same data.
    """
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def visible(text: str) -> str:
    """Token text with whitespace controls made visible; an empty (special) token as ``∅``.

    Stricter than :func:`printable`: a token is a few characters, and which ones matters, so
    every non-printable character (NBSP, zero-width marks too) is shown as an escape.
    """
    if text == "":
        return "∅"
    return "".join(_VISIBLE.get(c, c if c.isprintable() or c == " " else _escape(c)) for c in text)


def _sgr_background(rgb: RGB, mode: ColorMode) -> str:
    fg = readable_text_rgb(rgb)
    if mode == "truecolor":
        return "\x1b[48;2;{};{};{}m\x1b[38;2;{};{};{}m".format(*rgb, *fg)

    def cube(c: int) -> int:
        return round(c / 255 * 5)

    index = 16 + 36 * cube(rgb[0]) + 6 * cube(rgb[1]) + cube(rgb[2])
    return f"\x1b[48;5;{index}m\x1b[38;5;{16 if fg == (0, 0, 0) else 231}m"


def heatmap(
    tokens: Sequence[str],
    scores: Sequence[float | None],
    *,
    mode: ColorMode = "none",
    vmin: float | None = None,
    vmax: float | None = None,
    underline: tuple[int, int] | None = None,
) -> str:
    """Tokens coloured by score (blue low → red high) on the range ``[vmin, vmax]``.

    The range defaults to the scores' own min / max. ``underline=(start, end)`` marks a token
    range (the scored span) in colour modes. Tokens without a score are left uncoloured
    (shown as ``[token|n/a]`` in plain mode).
    """
    if len(tokens) != len(scores):
        raise InvalidInputError(f"{len(tokens)} tokens but {len(scores)} scores; they must be aligned one to one.")
    lo, hi = value_range(scores, vmin, vmax)
    parts = []
    for i, (tok, value) in enumerate(zip(tokens, scores)):
        if value is not None and value != value:  # NaN: not computed (e.g. a stop token's skipped z_(T+1))
            value = None
        shown = visible(tok)
        if mode == "none":
            parts.append(f"[{shown}|{'n/a' if value is None else f'{value:+.2f}'}]")
            continue
        style = "\x1b[2m" if value is None else _sgr_background(risk_rgb(value, lo, hi), mode)
        if underline is not None and underline[0] <= i < underline[1]:
            style += "\x1b[4m"
        parts.append(f"{style}{shown}{RESET}")
    return ("" if mode != "none" else " ").join(parts)


def legend(lo: float, hi: float, *, mode: ColorMode = "none", steps: int = 9) -> str:
    """One line explaining the colours (or, in plain mode, the bracket format)."""
    if mode == "none":
        return f"[token|value] per-token Δ (spilled energy), higher = riskier; range {lo:+.2f} .. {hi:+.2f}"
    bar = "".join(
        f"{_sgr_background(risk_rgb(lo + (hi - lo) * k / (steps - 1), lo, hi), mode)}  {RESET}" for k in range(steps)
    )
    return f"low {lo:+.2f} {bar} {hi:+.2f} high   per-token Δ (spilled energy), higher = riskier"


def _score_line(record: ReviewRecord) -> str:
    score = "n/a (no span found)" if record.score is None else f"{record.score:.4f}"
    if record.threshold is None:
        return f"score {score}  ({record.spec}, locator {record.locator})"
    # The guard flags strictly above the threshold, so equality is shown on the passing side.
    relation = "" if record.score is None else (" > " if record.score > record.threshold else " ≤ ")
    threshold = f"threshold {record.threshold:.4f}"
    return f"score {score}{relation or '  '}{threshold}  ({record.spec}, locator {record.locator})"


def render_record(
    record: ReviewRecord, *, mode: ColorMode = "none", vmin: float | None = None, vmax: float | None = None
) -> str:
    """Everything in a record a reviewer needs, with the answer's token heatmap."""
    # Every line here carries record text: each goes through printable() at the end. The
    # heatmap and legend are added after that, since they hold this module's colour codes
    # around tokens that visible() already escaped.
    lines = [
        f"id        {record.id}",
        f"created   {record.created_at}",
        f"model     {record.model or '-'}",
        f"action    {record.action}{'  (flagged)' if record.flagged and record.action != 'flagged' else ''}",
        f"          {_score_line(record)}",
    ]
    if record.label is not None:
        note = f" — {record.label_note}" if record.label_note else ""
        by = f", by {record.labelled_by}" if record.labelled_by is not None else ""
        lines.append(f"label     {record.label}{note}  (at {record.labelled_at}{by})")
        if record.corrected_answer is not None:
            lines.append(f"corrected {record.corrected_answer}")
    else:
        lines.append("label     (none) — set with `spill-guard review label ID correct|incorrect`")
    if record.tags:
        lines.append(f"tags      {', '.join(record.tags)}")
    for key, value in record.metadata.items():
        lines.append(f"meta      {key} = {value!r}")
    lines += ["", f"question: {record.question}"]
    if record.context:
        lines.append(f"context:  {record.context}")
    lines.append(f"answer:   {record.answer}")
    if record.original_answer != record.answer:
        lines.append(f"model's answer (scored): {record.original_answer}")
    underline = None
    if record.span:
        s = record.span
        lines.append(
            f"span:     chars {s.get('start')}-{s.get('end')}, tokens {s.get('token_start')}-"
            f"{s.get('token_end')}: {s.get('text')!r}"
        )
        if isinstance(s.get("token_start"), int) and isinstance(s.get("token_end"), int):
            underline = (s["token_start"], s["token_end"])
    if len(record.attempts) > 1 or (record.attempts and record.attempts[0].get("strategy") != "greedy"):
        lines += ["", "attempts:"]
        for n, a in enumerate(record.attempts, start=1):
            # attempts are free-form dicts in the schema: format defensively, never crash a view
            sc = a.get("score")
            shown = f"{sc:.4f}" if isinstance(sc, (int, float)) and not isinstance(sc, bool) else "n/a"
            lines.append(
                f"  {n}. {str(a.get('strategy', '?')):<14} score {shown:>8}"
                f"  {'flagged' if a.get('flagged') else 'ok':<7}  {a.get('answer', '')!r}"
            )
    lines = [printable(line) for line in lines]
    if record.tokens:
        lo, hi = value_range(record.token_scores, vmin, vmax)
        lines += [
            "",
            "tokens (per-token Δ):",
            heatmap(record.tokens, record.token_scores, mode=mode, vmin=lo, vmax=hi, underline=underline),
            legend(lo, hi, mode=mode),
        ]
    return "\n".join(lines)
