"""Does a second opinion where one pass is unsure pay? Sampled consistency cascaded after spilled energy.

A benchmark, not a test. On the built-in tasks (dev and test splits, ``--n`` items per task and split):

1. the first answer of each question, greedy, with its trace (the calibration's cached generation,
   ``spill_guard.calibration.from_task``), its one-pass risk under the default rule
   (``spilled_energy:mean`` on the whole answer) and its label (the task's judge on the whole answer);
2. ``--samples`` K answers per question at ``--temperature``, seeded as
   :class:`~spill_guard.calibration.consistency.Consistency` seeds them (sample k = retry attempt k+1), in
   batches; their agreement with the first answer (the answer part located by Consistency's locator,
   compared by the project's normaliser and judge);
3. on the pooled dev answers of every task, :func:`~spill_guard.calibration.cascade.fit_cascade` chooses
   the band and weight (at most ``--budget`` of answers sampled); on the test split it reports, per task
   and on average: the one-pass AUROC, consistency alone (every question sampled), the cascade's AUROC
   with its bootstrap CI, and the share of questions the band sampled.

    OMP_NUM_THREADS=1 .venv/bin/python bench/second_opinion_eval.py --samples 5 --batch-size 32

Results: ``--out`` (JSON, every per-question number) and the same name with ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("arithmetic", "capitals", "elements")


def first_answers(sm: Any, task: str, split: str, n: int, cache: Path) -> list[dict[str, Any]]:
    from spill_guard.calibration import from_task
    from spill_guard.guard.assess import assess
    from spill_guard.guard.risk_rule import RiskRule
    from spill_guard.scoring.specs import ScoreSpec
    from spill_guard.spans import make_locator

    cset = from_task(sm, [task], split=split, n=n, cache_dir=cache / f"{task}-{split}", progress=False)
    rule = RiskRule(ScoreSpec.parse("spilled_energy:mean"), "full", 0.0)
    full = make_locator("full")
    rows = []
    for item in cset.answers:
        candidate = assess(item.answer, item.question, rule, full)
        rows.append({"task": task, "split": split, "key": item.key, "question": item.question,
                     "prompt_ids": list(item.answer.prompt_ids), "answer": item.answer.answer,
                     "risk": candidate.risk, "incorrect": bool(item.incorrect)})
    return rows


def draw_samples(sm: Any, rows: list[dict[str, Any]], consistency: Any, max_new_tokens: int, batch: int,
                 cache: Path) -> float:
    """Fill each row's ``samples`` (K answers), their one-pass ``sample_risks`` and the row's ``agreement``;
    returns the seconds spent generating. Samples are cached per question and configuration in ``cache``."""
    from spill_guard.guard.assess import assess
    from spill_guard.guard.risk_rule import RiskRule
    from spill_guard.models.params import GenerationParams
    from spill_guard.scoring.specs import ScoreSpec
    from spill_guard.spans import make_locator

    rule = RiskRule(ScoreSpec.parse("spilled_energy:mean"), "full", 0.0)
    full = make_locator("full")
    spent = 0.0
    base = GenerationParams(max_new_tokens=max_new_tokens)
    # One cache per sampling setting, whatever K: sample k has the same seed for every K, so a larger K draws
    # only the samples a question lacks (k = have + 1 .. K) and a smaller K reads the first K.
    tag = f"t{consistency.temperature}-p{consistency.top_p}-m{max_new_tokens}"
    store = cache / f"samples-{tag}.json"
    known: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}
    params = consistency.sample_params(base)
    todo = [r for r in rows if len(known.get(f"{r['task']}/{r['key']}", {}).get("samples", [])) < len(params)]
    for row in todo:
        entry = known.get(f"{row['task']}/{row['key']}", {"samples": [], "sample_risks": []})
        row["samples"], row["sample_risks"] = list(entry["samples"]), list(entry["sample_risks"])
    store.parent.mkdir(parents=True, exist_ok=True)
    # Question by chunk, the missing samples of a chunk, then the cache is written: a stopped run keeps what it drew.
    todo.sort(key=lambda r: len(r["samples"]))
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        for k in range(min(len(r["samples"]) for r in chunk), len(params)):
            needing = [r for r in chunk if len(r["samples"]) == k]
            t0 = time.perf_counter()
            answers = sm.generate_params([r["prompt_ids"] for r in needing], params[k])
            spent += time.perf_counter() - t0
            for row, answer in zip(needing, answers):
                row["samples"].append(answer.answer)
                row["sample_risks"].append(assess(answer, row["question"], rule, full).risk)
        for row in chunk:
            known[f"{row['task']}/{row['key']}"] = {"samples": row["samples"], "sample_risks": row["sample_risks"]}
        store.write_text(json.dumps(known))
        print(f"sampled {min(start + batch, len(todo))}/{len(todo)} questions, {spent:.0f} s", flush=True)
    for row in rows:
        entry = known[f"{row['task']}/{row['key']}"]
        row["samples"], row["sample_risks"] = entry["samples"][: len(params)], entry["sample_risks"][: len(params)]
        first = consistency.span(row["answer"], row["question"])
        spans = [consistency.span(s, row["question"]) for s in row["samples"]]
        row["agreement"] = consistency.agreement(first, spans)
    return spent


def measure(rows: list[dict[str, Any]], cascade: Any) -> dict[str, Any]:
    from spill_guard.evaluation.metrics import auroc, auroc_ci

    usable = [r for r in rows if r["risk"] is not None and np.isfinite(r["risk"])]
    risk = np.array([r["risk"] for r in usable])
    agreement = np.array([r["agreement"] for r in usable])
    y = np.array([r["incorrect"] for r in usable])
    out: dict[str, Any] = {"n": len(usable), "incorrect": int(y.sum())}
    if y.all() or not y.any():
        return out
    out["one_pass_auroc"] = auroc(risk, y)
    out["one_pass_auroc_ci"] = list(auroc_ci(risk, y))
    out["consistency_only_auroc"] = auroc(1.0 - agreement, y)
    out["consistency_only_auroc_ci"] = list(auroc_ci(1.0 - agreement, y))
    if cascade is None:
        final, sampled = risk, np.zeros(len(risk), dtype=bool)
    else:
        sampled = cascade.sampled(risk)
        final = cascade.scores(risk, np.where(sampled, agreement, np.nan))
    out["second_opinion_auroc"] = auroc(final, y)
    out["second_opinion_auroc_ci"] = list(auroc_ci(final, y))
    out["sampled_fraction"] = float(sampled.mean())
    return out


TARGETS = (0.05, 0.10, 0.20)


def false_flags(dev: list[dict[str, Any]], test: list[dict[str, Any]], cascade: Any) -> list[dict[str, Any]]:
    """The calibrated guard's false-flag rate on the test split, as bench/guard_eval.py reports it for one pass:
    a conformal threshold fitted on the pooled dev answers' final risk (the cascade's, else one pass) at each
    target, applied unchanged to each task's test answers; false flags = flagged correct / correct, Wilson CI.
    An answer with no finite one-pass risk is answered (not flagged), as the guard's fallback for unscored."""
    from spill_guard.calibration import ThresholdCalibrator, binomial_ci

    def final(rows: list[dict[str, Any]], second: bool) -> np.ndarray:
        risk = np.array([r["risk"] if r["risk"] is not None else np.nan for r in rows], dtype=float)
        agreement = np.array([r["agreement"] for r in rows], dtype=float)
        return cascade.scores(risk, agreement) if (second and cascade is not None) else risk

    out = []
    y_dev = np.array([r["incorrect"] for r in dev])
    for second in (False, True):
        for alpha in TARGETS:
            fitted = ThresholdCalibrator("conformal", alpha).fit(final(dev, second), y_dev)
            for task in (*TASKS, "all three"):
                rows = [r for r in test if task == "all three" or r["task"] == task]
                risk = final(rows, second)
                flagged = np.isfinite(risk) & (np.nan_to_num(risk, nan=-np.inf) > fitted.threshold)
                y = np.array([r["incorrect"] for r in rows])
                k, n = int((flagged & ~y).sum()), int((~y).sum())
                low, high = binomial_ci(k, n)
                out.append({"rule": "second opinion" if second else "one pass", "alpha": alpha, "task": task,
                            "threshold": fitted.threshold, "false_flags": k, "correct": n,
                            "false_flag_rate": k / n if n else None, "ci": [low, high],
                            "recall": float((flagged & y).sum() / max(1, y.sum())),
                            "within_target": low <= alpha})
    return out


def explored(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Other ways to use the samples, measured on the test split for the docs (not chosen on it: reported
    only). Every question sampled. rank_mean: mean rank of the one-pass risk and the inconsistency;
    sample_risk_mean: the mean one-pass risk of the K samples (their own spilled energy)."""
    from scipy.stats import rankdata

    from spill_guard.evaluation.metrics import auroc

    out: dict[str, Any] = {}
    for task in TASKS:
        test = [r for r in rows if r["task"] == task and r["split"] == "test" and r["risk"] is not None
                and np.isfinite(r["risk"])]
        y = np.array([r["incorrect"] for r in test])
        risk = np.array([r["risk"] for r in test])
        inconsistency = 1.0 - np.array([r["agreement"] for r in test])
        row = {"rank_mean": auroc(rankdata(risk) + rankdata(inconsistency), y)}
        if all("sample_risks" in r for r in test):
            means = np.array([np.nanmean([v if v is not None else np.nan for v in r["sample_risks"]]) for r in test])
            ok = np.isfinite(means)
            row["sample_risk_mean"] = auroc(means[ok], y[ok])
            row["risk_plus_sample_risk_rank_mean"] = auroc(rankdata(risk[ok]) + rankdata(means[ok]), y[ok])
        out[task] = row
    out["mean"] = {k: float(np.mean([out[t][k] for t in TASKS if k in out[t]])) for k in out[TASKS[0]]}
    return out


def _sample_features(rows: list[dict[str, Any]]) -> np.ndarray:
    """Per question, what the samples say beyond agreement: inconsistency, the samples' mean one-pass risk,
    the risk of the samples that agree minus that of those that disagree (0 when one side is empty), and the
    share of distinct located answers among first + samples (a semantic-entropy proxy)."""
    out = []
    for r in rows:
        sr = np.array([np.nan if v is None else v for v in r["sample_risks"]], dtype=float)
        agrees = np.array(r["agrees"], dtype=bool)
        mean = np.nanmean(sr) if np.isfinite(sr).any() else r["risk"]
        gap = (np.nanmean(sr[agrees]) - np.nanmean(sr[~agrees])) if agrees.any() and (~agrees).any() else 0.0
        out.append([1.0 - r["agreement"], mean, 0.0 if not np.isfinite(gap) else gap, r["distinct"]])
    return np.array(out, dtype=float)


def explored_on_dev(rows: list[dict[str, Any]], budget: float) -> dict[str, Any]:
    """Uses of the samples' own spilled energies, chosen on the pooled dev split, reported on test (as the
    default cascade is): a logistic model of the label from the one-pass risk and the sample features, fitted
    on dev; (a) its score with every question sampled, (b) its probability as the cascade's evidence (in place
    of agreement: the band and weight fitted by fit_cascade on dev, at most ``budget`` sampled)."""
    from sklearn.linear_model import LogisticRegression

    from spill_guard.calibration.cascade import fit_cascade
    from spill_guard.evaluation.metrics import auroc

    ok = [r for r in rows if r["risk"] is not None and np.isfinite(r["risk"]) and "sample_risks" in r]
    for r in ok:
        c = __import__("spill_guard.calibration.consistency", fromlist=["Consistency"]).Consistency()
        compared = c.compare(r["answer"], r["samples"], r["question"])
        r["agrees"] = compared.agrees
        spans = [compared.first_span, *compared.spans]
        r["distinct"] = len({(s or "").strip().lower() for s in spans}) / len(spans)
    dev = [r for r in ok if r["split"] == "dev"]
    test = [r for r in ok if r["split"] == "test"]
    risk_d = np.array([r["risk"] for r in dev])
    mu, sd = risk_d.mean(), risk_d.std() or 1.0

    def design(rs: list[dict[str, Any]]) -> np.ndarray:
        f = _sample_features(rs)
        f[:, 1] = (f[:, 1] - mu) / sd
        return np.column_stack([(np.array([r["risk"] for r in rs]) - mu) / sd, f])

    y_d = np.array([r["incorrect"] for r in dev])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(design(dev), y_d)
    without_risk = LogisticRegression(C=1.0, max_iter=1000).fit(design(dev)[:, 1:], y_d)
    p_dev = without_risk.predict_proba(design(dev)[:, 1:])[:, 1]
    fit = fit_cascade(risk_d, 1.0 - p_dev, y_d, budget=budget)
    out: dict[str, Any] = {"features": ["risk", "inconsistency", "sample_risk_mean", "agree_minus_disagree_risk",
                                        "distinct_share"],
                           "coef_all_sampled": [float(v) for v in model.coef_[0]],
                           "cascade": None if fit.cascade is None else
                           {"low": fit.cascade.low, "high": fit.cascade.high, "weight": fit.cascade.weight},
                           "dev_auroc": fit.auroc, "dev_sampled_share": fit.sampled_share}
    for task in TASKS:
        rs = [r for r in test if r["task"] == task]
        y = np.array([r["incorrect"] for r in rs])
        risk = np.array([r["risk"] for r in rs])
        row = {"logistic_all_sampled": auroc(model.predict_proba(design(rs))[:, 1], y)}
        if fit.cascade is not None:
            evidence = 1.0 - without_risk.predict_proba(design(rs)[:, 1:])[:, 1]
            sampled = fit.cascade.sampled(risk)
            row["cascade_on_sample_features"] = auroc(fit.cascade.scores(risk, np.where(sampled, evidence, np.nan)), y)
            row["cascade_on_sample_features_sampled"] = float(sampled.mean())
        out[task] = row
    keys = list(out[TASKS[0]])
    out["mean"] = {k: float(np.mean([out[t][k] for t in TASKS])) for k in keys}
    return out


def by_temperature(rows: list[dict[str, Any]], temperature: float) -> list[dict[str, Any]]:
    """The rows as drawn at ``temperature``: each row's ``samples``, ``sample_risks`` (and ``agreement`` once
    measured) are those of its ``draws`` at that temperature (copies: the other temperatures' rows are kept)."""
    out = []
    for row in rows:
        drawn = row["draws"][str(temperature)]
        out.append({**{k: v for k, v in row.items() if k != "draws"}, "samples": drawn["samples"],
                    "sample_risks": drawn["sample_risks"], "draws": row["draws"]})
    return out


def choose_temperature(rows: list[dict[str, Any]], temperatures: list[float], samples: int, budget: float
                       ) -> tuple[float, dict[str, list[dict[str, Any]]], Any, dict[str, Any], list[dict[str, Any]]]:
    """Measure agreement at each temperature and fit a cascade on the pooled dev split for each; the chosen
    temperature is the one whose cascade has the best dev AUROC (ties: the first given). Test numbers of the
    others are reported beside it (explored, not chosen on). Returns the chosen temperature, every
    temperature's rows, the chosen fit, its per-task test measures and a table row per temperature."""
    from spill_guard.calibration.cascade import fit_cascade
    from spill_guard.calibration.consistency import Consistency

    per_t: dict[str, list[dict[str, Any]]] = {}
    fits: dict[str, Any] = {}
    tests: dict[str, dict[str, Any]] = {}
    table = []
    for t in temperatures:
        consistency = Consistency(samples=samples, temperature=t)
        rs = by_temperature(rows, t)
        for row in rs:
            row["samples"], row["sample_risks"] = row["samples"][:samples], row["sample_risks"][:samples]
            row["agreement"] = consistency.compare(row["answer"], row["samples"], row["question"]).agreement
        dev = [r for r in rs if r["split"] == "dev" and r["risk"] is not None and np.isfinite(r["risk"])]
        fit = fit_cascade([r["risk"] for r in dev], [r["agreement"] for r in dev], [r["incorrect"] for r in dev],
                          budget=budget)
        per_t[str(t)], fits[str(t)] = rs, fit
        test = tests[str(t)] = {
            task: measure([r for r in rs if r["task"] == task and r["split"] == "test"], fit.cascade) for task in TASKS
        }
        table.append({"temperature": t, "dev_auroc": fit.auroc, "dev_consistency_auroc": fit.consistency_auroc,
                      "dev_sampled_share": fit.sampled_share,
                      "test_second_opinion_auroc": float(np.mean([v["second_opinion_auroc"] for v in test.values()])),
                      "test_consistency_only_auroc": float(np.mean([v["consistency_only_auroc"]
                                                                   for v in test.values()])),
                      "test_sampled_fraction": float(np.mean([v["sampled_fraction"] for v in test.values()]))})
    chosen = max(temperatures, key=lambda t: (fits[str(t)].auroc, -temperatures.index(t)))
    return chosen, per_t, fits[str(chosen)], tests[str(chosen)], table


BUDGETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def budget_curve(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a larger share of questions sampled buys: for each budget, the cascade fitted on the pooled dev
    split with at most that share sampled, reported on the test split (mean over tasks)."""
    from spill_guard.calibration.cascade import fit_cascade

    dev = [r for r in rows if r["split"] == "dev" and r["risk"] is not None and np.isfinite(r["risk"])]
    out = []
    for budget in BUDGETS:
        fit = fit_cascade([r["risk"] for r in dev], [r["agreement"] for r in dev], [r["incorrect"] for r in dev],
                          budget=budget)
        test = [measure([r for r in rows if r["task"] == task and r["split"] == "test"], fit.cascade) for task in TASKS]
        out.append({"budget": budget, "dev_auroc": fit.auroc, "dev_sampled_share": fit.sampled_share,
                    "test_auroc": float(np.mean([t["second_opinion_auroc"] for t in test])),
                    "test_sampled_fraction": float(np.mean([t["sampled_fraction"] for t in test]))})
    return out


def ceiling(rows: list[dict[str, Any]], budget: float) -> dict[str, Any]:
    """Not a result: the best a single band can do, chosen ON THE TEST SPLIT (band ends at test-risk quantiles in
    5 % steps, the cascade's weights, at most ``budget`` of test questions sampled, the mean of the per-task
    AUROCs). A target above it is out of reach of any band chosen on dev."""
    from spill_guard.calibration.cascade import WEIGHTS, Cascade
    from spill_guard.evaluation.metrics import auroc

    test = [r for r in rows if r["split"] == "test" and r["risk"] is not None and np.isfinite(r["risk"])]
    risk = np.array([r["risk"] for r in test])
    agreement = np.array([r["agreement"] for r in test])
    tasks = [np.array([r["task"] == t for r in test]) for t in TASKS]
    y = np.array([r["incorrect"] for r in test])
    best: dict[str, Any] = {"auroc": -1.0}
    edges = np.quantile(risk, np.linspace(0.0, 1.0, 21))
    for i in range(len(edges)):
        for j in range(i, len(edges)):
            sampled = (risk >= edges[i]) & (risk <= edges[j])
            if not 0 < sampled.mean() <= budget:
                continue
            for weight in WEIGHTS:
                final = Cascade(float(edges[i]), float(edges[j]), weight).scores(risk, np.where(sampled, agreement, np.nan))
                score = float(np.mean([auroc(final[m], y[m]) for m in tasks]))
                if score > best["auroc"]:
                    best = {"auroc": score, "sampled_fraction": float(sampled.mean()), "low": float(edges[i]),
                            "high": float(edges[j]), "weight": weight}
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=None, help="items per task and split (default: all)")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--temperature", type=float, nargs="+", default=None,
                   help="sampling temperature(s) (default: Consistency's); with several, the one whose cascade is best on "
                   "dev is reported")
    p.add_argument("--budget", type=float, default=0.5, help="largest share of questions the band may sample")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cache", default=str(ROOT / "bench/out/second-opinion"))
    p.add_argument("--out", default=str(ROOT / "bench/results/second_opinion_eval.json"))
    p.add_argument("--rows", default=None, metavar="JSON",
                   help="re-analyse the rows (answers, samples, labels) of an earlier run's JSON; no model call")
    args = p.parse_args()

    from spill_guard import SpillModel
    from spill_guard.calibration.consistency import Consistency
    from spill_guard.cli.common import quiet_transformers

    if args.temperature is None:
        args.temperature = [Consistency().temperature]
    temperatures = list(dict.fromkeys(args.temperature))
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    sampling_seconds: dict[str, float] = {}
    if args.rows is not None:  # the earlier run's answers and samples; the agreement is measured again
        earlier = json.loads(Path(args.rows).read_text())
        rows = earlier["rows"]
        spent = earlier["seconds"]["sampling"]
        sampling_seconds = spent if isinstance(spent, dict) else {str(earlier["config"]["temperature"]): spent}
        started -= earlier["seconds"]["total"]  # the run's time, not the re-analysis's
        for row in rows:  # a run with one temperature kept its samples on the row
            row.setdefault("draws", {str(earlier["config"]["temperature"]): {
                "samples": row.get("samples"), "sample_risks": row.get("sample_risks")}})
        missing = [t for t in temperatures if str(t) not in rows[0]["draws"]]
        if missing:
            raise SystemExit(f"{args.rows} has no samples at temperature {missing}; it has {list(rows[0]['draws'])}")
    else:
        quiet_transformers()
        sm = SpillModel.load(device="cpu")
        for task in TASKS:
            for split in ("dev", "test"):
                rows += first_answers(sm, task, split, args.n, Path(args.cache))
        for row in rows:
            row["draws"] = {}
        for t in temperatures:
            consistency = Consistency(samples=args.samples, temperature=t)
            sampling_seconds[str(t)] = draw_samples(sm, rows, consistency, args.max_new_tokens, args.batch_size,
                                                    Path(args.cache))
            for row in rows:
                row["draws"][str(t)] = {"samples": row.pop("samples"), "sample_risks": row.pop("sample_risks")}
    chosen_t, per_t, fit, per_task, temperature_table = choose_temperature(rows, temperatures, args.samples,
                                                                           args.budget)
    if args.rows is None:  # what a sample costs at each temperature: its text's tokens (re-tokenized), on average
        for entry in temperature_table:
            texts = [s for r in rows for s in r["draws"][str(entry["temperature"])]["samples"][: args.samples]]
            counts = [len(sm.tokenizer.encode(t, add_special_tokens=False)) for t in texts]
            entry["tokens_per_sample"] = float(np.mean(counts))
            entry["share_at_max_new_tokens"] = float(np.mean([c >= args.max_new_tokens for c in counts]))
    rows = per_t[str(chosen_t)]
    dev = [r for r in rows if r["split"] == "dev" and r["risk"] is not None and np.isfinite(r["risk"])]
    cascade = fit.cascade
    keys = ("one_pass_auroc", "consistency_only_auroc", "second_opinion_auroc", "sampled_fraction")
    mean = {k: float(np.mean([v[k] for v in per_task.values() if k in v])) for k in keys}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    options = {k: v for k, v in vars(args).items()
               if k in ("n", "samples", "temperature", "budget", "batch_size", "max_new_tokens") and v is not None}
    doc = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit.strip(),
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '<unset>')} "
        ".venv/bin/python bench/second_opinion_eval.py "
        + " ".join(f"--{k.replace('_', '-')} " + (" ".join(map(str, v)) if isinstance(v, list) else str(v))
                   for k, v in options.items())
        + ("" if args.rows is None else " --rows <the same command's JSON> (re-analysed)"),
        "config": {k: v for k, v in vars(args).items() if k not in ("cache", "out")},
        "chosen_temperature": chosen_t,
        "temperatures": temperature_table,
        "chosen_on_dev": {
            "temperature": chosen_t,
            "cascade": None if cascade is None else {"low": cascade.low, "high": cascade.high, "weight": cascade.weight},
            "dev_auroc": fit.auroc, "dev_one_pass_auroc": fit.one_pass_auroc,
            "dev_consistency_auroc": fit.consistency_auroc, "dev_sampled_share": fit.sampled_share,
            "dev_n": len(dev),
        },
        "test": per_task,
        "test_mean": mean,
        "false_flags": false_flags(dev, [r for r in rows if r["split"] == "test"], cascade),
        "explored": explored(rows),
        "budget_curve": budget_curve(rows),
        "test_chosen_ceiling": ceiling(rows, args.budget),
        "explored_on_dev": explored_on_dev(rows, args.budget) if all("sample_risks" in r for r in rows) else None,
        "extra_tokens_per_sampled_question": args.samples * args.max_new_tokens,
        "seconds": {"total": time.perf_counter() - started, "sampling": sampling_seconds},
        "rows": [{k: v for k, v in r.items() if k not in ("prompt_ids", "samples", "sample_risks")}
                 for r in rows],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    out.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))


def markdown(doc: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    def ci(v: dict[str, Any], k: str) -> str:
        return f"{f(v.get(k))} [{f(v[k + '_ci'][0])}, {f(v[k + '_ci'][1])}]" if k in v else "-"

    chosen = doc["chosen_on_dev"]
    band = chosen["cascade"]
    spent = doc["seconds"]["sampling"]
    sampling = sum(spent.values()) if isinstance(spent, dict) else spent
    lines = [
        "# Second opinion (sampled consistency cascaded after one pass): measured\n",
        f"{doc['date']}, commit `{doc['commit']}`. Command:\n",
        "```\n" + doc["command"] + "\n```\n",
        f"Chosen on the pooled dev split ({chosen['dev_n']} answers), samples at temperature "
        f"{chosen.get('temperature', doc['config']['temperature']):g}: "
        + ("no band beat one pass" if band is None else
           f"band [{band['low']:.3f}, {band['high']:.3f}] of one-pass risk, weight {band['weight']}, "
           f"sampling {chosen['dev_sampled_share']:.0%} of dev questions; dev AUROC {chosen['dev_auroc']:.3f} "
           f"vs one pass {chosen['dev_one_pass_auroc']:.3f}, consistency alone {chosen['dev_consistency_auroc']:.3f}")
        + ".\n",
    ]
    if len(doc.get("temperatures", [])) > 1:
        lines += [
            f"Sampling temperature chosen on dev: {doc['chosen_temperature']:g} (the best dev AUROC of its fitted "
            "cascade). Every temperature tried, its cascade fitted on dev; the test columns are reported, not "
            "chosen on:\n",
            "| temperature | dev: second opinion | dev: consistency alone | dev sampled | test: second opinion | "
            "test: consistency alone | test sampled | tokens per sample (at the cap) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for t in doc["temperatures"]:
            tokens = (f"{t['tokens_per_sample']:.1f} ({t['share_at_max_new_tokens']:.0%})"
                      if "tokens_per_sample" in t else "-")
            lines.append(f"| {t['temperature']:g} | {t['dev_auroc']:.3f} | {t['dev_consistency_auroc']:.3f} | "
                         f"{t['dev_sampled_share']:.0%} | {t['test_second_opinion_auroc']:.3f} | "
                         f"{t['test_consistency_only_auroc']:.3f} | {t['test_sampled_fraction']:.0%} | {tokens} |")
        lines.append("")
    lines += [
        "Test split, AUROC [bootstrap 95 % CI], incorrect = positive:\n",
        "| task | n | one pass | consistency alone (all sampled) | second opinion | sampled |",
        "|---|---|---|---|---|---|",
    ]
    for task, v in doc["test"].items():
        lines.append(f"| {task} | {v['n']} | {ci(v, 'one_pass_auroc')} | {ci(v, 'consistency_only_auroc')} | "
                     f"{ci(v, 'second_opinion_auroc')} | {v.get('sampled_fraction', 0):.0%} |")
    m = doc["test_mean"]
    lines.append(f"| mean | | {f(m.get('one_pass_auroc'))} | {f(m.get('consistency_only_auroc'))} | "
                 f"{f(m.get('second_opinion_auroc'))} | {m.get('sampled_fraction', 0):.0%} |")
    lines.append("\nCalibrated guard (conformal threshold fitted on the pooled dev final risk, applied to test; as "
                 "bench/guard_eval.py): false-flag rate on correct answers [Wilson 95 % CI], recall of wrong:\n")
    lines.append("| rule | α | task | false-flag rate [CI] | within target | recall |")
    lines.append("|---|---|---|---|---|---|")
    for r in doc.get("false_flags", []):
        rate = "-" if r["false_flag_rate"] is None else f"{r['false_flag_rate']:.3f} ({r['false_flags']}/{r['correct']})"
        lines.append(f"| {r['rule']} | {r['alpha']:.2f} | {r['task']} | {rate} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] | "
                     f"{'yes' if r['within_target'] else 'NO'} | {r['recall']:.3f} |")
    ex = doc.get("explored")
    if ex:
        lines.append("\nExplored on test, every question sampled (reported, not chosen): AUROC of other uses of the "
                     "samples:\n")
        keys = list(ex["mean"])
        lines.append("| task | " + " | ".join(keys) + " |")
        lines.append("|---|" + "---|" * len(keys))
        for task, v in ex.items():
            lines.append(f"| {task} | " + " | ".join(f(v.get(k)) for k in keys) + " |")
    curve = doc.get("budget_curve")
    if curve:
        lines.append("\nThe share of questions sampled is the cost knob: the cascade fitted on dev with at most that "
                     "share sampled (same samples), reported on test (mean AUROC over tasks; one pass "
                     f"{f(doc['test_mean'].get('one_pass_auroc'))}):\n")
        lines.append("| budget | dev AUROC | dev sampled | test AUROC | test sampled |")
        lines.append("|---|---|---|---|---|")
        for c in curve:
            lines.append(f"| {c['budget']:.1f} | {c['dev_auroc']:.3f} | {c['dev_sampled_share']:.0%} | "
                         f"{c['test_auroc']:.3f} | {c['test_sampled_fraction']:.0%} |")
    top = doc.get("test_chosen_ceiling")
    if top and top["auroc"] >= 0:
        lines.append(f"\nCeiling (not a result): the band chosen on the test split itself, at most "
                     f"{doc['config']['budget']:.0%} of test questions sampled, reaches {top['auroc']:.3f} "
                     f"({top['sampled_fraction']:.0%} sampled, band [{top['low']:.3f}, {top['high']:.3f}], "
                     f"weight {top['weight']}).")
    dev = doc.get("explored_on_dev")
    if dev:
        band = dev["cascade"]
        lines.append("\nThe samples' own spilled energies, chosen on dev, reported on test: a logistic model of the label "
                     f"on {', '.join(dev['features'])} (fitted on pooled dev); every question sampled, and as the "
                     "cascade's evidence in place of agreement ("
                     + ("no band beat one pass on dev" if band is None else
                        f"band [{band['low']:.3f}, {band['high']:.3f}], weight {band['weight']}, "
                        f"{dev['dev_sampled_share']:.0%} of dev sampled, dev AUROC {dev['dev_auroc']:.3f}") + "):\n")
        keys = list(dev["mean"])
        lines.append("| task | " + " | ".join(keys) + " |")
        lines.append("|---|" + "---|" * len(keys))
        for task in (*TASKS, "mean"):
            lines.append(f"| {task} | " + " | ".join(f(dev[task].get(k)) for k in keys) + " |")
    lines.append(f"\nExtra generated tokens per sampled question: at most {doc['extra_tokens_per_sampled_question']} "
                 f"({doc['config']['samples']} samples x {doc['config']['max_new_tokens']}). Sampling in this run took "
                 f"{sampling:.0f} s of {doc['seconds']['total']:.0f} s (samples already in the cache are read, not "
                 "drawn again).\n")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
