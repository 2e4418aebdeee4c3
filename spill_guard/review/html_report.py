"""A self-contained static HTML report of review records (inline CSS, no JavaScript).

One file to attach to a ticket or open offline: summary counts, then one card per record
with the question, the answer shown, the action, the score against the threshold and the
answer's tokens coloured by their per-token Δ (the exact value in each token's tooltip).
Every piece of record text goes through ``html.escape``: model output and user questions
are untrusted and must never become markup.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from spill_guard.review.atomic_file import atomic_text_file
from spill_guard.review.colors import hex_color, readable_text_rgb, risk_rgb, value_range
from spill_guard.review.record import ACTIONS, ReviewRecord
from spill_guard.review.terminal import printable, visible

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
h1{font-size:1.4rem}
table.summary{border-collapse:collapse;margin-bottom:1.5rem}
table.summary td,table.summary th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
.card{border:1px solid #ccc;border-radius:6px;padding:.8rem 1rem;margin:1rem 0}
.card.flagged{border-left:6px solid #b40426}.card.passed{border-left:6px solid #3b4cc0}
.card.abstained,.card.raised{border-left:6px solid #e08a00}
.meta{color:#555;font-size:.85rem}
.field{margin:.3rem 0}.field b{display:inline-block;min-width:7rem}
.tokens{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;line-height:1.9;margin-top:.5rem}
.tokens span{padding:.1rem 0;border-radius:2px}
.tokens span.span{text-decoration:underline;text-decoration-thickness:2px}
.tokens span.na{color:#999}
.legend{font-size:.8rem;color:#555}
.label-correct{color:#1a7f37;font-weight:bold}.label-incorrect{color:#b40426;font-weight:bold}
"""


def _esc(value: object) -> str:
    # printable() first: control characters (and lone surrogates, which UTF-8 cannot encode)
    # become visible escapes, bidi overrides cannot reorder the card a reviewer reads.
    return html.escape(printable(str(value)), quote=True)


def _summary(records: Sequence[ReviewRecord]) -> str:
    actions = Counter(r.action for r in records)
    labels = Counter(r.label or "unlabelled" for r in records)
    # Two different facts: the action the guard took (``flagged`` is one of them) and whether the
    # risk crossed the threshold (``record.flagged``: true for abstained, raised and log-only answers too).
    head = "".join(f'<th title="the guard\'s action">action: {_esc(a)}</th>' for a in ACTIONS)
    cells = "".join(f"<td>{actions.get(a, 0)}</td>" for a in ACTIONS)
    label_heads = "".join(f"<th>label: {k}</th>" for k in ("correct", "incorrect", "unlabelled"))
    label_cells = "".join(f"<td>{labels.get(k, 0)}</td>" for k in ("correct", "incorrect", "unlabelled"))
    return (
        '<table class="summary"><tr><th>records</th>'
        + head
        + '<th title="records whose risk score crossed the threshold, whatever the action">over threshold</th>'
        + label_heads
        + "</tr>"
        + f"<tr><td>{len(records)}</td>{cells}<td>{sum(r.flagged for r in records)}</td>{label_cells}</tr></table>"
    )


def _tokens_html(record: ReviewRecord) -> str:
    lo, hi = value_range(record.token_scores)
    span = record.span or {}
    span_range = (span.get("token_start"), span.get("token_end"))
    parts = []
    for i, (tok, value) in enumerate(zip(record.tokens, record.token_scores)):
        in_span = (
            isinstance(span_range[0], int) and isinstance(span_range[1], int) and span_range[0] <= i < span_range[1]
        )
        classes = ["span"] if in_span else []
        if value is None:
            parts.append(f'<span class="{" ".join(classes + ["na"])}" title="Δ undefined">{_esc(visible(tok))}</span>')
            continue
        bg = risk_rgb(value, lo, hi)
        style = f"background:{hex_color(bg)};color:{hex_color(readable_text_rgb(bg))}"
        cls = f' class="{" ".join(classes)}"' if classes else ""
        parts.append(f'<span{cls} style="{style}" title="Δ = {value:.4f}">{_esc(visible(tok))}</span>')
    legend = (
        f'<div class="legend">colour: per-token Δ from blue ({lo:+.2f}) to red ({hi:+.2f}), '
        "higher = riskier; hover a token for its value; underlined = scored span</div>"
    )
    return f'<div class="tokens">{"".join(parts)}</div>{legend}'


def _card(record: ReviewRecord) -> str:
    score = "n/a" if record.score is None else f"{record.score:.4f}"
    threshold = "n/a" if record.threshold is None else f"{record.threshold:.4f}"
    label = (
        (
            f'<span class="label-{_esc(record.label)}">{_esc(record.label)}</span>'
            + (f" — {_esc(record.label_note)}" if record.label_note else "")
        )
        if record.label
        else "unlabelled"
    )
    rows = [
        f'<div class="meta">{_esc(record.id)} · {_esc(record.created_at)} · {_esc(record.model or "-")}'
        + (f" · tags: {_esc(', '.join(record.tags))}" if record.tags else "")
        + "</div>",
        f'<div class="field"><b>question</b>{_esc(record.question)}</div>',
    ]
    if record.context:
        rows.append(f'<div class="field"><b>context</b>{_esc(record.context)}</div>')
    rows.append(f'<div class="field"><b>answer</b>{_esc(record.answer)}</div>')
    if record.original_answer != record.answer:
        rows.append(f'<div class="field"><b>model answer</b>{_esc(record.original_answer)}</div>')
    rows += [
        f'<div class="field"><b>action</b>{_esc(record.action)}{" (flagged)" if record.flagged else ""}</div>',
        f'<div class="field"><b>score</b>{score} vs threshold {threshold} '
        f'<span class="meta">({_esc(record.spec)}, locator {_esc(record.locator)})</span></div>',
        f'<div class="field"><b>label</b>{label}</div>',
    ]
    if record.tokens:
        rows.append(_tokens_html(record))
    return f'<section class="card {_esc(record.action)}">{"".join(rows)}</section>'


def render_html(records: Sequence[ReviewRecord], *, title: str = "spill_guard review log") -> str:
    """The whole report as one HTML document string."""
    body = "\n".join(_card(r) for r in records) or "<p>No records.</p>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1>{_summary(records)}\n{body}\n</body></html>\n"
    )


def write_html(
    records: Sequence[ReviewRecord], path: str | os.PathLike, *, title: str = "spill_guard review log"
) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8) atomically and return the path.

    The page is complete before it replaces an older one (temporary file + rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = render_html(records, title=title)
    with atomic_text_file(path) as f:
        f.write(page)
    return path
