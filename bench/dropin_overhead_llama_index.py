"""Cost of the LlamaIndex drop-in: an unmodified ``HuggingFaceLLM.complete``, plain vs instrumented.

One ``HuggingFaceLLM`` over the embedded SmolLM2-135M-Instruct, greedy, every answer exactly
``--tokens`` tokens long (``min_new_tokens == max_new_tokens``, so both arms do the same work;
the generated ids are checked to be identical). Arms, interleaved with the order reversed every
repeat (AB BA AB ..., after a warm-up round) so a drift of the shared machine hits both alike:

  plain         ``llm.complete(prompt)``, the model's own ``generate`` (no wrapper installed)
  instrumented  the same call after ``instrument(llm, guard)``: capture hook, the extra forward
                step for ``z_(T+1)``, ScoredAnswer + verdict, SpillScoredEvent, response annotation

Each call is timed end to end, wall (``perf_counter``) and CPU (``process_time`` of this process;
torch runs one thread, so other processes on the machine distort it much less than wall time).
The overhead is reported as the median over repeats of the paired ratio instrumented/plain (both
arms' totals over all prompts in that repeat), and as the ratio of the arms' medians. On a shared
machine that pair can move by several percent either way, so the run also times the parts the
instrumentation adds, each alone (CPU time, medians): the extra forward step for ``z_(T+1)``, the
per-step reduction of the hook (``logsumexp`` over the vocabulary), and building the ScoredAnswer
and verdict; their sum over the plain median is the expected overhead.

    python bench/dropin_overhead_llama_index.py --out bench/results/dropin_overhead_llama_index.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

PROMPTS = ("Where was Acme Lumen Robotics founded?", "Explain in two sentences why the sky is blue.",
           "Name three uses of copper.", "What does a compiler do?")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=64, help="answer length of every call")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per arm (after --warmup)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--prompts", type=int, default=2, help=f"prompts per repeat (at most {len(PROMPTS)})")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", type=Path, default=Path("bench/results/dropin_overhead_llama_index.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    from llama_index.llms.huggingface import HuggingFaceLLM

    from spill_guard import SpillGuard, SpillModel
    from spill_guard.capture.recorder import GenerationRecorder
    from spill_guard.cli.common import quiet_transformers
    from spill_guard_llama_index import instrument

    quiet_transformers()
    spill = SpillModel.load(device="cpu")
    loaded = spill.loaded
    tok = loaded.tokenizer
    llm = HuggingFaceLLM(
        model=loaded.model, tokenizer=tok, max_new_tokens=args.tokens, context_window=loaded.context_window,
        generate_kwargs={"do_sample": False, "min_new_tokens": args.tokens},
        completion_to_prompt=lambda q: tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                               add_generation_prompt=True),
    )
    guard = SpillGuard(spill)  # packaged calibration of the embedded model
    prompts = PROMPTS[: args.prompts]
    load_start = os.getloadavg()
    started = time.perf_counter()

    def run(arm: str) -> dict:
        scorer = instrument(llm, guard) if arm == "instrumented" else None
        wall = cpu = 0.0
        texts = []
        try:
            for prompt in prompts:
                w0, c0 = time.perf_counter(), time.process_time()
                response = llm.complete(prompt)
                wall += time.perf_counter() - w0
                cpu += time.process_time() - c0
                texts.append(response.text)
                if scorer is not None and "spill_guard" not in response.additional_kwargs:
                    raise SystemExit(f"instrumented call was not scored: {scorer.last_error}")
        finally:
            if scorer is not None:
                scorer.uninstrument()
            recorder = GenerationRecorder.for_model(loaded.model, tok)
            recorder.uninstall()  # the plain arm runs the model's own generate, no wrapper at all
        return {"wall": wall, "cpu": cpu, "texts": texts}

    rounds = []
    for r in range(args.warmup + args.repeats):
        order = ("plain", "instrumented") if r % 2 == 0 else ("instrumented", "plain")
        result = {arm: run(arm) for arm in order}
        rounds.append({"order": "".join(a[0].upper() for a in order), "warmup": r < args.warmup, **result})
        print(f"round {r} {rounds[-1]['order']}: plain {result['plain']['cpu']:.2f}s cpu, "
              f"instrumented {result['instrumented']['cpu']:.2f}s cpu", file=sys.stderr)
    timed = [x for x in rounds if not x["warmup"]]
    components = time_components(spill, guard, prompts[0], args.tokens)
    same_text = all(x["plain"]["texts"] == x["instrumented"]["texts"] == timed[0]["plain"]["texts"] for x in timed)
    summary = {}
    for clock in ("wall", "cpu"):
        plain = [x["plain"][clock] for x in timed]
        inst = [x["instrumented"][clock] for x in timed]
        paired = [i / p for i, p in zip(inst, plain)]
        summary[clock] = {
            "plain_median_s": statistics.median(plain), "instrumented_median_s": statistics.median(inst),
            "ratio_of_medians": statistics.median(inst) / statistics.median(plain),
            "paired_ratio_median": statistics.median(paired), "paired_ratio_min": min(paired),
            "paired_ratio_max": max(paired),
        }
    import llama_index.core
    import transformers

    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "llama_index_core": llama_index.core.__version__, "machine": platform.platform(), "cpus": os.cpu_count(),
        "torch_threads": args.threads, "load_average_start": list(load_start), "load_average_end": list(os.getloadavg()),
        "run_seconds": round(time.perf_counter() - started, 1),
        "model": loaded.name, "tokens_per_call": args.tokens, "prompts_per_repeat": len(prompts),
        "repeats": args.repeats, "warmup": args.warmup, "same_answers_in_both_arms": same_text,
        "target": "instrumented/plain <= 1.03", "summary": summary, "components_ms": components,
        "expected_overhead": (components["final_step"] + args.tokens * components["hook_step"]
                              + components["scoring"]) / 1e3 / summary["cpu"]["plain_median_s"],
        "rounds": [{k: (v if k in ("order", "warmup") else {"wall": v["wall"], "cpu": v["cpu"]}) for k, v in x.items()}
                   for x in rounds],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


@torch.no_grad()
def time_components(spill, guard, prompt: str, tokens: int) -> dict[str, float]:
    """CPU milliseconds of each part the instrumentation adds (medians), measured alone."""
    from spill_guard.policy import Flag
    from spill_guard.report import build_scored_answer

    def median_ms(fn, n: int) -> float:
        times = []
        for _ in range(n):
            c0 = time.process_time()
            fn()
            times.append((time.process_time() - c0) * 1e3)
        return statistics.median(times)

    [answer] = spill.generate([prompt], max_new_tokens=tokens, min_new_tokens=tokens, stats=guard.capture_stats)
    model, ids = spill.loaded.model, torch.tensor([answer.prompt_ids + answer.answer_ids])
    cache = model(input_ids=ids[:, :-1], use_cache=True).past_key_values
    logits = torch.randn(1, model.config.vocab_size)

    def final_step():  # one token on the cache, as ensure_final_step runs it (the cache grows by one; negligible)
        model(input_ids=ids[:, -1:], past_key_values=cache, use_cache=True)

    def scoring():  # what the scorer does per answer once the trace exists
        scored = build_scored_answer(tokenizer=spill.tokenizer, model_name=spill.loaded.name, prompt_ids=answer.prompt_ids,
                                     trace=answer.trace, stopped_on_eos=answer.stopped_on_eos, beta=spill.beta)
        guard.verdict_from(Flag().apply(guard.assess(scored, prompt)), question=prompt).model_dump(mode="json")

    return {"final_step": median_ms(final_step, 5), "hook_step": median_ms(lambda: torch.logsumexp(logits, -1), 200),
            "scoring": median_ms(scoring, 20)}


def markdown(r: dict) -> str:
    lines = [
        "# LlamaIndex drop-in overhead: HuggingFaceLLM.complete, plain vs instrumented", "",
        f"- date: {r['date']}", f"- command: `{r['command']}`",
        f"- python {r['python']}, torch {r['torch']}, transformers {r['transformers']}, "
        f"llama-index-core {r['llama_index_core']}",
        f"- machine: {r['machine']}, {r['cpus']} CPU cores, torch threads {r['torch_threads']}, load average "
        f"(1/5/15 min) at start {[round(x, 2) for x in r['load_average_start']]}, at end "
        f"{[round(x, 2) for x in r['load_average_end']]}; total run time {r['run_seconds']} s",
        f"- model {r['model']}, greedy, {r['tokens_per_call']} tokens per call, {r['prompts_per_repeat']} prompts "
        f"per repeat, {r['repeats']} repeats after {r['warmup']} warm-up round(s), orders "
        f"{' '.join(x['order'] for x in r['rounds'])} (P plain, I instrumented)",
        f"- identical answers in both arms and all repeats: {r['same_answers_in_both_arms']}",
        f"- target: {r['target']}", "",
        "| clock | plain median | instrumented median | ratio of medians | paired ratio median [min, max] |",
        "|---|---|---|---|---|",
    ]
    for clock, s in r["summary"].items():
        lines.append(f"| {clock} | {s['plain_median_s']:.3f} s | {s['instrumented_median_s']:.3f} s | "
                     f"{s['ratio_of_medians']:.4f} | {s['paired_ratio_median']:.4f} "
                     f"[{s['paired_ratio_min']:.4f}, {s['paired_ratio_max']:.4f}] |")
    c = r["components_ms"]
    lines += [
        "", "Parts the instrumentation adds, each timed alone (CPU, medians): extra forward step for z_(T+1) "
        f"{c['final_step']:.1f} ms, hook reduction {c['hook_step']:.3f} ms per step "
        f"(x {r['tokens_per_call']} steps), ScoredAnswer + verdict {c['scoring']:.1f} ms; "
        f"sum / plain CPU median = expected overhead {100 * r['expected_overhead']:.2f} %.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
