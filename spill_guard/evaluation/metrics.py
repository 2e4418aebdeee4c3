"""Metrics that judge a risk score against correctness labels.

Conventions (SPEC §3–4), shared by every function here:

* ``scores``: one float per answer, **higher = more likely a hallucination**.
* ``labels``: one per answer, ``1``/``True`` = hallucination / incorrect answer (the
  positive class), ``0``/``False`` = correct.
* Numbers are reported **as measured**. An AUROC of 0.3 means the score points the wrong
  way on this data; it is never folded into ``max(auc, 1 - auc)``, because on small models
  the energy signals really do flip direction between tasks and hiding that would hide
  the finding.

Scores may be ``±inf`` (e.g. a token NLL of a masked token): only their order matters.
NaN scores are rejected, since a NaN has no place in an ordering and silently dropping
rows would change what was measured.

Everything is plain numpy: ranks via sorting, O(n log n).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from spill_guard.errors import InvalidInputError, InvalidParameterError

__all__ = [
    "DegenerateLabelsError",
    "MetricInputError",
    "MetricReport",
    "aurc",
    "auroc",
    "auroc_ci",
    "evaluate",
    "fpr_at_tpr",
    "prr",
    "risk_coverage",
    "roc_curve",
]


class MetricInputError(InvalidInputError):
    """``scores``/``labels`` cannot be evaluated (length mismatch, NaN, labels not 0/1, empty)."""


class DegenerateLabelsError(MetricInputError):
    """Only one class is present, so a ranking metric (AUROC, PRR, ...) is undefined."""


# --------------------------------------------------------------------------- validation


def _as_arrays(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to ``(float64 scores, bool labels)``, both 1-D of equal length."""
    s = np.asarray(scores, dtype=np.float64)
    raw = np.asarray(labels)
    if s.ndim != 1 or raw.ndim != 1:
        raise MetricInputError(
            f"scores and labels must be 1-D sequences (got shapes {s.shape} and {raw.shape}); "
            "pass one score and one label per answer."
        )
    if len(s) != len(raw):
        raise MetricInputError(
            f"scores has {len(s)} entries but labels has {len(raw)}; "
            "pass exactly one label per score, in the same order."
        )
    if len(s) == 0:
        raise MetricInputError("scores and labels are empty; evaluate at least one labelled answer.")
    n_nan = int(np.isnan(s).sum())
    if n_nan:
        first = int(np.flatnonzero(np.isnan(s))[0])
        raise MetricInputError(
            f"scores contain {n_nan} NaN value(s) (first at index {first}) out of {len(s)}; "
            "a NaN cannot be ranked. Fix or drop those answers (and their labels) explicitly."
        )
    if raw.dtype == np.bool_:
        y = raw
    elif raw.dtype.kind not in "iuf":
        raise MetricInputError(
            f"labels must be booleans or 0/1 numbers (got dtype {raw.dtype}); "
            "encode hallucination/incorrect as 1 and correct as 0."
        )
    else:
        # Accept ints/floats that are exactly 0 or 1; anything else (2, 0.5, NaN) is almost
        # certainly a label-encoding mistake, and guessing a threshold would hide it.
        numeric = raw.astype(np.float64)
        bad = ~((numeric == 0) | (numeric == 1))
        if bad.any():
            examples = sorted({repr(v) for v in raw[bad][:5].tolist()})
            raise MetricInputError(
                f"labels must be 0/1 (1 = hallucination/incorrect); found {int(bad.sum())} "
                f"other value(s), e.g. {', '.join(examples)}. Binarise the labels first."
            )
        y = numeric == 1
    return s, y.astype(bool)


def _require_both_classes(y: np.ndarray, metric: str) -> tuple[int, int]:
    """Return ``(n_pos, n_neg)`` or raise if one of them is zero."""
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DegenerateLabelsError(
            f"{metric} needs both classes, but labels hold {n_pos} positive(s) "
            f"(hallucination/incorrect = 1) and {n_neg} negative(s) (correct = 0) out of {len(y)}. "
            "Evaluate on a set containing both correct and incorrect answers."
        )
    return n_pos, n_neg


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks of ``s`` with ties given the mean of the ranks they span."""
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each tie group
    first = last - counts + 1
    return ((first + last) / 2.0)[inverse.reshape(-1)]


# --------------------------------------------------------------------------- AUROC


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative).

    Mann–Whitney formulation, a tie between a positive and a negative counting 1/2::

        AUROC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos · n_neg)

    where ``R_pos`` is the sum of the average ranks of the positives. 1.0 = every
    hallucination scores above every correct answer, 0.5 = chance, 0.0 = perfectly
    inverted (reported as 0.0, not flipped).

    Raises:
        DegenerateLabelsError: only one class is present.
        MetricInputError: lengths differ, NaN scores, labels not 0/1, empty input.
    """
    s, y = _as_arrays(scores, labels)
    n_pos, n_neg = _require_both_classes(y, "AUROC")
    rank_sum = float(_average_ranks(s)[y].sum())
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def _weighted_aurocs(pos: np.ndarray, neg: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray) -> np.ndarray:
    """AUROC of each row's resample, given multiplicities ``w_pos [B, n_pos]``, ``w_neg [B, n_neg]``.

    Row ``b`` is the AUROC of the data in which positive ``i`` appears ``w_pos[b, i]`` times
    and negative ``j`` appears ``w_neg[b, j]`` times (ties = 1/2). Rather than materialise
    ``B`` resampled arrays and re-rank each, note that for each positive the negatives
    strictly below it and tied with it are contiguous ranges of the sorted negatives, so
    cumulative multiplicities answer "how many resampled negatives lie below" in two lookups:
    O(B · n) after one sort.
    """
    order = np.argsort(neg, kind="stable")
    neg_sorted = neg[order]
    below = np.searchsorted(neg_sorted, pos, side="left")  # negatives < positive
    upto = np.searchsorted(neg_sorted, pos, side="right")  # negatives <= positive
    w_pos = np.asarray(w_pos, dtype=np.float64)
    w_neg = np.asarray(w_neg, dtype=np.float64)[:, order]
    cum = np.zeros((w_neg.shape[0], w_neg.shape[1] + 1))
    np.cumsum(w_neg, axis=1, out=cum[:, 1:])
    less = cum[:, below]
    ties = cum[:, upto] - less
    wins = (w_pos * (less + 0.5 * ties)).sum(axis=1)
    return wins / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


def auroc_ci(
    scores: ArrayLike,
    labels: ArrayLike,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified-bootstrap percentile interval ``(low, high)`` for :func:`auroc`.

    Each replicate resamples the positives (with replacement, ``n_pos`` draws) and the
    negatives (``n_neg`` draws) separately, so every replicate has both classes in the
    original proportions and its AUROC is defined. The interval is the ``alpha/2`` and
    ``1 - alpha/2`` quantiles (numpy's default linear interpolation) of the replicate AUROCs.

    Deterministic for a given ``seed``: positives and negatives draw from two independent
    streams derived from it, so the result does not depend on internal batching.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise InvalidParameterError(f"n_boot must be a positive integer (got {n_boot!r}); 1000 is a good default.")
    if not (0.0 < float(alpha) < 1.0):
        raise InvalidParameterError(
            f"alpha must lie strictly between 0 and 1 (got {alpha!r}); 0.05 gives a 95 % interval."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidParameterError(f"seed must be a non-negative integer (got {seed!r}).")
    s, y = _as_arrays(scores, labels)
    n_pos, n_neg = _require_both_classes(y, "AUROC confidence interval")
    pos = s[y]
    neg = s[~y]

    pos_seq, neg_seq = np.random.SeedSequence(int(seed)).spawn(2)
    rng_pos, rng_neg = np.random.default_rng(pos_seq), np.random.default_rng(neg_seq)
    p_pos = np.full(n_pos, 1.0 / n_pos)
    p_neg = np.full(n_neg, 1.0 / n_neg)

    # Bound memory at a few million cells per batch, whatever n and n_boot are.
    batch = max(1, min(n_boot, 4_000_000 // (n_pos + n_neg + 1)))
    aucs = np.empty(n_boot)
    for start in range(0, n_boot, batch):
        k = min(batch, n_boot - start)
        # Resampling with replacement == multinomial multiplicities of the original points.
        w_pos = rng_pos.multinomial(n_pos, p_pos, size=k)
        w_neg = rng_neg.multinomial(n_neg, p_neg, size=k)
        aucs[start : start + k] = _weighted_aurocs(pos, neg, w_pos, w_neg)
    low, high = np.quantile(aucs, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


# --------------------------------------------------------------------------- ROC


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC operating points ``(fpr, tpr, thresholds)``, thresholds strictly decreasing.

    Point ``i > 0`` flags an answer as a hallucination when ``score >= thresholds[i]``;
    there is one point per distinct score, so a group of tied scores moves the curve
    diagonally and the trapezoidal area under it equals :func:`auroc` exactly. Point 0 is
    the "flag nothing" operating point ``(0, 0)``, its threshold reported as ``+inf``
    by convention (even if some score is itself ``+inf``). The last point is ``(1, 1)``.
    """
    s, y = _as_arrays(scores, labels)
    n_pos, n_neg = _require_both_classes(y, "ROC curve")
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    # Last index of each run of equal scores: the cut must fall between distinct values.
    ends = np.r_[np.flatnonzero(np.diff(s_desc) != 0), len(s_desc) - 1]
    tp = np.cumsum(y_desc)[ends]
    fp = (ends + 1) - tp
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    thresholds = np.r_[np.inf, s_desc[ends]]
    return fpr, tpr, thresholds


def fpr_at_tpr(scores: ArrayLike, labels: ArrayLike, tpr: float = 0.95) -> float:
    """False-positive rate at the first ROC operating point whose TPR reaches ``tpr``.

    Exact rule: scan the operating points of :func:`roc_curve` from the highest threshold
    down and take the first (i.e. the *highest* threshold, the strictest detector) with
    ``TPR >= tpr``; return its FPR. Because FPR never decreases as the threshold is
    lowered, this is the smallest FPR achievable by any threshold that catches at least
    ``tpr`` of the hallucinations. No interpolation between points: with tied scores the
    whole tie group is flagged at once, as a real threshold would do. Lower is better.
    """
    target = float(tpr)
    if not (0.0 <= target <= 1.0):
        raise InvalidParameterError(f"tpr must lie in [0, 1] (got {tpr!r}); 0.95 is the usual choice.")
    fprs, tprs, _ = roc_curve(scores, labels)
    # The tiny slack keeps e.g. 19/20 >= 0.95 true despite binary floating point.
    reached = np.flatnonzero(tprs >= target - 1e-12)
    return float(fprs[reached[0]])


# --------------------------------------------------------------------------- selective prediction


def risk_coverage(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Risk–coverage curve of selective prediction: ``(coverage, risk)``, each of length n.

    Answers are accepted least-risky first (ascending score). At coverage ``k/n`` the risk
    is the error rate (fraction of label 1) among the ``k`` accepted answers.

    Ties: a group of equal scores has no order of its own, so the curve is the **average
    over all orderings of tied answers** (equivalently, the expectation under uniformly
    random tie-breaking). Within a tie group of size ``g`` holding ``e`` errors, accepting
    ``j`` of its members adds ``j·e/g`` expected errors. This makes the result independent
    of input order, and a constant score gets exactly the random-ordering curve (risk =
    base error rate everywhere), neither rewarded nor punished.

    Single-class labels are allowed here (the curve is flat at 0 or 1).
    """
    s, y = _as_arrays(scores, labels)
    n = len(s)
    _, group, counts = np.unique(s, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    errors_in_group = np.bincount(group, weights=y.astype(np.float64), minlength=len(counts))
    group_end = np.cumsum(counts)  # answers accepted once a whole group is in
    group_start = group_end - counts
    errors_before = np.r_[0.0, np.cumsum(errors_in_group)[:-1]]

    k = np.arange(1, n + 1)
    # Group being filled when the k-th answer is accepted (groups are in ascending order).
    g = np.searchsorted(group_end, k, side="left")
    expected_errors = errors_before[g] + (k - group_start[g]) * errors_in_group[g] / counts[g]
    return k / n, expected_errors / k


def aurc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the risk–coverage curve: the mean risk over coverages ``1/n .. n/n``.

    Lower is better. Tie handling as in :func:`risk_coverage` (averaged over tied orderings).
    """
    _, risk = risk_coverage(scores, labels)
    return float(risk.mean())


def _oracle_aurc(n: int, n_err: int) -> float:
    """AURC of the best possible ordering: every correct answer accepted before any error."""
    k = np.arange(1, n + 1)
    return float((np.maximum(0, k - (n - n_err)) / k).mean())


def prr(scores: ArrayLike, labels: ArrayLike) -> float:
    """Prediction rejection ratio ``(AURC_random - AURC) / (AURC_random - AURC_oracle)``.

    ``AURC_random`` is the base error rate (the expected risk at every coverage under a
    random ordering); ``AURC_oracle`` is the AURC of the ordering that accepts every correct
    answer first. 1 = oracle, 0 = no better than random (including a constant score, thanks
    to tie averaging), negative = worse than random. Ties are averaged over their orderings
    (see :func:`risk_coverage`), not broken pessimistically.

    Raises:
        DegenerateLabelsError: only one class is present (random and oracle coincide).
    """
    s, y = _as_arrays(scores, labels)
    _require_both_classes(y, "PRR")
    n, n_err = len(y), int(y.sum())
    random_aurc = n_err / n
    oracle = _oracle_aurc(n, n_err)
    return (random_aurc - aurc(s, y)) / (random_aurc - oracle)


# --------------------------------------------------------------------------- bundle


@dataclass(frozen=True)
class MetricReport:
    """All headline metrics of one score on one labelled set (hallucination = positive).

    ``auroc`` is as measured (never flipped); ``auroc_ci`` is a stratified-bootstrap
    percentile interval; ``aurc`` and ``fpr_at_95_tpr`` are lower-is-better; ``prr`` is 1
    for an oracle ordering, 0 for random.
    """

    auroc: float
    auroc_ci: tuple[float, float]
    aurc: float
    prr: float
    fpr_at_95_tpr: float
    n: int
    n_positive: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (the CI as a list), ready for ``json.dumps``."""
        d = asdict(self)
        d["auroc_ci"] = list(self.auroc_ci)
        return d


def evaluate(
    scores: ArrayLike,
    labels: ArrayLike,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> MetricReport:
    """Compute every metric of :class:`MetricReport` for one score (higher = riskier).

    Raises the same errors as :func:`auroc`; both classes must be present.
    """
    s, y = _as_arrays(scores, labels)
    _require_both_classes(y, "evaluate()")
    return MetricReport(
        auroc=auroc(s, y),
        auroc_ci=auroc_ci(s, y, n_boot=n_boot, alpha=alpha, seed=seed),
        aurc=aurc(s, y),
        prr=prr(s, y),
        fpr_at_95_tpr=fpr_at_tpr(s, y, 0.95),
        n=len(y),
        n_positive=int(y.sum()),
    )
