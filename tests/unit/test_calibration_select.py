"""Cross-validated selection: folds by item id, direction learned per fold, honest AUROC."""

from __future__ import annotations

import numpy as np

from spill_guard.calibration.data import ScoredSubset
from spill_guard.calibration.select import cv_auroc, fold_of


def subset(scores, labels):
    return ScoredSubset(np.asarray(scores, float), np.asarray(labels, bool), [f"item-{i}" for i in range(len(scores))], 0)


def test_folds_depend_only_on_the_item_id():
    assert [fold_of(f"q{i}", 5) for i in range(50)] == [fold_of(f"q{i}", 5) for i in range(50)]
    assert set(fold_of(f"q{i}", 5) for i in range(200)) == set(range(5))


def test_informative_score_is_ranked_high_in_either_orientation_and_noise_near_half():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(100, bool), np.ones(100, bool)]
    signal = np.r_[rng.normal(0, 1, 100), rng.normal(2, 1, 100)]
    up, sd, used = cv_auroc(subset(signal, y), 5)
    down, _, _ = cv_auroc(subset(-signal, y), 5)  # direction is learned inside each fold
    noise, _, _ = cv_auroc(subset(rng.normal(0, 1, 200), y), 5)
    assert used == 5 and sd >= 0
    assert up > 0.85 and abs(up - down) < 1e-12
    assert 0.35 < noise < 0.65


def test_folds_without_both_classes_are_skipped():
    mean, _, used = cv_auroc(subset(np.arange(4.0), [False, False, False, True]), 5)
    assert used == 0 and np.isnan(mean)
