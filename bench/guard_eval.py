"""Held-out evaluation of the calibrated guard: fit on the dev split, measure on the test split.

For each configuration (the default ``spilled_energy:mean`` on the full answer, and the best
likelihood baseline *chosen on dev* by cross-validated AUROC) and each target α, a conformal
threshold is fitted on the dev answers of the three built-in tasks together (the same data as
the packaged calibration) and applied unchanged to each task's test answers. Nothing is
chosen on test. Reported per task and pooled: false-flag rate on correct answers with a
Wilson 95 % interval, recall of wrong answers, abstention rate, and accuracy of the answered
questions before and after the guard (abstain on flagged).

Reads the cached bench generations (no model calls besides loading the tokenizer):

    .venv/bin/python bench/guard_eval.py bench/out bench/results/guard_eval
"""

from __future__ import annotations

import json
import platform
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from spill_guard.calibration import ThresholdCalibrator, binomial_ci, from_bench
from spill_guard.calibration.select import SELECT_LOCATORS, select_config
from spill_guard.scoring.specs import OTHER_SCORERS, POOLINGS, ScoreSpec

TASKS = ("arithmetic", "capitals", "elements")
TARGETS = (0.05, 0.10, 0.20)
STRATEGY = "conformal"


def held_out_row(fitted, cset, spec, locator) -> dict:
    """Apply ``fitted`` to every answer of ``cset``; answers with no span/score are answered (not flagged)."""
    subset = cset.scores(spec, locator)
    flagged_by_group = dict(zip(subset.groups, fitted.decide(subset.scores))) if len(subset.scores) else {}
    incorrect = np.array([a.incorrect for a in cset.answers])
    flagged = np.array([bool(flagged_by_group.get(a.group, False)) for a in cset.answers])
    n_correct, n_bad = int((~incorrect).sum()), int(incorrect.sum())
    false_flags = int((flagged & ~incorrect).sum())
    answered = ~flagged
    lo, hi = binomial_ci(false_flags, n_correct)
    return {
        "n": len(incorrect), "n_correct": n_correct, "n_incorrect": n_bad, "n_unscored": subset.n_skipped,
        "false_flag_rate": false_flags / max(1, n_correct), "false_flag_ci": [lo, hi], "false_flags": false_flags,
        "recall": float((flagged & incorrect).sum() / max(1, n_bad)),
        "abstention_rate": float(flagged.mean()),
        "accuracy_before": float((~incorrect).mean()),
        "accuracy_after": float((~incorrect[answered]).mean()) if answered.any() else None,
    }


def fit(cset, spec, locator, alpha):
    subset = cset.scores(spec, locator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = ThresholdCalibrator(STRATEGY, alpha).fit(subset.scores, subset.labels)
    return fitted, "; ".join(str(w.message) for w in caught) or None


def row(label, calibrated_on, fitted, note, spec, locator, alpha, task, cset) -> dict:
    return {"config": label, "calibrated_on": calibrated_on, "spec": spec, "locator": locator, "target": alpha,
            "task": task, "threshold": fitted.threshold, "direction": fitted.direction, "n_dev_correct": fitted.n_correct,
            "dev_auroc": fitted.metrics.auroc, "warning": note, **held_out_row(fitted, cset, spec, locator)}


def main(root: str, out_stem: str) -> None:
    from spill_guard import SpillModel
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    sm = SpillModel.load(device="cpu")  # only its name, tokenizer and prompt settings are used
    dev = from_bench(sm, [Path(root) / f"{t}-dev" for t in TASKS])
    tests = {t: from_bench(sm, [Path(root) / f"{t}-test"]) for t in TASKS}
    pooled_test = from_bench(sm, [Path(root) / f"{t}-test" for t in TASKS])

    baseline_specs = [ScoreSpec(s, p) for s in OTHER_SCORERS for p in POOLINGS]
    baseline_pick = select_config(dev, specs=baseline_specs, locators=SELECT_LOCATORS, k=5).chosen
    configs = [
        ("default", "spilled_energy:mean", "full", None),
        ("best baseline (dev CV)", baseline_pick.spec, baseline_pick.locator, baseline_pick.model_dump()),
    ]
    devs = {t: from_bench(sm, [Path(root) / f"{t}-dev"]) for t in TASKS}
    rows = []
    for label, spec, locator, cv in configs:
        for alpha in TARGETS:
            # Pooled: one threshold from the three dev halves together (what the packaged file does).
            fitted, note = fit(dev, spec, locator, alpha)
            for task, cset in [*tests.items(), ("all three", pooled_test)]:
                rows.append(row(label, "pooled dev", fitted, note, spec, locator, alpha, task, cset))
            # Per task: each task's own dev half calibrates its test half.
            for task in TASKS:
                fitted, note = fit(devs[task], spec, locator, alpha)
                rows.append(row(label, "own dev", fitted, note, spec, locator, alpha, task, tests[task]))
    result = {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "model": sm.loaded.name,
        "strategy": STRATEGY,
        "calibration_data": f"dev split of {', '.join(TASKS)} together, n={len(dev)} "
                            f"({len(dev) - dev.n_incorrect} correct, {dev.n_incorrect} incorrect); labels judged on the full answer",
        "baseline_selection": {"cv_auroc": cv for _, _, _, cv in configs if cv} | {"candidates": "nll, improbability, "
                               "entropy, instability × min/max/mean/sum × " + ", ".join(SELECT_LOCATORS)},
        "rows": rows,
    }
    Path(out_stem).parent.mkdir(parents=True, exist_ok=True)
    Path(out_stem + ".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    Path(out_stem + ".md").write_text(to_markdown(result), encoding="utf-8")
    print(to_markdown(result))


def to_markdown(result: dict) -> str:
    lines = [
        "# Calibrated guard: held-out results",
        "",
        f"Model {result['model']}; {result['strategy']} thresholds fitted on dev answers (pooled: the "
        f"{result['calibration_data']}; or each task's own dev half) and "
        "applied unchanged to the test split (100 items per task). Flagged answers are abstained on. "
        "False-flag rate = flagged correct / correct, with a Wilson 95 % interval; recall = flagged wrong / wrong; "
        "accuracy = correct / answered. Generated by `" + result["command"] + "` on " + result["date"] + ".",
        "",
    ]
    for calibrated_on, title in (("pooled dev", "## One threshold from the pooled dev split (as the packaged calibration)"),
                                 ("own dev", "## Each task calibrated on its own dev split")):
        lines += ["", title, "",
                  "| config | α | task | false-flag rate [95 % CI] | recall of wrong | abstention | accuracy before → after |",
                  "|---|---|---|---|---|---|---|"]
        lines += table_rows([r for r in result["rows"] if r["calibrated_on"] == calibrated_on])
    notes = sorted({f"{r['task']} (α={r['target']:.2f}): {r['warning']}" for r in result["rows"] if r["warning"]})
    if notes:
        lines += ["", "Warnings:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def table_rows(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        after = "–" if r["accuracy_after"] is None else f"{r['accuracy_after']:.3f}"
        name = "default" if r["config"] == "default" else "baseline"
        lines.append(
            f"| {name}: `{r['spec']}` on {r['locator']} | {r['target']:.2f} | {r['task']} | "
            f"{r['false_flag_rate']:.3f} ({r['false_flags']}/{r['n_correct']}) [{r['false_flag_ci'][0]:.2f}, {r['false_flag_ci'][1]:.2f}] | "
            f"{r['recall']:.3f} | {r['abstention_rate']:.3f} | {r['accuracy_before']:.3f} → {after} |"
        )
    return lines


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/out", sys.argv[2] if len(sys.argv) > 2 else "bench/results/guard_eval")
