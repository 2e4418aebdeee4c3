"""The offline hallucination benchmark: generate once, then locate, judge and score every way.

Flow per task: generate answers with streaming capture (cached, resumable) → for each
locator, find the exact-answer span and judge it against the gold answers → pool every
scorer over that span's tokens → detection metrics per scorer × pooling × locator.
Scoring variants never re-run generation: they read the cached traces.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spill_guard.errors import InvalidInputError, InvalidParameterError, NonFiniteLogitsError
from spill_guard.evaluation.cache import JsonlCache, content_key
from spill_guard.evaluation.metrics import DegenerateLabelsError, evaluate
from spill_guard.evaluation.results import BenchReport, ConfigResult, LocatorSummary
from spill_guard.report import ScoredAnswer
from spill_guard.scoring.specs import DEFAULT_SPEC, ScoreSpec, catalogue
from spill_guard.spans import LLMExtractorLocator, SpanLocator, char_span_to_token_range, make_locator
from spill_guard.spans.llm_extractor import plain_completions
from spill_guard.spill_model import SpillModel
from spill_guard.tasks import TaskItem, judge

#: Locators every run evaluates; "llm_extractor" is the paper's method (a second model call).
DEFAULT_LOCATORS = ("full", "answer_is", "numeric", "quoted+answer_is+strip_filler", "llm_extractor")
#: Extra inverse temperatures captured so β can be compared without regenerating.
BENCH_EXTRA_BETAS = (0.5, 2.0)


@dataclass(frozen=True)
class DefaultConfig:
    """The a-priori default reported as ``default`` (see docs/benchmarks.md for how it was chosen)."""

    # Chosen on the dev split of the three built-in tasks with the embedded model
    # (bench/choose_default.py, output in bench/results/choose_default_dev.txt) and
    # reported on the test split; the paper's headline, min pooling, is listed beside it.
    scorer: str = DEFAULT_SPEC.scorer
    pooling: str = DEFAULT_SPEC.pooling
    locator: str = "full"

    @property
    def spec(self) -> ScoreSpec:
        return ScoreSpec(self.scorer, self.pooling)


DEFAULT_CONFIG = DefaultConfig()


def bench_specs() -> list[ScoreSpec]:
    """Every catalogue entry at β = 1, plus spilled energy at the extra β values."""
    extra = [ScoreSpec("spilled_energy", p, b) for b in BENCH_EXTRA_BETAS for p in ("min", "max", "mean", "sum")]
    return catalogue() + extra


#: Recorded in each cache header: how entries are keyed. A cache keyed another way (older
#: versions keyed by item id, which let a second task read the first one's answers) is refused.
GENERATION_KEY = "sha256 of the prompt token ids"
EXTRACTION_KEY = "sha256 of the extraction prompt"


def check_run_options(*, batch_size: int, max_new_tokens: int | None = None, n_boot: int | None = None) -> None:
    """Refuse out-of-range run settings before anything slow happens (``None``: not used here).

    Messages name the CLI option too, as the CLI calls this before loading the model.
    """
    given = {"batch_size": batch_size, "max_new_tokens": max_new_tokens, "n_boot": n_boot}
    options = {
        "batch_size": ("--batch-size", 8),
        "max_new_tokens": ("--max-new-tokens", 48),
        "n_boot": ("--bootstrap", 1000),
    }
    for name, value in given.items():
        if value is None and name != "batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            option, example = options[name]
            raise InvalidParameterError(
                f"{name} ({option}) must be an integer >= 1, got {value!r}; e.g. {option} {example}."
            )


def fill_cache(
    cache: JsonlCache,
    keys: dict[str, str],
    items: Sequence[TaskItem],
    compute: Callable[[list[TaskItem]], list[Any]],
    *,
    batch_size: int,
    label: str,
    progress: bool,
) -> None:
    """Compute the entries of ``items`` missing from ``cache``, a batch at a time, durably.

    ``keys`` maps each item id to its cache key; items sharing a key are computed once.
    ``compute`` maps a batch of items to one JSON value each. A progress bar goes to stderr.
    """
    check_run_options(batch_size=batch_size)
    missing = list({keys[it.id]: it for it in items if keys[it.id] not in cache}.values())
    if not missing:
        return
    from tqdm.auto import tqdm  # ships with transformers' dependencies

    with tqdm(total=len(missing), desc=label, unit="item", file=sys.stderr, leave=False, disable=not progress) as bar:
        for i in range(0, len(missing), batch_size):
            batch = missing[i : i + batch_size]
            cache.put_many({keys[it.id]: value for it, value in zip(batch, compute(batch))})
            bar.update(len(batch))


def generation_header(sm: SpillModel, max_new_tokens: int) -> dict[str, Any]:
    """The settings a generation cache is pinned to (besides the per-entry prompt key)."""
    return {
        "kind": "generations",
        "entry_key": GENERATION_KEY,
        "model": sm.loaded.name,
        "dtype": str(sm.loaded.dtype).removeprefix("torch."),
        "max_new_tokens": max_new_tokens,
        "instruction": sm.instruction,
        "system": sm.system,
        "betas": list(sm.betas),
    }


def generation_keys(sm: SpillModel, items: Sequence[TaskItem]) -> dict[str, str]:
    """Cache key of each item's answer, by item id: a digest of the exact prompt token ids.

    The ids carry the question, the context, the instruction, the system message, the chat
    template and the tokenizer, i.e. everything but the model and generation settings, which
    the cache header pins.
    """
    return {it.id: content_key(sm.prompt_ids(it.question, context=it.context)) for it in items}


def cached_answer(cache: JsonlCache, key: str) -> tuple[ScoredAnswer, float]:
    """``(answer, generation seconds)`` of one generation-cache entry, checked."""
    entry = cache[key]
    try:
        seconds = entry["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError("seconds is not a number")
        return ScoredAnswer.from_record(entry["record"]), float(seconds)
    except (LookupError, TypeError, ValueError, AttributeError, ArithmeticError, RecursionError):
        # A record edited or written elsewhere fails inside pydantic (ValidationError is a
        # ValueError) or numpy (TypeError, OverflowError for huge ints, ValueError for ragged rows).
        raise InvalidInputError(
            f"{cache.path}: the cached answer with key {key[:12]}... is malformed (edited by hand, or written "
            "by another program); delete the cache file to regenerate."
        ) from None


def generate_cached(
    sm: SpillModel, items: Sequence[TaskItem], out_dir: Path, *, max_new_tokens: int, batch_size: int, progress: bool
) -> tuple[dict[str, ScoredAnswer], float]:
    """Answers for ``items`` from the cache, generating only the missing ones.

    Returns the answers by item id and the mean generation seconds per item.
    """
    check_run_options(batch_size=batch_size, max_new_tokens=max_new_tokens)
    cache = JsonlCache(Path(out_dir) / "generations.jsonl", generation_header(sm, max_new_tokens))
    keys = generation_keys(sm, items)

    def answer(batch: list[TaskItem]) -> list[dict]:
        start = time.perf_counter()
        out = sm.generate(
            [it.question for it in batch], contexts=[it.context for it in batch], max_new_tokens=max_new_tokens
        )
        per_item = (time.perf_counter() - start) / len(batch)
        return [{"record": a.to_record(), "seconds": per_item} for a in out]

    fill_cache(cache, keys, items, answer, batch_size=batch_size, label="generating", progress=progress)
    read = {it.id: cached_answer(cache, keys[it.id]) for it in items}
    answers = {item_id: ans for item_id, (ans, _) in read.items()}
    seconds = float(np.mean([s for _, s in read.values()])) if items else 0.0
    return answers, seconds


def llm_extractor_cached(
    sm: SpillModel,
    items: Sequence[TaskItem],
    answers: dict[str, ScoredAnswer],
    out_dir: Path,
    *,
    batch_size: int,
    progress: bool,
) -> LLMExtractorLocator:
    """The paper's LLM extractor, with its completions batched and cached on disk."""
    probe = LLMExtractorLocator(lambda prompt: "")
    prompts = {it.id: probe.prompt(answers[it.id].answer, it.question) for it in items}
    header = {
        "kind": "extractions",
        "entry_key": EXTRACTION_KEY,
        "model": sm.loaded.name,
        "max_new_tokens": probe.max_new_tokens,
        "few_shot": hashlib.sha256(json.dumps([str(ex) for ex in probe.few_shot]).encode()).hexdigest()[:16],
    }
    cache = JsonlCache(out_dir / "extractions.jsonl", header)
    keys = {item_id: content_key(prompt) for item_id, prompt in prompts.items()}
    fill_cache(
        cache,
        keys,
        items,
        lambda batch: plain_completions(sm, [prompts[it.id] for it in batch], max_new_tokens=probe.max_new_tokens),
        batch_size=batch_size,
        label="extracting",
        progress=progress,
    )
    completions = {prompts[it.id]: cache[keys[it.id]] for it in items}
    bad = next((p for p, c in completions.items() if not isinstance(c, str)), None)
    if bad is not None:
        raise InvalidInputError(
            f"{cache.path}: a cached extraction is not a string ({completions[bad]!r:.60}); "
            "delete the cache file to regenerate."
        )
    return LLMExtractorLocator(lambda prompt: completions[prompt])


@dataclass(frozen=True)
class SpanRange:
    """Where a locator put the exact answer of one item, and whether it was judged correct."""

    item_id: str
    start: int
    end: int
    correct: bool


def evaluate_locator(
    name: str,
    locator: SpanLocator,
    items: Sequence[TaskItem],
    answers: dict[str, ScoredAnswer],
    specs: Sequence[ScoreSpec],
    n_boot: int,
    seed: int,
) -> tuple[LocatorSummary, list[ConfigResult], list[SpanRange]]:
    """Judge and score every item on this locator's spans; metrics for each spec."""
    correct: list[bool] = []
    reasons: dict[str, int] = {}
    ranges: list[SpanRange] = []
    for it in items:
        ans = answers[it.id]
        result = locator.locate_with_reason(ans.answer, question=it.question)
        reasons[result.reason.value] = reasons.get(result.reason.value, 0) + 1
        ok = result.span is not None and judge(result.span.text, it.answers)
        correct.append(ok)
        if result.span is not None:
            start, end = char_span_to_token_range(ans.tokens, result.span)
            ranges.append(SpanRange(it.id, start, end, ok))
    accuracy = float(np.mean(correct)) if correct else 0.0
    summary = LocatorSummary(name=name, accuracy=accuracy, n_found=len(ranges), reasons=reasons)
    rows = []
    for spec in specs:
        scores, y = score_ranges(answers, ranges, spec)
        base: dict[str, Any] = dict(
            scorer=spec.scorer,
            pooling=spec.pooling,
            beta=spec.beta,
            locator=name,
            spec=spec.name,
            accuracy=accuracy,
            n=len(y),
            n_positive=int(y.sum()),
        )
        if len(y) == 0:  # this locator found no span on any item (e.g. numeric on capitals)
            rows.append(ConfigResult(**base, auroc=None))
            continue
        try:
            m = evaluate(scores, y, n_boot=n_boot, seed=seed)
            rows.append(
                ConfigResult(
                    **base,
                    auroc=m.auroc,
                    auroc_ci=(m.auroc_ci[0], m.auroc_ci[1]),
                    aurc=m.aurc,
                    prr=m.prr,
                    fpr_at_95_tpr=m.fpr_at_95_tpr,
                )
            )
        except DegenerateLabelsError:
            rows.append(ConfigResult(**base, auroc=None))
    return summary, rows, ranges


def score_ranges(
    answers: dict[str, ScoredAnswer], ranges: Sequence[SpanRange], spec: ScoreSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``spec`` on each located span and labels (True = hallucination).

    Spans where the spec is undefined (e.g. Δ' on a span holding only the first token) or
    where the logits were non-finite are left out, never pooled.
    """
    scores, labels = [], []
    for r in ranges:
        try:
            scores.append(answers[r.item_id].score(spec, r.start, r.end))
        except (NonFiniteLogitsError, InvalidInputError):
            continue
        labels.append(not r.correct)
    return np.array(scores, dtype=float), np.array(labels, dtype=bool)


def run_bench(
    sm: SpillModel,
    items: Sequence[TaskItem],
    out_dir: str | Path,
    *,
    task: str,
    split: str = "all",
    locators: Sequence[str] = DEFAULT_LOCATORS,
    max_new_tokens: int = 48,
    batch_size: int = 8,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> BenchRun:
    """Run the benchmark on ``items``; the report plus what plots need (files: see the CLI)."""
    if not items:
        raise InvalidParameterError("no task items to run; check --task, --split and --n.")
    check_run_options(batch_size=batch_size, max_new_tokens=max_new_tokens, n_boot=n_boot)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    answers, gen_seconds = generate_cached(
        sm, items, out, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress
    )
    built = {
        name: llm_extractor_cached(sm, items, answers, out, batch_size=batch_size, progress=progress)
        if name == "llm_extractor"
        else make_locator(name)
        for name in locators
    }
    extract_start = time.perf_counter()
    specs = bench_specs()
    summaries, results, spans = [], [], {}
    for name, locator in built.items():
        summary, rows, spans[name] = evaluate_locator(name, locator, items, answers, specs, n_boot, seed)
        summaries.append(summary)
        results += rows
    scoring_seconds = (time.perf_counter() - extract_start) / len(items)
    default = next(
        (r for r in results if r.spec == DEFAULT_CONFIG.spec.name and r.locator == DEFAULT_CONFIG.locator),
        None,
    ) or next(r for r in results if r.spec == DEFAULT_CONFIG.spec.name)
    report = BenchReport(
        task=task,
        model=sm.loaded.name,
        split=split,
        n=len(items),
        max_new_tokens=max_new_tokens,
        seconds_per_item=gen_seconds,
        seconds_scoring_per_item=scoring_seconds,
        locators=summaries,
        default=default,
        results=results,
    )
    return BenchRun(report=report, answers=answers, spans=spans)


@dataclass
class BenchRun:
    """A finished run: the report, the answers, and each locator's spans (for plots)."""

    report: BenchReport
    answers: dict[str, ScoredAnswer]
    spans: dict[str, list[SpanRange]]

    def scores(self, locator: str, spec: ScoreSpec) -> tuple[np.ndarray, np.ndarray]:
        return score_ranges(self.answers, self.spans[locator], spec)
