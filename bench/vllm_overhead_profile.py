"""Where a guarded vLLM call's extra time goes: per-component thread CPU time, one engine, no arms.

The throughput ratios of ``bench/vllm_overhead.py`` spread by several percent between repeats
on a shared CPU; these component timings resolve what the capture itself costs. Timers (thread
CPU time, the engine runs in-process on one OpenMP thread) wrap:

- ``processor``: the capture processor's ``apply`` (log-partitions of the raw logits, ring write);
- ``fetch``: the ``collective_rpc`` that copies an answer's ring rows to the host;
- ``assemble``: turning fetched rows into a trace and a ScoredAnswer (offsets, catalogue scores);
- ``call``: the whole ``generate_from_ids(..., final_step="auto")``.

A decoding step's share of the call is ``call / forward passes``; the z_(T+1) step an answer cut by
the limit needs is one such step (it is a decode step of the answer's own request).

    .venv-vllm/bin/python bench/vllm_overhead_profile.py --questions capital --max-new-tokens 64
    .venv-vllm/bin/python bench/vllm_overhead_profile.py --questions describe --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from typing import Any, Callable

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

from vllm_overhead import QUESTIONS, SUBJECTS  # noqa: E402

spent: dict[str, float] = defaultdict(float)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.thread_time() - start
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--questions", choices=sorted(QUESTIONS), default="describe")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from spill_guard import SpillModel
    from spill_guard.backends.vllm import VllmBackend, plan
    from spill_guard.backends.vllm.processor import SpillGuardLogitsProcessor
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    SpillGuardLogitsProcessor.apply = timed("processor", SpillGuardLogitsProcessor.apply)
    plan.PlannedAnswer.trace = timed("assemble", plan.PlannedAnswer.trace)
    VllmBackend._report = timed("assemble", VllmBackend._report)
    guarded = SpillModel.load(backend="vllm", engine_options={"max_model_len": 1024, "seed": 0, "enforce_eager": True,
                                                  "max_num_seqs": 32})
    rpc = guarded.backend.llm.collective_rpc

    def counted_rpc(method: str, *a: Any, **k: Any) -> Any:
        return timed("fetch", rpc)(method, *a, **k) if method == "spill_guard_fetch" else rpc(method, *a, **k)

    guarded.backend.llm.collective_rpc = counted_rpc
    prompts = [guarded.prompt_ids(QUESTIONS[args.questions].format(s)) for s in SUBJECTS]
    result: dict[str, Any] = {"command": "bench/vllm_overhead_profile.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        "load_average_at_start": os.getloadavg(), "batches": {}}
    for b in (int(x) for x in args.batches.split(",")):
        guarded.generate_from_ids(prompts[:b], max_new_tokens=args.max_new_tokens, stats="energy", final_step="auto")
        samples: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.repeats):
            spent.clear()
            start = time.thread_time()
            answers = guarded.generate_from_ids(prompts[:b], max_new_tokens=args.max_new_tokens, stats="energy",
                                                final_step="auto")
            call = time.thread_time() - start
            samples["call"].append(call)
            for name in ("processor", "fetch", "assemble"):
                samples[name].append(spent[name])
        longest = max(len(a.answer_ids) for a in answers)
        final = sum(a.trace.final_step for a in answers)
        # forward passes of the call: one per generated position of the longest answer, plus z_(T+1) if needed
        passes = longest + (1 if any(a.trace.final_step for a in answers) else 0)
        med = {name: statistics.median(v) for name, v in samples.items()}
        share = {name: 100 * med[name] / med["call"] for name in ("processor", "fetch", "assemble")}
        share["final_step"] = 100 * (1 / passes if final else 0.0)
        result["batches"][str(b)] = {"median_s": med, "percent_of_call": share, "tokens_longest": longest,
                                     "answers_with_final_step": final, "forward_passes": passes}
        print(f"batch {b:>2}: call {med['call'] * 1e3:7.1f} ms  " + "  ".join(
            f"{k} {v:.2f} %" for k, v in share.items()) + f"  (z_(T+1) for {final}/{b}, {passes} passes)")
    result["load_average_at_end"] = os.getloadavg()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    guarded.close()


if __name__ == "__main__":
    main()
