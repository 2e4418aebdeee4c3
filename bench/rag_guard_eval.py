"""Held-out evaluation of the RAG calibration used by the LangChain and LlamaIndex examples.

The calibration files were fitted on the **dev** half of ``examples/data/acme_rag_task.jsonl``
(``spill-guard calibrate ... --split dev``); here they are applied unchanged to the **test**
half, which nothing was chosen on. For each rule it reports: false-flag rate on correct
answers (Wilson 95 % interval), recall of wrong answers, abstention rate, accuracy of the
answered questions before and after abstaining on flagged answers, and the test AUROC of
the rule's score (stratified bootstrap 95 % interval); overall and per kind of question
(answerable from the docs / not answerable). For comparison it also applies the rules the
examples used before: the packaged closed-book calibration of the model and the
hand-picked threshold −0.25 of the old LlamaIndex example.

Answers are generated once per split and cached (the calibration's own cache layout):

    .venv/bin/python bench/rag_guard_eval.py \\
        --calibration examples/data/acme_rag_calibration.json \\
        --calibration bench/results/rag_guard_eval.select_calibration.json \\
        --cache bench/out/acme_rag-test -o bench/results/rag_guard_eval
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from spill_guard.calibration import Calibration, binomial_ci, from_task
from spill_guard.calibration.data import CALIBRATION_EXTRA_BETAS
from spill_guard.calibration.file import default_calibration
from spill_guard.evaluation.metrics import auroc, auroc_ci
from spill_guard.tasks import load_task

TASK = "examples/data/acme_rag_task.jsonl"
OLD_LLAMA_INDEX_THRESHOLD = -0.25  # read off the old example's own 3 questions; shown for comparison only


def rule_rows(name: str, spec: str, locator: str, direction: int, threshold: float, cset, kinds: dict[str, str]) -> list[dict]:
    """Metrics of ``risk = direction × score > threshold`` on every answer of ``cset``, overall and per kind."""
    subset = cset.scores(spec, locator)
    risk_by_group = dict(zip(subset.groups, direction * subset.scores))
    rows = []
    for kind in ("all", "answerable", "unanswerable"):
        answers = [a for a in cset.answers if kind == "all" or kinds[a.group] == kind]
        incorrect = np.array([a.incorrect for a in answers])
        risk = np.array([risk_by_group.get(a.group, np.nan) for a in answers])
        flagged = np.nan_to_num(risk, nan=-np.inf) > threshold  # an unscorable answer is answered, not flagged
        n_correct, n_bad = int((~incorrect).sum()), int(incorrect.sum())
        false_flags = int((flagged & ~incorrect).sum())
        answered = ~flagged
        scored = ~np.isnan(risk)
        both = 0 < int(incorrect[scored].sum()) < int(scored.sum())
        rows.append({
            "rule": name, "spec": spec, "locator": locator, "threshold": threshold, "kind": kind,
            "n": len(answers), "n_correct": n_correct, "n_incorrect": n_bad, "n_unscored": int((~scored).sum()),
            "false_flags": false_flags, "false_flag_rate": false_flags / n_correct if n_correct else None,
            "false_flag_ci": list(binomial_ci(false_flags, n_correct)) if n_correct else None,
            "recall": float((flagged & incorrect).sum() / n_bad) if n_bad else None,
            "abstention_rate": float(flagged.mean()),
            "accuracy_before": float((~incorrect).mean()),
            "accuracy_after": float((~incorrect[answered]).mean()) if answered.any() else None,
            "auroc": auroc(risk[scored], incorrect[scored]) if both else None,
            "auroc_ci": list(auroc_ci(risk[scored], incorrect[scored])) if both else None,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", action="append", required=True, help="calibration JSON fitted on dev (repeatable)")
    parser.add_argument("--cache", default="bench/out/acme_rag-test", help="generation cache of the test split")
    parser.add_argument("-o", "--out", default="bench/results/rag_guard_eval", help="output stem (.md and .json)")
    args = parser.parse_args(argv)

    from spill_guard import SpillModel
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    sm = SpillModel.load(device="cpu", extra_betas=CALIBRATION_EXTRA_BETAS)  # as `spill-guard calibrate`, so its cache is shared
    items = {it.id: it for it in load_task(TASK)}
    kinds = {i: it.meta["kind"] for i, it in items.items()}
    cset = from_task(sm, [TASK], split="test", cache_dir=args.cache, progress=False)

    rules = []
    for path in args.calibration:
        cal = Calibration.load(path)
        if cal.data_source.split != "dev":
            raise SystemExit(f"{path} was fitted on split {cal.data_source.split!r}; a held-out report needs a dev-split calibration.")
        cal.check_compatible(sm)
        rules.append((f"{Path(path).name} ({cal.strategy} α={cal.target:g}, fitted on dev)", cal.spec, cal.locator,
                      cal.direction, cal.threshold))
    packaged = default_calibration(sm.loaded.name)
    if packaged is not None:
        rules.append(("packaged closed-book calibration (before)", packaged.spec, packaged.locator,
                      packaged.direction, packaged.threshold))
    rules.append(("hand-picked −0.25 (old LlamaIndex example)", "spilled_energy:mean", "full", 1, OLD_LLAMA_INDEX_THRESHOLD))

    rows = [r for rule in rules for r in rule_rows(*rule, cset, kinds)]
    retrieval = [it.meta.get("gold_in_context") for it in items.values() if it.meta["kind"] == "answerable"
                 and it.id in {a.group for a in cset.answers}]
    result = {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "model": sm.loaded.name,
        "task": TASK,
        "split": "test",
        "n_test": len(cset),
        "answerable_with_gold_in_context": [sum(bool(x) for x in retrieval), len(retrieval)],
        "rows": rows,
        "answers": [{"id": a.group, "kind": kinds[a.group], "incorrect": a.incorrect, "answer": a.answer.answer}
                    for a in cset.answers],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(to_markdown(result), encoding="utf-8")
    print(to_markdown(result))
    return 0


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def to_markdown(result: dict) -> str:
    got, total = result["answerable_with_gold_in_context"]
    lines = [
        "# RAG guard: held-out results on the Acme docs task",
        "",
        f"Model {result['model']}; task `{result['task']}` (retrieved contexts as the RAG examples build them), "
        f"**test split only** ({result['n_test']} questions; thresholds were fitted on the dev split). "
        f"The retriever put a gold answer into the context for {got}/{total} answerable test questions. "
        "Flagged answers are abstained on. False-flag rate = flagged correct / correct, with a Wilson 95 % "
        "interval; recall = flagged wrong / wrong; accuracy = correct / answered; AUROC of the rule's risk "
        "on test with a bootstrap 95 % interval. Generated by `" + result["command"] + "` on " + result["date"] + ".",
        "",
        "| rule | score | questions | n (correct/wrong) | false-flag rate [95 % CI] | recall of wrong | abstention | accuracy before → after | test AUROC [95 % CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ffr = "–" if r["false_flag_rate"] is None else (
            f"{r['false_flag_rate']:.3f} ({r['false_flags']}/{r['n_correct']}) [{r['false_flag_ci'][0]:.2f}, {r['false_flag_ci'][1]:.2f}]")
        auc = "–" if r["auroc"] is None else f"{r['auroc']:.3f} [{r['auroc_ci'][0]:.2f}, {r['auroc_ci'][1]:.2f}]"
        lines.append(
            f"| {r['rule']} | `{r['spec']}` > {r['threshold']:.3f} | {r['kind']} | {r['n']} ({r['n_correct']}/{r['n_incorrect']}) | "
            f"{ffr} | {_f(r['recall'])} | {_f(r['abstention_rate'])} | {_f(r['accuracy_before'])} → {_f(r['accuracy_after'])} | {auc} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
