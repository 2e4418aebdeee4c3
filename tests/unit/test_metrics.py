"""Evaluation metrics against brute-force pure-Python definitions and hand-computed cases.

Label 1 = hallucination / incorrect (positive class); higher score = riskier. The
brute-force references below follow the textbook definitions literally (all pairs, every
threshold, every tie-breaking permutation) so the O(n log n) code is checked against
something that cannot share its shortcuts.
"""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest

from spill_guard.errors import InvalidInputError, InvalidParameterError, SpillGuardError
from spill_guard.evaluation import (
    DegenerateLabelsError,
    MetricInputError,
    MetricReport,
    aurc,
    auroc,
    auroc_ci,
    evaluate,
    fpr_at_tpr,
    prr,
    risk_coverage,
    roc_curve,
)
from spill_guard.evaluation.metrics import _oracle_aurc, _weighted_aurocs

# --------------------------------------------------------------------------- brute force


def brute_auroc(scores: list[float], labels: list[int]) -> float:
    """P(positive > negative) + 1/2 P(tie), by enumerating every (positive, negative) pair."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def brute_risks(ordered_labels: list[int]) -> list[float]:
    """Risk at each coverage when answers are accepted in the given order."""
    out, errors = [], 0
    for k, y in enumerate(ordered_labels, start=1):
        errors += y
        out.append(errors / k)
    return out


def brute_risk_curve_tie_average(scores: list[float], labels: list[int]) -> list[float]:
    """Average the risk curve over every ordering consistent with ascending scores."""
    n = len(scores)
    curves = []
    for perm in itertools.permutations(range(n)):
        ordered = [scores[i] for i in perm]
        if all(a <= b for a, b in zip(ordered, ordered[1:])):
            curves.append(brute_risks([labels[i] for i in perm]))
    return [sum(c[k] for c in curves) / len(curves) for k in range(n)]


def brute_fpr_at_tpr(scores: list[float], labels: list[int], target: float) -> float:
    """Smallest FPR over all thresholds ``score >= t`` (plus 'flag nothing') with TPR >= target."""
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    best = math.inf if target > 0 else 0.0
    for t in set(scores):
        tp = sum(1 for s, y in zip(scores, labels) if y and s >= t)
        fp = sum(1 for s, y in zip(scores, labels) if not y and s >= t)
        if tp / n_pos >= target - 1e-12:
            best = min(best, fp / n_neg)
    return best


def random_tied_data(rng: np.random.Generator, n: int, levels: int) -> tuple[list[float], list[int]]:
    """Scores on a coarse grid (many ties), labels of both classes, loosely score-related."""
    while True:
        scores = rng.integers(0, levels, size=n).astype(float)
        labels = (rng.random(n) < 0.2 + 0.6 * scores / max(levels - 1, 1)).astype(int)
        if 0 < labels.sum() < n:
            return scores.tolist(), labels.tolist()


# --------------------------------------------------------------------------- AUROC


@pytest.mark.parametrize("seed", range(60))
def test_auroc_matches_all_pairs_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    scores, labels = random_tied_data(rng, n, levels=int(rng.integers(1, 8)))
    assert auroc(scores, labels) == pytest.approx(brute_auroc(scores, labels), abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_auroc_matches_all_pairs_continuous_and_imbalanced(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(5, 120))
    scores = rng.normal(size=n).tolist()
    labels = [0] * n
    labels[int(rng.integers(n))] = 1  # a single positive: the most imbalanced case allowed
    if seed % 2:
        labels = [1 - y for y in labels]
    assert auroc(scores, labels) == pytest.approx(brute_auroc(scores, labels), abs=1e-12)


def test_auroc_perfect_inverted_and_not_flipped() -> None:
    labels = [0, 0, 0, 1, 1, 1]
    assert auroc([1, 2, 3, 4, 5, 6], labels) == 1.0
    # Inverted: reported as measured. A max(auc, 1 - auc) "fix" would turn this into 1.0.
    assert auroc([6, 5, 4, 3, 2, 1], labels) == 0.0
    assert auroc([0.1, 0.2, 0.1, 0.9, 0.8, 0.1], labels) < 1.0
    assert auroc([0.9, 0.8, 0.7, 0.2, 0.1, 0.3], labels) == 0.0


def test_auroc_constant_and_random_scores_are_chance() -> None:
    assert auroc([3.0] * 7, [0, 1, 0, 1, 1, 0, 0]) == 0.5
    rng = np.random.default_rng(7)
    scores = rng.random(20_000)
    labels = rng.random(20_000) < 0.3
    assert auroc(scores, labels) == pytest.approx(0.5, abs=0.02)


def test_auroc_hand_computed_with_ties() -> None:
    # Pairs (pos, neg): (2 vs 1) win, (2 vs 2) tie, (3 vs 1) win, (3 vs 2) win -> 3.5 / 4.
    assert auroc([1, 2, 2, 3], [0, 0, 1, 1]) == pytest.approx(0.875)


def test_auroc_accepts_bool_int_float_labels_and_is_order_and_monotone_invariant() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=50)
    labels = (scores + rng.normal(size=50)) > 0
    ref = auroc(scores, labels)
    assert auroc(scores.tolist(), labels.astype(int).tolist()) == ref
    assert auroc(scores, labels.astype(float)) == ref
    perm = rng.permutation(50)
    assert auroc(scores[perm], labels[perm]) == pytest.approx(ref, abs=1e-15)
    assert auroc(np.exp(scores), labels) == pytest.approx(ref, abs=1e-15)


def test_auroc_handles_infinite_scores_by_order() -> None:
    assert auroc([-np.inf, 0.0, np.inf, np.inf], [0, 0, 1, 0]) == pytest.approx(brute_auroc([-np.inf, 0.0, np.inf, np.inf], [0, 0, 1, 0]))


# --------------------------------------------------------------------------- bootstrap CI


@pytest.mark.parametrize("seed", range(10))
def test_weighted_replicate_auroc_matches_materialised_resample(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores, labels = random_tied_data(rng, int(rng.integers(4, 30)), levels=5)
    s, y = np.array(scores), np.array(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    w_pos = rng.multinomial(len(pos), np.full(len(pos), 1 / len(pos)), size=5)
    w_neg = rng.multinomial(len(neg), np.full(len(neg), 1 / len(neg)), size=5)
    got = _weighted_aurocs(pos, neg, w_pos, w_neg)
    for b in range(5):
        rs_pos = np.repeat(pos, w_pos[b]).tolist()
        rs_neg = np.repeat(neg, w_neg[b]).tolist()
        expected = brute_auroc(rs_pos + rs_neg, [1] * len(rs_pos) + [0] * len(rs_neg))
        assert got[b] == pytest.approx(expected, abs=1e-12)


def _noisy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    scores = labels * 0.8 + rng.normal(size=n)
    return scores, labels


def test_ci_contains_point_estimate_and_is_ordered() -> None:
    for seed in range(5):
        scores, labels = _noisy(300, seed)
        low, high = auroc_ci(scores, labels, n_boot=500, seed=seed)
        assert 0.0 <= low <= auroc(scores, labels) <= high <= 1.0


def test_ci_narrows_with_n() -> None:
    small = auroc_ci(*_noisy(100, 1), n_boot=400)
    large = auroc_ci(*_noisy(2000, 1), n_boot=400)
    # Width shrinks like 1/sqrt(n): a 20x larger sample should be clearly (~4.5x) narrower.
    assert (large[1] - large[0]) < 0.5 * (small[1] - small[0])


def test_ci_narrows_with_alpha_and_is_deterministic_by_seed() -> None:
    scores, labels = _noisy(200, 2)
    assert auroc_ci(scores, labels, seed=5) == auroc_ci(scores, labels, seed=5)
    assert auroc_ci(scores, labels, seed=5) != auroc_ci(scores, labels, seed=6)
    wide = auroc_ci(scores, labels, alpha=0.01)
    narrow = auroc_ci(scores, labels, alpha=0.5)
    assert wide[0] < narrow[0] <= narrow[1] < wide[1]


def test_ci_does_not_depend_on_internal_batching() -> None:
    # n = 6000 forces several internal batches for 1000 replicates; the result must equal
    # the documented recipe done in one go: two seed-derived streams, multinomial
    # multiplicities for each class, percentile interval of the replicate AUROCs.
    scores, labels = _noisy(6000, 3)
    pos, neg = scores[labels], scores[~labels]
    pos_seq, neg_seq = np.random.SeedSequence(9).spawn(2)
    w_pos = np.random.default_rng(pos_seq).multinomial(len(pos), np.full(len(pos), 1 / len(pos)), size=1000)
    w_neg = np.random.default_rng(neg_seq).multinomial(len(neg), np.full(len(neg), 1 / len(neg)), size=1000)
    reps = _weighted_aurocs(pos, neg, w_pos, w_neg)
    expected = tuple(float(q) for q in np.quantile(reps, [0.025, 0.975]))
    assert auroc_ci(scores, labels, n_boot=1000, seed=9) == expected


def test_ci_of_perfect_separation_is_degenerate_at_one() -> None:
    assert auroc_ci([1, 2, 3, 10, 11, 12], [0, 0, 0, 1, 1, 1], n_boot=200) == (1.0, 1.0)
    assert auroc_ci([10, 11, 12, 1, 2, 3], [0, 0, 0, 1, 1, 1], n_boot=200) == (0.0, 0.0)


def test_ci_replicates_always_have_both_classes_even_when_tiny() -> None:
    # One positive among many negatives: an unstratified bootstrap would often draw no
    # positive at all; stratified, every replicate is defined and the CI is finite.
    scores = [0.5] + list(np.linspace(0, 1, 30))
    labels = [1] + [0] * 30
    low, high = auroc_ci(scores, labels, n_boot=300)
    assert 0.0 <= low <= high <= 1.0


# --------------------------------------------------------------------------- ROC / FPR@TPR


@pytest.mark.parametrize("seed", range(25))
def test_roc_curve_points_and_area_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    scores, labels = random_tied_data(rng, int(rng.integers(2, 40)), levels=int(rng.integers(1, 10)))
    fpr, tpr, thr = roc_curve(scores, labels)
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, np.inf)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(thr) < 0)
    for f, t, th in zip(fpr[1:], tpr[1:], thr[1:]):
        assert t == sum(1 for s, y in zip(scores, labels) if y and s >= th) / n_pos
        assert f == sum(1 for s, y in zip(scores, labels) if not y and s >= th) / n_neg
    trapezoid = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert trapezoid == pytest.approx(brute_auroc(scores, labels), abs=1e-12)


def test_fpr_at_tpr_hand_built() -> None:
    scores = [5, 4, 3, 2, 1]
    labels = [1, 1, 0, 1, 0]
    # Operating points (threshold: tpr, fpr): 5: 1/3,0  4: 2/3,0  3: 2/3,1/2  2: 1,1/2  1: 1,1
    assert fpr_at_tpr(scores, labels) == 0.5
    assert fpr_at_tpr(scores, labels, tpr=2 / 3) == 0.0
    assert fpr_at_tpr(scores, labels, tpr=0.7) == 0.5
    assert fpr_at_tpr(scores, labels, tpr=0.0) == 0.0
    assert fpr_at_tpr(scores, labels, tpr=1.0) == 0.5


def test_fpr_at_95_tpr_exact_boundary_and_ties() -> None:
    # 19 of 20 hallucinations score above every correct answer: TPR reaches exactly 19/20
    # = 0.95 before any false positive, so FPR@95 = 0 (the boundary counts as reached).
    pos = list(range(100, 81, -1)) + [-5]
    neg = [50] * 10 + [-10] * 10
    assert fpr_at_tpr(pos + neg, [1] * 20 + [0] * 20) == 0.0
    # Needing 96 % forces the threshold below the stray positive: every negative at 50
    # and above -5 is flagged (10 of 20).
    assert fpr_at_tpr(pos + neg, [1] * 20 + [0] * 20, tpr=0.96) == 0.5
    # Constant scores: the only useful threshold flags everyone.
    assert fpr_at_tpr([1.0] * 6, [1, 0, 1, 0, 1, 0]) == 1.0
    assert fpr_at_tpr([1, 2, 3, 4], [0, 0, 1, 1]) == 0.0
    assert fpr_at_tpr([4, 3, 2, 1], [0, 0, 1, 1]) == 1.0


@pytest.mark.parametrize("seed", range(20))
def test_fpr_at_tpr_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    scores, labels = random_tied_data(rng, int(rng.integers(2, 50)), levels=int(rng.integers(2, 12)))
    for target in (0.5, 0.8, 0.95, 1.0):
        assert fpr_at_tpr(scores, labels, tpr=target) == brute_fpr_at_tpr(scores, labels, target)


# --------------------------------------------------------------------------- risk-coverage, AURC, PRR


def test_risk_coverage_hand_computed() -> None:
    coverage, risk = risk_coverage([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 1 / 2, 1 / 3, 1 / 2])
    assert aurc([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    # Input order is irrelevant: only the scores decide who is answered first.
    assert aurc([0.4, 0.1, 0.3, 0.2], [1, 0, 0, 1]) == pytest.approx(1 / 3)


def test_risk_coverage_ties_are_averaged_over_orderings() -> None:
    # Tie group {1, 1} holds one error: accepting one of them adds 1/2 expected error.
    _, risk = risk_coverage([1, 1, 2], [0, 1, 1])
    np.testing.assert_allclose(risk, [0.5, 0.5, 2 / 3])
    assert aurc([1, 1, 2], [0, 1, 1]) == pytest.approx(5 / 9)


@pytest.mark.parametrize("seed", range(25))
def test_risk_coverage_matches_average_over_tie_permutations(seed: int) -> None:
    rng = np.random.default_rng(400 + seed)
    n = int(rng.integers(1, 7))
    scores = rng.integers(0, 3, size=n).astype(float).tolist()
    labels = rng.integers(0, 2, size=n).tolist()
    _, risk = risk_coverage(scores, labels)
    np.testing.assert_allclose(risk, brute_risk_curve_tie_average(scores, labels), atol=1e-12)


def test_hand_computed_prr() -> None:
    # AURC = 1/3 (above); random = 1/2; oracle order [0, 0, 1, 1] -> (0 + 0 + 1/3 + 1/2)/4 = 5/24.
    expected = Fraction(1, 2) - Fraction(1, 3)
    expected /= Fraction(1, 2) - Fraction(5, 24)
    assert prr([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]) == pytest.approx(float(expected))  # 4/7


@pytest.mark.parametrize("n, n_err", [(1, 0), (1, 1), (5, 2), (6, 1), (6, 5), (7, 3)])
def test_oracle_and_random_aurc_match_brute_force(n: int, n_err: int) -> None:
    labels = [1] * n_err + [0] * (n - n_err)
    all_orders = [brute_risks(list(p)) for p in itertools.permutations(labels)]
    aurcs = [sum(r) / n for r in all_orders]
    assert _oracle_aurc(n, n_err) == pytest.approx(min(aurcs), abs=1e-12)
    # "Random = base error rate": the mean AURC over all orderings is exactly n_err / n.
    assert sum(aurcs) / len(aurcs) == pytest.approx(n_err / n, abs=1e-12)


def test_prr_oracle_random_and_reversed() -> None:
    rng = np.random.default_rng(11)
    labels = rng.random(500) < 0.3
    oracle_scores = labels + 0.1 * rng.random(500)  # every error above every correct answer
    assert prr(oracle_scores, labels) == pytest.approx(1.0, abs=1e-12)
    assert prr(labels.astype(float), labels) == pytest.approx(1.0, abs=1e-12)  # tied within classes
    assert prr(-oracle_scores, labels) < -1.0  # worst ordering: far below random
    assert prr(np.ones(500), labels) == pytest.approx(0.0, abs=1e-12)  # constant = random
    # Seeds disjoint from the labels' seed (seed 11 would reproduce the labels' own stream).
    # PRR of a random score has sd ~0.09 here, so the mean of 50 is within ~0.013 of 0.
    random_prrs = [prr(np.random.default_rng(10_000 + s).random(500), labels) for s in range(50)]
    assert abs(float(np.mean(random_prrs))) < 0.05
    assert all(abs(p) < 0.4 for p in random_prrs)


def test_aurc_allows_single_class_but_prr_does_not() -> None:
    assert aurc([1, 2, 3], [0, 0, 0]) == 0.0
    assert aurc([1, 2, 3], [1, 1, 1]) == 1.0
    with pytest.raises(DegenerateLabelsError):
        prr([1, 2, 3], [1, 1, 1])


# --------------------------------------------------------------------------- report


def test_evaluate_bundles_the_individual_metrics() -> None:
    scores, labels = _noisy(200, 4)
    report = evaluate(scores, labels, n_boot=300, seed=1)
    assert isinstance(report, MetricReport)
    assert report.auroc == auroc(scores, labels)
    assert report.auroc_ci == auroc_ci(scores, labels, n_boot=300, seed=1)
    assert report.aurc == aurc(scores, labels)
    assert report.prr == prr(scores, labels)
    assert report.fpr_at_95_tpr == fpr_at_tpr(scores, labels, 0.95)
    assert (report.n, report.n_positive) == (200, int(labels.sum()))
    assert json.loads(json.dumps(report.to_dict()))["auroc_ci"] == list(report.auroc_ci)


def test_evaluate_reports_inverted_score_as_measured() -> None:
    report = evaluate([4, 3, 2, 1], [1, 1, 0, 0], n_boot=50)
    assert report.auroc == 1.0
    report = evaluate([1, 2, 3, 4], [1, 1, 0, 0], n_boot=50)
    assert report.auroc == 0.0 and report.auroc_ci == (0.0, 0.0)
    assert report.fpr_at_95_tpr == 1.0 and report.prr < 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("metric", [auroc, auroc_ci, roc_curve, fpr_at_tpr, prr, evaluate])
@pytest.mark.parametrize("labels, n_pos, n_neg", [([0, 0, 0], 0, 3), ([1, 1, 1], 3, 0), ([True] * 3, 3, 0)])
def test_single_class_raises_with_counts(metric, labels, n_pos: int, n_neg: int) -> None:
    with pytest.raises(DegenerateLabelsError) as info:
        metric([0.1, 0.2, 0.3], labels)
    msg = str(info.value)
    assert f"{n_pos} positive" in msg and f"{n_neg} negative" in msg and "both" in msg
    assert isinstance(info.value, InvalidInputError)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SpillGuardError)


@pytest.mark.parametrize("metric", [auroc, auroc_ci, roc_curve, fpr_at_tpr, risk_coverage, aurc, prr, evaluate])
def test_malformed_input_raises(metric) -> None:
    with pytest.raises(MetricInputError, match=r"3 entries but labels has 2"):
        metric([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(MetricInputError, match=r"1 NaN value\(s\) \(first at index 1\)"):
        metric([0.1, float("nan"), 0.3], [0, 1, 1])
    with pytest.raises(MetricInputError, match=r"0/1"):
        metric([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(MetricInputError, match=r"0/1"):
        metric([0.1, 0.2, 0.3], [0, 0.5, 1])
    with pytest.raises(MetricInputError, match=r"booleans or 0/1"):
        metric([0.1, 0.2, 0.3], ["yes", "no", "yes"])
    with pytest.raises(MetricInputError, match=r"empty"):
        metric([], [])
    with pytest.raises(MetricInputError, match=r"1-D"):
        metric([[0.1, 0.2]], [[0, 1]])


def test_bad_parameters_raise() -> None:
    scores, labels = [0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]
    for kwargs in ({"n_boot": 0}, {"n_boot": 2.5}, {"alpha": 0.0}, {"alpha": 1.0}, {"seed": -1}):
        with pytest.raises(InvalidParameterError):
            auroc_ci(scores, labels, **kwargs)
    for bad in (-0.1, 1.5):
        with pytest.raises(InvalidParameterError, match=r"tpr must lie in \[0, 1\]"):
            fpr_at_tpr(scores, labels, tpr=bad)
