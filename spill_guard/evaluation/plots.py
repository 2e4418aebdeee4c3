"""ROC curves and score histograms as PNG files (needs the ``bench`` extra: matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spill_guard.evaluation.metrics import roc_curve


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'spill-guard[bench]'") from exc
    return plt


def plot_roc(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], path: Path, title: str) -> Path:
    """``curves`` = (label, scores, labels, auroc); one line each, plus the chance diagonal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, scores, labels, auc in curves:
        fpr, tpr, _ = roc_curve(scores, labels)
        ax.plot(fpr, tpr, label=f"{label} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(
        xlabel="false-positive rate (correct answers flagged)",
        ylabel="true-positive rate (errors flagged)",
        title=title,
    )
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_histogram(scores: np.ndarray, labels: np.ndarray, path: Path, title: str, xlabel: str) -> Path:
    """Score distributions of correct vs. incorrect answers."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(scores, bins=30)
    ax.hist(scores[~labels], bins=bins, alpha=0.6, label=f"correct (n={int((~labels).sum())})")
    ax.hist(scores[labels], bins=bins, alpha=0.6, label=f"incorrect (n={int(labels.sum())})")
    ax.set(xlabel=f"{xlabel} (higher = riskier)", ylabel="answers", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
