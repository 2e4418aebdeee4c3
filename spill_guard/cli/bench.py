"""``spill-guard bench --task NAME|PATH.jsonl --out DIR``: measure detection quality on a task.

Writes ``DIR/results.json`` (the contract in spill_guard/evaluation/results.py),
``DIR/results.md``, and, when matplotlib is installed (``spill-guard[bench]``), ROC and
histogram PNGs. Generations are cached in ``DIR``; re-running resumes and re-scores
without generating again.

``--second-opinion K`` also samples K answers per question (cached in ``DIR`` too) and adds a
``second_opinion`` object to ``results.json``: the default rule with a second opinion where it is
unsure, and consistency alone (spill_guard/calibration/cascade_eval.py does the work).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spill_guard.calibration.consistency import DEFAULT_TEMPERATURE
from spill_guard.cli.common import add_model_options, load_spill_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure detection quality (AUROC etc.) of every scorer on a task")
    p.add_argument("--task", required=True, help="built-in task (arithmetic, capitals, elements) or a .jsonl file")
    p.add_argument("--n", type=int, default=None, help="use at most N items (a stable shuffle of the split)")
    p.add_argument(
        "--split", default="all", choices=("all", "dev", "test"), help="stable half of the items (default all)"
    )
    p.add_argument("--out", required=True, help="output folder (also holds the resumable generation cache)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--locators", default=None, help="comma-separated locator names (default: all built-in + LLM extractor)"
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the AUROC interval")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--second-opinion",
        type=int,
        default=None,
        metavar="K",
        help="also measure the default rule with a second opinion of K samples (1..64) where it is unsure, "
        "and consistency alone; adds `second_opinion` to results.json",
    )
    p.add_argument(
        "--second-opinion-temperature",
        type=float,
        default=None,
        metavar="T",
        help=f"sampling temperature of the second opinion (default {DEFAULT_TEMPERATURE:g})",
    )
    p.add_argument(
        "--second-opinion-budget",
        type=float,
        default=None,
        metavar="B",
        help="largest share of questions the cross-fitted band may sample, in (0, 1] (default 0.5)",
    )
    p.add_argument(
        "--second-opinion-calibration",
        default=None,
        metavar="FILE",
        help="use the band, weight and samples of this calibration's second_opinion instead of cross-fitting "
        "(K defaults to its samples)",
    )
    add_model_options(p)
    p.set_defaults(run=run)


def parse_locators(text: str | None) -> list[str]:
    """``--locators`` as a list of names, each checked (the LLM extractor is built by the runner)."""
    from spill_guard.evaluation.runner import DEFAULT_LOCATORS
    from spill_guard.spans import make_locator

    if text is None:
        return list(DEFAULT_LOCATORS)
    names = list(dict.fromkeys(s.strip() for s in text.split(",")))
    for name in names:
        if name != "llm_extractor":
            make_locator(name)  # raises InvalidParameterError naming the bad locator
    return names


def run(args: argparse.Namespace) -> int:
    from spill_guard.calibration.cascade_eval import evaluate_second_opinion, second_opinion_setup
    from spill_guard.cli.checks import existing_file, model_options, output_folder
    from spill_guard.errors import InvalidParameterError
    from spill_guard.evaluation.results import to_markdown
    from spill_guard.evaluation.runner import BENCH_EXTRA_BETAS, check_run_options, run_bench
    from spill_guard.evaluation.splits import select
    from spill_guard.review.atomic_file import atomic_text_file
    from spill_guard.tasks import load_task

    # Every argument is checked before the model loads: a bad one fails in well under a second.
    model_options(args, BENCH_EXTRA_BETAS)
    check_run_options(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, n_boot=args.bootstrap)
    output_folder(args.out, "--out")
    locators = parse_locators(args.locators)
    if args.second_opinion_calibration is not None:
        existing_file(args.second_opinion_calibration, "--second-opinion-calibration")
    second = second_opinion_setup(
        args.second_opinion,
        temperature=args.second_opinion_temperature,
        budget=args.second_opinion_budget,
        calibration=args.second_opinion_calibration,
        locators=locators,
    )
    items = select(load_task(args.task), args.split, args.n)
    if not items:
        raise InvalidParameterError(f"task {args.task!r} has no items in split {args.split!r}; choose another --split.")
    sm = load_spill_model(args, extra_betas=BENCH_EXTRA_BETAS)
    if second is not None:
        second.check_model(sm)  # a calibration of another model: refused before generating anything
    task_name = Path(args.task).stem if args.task.endswith(".jsonl") else args.task
    run_ = run_bench(
        sm,
        items,
        args.out,
        task=task_name,
        split=args.split,
        locators=locators,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        n_boot=args.bootstrap,
        progress=not args.no_progress,
    )
    out = Path(args.out)
    report = run_.report
    if second is not None:
        measured = evaluate_second_opinion(
            sm,
            run_,
            items,
            out,
            second,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            n_boot=args.bootstrap,
            progress=not args.no_progress,
        )
        report = run_.report = report.model_copy(update={"second_opinion": measured})
    # Atomic, so a killed run leaves the previous results.json (which calibrate --from-bench reads), not half of one.
    for name, text in (("results.json", report.to_json()), ("results.md", to_markdown(report))):
        with atomic_text_file(out / name) as fh:
            fh.write(text)
    plots = write_plots(run_, out)
    d = report.default
    print(f"{report.task}: n={report.n}, accuracy ({d.locator}) {d.accuracy:.3f}")
    print(f"default {d.spec} on {d.locator}: AUROC {d.auroc if d.auroc is None else round(d.auroc, 3)}")
    best = report.best()
    if best is not None:
        print(f"best overall: {best.spec} on {best.locator}: AUROC {best.auroc:.3f}")
    so = report.second_opinion
    if so is not None:
        print(
            f"second opinion (K={so.samples}, band {so.band_from}): AUROC {_rounded(so.auroc)} vs one pass "
            f"{_rounded(so.one_pass_auroc)}, {so.sampled_fraction:.0%} sampled, "
            f"{so.extra_tokens_per_question:.1f} extra tokens/question; consistency alone "
            f"{_rounded(so.consistency_only.auroc)} ({so.consistency_only.extra_tokens_per_question:.1f})"
        )
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}" + (f", {len(plots)} plots" if plots else ""))
    return 0


def _rounded(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def write_plots(run_, out: Path) -> list[Path]:
    """ROC of the default vs. the best baseline and best energy score; histogram of the default."""
    from spill_guard.evaluation import plots
    from spill_guard.scoring.specs import ENERGY_SCORERS, OTHER_SCORERS, ScoreSpec

    report = run_.report
    d = report.default
    try:
        plots._pyplot()
    except ImportError as exc:
        print(f"note: no plots ({exc})", file=sys.stderr)
        return []
    chosen = [("default " + d.spec, d)]
    for label, scorers in (("best energy", ENERGY_SCORERS), ("best baseline", OTHER_SCORERS)):
        best = report.best(scorers=scorers, locator=d.locator)
        if best is not None:
            chosen.append((f"{label} {best.spec}", best))
    curves = []
    for label, row in chosen:
        if row.auroc is None:
            continue
        scores, labels = run_.scores(row.locator, ScoreSpec.parse(row.spec))
        curves.append((label, scores, labels, row.auroc))
    written = []
    if curves:
        written.append(plots.plot_roc(curves, out / "roc.png", f"{report.task}: {d.locator} span"))
        scores, labels = curves[0][1], curves[0][2]
        written.append(
            plots.plot_histogram(scores, labels, out / "hist_default.png", f"{report.task}: {d.spec}", d.spec)
        )
    return written
