"""vLLM generation with spill_guard's capture vs plain vLLM: throughput ratio and extra memory.

Two engines in this process on the same weights and settings: a plain ``vllm.LLM`` and a
:class:`~spill_guard.backends.vllm.VllmSpillModel` (capture processor, raw logprobs, the
z_(T+1) follow-up requests, the fetch, trace and ScoredAnswer assembly — everything a guarded
call pays). Same prompts, greedy, arms interleaved within each repeat so machine load hits
both alike. Run in .venv-vllm:

    .venv-vllm/bin/python bench/vllm_overhead.py --out bench/results/vllm_overhead_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

SUBJECTS = ["France", "Japan", "Brazil", "Canada", "Egypt", "Kenya", "Italy", "Spain", "India", "Chile", "Norway",
            "Peru", "Ghana", "Nepal", "Cuba", "Fiji", "Iran", "Laos", "Mali", "Oman", "Chad", "Togo", "Iraq",
            "Qatar", "Yemen", "Sudan", "Libya", "Gabon", "Benin", "Niger", "Haiti", "Malta"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from spill_guard.backends.vllm import VllmSpillModel
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    options = {"max_model_len": 1024, "seed": 0, "enforce_eager": True, "max_num_seqs": 32}
    guarded = VllmSpillModel.load(engine_options=options)
    plain = LLM(model=guarded.loaded.source, dtype="float32", enable_prefix_caching=True, **options)
    stops = guarded.loaded.stop_token_ids
    prompts = [guarded.prompt_ids(f"Tell me about {s}.") for s in SUBJECTS]

    def run_plain(batch: list[list[int]]) -> int:
        params = SamplingParams(max_tokens=args.max_new_tokens, temperature=0.0, stop_token_ids=stops)
        outs = plain.generate([TokensPrompt(prompt_token_ids=p) for p in batch], params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs)

    def run_guarded(batch: list[list[int]]) -> int:
        answers = guarded.generate_from_ids(batch, max_new_tokens=args.max_new_tokens, stats="energy")
        return sum(len(a.answer_ids) for a in answers)

    batches = [int(b) for b in args.batches.split(",")]
    for b in batches:  # warm-up: first calls pay one-off allocations
        run_plain(prompts[:b])
        run_guarded(prompts[:b])
    rows = {b: {"plain": [], "capture": []} for b in batches}
    for rep in range(args.repeats):
        for b in batches:
            order = [("plain", run_plain), ("capture", run_guarded)]
            if rep % 2:
                order.reverse()
            for arm, fn in order:
                start = time.perf_counter()
                tokens = fn(prompts[:b])
                rows[b][arm].append(tokens / (time.perf_counter() - start))
    stats = guarded.store_stats()
    columns = len(guarded.columns.betas) + 3
    result = {
        "command": "bench/vllm_overhead.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                        if v is not None and k != "out"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg()},
        "max_new_tokens": args.max_new_tokens,
        "batches": {},
        "extra_memory_bytes": {"capture_ring": stats["capacity"] * columns * 4,
                               "note": "the ring is the capture's only persistent device buffer"},
        "store_after_run": stats,
    }
    for b in batches:
        p, c = statistics.median(rows[b]["plain"]), statistics.median(rows[b]["capture"])
        result["batches"][str(b)] = {"plain_tokens_per_s": rows[b]["plain"], "capture_tokens_per_s": rows[b]["capture"],
                                     "median_plain": p, "median_capture": c,
                                     "throughput_ratio": c / p, "overhead_percent": 100 * (1 - c / p)}
        print(f"batch {b:>2}: plain {p:7.1f} tok/s  capture {c:7.1f} tok/s  ratio {c / p:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    plain.llm_engine.engine_core.shutdown()
    guarded.llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    main()
