"""``spill-guard bench --second-opinion K``: what a second opinion buys on a benchmark run, measured.

The second opinion is measured for the bench's default rule (``spilled_energy:mean`` on the ``full``
span: the run's ``default`` row), on every item of the run whose one-pass risk under that rule is
finite:

1. every such item is sampled ``K`` times (:func:`~spill_guard.calibration.consistency.draw_samples`,
   seeded by :meth:`~spill_guard.calibration.consistency.Consistency.sample_params`), once: the samples
   and their generated token counts are cached in the ``--out`` folder (:func:`sample_cache_path`), so a
   rerun samples nothing;
2. each item's agreement is :meth:`~spill_guard.calibration.consistency.Consistency.compare` of its
   first answer with its samples;
3. **second opinion**: the band and weight of a calibration file's ``second_opinion``, or a band
   *cross-fitted* on the run's own items (:func:`cross_fit`): the items are split into 5 folds by a
   stable hash of their id (:func:`fold_of`), and each fold gets the cascade
   :func:`~spill_guard.calibration.cascade.fit_cascade` chose on the *other* folds, so no item's final
   risk depends on its own label (a fold whose training folds yield no cascade keeps one pass);
4. **consistency alone** (the baseline): every item sampled, score ``1 - agreement``.

Costs are measured, not assumed: ``extra_tokens_per_question`` is the number of tokens the samples
actually used generated (the stop token included), divided by the number of questions, sampled or not.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from spill_guard.calibration.cascade import Cascade, check_budget, fit_cascade
from spill_guard.calibration.consistency import (
    DEFAULT_TEMPERATURE,
    Consistency,
    check_sampling,
    draw_samples,
    draws_as_the_guard,
)
from spill_guard.calibration.file import Calibration
from spill_guard.errors import InvalidInputError, InvalidParameterError, NonFiniteLogitsError
from spill_guard.evaluation.cache import JsonlCache, content_key
from spill_guard.evaluation.metrics import DegenerateLabelsError, auroc, auroc_ci
from spill_guard.evaluation.results import Band, ConsistencyOnlyResult, SecondOpinionResult
from spill_guard.evaluation.runner import DEFAULT_CONFIG, GENERATION_KEY, BenchRun, fill_cache
from spill_guard.models.params import GenerationParams
from spill_guard.scoring.specs import ScoreSpec
from spill_guard.tasks import TaskItem

#: Folds of the cross-fitted band.
FOLDS = 5
#: The largest share of questions a cross-fitted band may sample, unless ``--second-opinion-budget`` says.
DEFAULT_BUDGET = 0.5


# ----------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SecondOpinionSetup:
    """How ``bench --second-opinion`` samples and where its band comes from (checked before the model loads).

    ``consistency``: the samples and how they are compared (its ``cascade`` is None: the band is applied
    here). ``calibration`` (with ``calibration_path``): the file whose band and weight are used as they
    are; None: the band is cross-fitted on the run with at most ``budget`` of the questions sampled.
    """

    consistency: Consistency
    budget: float | None = None
    calibration: Calibration | None = None
    calibration_path: str | None = None

    @property
    def band_from(self) -> str:
        return f"calibration:{self.calibration_path}" if self.calibration is not None else f"cross-fitted:{FOLDS}-fold"

    def check_model(self, spill_model: Any) -> None:
        """The calibration's model, tokenizer and prompt must be the loaded ones (its band is on their risk)."""
        if self.calibration is not None:
            self.calibration.check_compatible(spill_model, spec=DEFAULT_CONFIG.spec, locator=DEFAULT_CONFIG.locator)


def second_opinion_setup(
    samples: int | None,
    *,
    temperature: float | None = None,
    budget: float | None = None,
    calibration: str | os.PathLike[str] | None = None,
    locators: Sequence[str] = (DEFAULT_CONFIG.locator,),
) -> SecondOpinionSetup | None:
    """Check the ``bench --second-opinion*`` options; None when no second opinion is asked for.

    ``samples`` (``--second-opinion K``), ``temperature`` and ``budget`` are None where not given (then
    1.0 and 0.5, or the calibration file's). With ``calibration`` (a file with a ``second_opinion``), its
    samples, temperature, top_p, locator, band and weight are used as they are: a different ``samples`` or
    ``temperature`` is refused, and so is a ``budget`` (it chooses a cross-fitted band). Every problem is
    an :class:`InvalidParameterError` naming the option, the value and the fix.
    """
    if samples is None and calibration is None:
        for option, value in (("--second-opinion-temperature", temperature), ("--second-opinion-budget", budget)):
            if value is not None:
                raise InvalidParameterError(
                    f"{option} {value} only applies with a second opinion; add --second-opinion K "
                    "(e.g. --second-opinion 5), or drop it."
                )
        return None
    check_sampling(
        samples, temperature, samples_option="--second-opinion", temperature_option="--second-opinion-temperature"
    )
    if budget is not None:
        check_budget(budget, "--second-opinion-budget")
    if DEFAULT_CONFIG.locator not in locators:
        raise InvalidParameterError(
            f"--second-opinion measures the default rule ({DEFAULT_CONFIG.spec.name} on the "
            f"{DEFAULT_CONFIG.locator!r} span), so --locators must include {DEFAULT_CONFIG.locator}; got "
            f"{','.join(locators)!r}."
        )
    if calibration is not None:
        return _from_calibration(os.fspath(calibration), samples, temperature, budget)
    assert samples is not None  # neither given returned above
    consistency = Consistency(samples=samples, temperature=DEFAULT_TEMPERATURE if temperature is None else temperature)
    return SecondOpinionSetup(consistency, budget=DEFAULT_BUDGET if budget is None else float(budget))


def _from_calibration(
    path: str, samples: int | None, temperature: float | None, budget: float | None
) -> SecondOpinionSetup:
    option = f"--second-opinion-calibration {path!r}"
    cal = Calibration.load(path)
    fit = cal.second_opinion
    if fit is None:
        raise InvalidParameterError(
            f"{option} has no second_opinion (it is a one-pass calibration); fit one with spill-guard calibrate "
            "--second-opinion K, or drop --second-opinion-calibration to cross-fit the band on this run."
        )
    if fit.equivalence != "judge":
        raise InvalidParameterError(
            f"{option} was fitted with your own equivalence of answers, which the bench cannot call; measure "
            "it from Python with your equivalence, or give a calibration fitted with the judge."
        )
    if cal.spec != DEFAULT_CONFIG.spec.name or cal.locator != DEFAULT_CONFIG.locator:
        raise InvalidParameterError(
            f"{option} is calibrated for {cal.spec} on {cal.locator!r}, but the bench's second opinion measures "
            f"the default rule ({DEFAULT_CONFIG.spec.name} on {DEFAULT_CONFIG.locator!r}); give a calibration "
            "of the default rule, or drop the option to cross-fit the band."
        )
    if samples is not None and samples != fit.samples:
        raise InvalidParameterError(
            f"--second-opinion {samples} differs from the {fit.samples} samples {option} was fitted with; "
            f"drop --second-opinion (it defaults to the file's) or give --second-opinion {fit.samples}."
        )
    if temperature is not None and float(temperature) != fit.temperature:
        raise InvalidParameterError(
            f"--second-opinion-temperature {temperature} differs from the temperature {fit.temperature} "
            f"{option} was fitted with; drop --second-opinion-temperature (it defaults to the file's)."
        )
    if budget is not None:
        raise InvalidParameterError(
            f"--second-opinion-budget {budget} chooses a cross-fitted band, but {option} brings its own band; "
            "drop one of the two options."
        )
    consistency = Consistency(samples=fit.samples, temperature=fit.temperature, top_p=fit.top_p, locator=fit.locator)
    return SecondOpinionSetup(consistency, calibration=cal, calibration_path=path)


# ----------------------------------------------------------------------------------------------- cross-fitting


def fold_of(item_id: str, folds: int = FOLDS) -> int:
    """The fold of an item: the first 8 bytes of the SHA-256 of its id (UTF-8), big-endian, modulo ``folds``.

    Stable across runs, machines and item order, and independent of the item's label.
    """
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % folds


@dataclass(frozen=True)
class CrossFit:
    """Held-out final risks: ``scores[i]`` and ``sampled[i]`` come from the cascade of ``cascades[folds[i]]``,
    chosen on the items of the other folds (None: no cascade there, one pass)."""

    scores: np.ndarray
    sampled: np.ndarray
    folds: np.ndarray
    cascades: tuple[Cascade | None, ...]


def apply_cascade(cascade: Cascade | None, risk: ArrayLike, agreement: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(final risk, sampled mask)`` of answers under ``cascade`` (None: one pass, nothing sampled).

    Only the agreements of answers in the band are read (the others are not passed on).
    """
    r = np.asarray(risk, dtype=float)
    a = np.asarray(agreement, dtype=float)
    if cascade is None:
        return r.copy(), np.zeros(r.shape, dtype=bool)
    sampled = cascade.sampled(r)
    return cascade.scores(r, np.where(sampled, a, np.nan)), sampled


def cross_fit(
    ids: Sequence[str],
    risk: ArrayLike,
    agreement: ArrayLike,
    incorrect: ArrayLike,
    *,
    budget: float = DEFAULT_BUDGET,
    folds: int = FOLDS,
) -> CrossFit:
    """Choose each fold's cascade on the other folds (:func:`fit_cascade`, at most ``budget`` sampled) and
    apply it to the fold. A fold whose other folds hold one class only (or nothing) keeps one pass."""
    r = np.asarray(risk, dtype=float)
    a = np.asarray(agreement, dtype=float)
    y = np.asarray(incorrect, dtype=bool)
    if not (len(ids) == r.shape[0] == a.shape[0] == y.shape[0]) or r.ndim != 1:
        raise InvalidParameterError(
            f"ids, risks, agreements and labels must be of one length, got {len(ids)}, {r.shape}, {a.shape}, {y.shape}."
        )
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InvalidParameterError(f"folds must be an integer >= 2, got {folds!r}.")
    check_budget(budget)
    fold = np.array([fold_of(i, folds) for i in ids], dtype=int)
    scores, sampled = r.copy(), np.zeros(r.shape, dtype=bool)
    cascades: list[Cascade | None] = []
    for f in range(folds):
        held, train = fold == f, fold != f
        cascade = None
        if held.any() and y[train].any() and not y[train].all():
            cascade = fit_cascade(r[train], a[train], y[train], budget=budget).cascade
        cascades.append(cascade)
        scores[held], sampled[held] = apply_cascade(cascade, r[held], a[held])
    return CrossFit(scores, sampled, fold, tuple(cascades))


# ----------------------------------------------------------------------------------------------- samples


def sample_cache_path(out_dir: str | os.PathLike[str], consistency: Consistency) -> Path:
    """``DIR/second_opinion-k{K}-t{T}[-p{top_p}].jsonl``: one cache per sampling configuration."""
    tag = f"k{consistency.samples}-t{consistency.temperature:g}"
    if consistency.top_p != 1.0:
        tag += f"-p{consistency.top_p:g}"
    return Path(out_dir) / f"second_opinion-{tag}.jsonl"


def sample_header(spill_model: Any, consistency: Consistency, max_new_tokens: int) -> dict[str, Any]:
    """The settings a sample cache is pinned to (besides each entry's prompt key)."""
    return {
        "kind": "second_opinion_samples",
        "entry_key": GENERATION_KEY,
        "model": spill_model.loaded.name,
        "dtype": str(spill_model.loaded.dtype).removeprefix("torch."),
        "instruction": spill_model.instruction,
        "system": spill_model.system,
        "max_new_tokens": max_new_tokens,
        "samples": consistency.samples,
        "temperature": float(consistency.temperature),
        "top_p": float(consistency.top_p),
        "seed": "retry_seed(None, k + 1) for sample k = 1..K",
        # "per row": each sample is its own row with its own seed, the guard's very draws (per_row_seeds);
        # "per call": the rows of a call share the sample's seed (draws from the same distribution).
        "rows": "per row" if draws_as_the_guard(spill_model) else "per call",
    }


class _TokenCounter:
    """Passes ``generate_params`` on to the model and notes how many tokens each answer generated, by prompt.

    (:func:`draw_samples` returns texts; the cost is counted on the answers as they pass.)
    """

    def __init__(self, spill_model: Any):
        self._model = spill_model
        self.counts: dict[tuple[int, ...], list[int]] = {}

    @property
    def capabilities(self) -> Any:
        return self._model.capabilities

    def generate_params(self, prompts: Sequence[Sequence[int]], params: Any, **kwargs: Any) -> list[Any]:
        answers = self._model.generate_params(prompts, params, **kwargs)
        for prompt, answer in zip(prompts, answers):
            self.counts.setdefault(tuple(prompt), []).append(len(answer.answer_ids))
        return list(answers)


def _checked_entry(cache: JsonlCache, key: str, samples: int) -> tuple[list[str], list[int]]:
    value = cache[key]
    texts = value.get("samples") if isinstance(value, dict) else None
    tokens = value.get("tokens") if isinstance(value, dict) else None
    if (
        not isinstance(texts, list)
        or not isinstance(tokens, list)
        or len(texts) != samples
        or len(tokens) != samples
        or not all(isinstance(t, str) for t in texts)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in tokens)
    ):
        raise InvalidInputError(
            f"{cache.path}: the cached samples with key {key[:12]}... are malformed (expected {samples} texts and "
            "token counts; edited by hand, or written by another program); delete the file to sample again."
        )
    return texts, tokens


def cached_samples(
    spill_model: Any,
    items: Sequence[TaskItem],
    prompts: dict[str, list[int]],
    out_dir: str | os.PathLike[str],
    consistency: Consistency,
    *,
    max_new_tokens: int,
    batch_size: int,
    progress: bool = False,
) -> dict[str, tuple[list[str], list[int]]]:
    """Each item's ``(sampled texts, generated token counts)``, by item id, sampling only what the cache lacks.

    ``prompts``: each item's prompt token ids (those of its first answer). Entries are keyed by the prompt
    (as the generation cache is); the file's header pins the model and sampling settings, so a cache of
    other settings is refused, never mixed; each batch is appended durably, so a killed run resumes.
    """
    cache = JsonlCache(sample_cache_path(out_dir, consistency), sample_header(spill_model, consistency, max_new_tokens))
    keys = {it.id: content_key(prompts[it.id]) for it in items}
    params = GenerationParams(max_new_tokens=max_new_tokens)

    def sample(batch: list[TaskItem]) -> list[dict[str, Any]]:
        counter = _TokenCounter(spill_model)
        batch_prompts = [list(prompts[it.id]) for it in batch]
        drawn = draw_samples(counter, batch_prompts, consistency, params, batch_size=len(batch))
        out = []
        for prompt, texts in zip(batch_prompts, drawn):
            tokens = counter.counts.get(tuple(prompt), [])
            if len(tokens) != len(texts):  # each prompt of a batch is distinct (items are keyed by prompt)
                raise InvalidInputError("the sampled answers and their token counts do not line up.")
            out.append({"samples": texts, "tokens": tokens})
        return out

    fill_cache(cache, keys, items, sample, batch_size=batch_size, label="second opinion", progress=progress)
    return {it.id: _checked_entry(cache, keys[it.id], consistency.samples) for it in items}


# ----------------------------------------------------------------------------------------------- the measurement


@dataclass(frozen=True)
class DefaultRisks:
    """The items with a finite one-pass risk under the default rule, in run order, with their labels."""

    items: list[TaskItem]
    risk: np.ndarray
    incorrect: np.ndarray


def default_risks(run: BenchRun, items: Sequence[TaskItem], direction: int = 1) -> DefaultRisks:
    """``direction ×`` the default row's score of each item where it is finite (the row's own items)."""
    spec = ScoreSpec.parse(run.report.default.spec)
    by_id = {r.item_id: r for r in run.spans.get(run.report.default.locator, [])}
    kept, risks, labels = [], [], []
    for it in items:
        span = by_id.get(it.id)
        if span is None:
            continue
        try:
            score = run.answers[it.id].score(spec, span.start, span.end)
        except (NonFiniteLogitsError, InvalidInputError):
            continue
        if not math.isfinite(score):
            continue
        kept.append(it)
        risks.append(direction * score)
        labels.append(not span.correct)
    return DefaultRisks(kept, np.array(risks, dtype=float), np.array(labels, dtype=bool))


def _auroc_with_ci(
    scores: np.ndarray, incorrect: np.ndarray, n_boot: int, seed: int
) -> tuple[float | None, tuple[float, float] | None]:
    if len(scores) == 0:
        return None, None
    try:
        return auroc(scores, incorrect), auroc_ci(scores, incorrect, n_boot=n_boot, seed=seed)
    except DegenerateLabelsError:  # one class only: no ranking to measure
        return None, None


def measure(
    data: DefaultRisks,
    agreement: ArrayLike,
    tokens: ArrayLike,
    setup: SecondOpinionSetup,
    *,
    n_boot: int,
    seed: int = 0,
) -> SecondOpinionResult:
    """The second opinion and consistency alone on ``data``: ``agreement`` and ``tokens`` (generated sample
    tokens) per item, every item sampled."""
    a = np.asarray(agreement, dtype=float)
    t = np.asarray(tokens, dtype=float)
    r, y = data.risk, data.incorrect
    n = len(r)
    if not (a.shape == t.shape == r.shape):
        raise InvalidParameterError(f"{n} items but {a.shape[0]} agreements and {t.shape[0]} token counts.")
    if setup.calibration is not None:
        cascade = setup.calibration.cascade()
        scores, sampled = apply_cascade(cascade, r, a)
        cascades: tuple[Cascade | None, ...] = (cascade,)
    else:
        fitted = cross_fit([it.id for it in data.items], r, a, y, budget=setup.budget or DEFAULT_BUDGET)
        scores, sampled, cascades = fitted.scores, fitted.sampled, fitted.cascades
    k = setup.consistency.samples
    so_auroc, so_ci = _auroc_with_ci(scores, y, n_boot, seed)
    one_auroc, one_ci = _auroc_with_ci(r, y, n_boot, seed)
    co_auroc, co_ci = _auroc_with_ci(1.0 - a, y, n_boot, seed)
    per_question = (lambda total: float(total) / n) if n else (lambda total: 0.0)
    return SecondOpinionResult(
        spec=DEFAULT_CONFIG.spec.name,
        locator=DEFAULT_CONFIG.locator,
        n=n,
        n_positive=int(y.sum()),
        auroc=so_auroc,
        auroc_ci=so_ci,
        sampled_fraction=float(sampled.mean()) if n else 0.0,
        samples=k,
        temperature=float(setup.consistency.temperature),
        top_p=float(setup.consistency.top_p),
        extra_tokens_per_question=per_question(t[sampled].sum()),
        band_from=setup.band_from,
        budget=setup.budget,
        bands=[None if c is None else Band(low=c.low, high=c.high, weight=c.weight) for c in cascades],
        one_pass_auroc=one_auroc,
        one_pass_auroc_ci=one_ci,
        consistency_only=ConsistencyOnlyResult(
            auroc=co_auroc,
            auroc_ci=co_ci,
            sampled_fraction=1.0 if n else 0.0,
            samples=k,
            extra_tokens_per_question=per_question(t.sum()),
        ),
    )


def evaluate_second_opinion(
    spill_model: Any,
    run: BenchRun,
    items: Sequence[TaskItem],
    out_dir: str | os.PathLike[str],
    setup: SecondOpinionSetup,
    *,
    max_new_tokens: int,
    batch_size: int,
    n_boot: int,
    seed: int = 0,
    progress: bool = False,
) -> SecondOpinionResult:
    """Sample (or read from the cache) every item with a finite default risk, compare, and :func:`measure`."""
    setup.check_model(spill_model)
    direction = setup.calibration.direction if setup.calibration is not None else 1
    data = default_risks(run, items, direction)
    prompts = {it.id: list(run.answers[it.id].prompt_ids) for it in data.items}
    drawn = cached_samples(
        spill_model,
        data.items,
        prompts,
        out_dir,
        setup.consistency,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    agreement = [
        setup.consistency.compare(run.answers[it.id].answer, drawn[it.id][0], it.question).agreement
        for it in data.items
    ]
    tokens = [sum(drawn[it.id][1]) for it in data.items]
    return measure(data, agreement, tokens, setup, n_boot=n_boot, seed=seed)
