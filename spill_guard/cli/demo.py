"""``spill-guard demo``: a guarded chatbot session on the embedded model (the README's main job).

A handful of questions: some the 135M model answers right, some it gets wrong, one nobody
can know. For each, the demo prints the model's answer, the guard's action and risk score
against the calibrated threshold, the per-token spilled-energy heatmap, and whether the
answer was actually right; then a summary and the review log it wrote. ``--chat`` asks
your own questions instead.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from spill_guard.cli.common import add_model_options, load_spill_model
from spill_guard.review.terminal import ColorMode

DEFAULT_LOG = "spill-guard-review.jsonl"


@dataclass(frozen=True)
class DemoQuestion:
    question: str
    answers: tuple[str, ...]  # accepted answers; empty: nobody can know

    @property
    def knowable(self) -> bool:
        return bool(self.answers)


QUESTIONS = (
    DemoQuestion("What is the capital of France?", ("Paris",)),
    DemoQuestion("What is the chemical symbol for gold?", ("Au",)),
    DemoQuestion("What is the capital of Australia?", ("Canberra",)),
    DemoQuestion("What is 7 * 8?", ("56",)),
    DemoQuestion("What is 37 + 48?", ("85",)),
    DemoQuestion("What is the capital of Burkina Faso?", ("Ouagadougou",)),
    DemoQuestion("Who was the first person to walk on Mars?", ()),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="a guarded chatbot session on the embedded model, with a review log",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(p)
    p.add_argument(
        "--log",
        default=DEFAULT_LOG,
        metavar="PATH",
        help=f"review log to append to (.jsonl or .sqlite; default {DEFAULT_LOG})",
    )
    p.add_argument(
        "--chat", action="store_true", help="interactive: ask your own questions (empty line or Ctrl-D ends)"
    )
    p.add_argument(
        "--policy",
        choices=("abstain", "flag", "retry"),
        default="abstain",
        help="what to do with a risky answer (default abstain; retry resamples twice, then abstains)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        metavar="FILE",
        help="calibration JSON from `spill-guard calibrate` (default: the one packaged for the model)",
    )
    p.add_argument("--threshold", type=float, default=None, help="fixed risk threshold instead of a calibration")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.set_defaults(run=run)


def _policy(name: str):
    from spill_guard.policy import Abstain, Flag, Resample, Retry

    return {
        "abstain": Abstain(),
        "flag": Flag(),
        "retry": Retry(attempts=3, strategy=Resample(temperature=0.7), fallback=Abstain()),
    }[name]


def run(args: argparse.Namespace) -> int:
    from spill_guard.guard import SpillGuard
    from spill_guard.review.terminal import color_mode

    mode = color_mode(sys.stdout)
    guard = SpillGuard(
        load_spill_model(args),
        threshold=args.threshold,
        calibration=args.calibration,
        policy=_policy(args.policy),
        log=args.log,
        max_new_tokens=args.max_new_tokens,
    )
    with guard:
        print(_header(guard, args))
        if args.chat:
            _chat(guard, mode)
        else:
            _scripted(guard, mode)
        print(
            f"\nReview log: {args.log}  (list it: spill-guard review list --log {args.log};"
            f" label one: spill-guard review label ID correct|incorrect --log {args.log})"
        )
        print(
            f"Label them in your browser: spill-guard review serve --log {args.log}  then open http://127.0.0.1:8765/"
            " (needs pip install 'spill-guard[review-ui]'; docs/review-studio.md)"
        )
    return 0


def _header(guard, args: argparse.Namespace) -> str:
    rule = guard.rule
    return (
        f"spill_guard demo: model {guard.model.loaded.name}, score {rule.spec.name} on span '{rule.locator}', "
        f"flag when risk > {rule.threshold:.3f} ({rule.source}), policy {args.policy}."
    )


def _show(i: int, n: int | None, verdict, mode: ColorMode, truth: str | None) -> None:
    from spill_guard.review.terminal import heatmap

    head = f"[{i}/{n}] " if n else ""
    score = "unscorable" if verdict.score is None else f"{verdict.score:+.3f}"
    relation = "" if verdict.score is None else (" > " if verdict.flagged else " ≤ ")
    print(f"\n{head}Q: {verdict.question}")
    print(f"  model said : {verdict.original_answer.strip()}")
    print(f"  guard      : {verdict.action.value.upper():<9} risk {score}{relation}{verdict.threshold:+.3f}")
    if verdict.answer != verdict.original_answer:
        print(f"  user sees  : {verdict.answer}")
    if len(verdict.attempts) > 1:
        tried = ", ".join(
            f"{a.strategy} {a.score:+.3f}" if a.score is not None else a.strategy for a in verdict.attempts
        )
        print(f"  attempts   : {tried}")
    if truth is not None:
        print(f"  truth      : {truth}")
    print(f"  tokens (Δ) : {heatmap(verdict.tokens, verdict.token_scores, mode=mode)}")


def _truth(item: DemoQuestion, verdict) -> tuple[str, bool | None]:
    from spill_guard.tasks import judge

    if not item.knowable:
        return "nobody knows this (any confident answer is made up)", False
    right = judge(verdict.original_answer, item.answers)
    return ("right" if right else f"wrong (expected {item.answers[0]})"), right


def _scripted(guard, mode: ColorMode) -> None:
    outcomes = []
    for i, item in enumerate(QUESTIONS, 1):
        verdict = guard.ask(item.question, tags=["demo"])
        truth, right = _truth(item, verdict)
        _show(i, len(QUESTIONS), verdict, mode, truth)
        outcomes.append((bool(right), verdict.action.value == "abstained"))
    n = len(outcomes)
    right_before = sum(r for r, _ in outcomes)
    answered = [(r, a) for r, a in outcomes if not a]
    right_after = sum(r for r, _ in answered)
    caught = sum(1 for r, a in outcomes if a and not r)
    lost = sum(1 for r, a in outcomes if a and r)
    print(
        f"\nSummary: without the guard {right_before}/{n} answers right; with it {len(answered)} answered, "
        f"{right_after}/{len(answered) or 1} of them right, {n - len(answered)} abstained "
        f"({caught} wrong answers caught, {lost} right answers withheld)."
    )
    print("A 135M model is a weak signal source: expect misses both ways (docs/benchmarks.md has the numbers).")


def _chat(guard, mode: ColorMode) -> None:
    from spill_guard.errors import SpillGuardError

    print("Ask anything; an empty line or Ctrl-D ends the session.")
    if hasattr(sys.stdin, "reconfigure"):  # bytes that are not UTF-8 reach the guard, which refuses them clearly
        sys.stdin.reconfigure(errors="surrogateescape")
    while True:
        try:
            question = input("\nyou> ").strip()
        except EOFError:
            print()
            return
        if not question or question.lower() in ("exit", "quit"):
            return
        try:
            verdict = guard.ask(question, tags=["demo", "chat"])
        except SpillGuardError as exc:  # one bad question (too long, not UTF-8 ...) must not end the session
            print(f"error: {exc}\nAsk another question.", file=sys.stderr)
            continue
        print(f"bot> {verdict.answer.strip()}")
        _show(0, None, verdict, mode, None)
