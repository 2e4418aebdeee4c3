"""vLLM generation with spill_guard's capture vs plain vLLM: throughput ratio and extra memory.

Two engines in this process on the same weights and settings: a plain ``vllm.LLM`` and a
:class:`~spill_guard.backends.vllm.VllmBackend` (capture processor, raw logprobs, the
z_(T+1) step or follow-up request, the fetch, trace and ScoredAnswer assembly — everything a
guarded call pays). Arms, interleaved within each repeat (order rotated) so machine load hits all alike:

Throughput is measured in wall-clock tokens/s and in tokens per CPU-second of this process
(the engines run in-process), the latter less sensitive to other jobs on a shared machine.

- ``plain``: plain vLLM, no logprobs;
- ``plain_logprobs``: plain vLLM with ``logprobs=0`` (splits vLLM's logprob path from ours);
- ``capture_always``: the guarded call with ``final_step="always"`` (a z_(T+1) step for every answer);
- ``capture_auto``: ``final_step="auto"`` (what the guard uses: no step after a text-less stop token).

GPU section (``bench/vllm_overhead_gpu.py``): where ``torch.cuda.is_available()``, a Llama-3-8B-shaped
model with random weights (vLLM ``load_format="dummy"``, no download), plain vs capture_auto on one
engine; skipped and recorded as such elsewhere.

Run in .venv-vllm:

    .venv-vllm/bin/python bench/vllm_overhead.py --out bench/results/vllm_overhead_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from throughput_ratios import summarize

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
# One unbound OpenMP thread, as bench/overhead.py --threads 1: with vLLM's default (threads bound
# to both cores of this shared 2-core machine) a descheduled thread leaves the other spinning, and
# repeats swung 10x in wall and CPU time alike.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

SUBJECTS = ["France", "Japan", "Brazil", "Canada", "Egypt", "Kenya", "Italy", "Spain", "India", "Chile", "Norway",
            "Peru", "Ghana", "Nepal", "Cuba", "Fiji", "Iran", "Laos", "Mali", "Oman", "Chad", "Togo", "Iraq",
            "Qatar", "Yemen", "Sudan", "Libya", "Gabon", "Benin", "Niger", "Haiti", "Malta"]
ARMS = ("plain", "plain_logprobs", "capture_always", "capture_auto")
#: "describe": open-ended answers that run to --max-new-tokens (z_(T+1) is needed under both modes);
#: "capital": short answers that end on <|im_end|> (final_step="auto" skips z_(T+1) for them).
QUESTIONS = {"describe": "Tell me about {}.", "capital": "What is the capital of {}?"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--questions", choices=sorted(QUESTIONS), default="describe")
    parser.add_argument("--block-size", type=int, default=None,
                        help="vLLM KV block size for both engines (CPU default 128; prefix caching reuses whole blocks)")
    parser.add_argument("--skip-gpu", action="store_true", help="leave out the GPU section (bench/vllm_overhead_gpu.py)")
    parser.add_argument("--gpu-batches", default="1,8,32")
    parser.add_argument("--gpu-repeats", type=int, default=5)
    parser.add_argument("--gpu-max-new-tokens", type=int, default=256)
    parser.add_argument("--gpu-prompt-tokens", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    arms = args.arms.split(",")
    if "plain" not in arms or any(a not in ARMS for a in arms):
        parser.error(f"--arms must include 'plain' and be among {list(ARMS)}, got {args.arms!r}")

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from spill_guard import SpillModel
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    options = {"max_model_len": 1024, "seed": 0, "enforce_eager": True, "max_num_seqs": 32}
    if args.block_size:
        options["block_size"] = args.block_size
    guarded = SpillModel.load(backend="vllm", engine_options=options)
    plain = LLM(model=guarded.loaded.source, dtype="float32", enable_prefix_caching=True, **options)
    stops = guarded.loaded.stop_token_ids
    prompts = [guarded.prompt_ids(QUESTIONS[args.questions].format(s)) for s in SUBJECTS]
    final_steps = {}  # batch -> answers that got z_(T+1) under "auto"

    answers_of: dict[tuple[str, int], list[list[int]]] = {}  # (arm, batch) -> the warm-up's answer tokens

    def plain_arm(logprobs: int | None):
        def run(batch: list[list[int]]) -> int:
            params = SamplingParams(max_tokens=args.max_new_tokens, temperature=0.0, stop_token_ids=stops,
                                    logprobs=logprobs)
            outs = plain.generate([TokensPrompt(prompt_token_ids=p) for p in batch], params, use_tqdm=False)
            answers_of.setdefault((arm_of[id(run)], len(batch)), [list(o.outputs[0].token_ids) for o in outs])
            return sum(len(o.outputs[0].token_ids) for o in outs)
        return run

    def guarded_arm(final_step: str):
        def run(batch: list[list[int]]) -> int:
            answers = guarded.generate_from_ids(batch, max_new_tokens=args.max_new_tokens, stats="energy",
                                                final_step=final_step)
            if final_step == "auto":
                final_steps[len(batch)] = sum(a.trace.final_step for a in answers)
            answers_of.setdefault((arm_of[id(run)], len(batch)), [list(a.answer_ids) for a in answers])
            return sum(len(a.answer_ids) for a in answers)
        return run

    runners = {"plain": plain_arm(None), "plain_logprobs": plain_arm(0),
               "capture_always": guarded_arm("always"), "capture_auto": guarded_arm("auto")}
    arm_of = {id(run): arm for arm, run in runners.items()}
    started = time.perf_counter()
    batches = [int(b) for b in args.batches.split(",")]
    for b in batches:  # warm-up: first calls pay one-off allocations
        for arm in arms:
            runners[arm](prompts[:b])
    load_start = os.getloadavg()
    rows = {b: {arm: [] for arm in arms} for b in batches}
    cpu_rows = {b: {arm: [] for arm in arms} for b in batches}
    for rep in range(args.repeats):
        for b in batches:
            order = arms[rep % len(arms):] + arms[: rep % len(arms)]  # rotate who runs first
            for arm in order:
                start, cpu = time.perf_counter(), time.process_time()
                tokens = runners[arm](prompts[:b])
                rows[b][arm].append(tokens / (time.perf_counter() - start))
                # CPU seconds of this process (engine in-process): less sensitive to other jobs' load
                cpu_rows[b][arm].append(tokens / (time.process_time() - cpu))
    stats = guarded.backend.store_stats()
    columns = guarded.backend.columns.width
    # greedy: every arm must have produced the same tokens (the capture observes, never steers)
    identical = all(answers_of[(arm, b)] == answers_of[("plain", b)] for arm in arms for b in batches)
    result = {
        "command": "bench/vllm_overhead.py " + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in vars(args).items()
            if v not in (None, False) and k != "out"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_start": load_start, "load_average_at_end": os.getloadavg()},
        "max_new_tokens": args.max_new_tokens,
        "questions": QUESTIONS[args.questions],
        "batches": {},
        "extra_memory_bytes": {"capture_ring": stats["capacity"] * columns * 4,
                               "note": "the ring is the capture's only persistent device buffer"},
        "store_after_run": stats,
        "identical_answers_across_arms": identical,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    for b in batches:
        summary, per_cpu = summarize(rows[b]), summarize(cpu_rows[b])
        result["batches"][str(b)] = {"wall": summary, "cpu": per_cpu, "auto_final_steps": final_steps.get(b)}
        line = "  ".join(f"{arm} {s['median']:7.1f} tok/s ({s['ratio']:.3f}, cpu {per_cpu[arm]['ratio']:.3f})"
                         for arm, s in summary.items())
        print(f"batch {b:>2}: {line}  auto z_(T+1) {final_steps.get(b)}/{b}")
    plain.llm_engine.engine_core.shutdown()
    guarded.close()
    if args.skip_gpu:
        result["gpu"] = {"skipped": True, "reason": "--skip-gpu given"}
    else:
        from vllm_overhead_gpu import section

        result["gpu"] = section(batches=[int(b) for b in args.gpu_batches.split(",")], repeats=args.gpu_repeats,
                                max_new_tokens=args.gpu_max_new_tokens, prompt_tokens=args.gpu_prompt_tokens, log=print)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
