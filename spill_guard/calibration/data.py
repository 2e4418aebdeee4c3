"""Labelled answers for calibration, from a task, a bench output folder, or a review log.

Every source ends as a :class:`CalibrationSet`: answers with their traces (so any scorer,
pooling and span can be computed without the model) and one label each, True = incorrect.

Labels come from the judge (``spill_guard.tasks.judge``) reading the span found by one
*label locator* (default ``full``, as the benchmark's default configuration) — so a label
says whether the answer is right, independently of which tokens a candidate scorer reads —
or, for review logs, from the human label. Generation reuses the benchmark's resumable
cache (``spill_guard.evaluation.runner.generate_cached``), so ``--cache bench/out/<task>-dev``
re-uses a bench run's answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spill_guard.calibration.errors import CalibrationError
from spill_guard.calibration.file import DataSource
from spill_guard.errors import SpillGuardError
from spill_guard.evaluation.cache import JSON_ERRORS, JsonlCache, read_header
from spill_guard.evaluation.runner import (
    BENCH_EXTRA_BETAS,
    GENERATION_KEY,
    SpanRange,
    cached_answer,
    generate_cached,
    generation_keys,
    score_ranges,
)
from spill_guard.evaluation.splits import select
from spill_guard.report import ScoredAnswer
from spill_guard.scoring.specs import ScoreSpec
from spill_guard.spans import SpanLocator, char_span_to_token_range, make_locator
from spill_guard.tasks import BUILTIN_TASKS, TaskItem, judge, load_task

#: Generation settings of task-based calibration: the benchmark's, so caches are shared.
CALIBRATION_MAX_NEW_TOKENS = 48
CALIBRATION_EXTRA_BETAS = BENCH_EXTRA_BETAS


@dataclass(frozen=True)
class LabelledAnswer:
    key: str  # unique within the set, e.g. "capitals:capital-FR"
    group: str  # fold assignment key (the item id)
    question: str
    answer: ScoredAnswer
    incorrect: bool


@dataclass(frozen=True)
class ScoredSubset:
    """Scores of one spec on one locator's spans; ``n_skipped`` answers had no usable span/score."""

    scores: np.ndarray
    labels: np.ndarray  # True = incorrect
    groups: list[str]
    n_skipped: int
    keys: list[str] = field(default_factory=list)  # the LabelledAnswer key of each score


@dataclass
class CalibrationSet:
    answers: list[LabelledAnswer]
    source: DataSource
    #: Labelled inputs left out before scoring, each "record <id>: <why>" (review logs).
    skipped: list[str] = field(default_factory=list)
    _ranges: dict[str, list[tuple[SpanRange, str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        keys = [a.key for a in self.answers]
        if len(set(keys)) != len(keys):
            dupes = sorted({k for k in keys if keys.count(k) > 1})[:5]
            raise CalibrationError(f"labelled answers have duplicate keys {dupes}; each item may appear only once.")

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def n_incorrect(self) -> int:
        return sum(a.incorrect for a in self.answers)

    def ranges(self, locator: str | SpanLocator) -> list[tuple[SpanRange, str]]:
        """Each answer's token range under ``locator`` (answers where it finds nothing are absent)."""
        loc = make_locator(locator) if isinstance(locator, str) else locator
        if loc.name not in self._ranges:
            found = []
            for a in self.answers:
                span = loc.locate(a.answer.answer, question=a.question)
                if span is None:
                    continue
                start, end = char_span_to_token_range(a.answer.tokens, span)
                found.append((SpanRange(a.key, start, end, not a.incorrect), a.group))
            self._ranges[loc.name] = found
        return self._ranges[loc.name]

    def scores(self, spec: ScoreSpec | str, locator: str | SpanLocator) -> ScoredSubset:
        """Scores of ``spec`` pooled over ``locator``'s span of each answer, with labels."""
        spec = ScoreSpec.parse(spec) if isinstance(spec, str) else spec
        by_key = {a.key: a.answer for a in self.answers}
        kept_ranges, groups = [], []
        for r, g in self.ranges(locator):
            kept_ranges.append(r)
            groups.append(g)
        scores, labels, kept_groups, keys = [], [], [], []
        # score_ranges drops spans where the spec is undefined; score one at a time to keep groups aligned.
        for r, g in zip(kept_ranges, groups):
            s, y = score_ranges(by_key, [r], spec)
            if len(s):
                scores.append(float(s[0]))
                labels.append(bool(y[0]))
                kept_groups.append(g)
                keys.append(r.item_id)
        return ScoredSubset(
            np.array(scores), np.array(labels, dtype=bool), kept_groups, len(self.answers) - len(scores), keys
        )


# ---------------------------------------------------------------------------------- labelling


def label_answers(
    items: Sequence[TaskItem], answers: dict[str, ScoredAnswer], label_locator: str, prefix: str
) -> list[LabelledAnswer]:
    """Judge each answer on the span ``label_locator`` finds (no span = incorrect, as in the bench)."""
    loc = make_locator(label_locator)
    out = []
    for it in items:
        ans = answers[it.id]
        span = loc.locate(ans.answer, question=it.question)
        ok = span is not None and judge(span.text, it.answers)
        out.append(
            LabelledAnswer(key=f"{prefix}:{it.id}", group=it.id, question=it.question, answer=ans, incorrect=not ok)
        )
    return out


def task_label(task: str) -> str:
    return Path(task).stem if str(task).endswith(".jsonl") else str(task)


def default_cache_dir(model_name: str, task: str, split: str) -> Path:
    from spill_guard.models.loader import cache_root

    return cache_root() / "calibrate" / model_name / f"{task_label(task)}-{split}"


# ---------------------------------------------------------------------------------- sources


def from_task(
    spill_model: Any,
    tasks: Sequence[str],
    *,
    split: str = "dev",
    n: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    label_locator: str = "full",
    max_new_tokens: int = CALIBRATION_MAX_NEW_TOKENS,
    batch_size: int = 8,
    progress: bool = True,
) -> CalibrationSet:
    """Generate (or read cached) answers for built-in task names or JSONL paths, then judge them.

    ``cache_dir`` holds one sub-folder per task when several are given; without it the cache is
    ``$SPILL_GUARD_CACHE/calibrate/<model>/<task>-<split>``. ``n`` caps items per task.
    """
    answers: list[LabelledAnswer] = []
    for task in tasks:
        items = select(load_task(task), split, n)
        if cache_dir is None:
            out = default_cache_dir(spill_model.loaded.name, task, split)
        else:
            out = Path(cache_dir) / task_label(task) if len(tasks) > 1 else Path(cache_dir)
        generated, _ = generate_cached(
            spill_model, items, out, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress
        )
        answers += label_answers(items, generated, label_locator, task_label(task))
    return CalibrationSet(
        answers, DataSource(kind="task", detail=", ".join(map(str, tasks)), label_locator=label_locator, split=split)
    )


def read_bench_results(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``results.json`` of a bench folder as a dict (``{}`` when the folder has none)."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        return {}
    try:
        results = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, *JSON_ERRORS) as exc:
        why = (
            (exc.strerror or str(exc))
            if isinstance(exc, OSError)
            else "not UTF-8 JSON; truncated or not written by spill-guard bench"
        )
        raise CalibrationError(
            f"cannot read {os.fspath(path)!r} ({why}); re-run the bench, or delete results.json "
            "and pass the task as the TASK argument."
        ) from None
    if not isinstance(results, dict):
        raise CalibrationError(
            f"{os.fspath(path)!r} holds a JSON {type(results).__name__}, not the object spill-guard "
            "bench writes; re-run the bench, or delete it and pass the task as the TASK argument."
        )
    return results


def bench_task(folder: str | os.PathLike, results: dict[str, Any], task: str | None) -> str:
    """The task whose accepted answers label a bench folder: ``task`` (given by the user) if set,
    else the built-in task named in its results.json.

    A name read from the file is never used as a path: a crafted results.json must not make
    spill_guard read (and echo in an error) an arbitrary file.
    """
    if task:
        return task
    named = results.get("task")
    if named is None:
        raise CalibrationError(
            f"bench folder {os.fspath(folder)!r} has no results.json naming its task; pass the task (TASK argument)."
        )
    if not isinstance(named, str) or named not in BUILTIN_TASKS:
        raise CalibrationError(
            f"bench folder {os.fspath(folder)!r}: its results.json names task {str(named)[:80]!r}, which is not a "
            f"built-in task ({', '.join(BUILTIN_TASKS)}); pass the task file the bench ran on as the TASK argument."
        )
    return named


def _bench_header(folder: Path) -> tuple[Path, dict[str, Any]]:
    gen = folder / "generations.jsonl"
    if not gen.is_file():
        raise CalibrationError(f"{folder} has no generations.jsonl; pass a folder written by spill-guard bench --out.")
    try:
        return gen, read_header(gen)
    except SpillGuardError:
        raise CalibrationError(f"{gen} does not start with a spill_guard cache header; is it a bench output?") from None


def check_bench_dir(path: str | os.PathLike, task: str | None = None) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``(generation header, results.json or {}, task)`` of a bench folder, without reading its answers.

    Cheap, so the CLI checks every ``--from-bench`` folder before loading the model.
    """
    _, header = _bench_header(Path(path))
    results = read_bench_results(path)
    return header, results, bench_task(path, results, task)


def read_bench_dir(path: str | os.PathLike) -> tuple[dict[str, Any], JsonlCache, dict[str, Any]]:
    """``(generation header, generation cache, results.json or {})`` of a ``spill-guard bench`` folder."""
    gen, header = _bench_header(Path(path))
    return header, JsonlCache(gen, header), read_bench_results(path)


def from_bench(
    spill_model: Any, dirs: Sequence[str | os.PathLike], *, task: str | None = None, label_locator: str = "full"
) -> CalibrationSet:
    """Labelled answers from bench output folders (no generation).

    The task (for its accepted answers) is ``task`` if given, else the ``task`` in each
    folder's results.json (built-in names only). The folder's model, instruction and system
    prompt must be those of ``spill_model``: a calibration is for the model that answered.
    Answers are matched to the task's items by their exact prompt, never by item id.
    """
    answers: list[LabelledAnswer] = []
    splits = set()
    for d in dirs:
        header, results, name = check_bench_dir(d, task)
        cache = JsonlCache(Path(d) / "generations.jsonl", header)
        expected = {
            "entry_key": GENERATION_KEY,
            "model": spill_model.loaded.name,
            "instruction": spill_model.instruction,
            "system": spill_model.system,
        }
        differ = {k: (header.get(k), v) for k, v in expected.items() if header.get(k) != v}
        if differ:
            listed = "; ".join(f"{k}: folder {a!r}, model {b!r}" for k, (a, b) in differ.items())
            raise CalibrationError(
                f"bench folder {d} was generated differently from the loaded model ({listed}); "
                "pass the matching --model or re-run the bench (older versions keyed answers "
                "by item id: re-run those)."
            )
        items = load_task(name)
        keys = generation_keys(spill_model, items)
        items = [it for it in items if keys[it.id] in cache]
        if not items:
            raise CalibrationError(
                f"none of the answers in {d} belong to task {name!r}; pass the task the folder was run on."
            )
        generated = {it.id: cached_answer(cache, keys[it.id])[0] for it in items}
        splits.add(str(results.get("split", "unknown")))
        answers += label_answers(items, generated, label_locator, task_label(name))
    return CalibrationSet(
        answers,
        DataSource(
            kind="bench",
            detail=", ".join(os.fspath(d) for d in dirs),
            label_locator=label_locator,
            split=",".join(sorted(splits)),
        ),
    )


def review_record_answer(rec: Any) -> tuple[ScoredAnswer | None, str]:
    """The scored answer a review record stores, or ``None`` and why it cannot be used (in words).

    Every record the guard, the server and the integrations write with its trace reads back
    (the skipped ``z_(T+1)`` Δ of a stop-ended answer is ``null`` in the log and NaN here);
    what cannot is a record stored without its trace (``include_scored=False``, redaction
    with ``scored="drop"``, or a verdict rebuilt from JSON, e.g. a LangChain message's
    report), or one whose stored answer was changed by hand or by an older version (token
    offsets that no longer index its text would put every span on the wrong tokens).
    """
    from pydantic import ValidationError

    from spill_guard.review.skipped import first_problem

    scored = rec.scored
    if not scored:
        return None, (
            "no trace stored (redacted with scored='drop', logged with include_scored=False, "
            "or a verdict rebuilt from JSON)"
        )
    if not isinstance(scored.get("trace"), dict):
        return None, "its scored answer was stored without the trace"
    try:
        ans = ScoredAnswer.from_record(scored)
    except ValidationError as exc:
        return None, f"its stored answer does not read back ({first_problem(exc)})"
    except (SpillGuardError, ValueError, KeyError, TypeError) as exc:  # a trace edited or truncated by hand
        detail = f"{type(exc).__name__}: {exc}"
        return None, f"its stored trace is malformed ({detail[:160]})"
    if len(ans.tokens) != len(ans.trace) or any(ans.answer[t.start : t.end] != t.text for t in ans.tokens):
        return None, (
            "its token offsets do not index its answer text (redacted by an older version, or edited), "
            "so no span can be mapped to its tokens"
        )
    return ans, ""


def from_review_log(path: str | os.PathLike) -> CalibrationSet:
    """Human-labelled answers of a review log (.jsonl or .sqlite) that carry their scored trace.

    A labelled record that cannot be used is left out and named, with why, in
    ``CalibrationSet.skipped`` (``"record 4d16e0a1: no trace stored (...)"``).
    """
    from spill_guard.review import labelled_records

    answers: list[LabelledAnswer] = []
    skipped: list[str] = []
    for rec in labelled_records(path):
        ans, why = review_record_answer(rec)
        if ans is None:
            skipped.append(f"record {rec.short_id}: {why}")
            continue
        answers.append(
            LabelledAnswer(
                key=f"log:{rec.id}", group=rec.id, question=rec.question, answer=ans, incorrect=rec.label == "incorrect"
            )
        )
    if not answers:
        shown = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        raise CalibrationError(
            f"review log {os.fspath(path)!r} has no labelled records calibration can use"
            + (f" ({len(skipped)} labelled, all skipped: {shown})" if skipped else " (none is labelled)")
            + "; label answers that were logged with their trace (spill-guard review label ID correct|incorrect), "
            "then calibrate."
        )
    detail = os.fspath(path) + (f" ({len(skipped)} labelled records skipped)" if skipped else "")
    return CalibrationSet(answers, DataSource(kind="review-log", detail=detail), skipped=skipped)
