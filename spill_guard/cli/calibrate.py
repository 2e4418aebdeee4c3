"""``spill-guard calibrate TASK -o FILE``: fit a flagging threshold on labelled answers and save it.

Labelled answers come from a task (built-in name, comma-separated names, or a .jsonl file;
answers are generated once and cached), from bench output folders (``--from-bench``, no
generation), or from a labelled review log (``--from-log``). The file is what
``SpillGuard(calibration=FILE)`` loads; docs/calibration.md explains every field.
"""

from __future__ import annotations

import argparse
import math
import warnings
from typing import Any

from spill_guard.calibration.consistency import DEFAULT_TEMPERATURE
from spill_guard.cli.common import add_model_options, load_spill_model
from spill_guard.errors import InvalidParameterError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit a flagging threshold on labelled answers and save it as JSON")
    p.add_argument(
        "task",
        nargs="?",
        default=None,
        help="built-in task(s) (arithmetic, capitals, elements; comma-separated) or a .jsonl task file",
    )
    p.add_argument("-o", "--output", required=True, help="calibration JSON file to write")
    p.add_argument(
        "--strategy",
        default="conformal",
        choices=("f1", "false-flag", "conformal"),
        help="conformal (default): guaranteed false-flag rate <= target; false-flag: empirical; f1: best F1",
    )
    p.add_argument(
        "--target", type=float, default=0.1, help="target false-flag rate α on correct answers (default 0.1)"
    )
    p.add_argument(
        "--spec", default="spilled_energy:mean", help="score spec scorer:pooling[@beta] (default spilled_energy:mean)"
    )
    p.add_argument("--locator", default="full", help="span locator (default full); also the span the judge labels on")
    p.add_argument("--select", action="store_true", help="choose scorer × pooling × locator by cross-validated AUROC")
    p.add_argument("--folds", type=int, default=5, help="folds for --select (default 5)")
    p.add_argument(
        "--split", default="dev", choices=("all", "dev", "test"), help="stable half of the task (default dev)"
    )
    p.add_argument("--n", type=int, default=None, help="at most N items per task")
    p.add_argument(
        "--from-bench",
        action="append",
        default=None,
        metavar="DIR",
        help="use the answers of a spill-guard bench output folder (repeatable)",
    )
    p.add_argument("--from-log", default=None, metavar="PATH", help="use the labelled records of a review log")
    p.add_argument(
        "--cache", default=None, metavar="DIR", help="generation cache folder (resumable; a bench --out folder works)"
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=48, help="generation length for TASK (default 48, as the bench)"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--second-opinion",
        type=int,
        default=None,
        metavar="K",
        help="also fit a second opinion: sample each question K more times, choose the band of one-pass risk where "
        "the samples' agreement helps, and fit the threshold on the final risk (docs/second-opinion.md)",
    )
    p.add_argument(
        "--second-opinion-temperature",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help=f"sampling temperature of the K samples (default {DEFAULT_TEMPERATURE:g})",
    )
    p.add_argument(
        "--second-opinion-budget",
        type=float,
        default=0.5,
        help="largest share of questions the band may sample (default 0.5): the cost knob",
    )
    p.add_argument("--no-progress", action="store_true")
    add_model_options(p)
    p.set_defaults(run=run)


def check_arguments(args: argparse.Namespace) -> list[str]:
    """Check every argument before the model loads; returns the task names (TASK split on commas)."""
    from spill_guard.calibration.calibrator import make_strategy
    from spill_guard.calibration.data import CALIBRATION_EXTRA_BETAS, check_bench_dir
    from spill_guard.cli.checks import existing_file, existing_folder, model_options, output_file, output_folder
    from spill_guard.evaluation.runner import check_run_options
    from spill_guard.scoring.specs import ScoreSpec
    from spill_guard.spans import make_locator
    from spill_guard.tasks import load_task

    spec = ScoreSpec.parse(args.spec)
    model_options(args, (*CALIBRATION_EXTRA_BETAS, spec.beta))
    make_locator(args.locator)
    if args.task is None and not args.from_bench and args.from_log is None:
        raise InvalidParameterError("nothing to calibrate on: give a TASK, --from-bench DIR or --from-log PATH.")
    if args.from_log is not None and (args.task is not None or args.from_bench):
        raise InvalidParameterError(
            "--from-log uses the log's labels alone; do not combine it with TASK or --from-bench."
        )
    make_strategy(args.strategy, args.target)  # --target must lie strictly between 0 and 1
    second_opinion(args)  # K, temperature and budget checked now
    if args.folds < 2:
        raise InvalidParameterError(
            f"--folds must be >= 2 (cross-validation needs two folds), got {args.folds}; e.g. --folds 5."
        )
    if args.n is not None and args.n < 1:
        raise InvalidParameterError(f"--n must be >= 1, got {args.n}; or leave it out to use every item.")
    check_run_options(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    output_file(args.output, "-o/--output")
    if args.cache is not None:
        output_folder(args.cache, "--cache")
    if args.from_log is not None:
        existing_file(args.from_log, "--from-log")
    tasks = [t.strip() for t in args.task.split(",") if t.strip()] if args.task is not None else []
    if args.task is not None and not tasks:
        raise InvalidParameterError(f"TASK {args.task!r} names no task; give e.g. capitals or my_questions.jsonl.")
    for d in args.from_bench or ():
        existing_folder(d, "--from-bench")
        check_bench_dir(d, task=args.task)
    # A bad name or a malformed file fails now, not after the model load (--from-bench takes TASK whole).
    for task in [args.task] if args.from_bench and args.task is not None else tasks:
        load_task(task)
    return tasks


def second_opinion(args: argparse.Namespace) -> Any:
    """The :class:`Consistency` that ``--second-opinion K`` asks for (None without it)."""
    from spill_guard.calibration.cascade import check_budget
    from spill_guard.calibration.consistency import Consistency, check_sampling

    if args.second_opinion is None:
        return None
    check_budget(args.second_opinion_budget, "--second-opinion-budget")
    check_sampling(
        args.second_opinion,
        args.second_opinion_temperature,
        samples_option="--second-opinion",
        temperature_option="--second-opinion-temperature",
    )
    return Consistency(samples=args.second_opinion, temperature=args.second_opinion_temperature)


def run(args: argparse.Namespace) -> int:
    from spill_guard.calibration import calibrate, from_bench, from_review_log, from_task
    from spill_guard.calibration.data import CALIBRATION_EXTRA_BETAS
    from spill_guard.scoring.specs import ScoreSpec

    tasks = check_arguments(args)
    spec = ScoreSpec.parse(args.spec)
    betas = tuple(dict.fromkeys((*CALIBRATION_EXTRA_BETAS, spec.beta)))
    # A review log needs no model to read: read it first, so a bad log fails before the load.
    cset = from_review_log(args.from_log) if args.from_log is not None else None
    if cset is not None:
        print_skipped(cset.skipped)
    sm = load_spill_model(args, extra_betas=tuple(b for b in betas if b != args.beta))
    if cset is None and args.from_bench:
        cset = from_bench(sm, args.from_bench, task=args.task, label_locator=args.locator)
    elif cset is None:
        cset = from_task(
            sm,
            tasks,
            split=args.split,
            n=args.n,
            cache_dir=args.cache,
            label_locator=args.locator,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    if args.second_opinion is not None and not args.no_progress:
        print(
            f"second opinion: sampling each of the {len(cset)} labelled questions {args.second_opinion} more times "
            f"(at most {args.max_new_tokens} tokens each)",
            flush=True,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cal = calibrate(
            sm,
            cset,
            spec=spec,
            locator=args.locator,
            strategy=args.strategy,
            target=args.target,
            select=args.select,
            k=args.folds,
            second_opinion=second_opinion(args),
            budget=args.second_opinion_budget,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
        )
    for w in caught:
        print(f"warning: {w.message}")
    path = cal.save(args.output)
    print(summary(cal))
    print(f"wrote {path}")
    return 0


def print_skipped(skipped: list[str], limit: int = 20) -> None:
    """One line per labelled record left out, with why (the first ``limit``, then a count)."""
    for line in skipped[:limit]:
        print(f"skipped {line}")
    if len(skipped) > limit:
        print(f"skipped {len(skipped) - limit} more labelled records ({len(skipped)} in all)")


def summary(cal) -> str:
    """A few lines: what was fitted, on what, and how it behaves on the calibration data."""
    m, s = cal.metrics, cal.sample
    target = "" if cal.target is None else f" target α={cal.target:g}"
    thr = "never flags (+inf)" if math.isinf(cal.threshold) and cal.threshold > 0 else f"{cal.threshold:.4f}"
    raw = "" if cal.direction == 1 else " (raw score points the other way: risk = -score)"
    lines = [
        f"calibration: {cal.spec} on {cal.locator!r}, strategy {cal.strategy}{target}, model {cal.model}",
        f"data: {cal.data_source.kind} {cal.data_source.detail}; n={s.n} ({s.n_correct} correct, "
        f"{s.n_incorrect} incorrect, {s.n_skipped} skipped)",
        f"direction {cal.direction:+d}{raw}; flag when risk > {thr}",
        f"on the calibration data: AUROC {m.auroc:.3f} [{m.auroc_ci[0]:.3f}, {m.auroc_ci[1]:.3f}], "
        f"false-flag rate {m.false_flag_rate:.3f}, recall {m.recall:.3f}, F1 {m.f1:.3f}, "
        f"abstention {m.abstention_rate:.3f}, accuracy {m.accuracy_before:.3f} -> {m.accuracy_after:.3f} on answered",
    ]
    so = cal.second_opinion
    if so is not None:
        lines.append(
            f"second opinion: {so.samples} samples at temperature {so.temperature:g} for one-pass risk in "
            f"[{so.low:.4f}, {so.high:.4f}] ({so.sampled_share:.0%} of these questions, budget {so.budget:.0%}), "
            f"weight {so.weight:g}; AUROC {so.one_pass_auroc:.3f} one pass -> {so.auroc:.3f} "
            f"(consistency alone {so.consistency_auroc:.3f}); the threshold is on the final risk"
        )
    sel = cal.selection
    if sel is not None:
        lines.append(
            f"selection ({sel.k}-fold cross-validated AUROC, mean ± sd; span coverage >= {sel.min_coverage:g}):"
        )
        for r in sel.table:
            lines.append(
                f"  {r.spec:<28} {r.locator:<32} {r.cv_auroc_mean:.3f} ± {r.cv_auroc_sd:.3f}  coverage {r.coverage:.2f}"
            )
        if sel.default is not None:
            d = sel.default
            lines.append(
                f"default {d.spec} on {d.locator!r}: {d.cv_auroc_mean:.3f} ± {d.cv_auroc_sd:.3f}; "
                f"the pick is {sel.improvement:+.3f} AUROC better"
            )
    return "\n".join(lines)
