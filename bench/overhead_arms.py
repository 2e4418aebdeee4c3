"""Overhead benchmark, part 1: the arms (plain / capture / output_logits / timed capture), timing and memory probes.

See bench/overhead.py for what is measured and how to run it.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import tempfile
import time
from typing import Any, Callable

import torch



QUESTIONS = [
    "What is the capital of Australia?",
    "Who wrote the novel Pride and Prejudice?",
    "In which year did the Berlin Wall fall?",
    "What is the chemical symbol for gold?",
    "Which planet in our solar system has the most moons?",
    "Who painted the ceiling of the Sistine Chapel?",
    "What is the longest river in South America?",
    "How many bones are in the adult human body?",
]

TARGET_OVERHEAD_PCT = 3.0




# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def _now() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process). CPU time is what survives a busy shared machine."""
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _now()
    return wall - start[0], cpu - start[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tensor_bytes(obj: Any, seen: set[int]) -> int:
    """Bytes of the tensor storages reachable from ``obj`` (tensors, lists/tuples/dicts of them)."""
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        key = storage.data_ptr()
        if key in seen:
            return 0
        seen.add(key)
        return int(storage.nbytes())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(x, seen) for x in obj)
    if isinstance(obj, dict):
        return sum(_tensor_bytes(x, seen) for x in obj.values())
    return 0


def _capture_retained_bytes(capture: Any) -> dict[str, int]:
    """What a live ``StreamingCapture`` holds: kept ``[B, V]`` rows vs per-step history."""
    rows, history, seen = 0, 0, set()
    for name, value in vars(capture).items():
        if name in ("model", "_handle", "listeners"):
            continue
        n = _tensor_bytes(value, seen)
        # Kept full-vocabulary rows: z_t and z_(t-1), and the reused probability/scratch buffers.
        if isinstance(value, torch.Tensor) or name in ("_probs", "_scratch", "_prev"):
            rows += n
        else:
            history += n
    return {"vocab_rows_bytes": rows, "history_bytes": history, "total_bytes": rows + history}


def _trace_bytes(traces: list[Any]) -> int:
    """Bytes of the numpy arrays in the returned ``TokenTrace`` objects (what the caller keeps)."""
    from dataclasses import fields

    return sum(int(getattr(getattr(tr, f.name), "nbytes", 0)) for tr in traces for f in fields(tr))


def _summary(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "q1": q[0], "q3": q[2], "n": len(v)}


# ---------------------------------------------------------------------------------------------
# the arms
# ---------------------------------------------------------------------------------------------
class Bench:
    """Holds model + inputs for one batch size and runs the arms."""

    def __init__(self, model: Any, input_ids: torch.Tensor, mask: torch.Tensor, stop_ids: list[int],
                 pad_id: int, new_tokens: int, stats: str = "full", *, end_on_stop: bool = False,
                 skip_final_step_after: frozenset[int] = frozenset()):
        self.model = model
        self.stats = stats  # capture mode: "full" (every statistic) or "energy" (no softmax pass)
        self.input_ids = input_ids
        self.mask = mask
        self.stop_ids = stop_ids
        self.device = input_ids.device
        # final_step="auto" in the guard: no z_(T+1) step after a stop token without text.
        self.skip_after = skip_final_step_after
        self.gen_kwargs = dict(
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )
        if end_on_stop:
            # The guard's usual answer: every row ends on the stop token, at exactly new_tokens. The
            # forced token is chosen by a logits processor after the raw logits, in every arm alike.
            self.gen_kwargs.update(min_new_tokens=new_tokens - 1, forced_eos_token_id=stop_ids[0])

    # -- arms: each returns (sequences, extra-info dict); timing is done by the caller ----------
    def plain(self) -> tuple[torch.Tensor, dict]:
        out = self.model.generate(
            input_ids=self.input_ids, attention_mask=self.mask, eos_token_id=self.stop_ids,
            return_dict_in_generate=True, **self.gen_kwargs,
        )
        return out.sequences, {}

    def output_logits(self) -> tuple[torch.Tensor, dict]:
        out = self.model.generate(
            input_ids=self.input_ids, attention_mask=self.mask, eos_token_id=self.stop_ids,
            return_dict_in_generate=True, output_logits=True, **self.gen_kwargs,
        )
        held = sum(int(t.nbytes) for t in out.logits)
        return out.sequences, {"logits_bytes": held, "logits_dtype": str(out.logits[0].dtype)}

    def capture(self) -> tuple[torch.Tensor, dict]:
        from spill_guard.capture import generate_with_capture

        cap = generate_with_capture(
            self.model, self.input_ids, self.mask, stop_token_ids=self.stop_ids, stats=self.stats,
            skip_final_step_after=self.skip_after, **self.gen_kwargs
        )
        return cap.sequences, {"trace_bytes": _trace_bytes(cap.traces), "n_traces": len(cap.traces)}

    def capture_timed(self) -> tuple[torch.Tensor, dict]:
        """What ``generate_with_capture`` does, segment by segment, with the hook timed."""
        from spill_guard.capture.streaming import StreamingCapture, stop_lengths

        device = self.device

        class TimedCapture(StreamingCapture):
            hook_wall = 0.0
            hook_cpu = 0.0

            def _hook(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
                _sync(device)
                start = _now()
                super()._hook(*args, **kwargs)
                _sync(device)
                wall, cpu = _since(start)
                TimedCapture.hook_wall += wall
                TimedCapture.hook_cpu += cpu

        capture = TimedCapture(self.model, stats=self.stats)
        _sync(device)
        t0 = _now()
        with capture:
            out = self.model.generate(
                input_ids=self.input_ids, attention_mask=self.mask, eos_token_id=self.stop_ids,
                return_dict_in_generate=True, **self.gen_kwargs,
            )
            _sync(device)
            t1 = _now()
            hook_gen = (TimedCapture.hook_wall, TimedCapture.hook_cpu)
            steps_in_generate = capture.steps
            generated = out.sequences[:, int(self.input_ids.shape[1]):]
            lengths, stopped = stop_lengths(generated, self.stop_ids)
            # transformers 5 returns the KV cache as `cache` (without it the step would be a full pass)
            capture.finish(out.sequences, self.mask, getattr(out, "cache", None), lengths=lengths, stopped=stopped,
                           skip_after=self.skip_after)
            _sync(device)
            t2 = _now()
            final_hook = (TimedCapture.hook_wall - hook_gen[0], TimedCapture.hook_cpu - hook_gen[1])
            retained = _capture_retained_bytes(capture)  # not timed
            t2b = _now()
        traces = capture.traces(generated, lengths)
        t3 = _now()
        info: dict[str, Any] = {"hook_calls_in_generate": steps_in_generate, "retained": retained}
        for k, clock in enumerate(("wall", "cpu")):
            info[clock] = {
                "generate_with_hook_s": t1[k] - t0[k],
                "hook_s_in_generate": hook_gen[k],
                "final_step_s": t2[k] - t1[k],  # forward step + its hook call
                "final_step_hook_s": final_hook[k],
                "traces_s": t3[k] - t2b[k],
            }
        return out.sequences, info


def _timed(device: torch.device, fn: Callable[[], tuple[torch.Tensor, dict]]) -> tuple[tuple[float, float], torch.Tensor, dict]:
    gc.collect()
    _sync(device)
    start = _now()
    seqs, info = fn()
    _sync(device)
    return _since(start), seqs, info


def _cpu_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak of torch's CPU allocator above its level at the call, from profiler memory events."""
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as fh:
            events = json.load(fh)["traceEvents"]
    del result
    peak = 0
    for ev in events:
        if ev.get("name") == "[memory]":
            args = ev.get("args", {})
            if args.get("Device Type", 0) == 0:  # CPU
                peak = max(peak, int(args.get("Total Allocated", 0)))
    return peak


def _cuda_peak_bytes(device: torch.device, fn: Callable[[], Any]) -> int:
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del result
    return int(peak)


def _microbench_reductions(vocab_rows: torch.Tensor, iters: int) -> dict[str, float]:
    """Milliseconds per call of each per-step reduction the hook runs, on ``[B, V]`` rows."""
    from spill_guard.capture import step_stats as ss

    z, prev = vocab_rows, vocab_rows.roll(1, dims=-1)
    chosen = z.argmax(-1)
    device = z.device
    ops = {
        "clone_last_row": lambda: z.clone(),
        "gather_token_logit_x2": lambda: (ss.gather_token_logit(prev, chosen), ss.gather_token_logit(z, chosen)),
        "js_divergence": lambda: ss.js_divergence(prev, z),
        "log_partition": lambda: ss.log_partition(z, (1.0,)),
        "entropy": lambda: ss.entropy(z),
        "nonfinite_rows": lambda: ss.nonfinite_rows(z),
    }
    out = {}
    chunks = 5
    per_chunk = max(1, iters // chunks)
    for name, op in ops.items():
        op()
        best = float("inf")
        for _ in range(chunks):  # min over chunks: the least-disturbed estimate on a shared machine
            _sync(device)
            t = time.perf_counter()
            for _ in range(per_chunk):
                op()
            _sync(device)
            best = min(best, (time.perf_counter() - t) / per_chunk * 1e3)
        out[name] = best
    out["sum"] = sum(out.values())
    return out
