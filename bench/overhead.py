"""Cost of streaming capture: ``generate_with_capture`` vs plain ``model.generate``, side by side.

Both arms run the same greedy ``generate`` call (same prompts, ``max_new_tokens`` ==
``min_new_tokens`` so every row produces exactly the same number of tokens; the sequences are
checked to be identical). The arms are interleaved, alternating the order every repeat
(AB BA AB ... so a slow drift of the machine hits both arms alike), after a warm-up round.

Arms
  plain          ``model.generate(..., return_dict_in_generate=True)``
  capture        ``spill_guard.capture.generate_with_capture`` (forward hook + per-step reductions
                 + the one extra forward step for ``z_{T+1}`` + building the per-row traces)
  output_logits  (``--also-output-logits``) plain generate with ``output_logits=True``, the
                 approach of the paper's reference code: keeps ``[T, B, V]`` float32 logits
  capture_timed  (``--breakdown``, on by default) the same work as ``capture``, done step by step
                 with a ``StreamingCapture`` subclass that times its hook, so the overhead splits
                 into per-step reductions, the extra final forward step and trace building.

Memory
  CPU   the capture's own retained tensor bytes (the per-step lists plus the kept ``[B, V]``
        rows, read off the live ``StreamingCapture`` right after the final step), and the peak of
        torch's CPU allocator above the pre-call baseline, from ``torch.profiler`` memory events
        (one extra profiled call per arm). tracemalloc does not see torch's allocations, and RSS
        hides freed-and-reused pages, so neither is used.
  CUDA  ``torch.cuda.max_memory_allocated`` above the pre-call baseline, per arm.

GPU section: only with ``torch.cuda.is_available()``; a Llama-3-8B-shaped ``LlamaForCausalLM`` with
random bf16 weights built directly on the GPU (no download). Otherwise it is recorded as skipped.

    python bench/overhead.py --also-output-logits --out bench/results/overhead_cpu.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
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
        if name in ("model", "_handle"):
            continue
        n = _tensor_bytes(value, seen)
        if isinstance(value, torch.Tensor):
            rows += n  # _prev / _prev_prev: full-vocabulary rows
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
                 pad_id: int, new_tokens: int, stats: str = "full"):
        self.model = model
        self.stats = stats  # capture mode: "full" (every statistic) or "energy" (no softmax pass)
        self.input_ids = input_ids
        self.mask = mask
        self.stop_ids = stop_ids
        self.device = input_ids.device
        self.gen_kwargs = dict(
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )

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
            self.model, self.input_ids, self.mask, stop_token_ids=self.stop_ids, stats=self.stats, **self.gen_kwargs
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
            capture.ensure_final_step(out.sequences, self.mask, getattr(out, "past_key_values", None))
            _sync(device)
            t2 = _now()
            final_hook = (TimedCapture.hook_wall - hook_gen[0], TimedCapture.hook_cpu - hook_gen[1])
            retained = _capture_retained_bytes(capture)  # not timed
            t2b = _now()
        prompt_len = int(self.input_ids.shape[1])
        generated = out.sequences[:, prompt_len:]
        lengths, _ = stop_lengths(generated, self.stop_ids)
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


# ---------------------------------------------------------------------------------------------
# one batch size
# ---------------------------------------------------------------------------------------------
def run_batch(bench: Bench, *, repeats: int, warmup: int, also_logits: bool, breakdown: bool,
              memory: bool, micro_iters: int, log: Callable[[str], None]) -> dict:
    device = bench.device
    arms: list[tuple[str, Callable]] = [("plain", bench.plain), ("capture", bench.capture)]
    if also_logits:
        arms.append(("output_logits", bench.output_logits))
    if breakdown:
        arms.append(("capture_timed", bench.capture_timed))
    B, P = bench.input_ids.shape
    T = bench.gen_kwargs["max_new_tokens"]

    for w in range(warmup):
        for name, fn in arms:
            (wall, cpu), _, _ = _timed(device, fn)
            log(f"  warm-up {w + 1}/{warmup} {name:14s} wall {wall:7.3f}s  cpu {cpu:7.3f}s")

    clocks = ("wall", "cpu")
    times: dict[str, dict[str, list[float]]] = {c: {name: [] for name, _ in arms} for c in clocks}
    infos: dict[str, list[dict]] = {name: [] for name, _ in arms}
    reference: torch.Tensor | None = None
    sequences_equal = True
    all_full_length = True
    loads = []
    for r in range(repeats):
        order = arms if r % 2 == 0 else arms[::-1]
        for name, fn in order:
            loads.append(_loadavg())
            (wall, cpu), seqs, info = _timed(device, fn)
            times["wall"][name].append(wall)
            times["cpu"][name].append(cpu)
            infos[name].append(info)
            seqs = seqs.cpu()
            if reference is None:
                reference = seqs
            elif not torch.equal(seqs, reference):
                sequences_equal = False
            if seqs.shape[1] - P != T:
                all_full_length = False
            log(f"  repeat {r + 1}/{repeats} {name:14s} wall {wall:7.3f}s  cpu {cpu:7.3f}s  load {loads[-1]}")
        del seqs

    assert reference is not None
    generated = reference[:, P:]
    stop_in_output = bool(torch.isin(generated, torch.tensor(bench.stop_ids)).any())
    res: dict[str, Any] = {
        "batch": int(B),
        "prompt_tokens_padded": int(P),
        "prompt_tokens_per_row": [int(x) for x in bench.mask.sum(-1).tolist()],
        "max_new_tokens": T,
        "min_new_tokens": T,
        "tokens_generated_per_row": int(generated.shape[1]),
        "tokens_generated_per_call": int(generated.numel()),
        "all_rows_full_length": all_full_length,
        "sequences_identical_across_arms_and_repeats": sequences_equal,
        "stop_token_in_generated": stop_in_output,
        "repeats": repeats,
        "warmup_rounds": warmup,
        "order": "interleaved, order reversed every repeat: " + " ".join(
            "".join(n[0].upper() if n != "capture_timed" else "t" for n, _ in (arms if r % 2 == 0 else arms[::-1]))
            for r in range(min(repeats, 4))) + (" ..." if repeats > 4 else ""),
        "loadavg_min_max_1min": [min(l[0] for l in loads if l), max(l[0] for l in loads if l)] if any(loads) else None,
        "arms": {},
    }
    for name, _ in arms:
        res["arms"][name] = {}
        for c in clocks:
            summ = _summary(times[c][name])
            summ["times_s"] = times[c][name]
            summ["ms_per_token_step"] = summ["median"] / T * 1e3
            summ["tokens_per_s"] = generated.numel() / summ["median"]
            res["arms"][name][c] = summ

    def ratio_block(arm: str) -> dict:
        out = {}
        for c in clocks:
            paired = [x / y for x, y in zip(times[c][arm], times[c]["plain"])]
            ps = _summary(paired)
            rom = res["arms"][arm][c]["median"] / res["arms"]["plain"][c]["median"]
            out[c] = {
                "ratio_of_medians": rom,
                "overhead_pct_ratio_of_medians": (rom - 1) * 100,
                "paired_ratio_median": ps["median"],
                "paired_ratio_min": ps["min"],
                "paired_ratio_max": ps["max"],
                "paired_ratio_q1": ps["q1"],
                "paired_ratio_q3": ps["q3"],
                "paired_ratios": paired,
                "within_target": (rom - 1) * 100 <= TARGET_OVERHEAD_PCT,
            }
        return out

    res["capture_vs_plain"] = ratio_block("capture")
    if also_logits:
        res["output_logits_vs_plain"] = ratio_block("output_logits")
        res["output_logits_held_bytes"] = infos["output_logits"][0]["logits_bytes"]
        res["output_logits_dtype"] = infos["output_logits"][0]["logits_dtype"]
    res["capture_trace_bytes"] = infos["capture"][0]["trace_bytes"]

    if breakdown:
        ti = infos["capture_timed"]
        n_hook = ti[0]["hook_calls_in_generate"]
        bd: dict[str, Any] = {
            "capture_timed_vs_plain": ratio_block("capture_timed"),
            "hook_calls_in_generate": n_hook,
            "hook_calls_total": n_hook + 1,
        }
        for c in clocks:
            plain_med = res["arms"]["plain"][c]["median"]
            med = lambda key: statistics.median(i[c][key] for i in ti)  # noqa: E731
            hook, final, tr = med("hook_s_in_generate"), med("final_step_s"), med("traces_s")
            bd[c] = {
                "plain_ms_per_step": plain_med / T * 1e3,
                "generate_with_hook_s": med("generate_with_hook_s"),
                "generate_minus_hook_s": med("generate_with_hook_s") - hook,
                "hook_s_total_in_generate": hook,
                "hook_ms_per_step": hook / n_hook * 1e3,
                "final_step_s": final,
                "final_step_hook_s": med("final_step_hook_s"),
                "traces_s": tr,
                # as % of the plain median (each segment is only measured in the timed arm)
                "pct_of_plain": {
                    "per_step_reductions_in_generate": hook / plain_med * 100,
                    "extra_final_step_forward_plus_hook": final / plain_med * 100,
                    "traces_build": tr / plain_med * 100,
                    "sum_of_the_three": (hook + final + tr) / plain_med * 100,
                    "measured_capture_overhead_ratio_of_medians":
                        res["capture_vs_plain"][c]["overhead_pct_ratio_of_medians"],
                },
            }
        # Within-call estimate, per repeat: capture work / the model's own time in the same call.
        # Both parts see the same machine state, so this is far less noisy on a shared machine
        # than the ratio of two separate calls; it misses only indirect costs (e.g. the hook
        # evicting the model's data from cache), which the end-to-end ratio includes.
        for c in clocks:
            per_rep = []
            for i in ti:
                seg = i[c]
                model_only = seg["generate_with_hook_s"] - seg["hook_s_in_generate"]
                extra = seg["hook_s_in_generate"] + seg["final_step_s"] + seg["traces_s"]
                per_rep.append(extra / model_only * 100)
            bd[c]["within_call_overhead_pct"] = {**_summary(per_rep), "per_repeat": per_rep}
            bd[c]["segments_per_repeat"] = [i[c] for i in ti]
        bd["retained_by_capture"] = ti[-1]["retained"]
        # Isolated per-op cost of the reductions at this batch's [B, V] shape and logits dtype.
        with torch.no_grad():
            logits = bench.model(input_ids=bench.input_ids[:, -1:]).logits[:, -1, :].detach().clone()
        bd["reduction_microbench_ms_per_step"] = _microbench_reductions(logits, micro_iters)
        bd["reduction_microbench_note"] = "wall ms per call, min over 5 chunks of iterations"
        bd["reduction_microbench_dtype"] = str(logits.dtype)
        res["breakdown"] = bd

    if memory:
        mem: dict[str, Any] = {}
        for name, fn in arms:
            if name == "capture_timed":
                continue
            if device.type == "cuda":
                mem[name] = _cuda_peak_bytes(device, fn)
            else:
                mem[name] = _cpu_peak_bytes(fn)
            log(f"  memory {name:14s} peak {mem[name] / 2**20:9.2f} MiB above baseline")
        mem["method"] = (
            "torch.cuda.max_memory_allocated above memory_allocated at the call" if device.type == "cuda"
            else "peak 'Total Allocated' of torch's CPU allocator from torch.profiler memory events, relative to the call's start"
        )
        mem["capture_extra_peak_bytes"] = mem["capture"] - mem["plain"]
        if also_logits:
            mem["output_logits_extra_peak_bytes"] = mem["output_logits"] - mem["plain"]
        res["memory_peak_bytes"] = mem
    return res


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------
def cpu_section(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from spill_guard import SpillModel
    from spill_guard.capture.padding import left_pad

    t = time.perf_counter()
    sm = SpillModel.load(device="cpu")
    load_s = time.perf_counter() - t
    loaded = sm.loaded
    model = loaded.model
    cfg = model.config
    section: dict[str, Any] = {
        "device": "cpu",
        "model": loaded.name,
        "dtype": str(loaded.dtype),
        "vocab_size": int(cfg.vocab_size),
        "hidden_size": int(cfg.hidden_size),
        "num_hidden_layers": int(cfg.num_hidden_layers),
        "load_s": load_s,
        "torch_num_threads": torch.get_num_threads(),
        "questions": QUESTIONS,
        "batches": [],
    }
    repeats = args.repeats if len(args.repeats) == len(args.batches) else [args.repeats[0]] * len(args.batches)
    for B, n_rep in zip(args.batches, repeats):
        qs = [QUESTIONS[i % len(QUESTIONS)] for i in range(B)]
        ids, mask, _ = left_pad([sm.prompt_ids(q) for q in qs], loaded.pad_token_id, loaded.device)
        bench = Bench(model, ids, mask, loaded.stop_token_ids, loaded.pad_token_id, args.max_new_tokens, args.stats)
        log(f"CPU batch {B}: prompt {tuple(ids.shape)}, {args.max_new_tokens} new tokens")
        t = time.perf_counter()
        res = run_batch(bench, repeats=n_rep, warmup=args.warmup, also_logits=args.also_output_logits,
                        breakdown=not args.no_breakdown, memory=not args.no_memory,
                        micro_iters=args.micro_iters, log=log)
        res["section_wall_s"] = time.perf_counter() - t
        res["sample_answer"] = sm.tokenizer.decode(bench.plain()[0][0, ids.shape[1]:]) if args.sample else None
        section["batches"].append(res)
        _print_batch("CPU", res, log)
    return section


def gpu_section(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    if args.skip_gpu:
        log("GPU section skipped (--skip-gpu).")
        return {"skipped": True, "reason": "--skip-gpu given"}
    if not torch.cuda.is_available():
        log("GPU section skipped: torch.cuda.is_available() is False on this machine; no numbers recorded.")
        return {"skipped": True, "reason": "torch.cuda.is_available() is False (no CUDA device / CPU-only torch build)"}
    from transformers import LlamaConfig, LlamaForCausalLM

    device = torch.device("cuda")
    config = LlamaConfig(
        vocab_size=128256, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, intermediate_size=14336, max_position_embeddings=8192,
        rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=128000, eos_token_id=[128001, 128009], pad_token_id=128001,
    )
    t = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # build directly in bf16: no 32 GB fp32 intermediate
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model = model.to(torch.bfloat16).eval()
    _sync(device)
    build_s = time.perf_counter() - t
    stop_ids, pad_id = [128001, 128009], 128001
    section: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device),
        "model": "LlamaForCausalLM, Llama-3-8B shape, random weights",
        "dtype": "torch.bfloat16",
        "vocab_size": 128256, "hidden_size": 4096, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
        "build_s": build_s,
        "weights_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "prompt": f"{args.gpu_prompt_tokens} random token ids per row",
        "batches": [],
    }
    gen = torch.Generator().manual_seed(0)
    for B in args.gpu_batches:
        ids = torch.randint(1000, 120000, (B, args.gpu_prompt_tokens), generator=gen).to(device)
        mask = torch.ones_like(ids)
        bench = Bench(model, ids, mask, stop_ids, pad_id, args.gpu_max_new_tokens, args.stats)
        log(f"GPU batch {B}: prompt {tuple(ids.shape)}, {args.gpu_max_new_tokens} new tokens")
        t = time.perf_counter()
        try:
            res = run_batch(bench, repeats=args.gpu_repeats, warmup=args.warmup,
                            also_logits=args.also_output_logits, breakdown=not args.no_breakdown,
                            memory=not args.no_memory, micro_iters=args.micro_iters, log=log)
        except torch.cuda.OutOfMemoryError as exc:  # e.g. output_logits at B=32 on a small card
            log(f"  out of memory at batch {B}: {exc}")
            res = {"batch": B, "error": f"CUDA out of memory: {str(exc).splitlines()[0]}"}
            torch.cuda.empty_cache()
        res["section_wall_s"] = time.perf_counter() - t
        section["batches"].append(res)
        if "error" not in res:
            _print_batch("GPU", res, log)
    return section


def _print_batch(tag: str, res: dict, log: Callable[[str], None]) -> None:
    for clock in ("wall", "cpu"):
        a, c = res["arms"], res["capture_vs_plain"][clock]
        log(
            f"{tag} B={res['batch']} [{clock}]: plain {a['plain'][clock]['median']:.3f}s  "
            f"capture {a['capture'][clock]['median']:.3f}s  ratio {c['ratio_of_medians']:.4f} "
            f"(paired {c['paired_ratio_min']:.4f}..{c['paired_ratio_max']:.4f})  "
            f"identical={res['sequences_identical_across_arms_and_repeats']}"
        )
        if "breakdown" in res:
            p = res["breakdown"][clock]["pct_of_plain"]
            log(
                f"   breakdown (% of plain): reductions {p['per_step_reductions_in_generate']:.2f}  "
                f"final step {p['extra_final_step_forward_plus_hook']:.2f}  traces {p['traces_build']:.2f}"
            )


# ---------------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------------
def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [
        "# Streaming-capture overhead",
        "",
        f"- date: {m['date']}",
        f"- command: `{m['command']}`",
        f"- python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, spill_guard {m['spill_guard']}",
        f"- machine: {m['platform']}, {m['cpu_count']} CPU cores, torch threads {m['torch_num_threads']}, "
        f"load average (1/5/15 min) at start {m['loadavg_start']}, at end {m['loadavg_end']}",
        f"- total run time {m.get('total_wall_s', 0):.0f} s",
        f"- target: capture overhead <= {TARGET_OVERHEAD_PCT:g} % of plain generation on CPU",
        f"- capture mode: stats={result['meta'].get('capture_stats', 'full')!r}",
        "- wall = `time.perf_counter`; cpu = `time.process_time` of the benchmark process (CPU seconds it "
        "actually got; much less sensitive than wall time to other processes on a shared machine, as long "
        "as torch runs one thread)",
        "",
    ]
    if result.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in result["notes"]] + [""]
    for key, title in (("cpu", "CPU"), ("gpu", "GPU")):
        sec = result.get(key)
        if sec is None:
            continue
        lines += [f"## {title}", ""]
        if sec.get("skipped"):
            lines += [f"Skipped: {sec['reason']}. No numbers recorded.", ""]
            continue
        clocks = ("wall", "cpu") if key == "cpu" else ("wall",)
        ok = [b for b in sec["batches"] if "error" not in b]
        lines += [
            f"Model: {sec['model']} ({sec['dtype']}, vocab {sec['vocab_size']}, {sec['num_hidden_layers']} layers)"
            + (f", torch threads {sec['torch_num_threads']}" if "torch_num_threads" in sec else ""),
            "",
            "| batch | clock | tokens/call | plain median | capture median | capture/plain (ratio of medians) "
            "| overhead | paired ratio median [min, max] | output_logits/plain |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for b in sec["batches"]:
            if "error" in b:
                lines.append(f"| {b['batch']} | error: {b['error']} ||||||||")
                continue
            for clock in clocks:
                c = b["capture_vs_plain"][clock]
                ol = b.get("output_logits_vs_plain", {}).get(clock)
                lines.append(
                    f"| {b['batch']} | {clock} | {b['tokens_generated_per_call']} ({b['tokens_generated_per_row']}/row) "
                    f"| {b['arms']['plain'][clock]['median']:.3f} s | {b['arms']['capture'][clock]['median']:.3f} s "
                    f"| {c['ratio_of_medians']:.4f} | {c['overhead_pct_ratio_of_medians']:+.2f} % "
                    f"| {c['paired_ratio_median']:.4f} [{c['paired_ratio_min']:.4f}, {c['paired_ratio_max']:.4f}] "
                    + (f"| {ol['ratio_of_medians']:.4f} |" if ol else "| n/a |")
                )
        if ok:
            lines += [
                "",
                f"Repeats per arm: {ok[0]['repeats']} after {ok[0]['warmup_rounds']} warm-up round(s); "
                f"{ok[0]['order']} (P plain, C capture, O output_logits, t capture_timed). "
                "Sequences identical across all arms and repeats: "
                + ", ".join(f"B={b['batch']}: {b['sequences_identical_across_arms_and_repeats']}" for b in ok)
                + "; every row ran to max_new_tokens: "
                + ", ".join(f"B={b['batch']}: {b['all_rows_full_length']}" for b in ok)
                + ". Load average (1 min) during the timed runs: "
                + ", ".join(f"B={b['batch']}: {b.get('loadavg_min_max_1min')}" for b in ok),
                "",
            ]

        if any("memory_peak_bytes" in b for b in ok):
            lines += [
                "### Memory",
                "",
                "| batch | capture retained at its largest (kept [B,V] rows + per-step history) | traces returned "
                "| peak plain | peak capture | capture extra peak | output_logits held | output_logits extra peak |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for b in ok:
                if "memory_peak_bytes" not in b:
                    continue
                mem = b["memory_peak_bytes"]
                ret = b.get("breakdown", {}).get("retained_by_capture", {})
                lines.append(
                    f"| {b['batch']} | {_mib(ret.get('total_bytes', 0))} ({_mib(ret.get('vocab_rows_bytes', 0))} + "
                    f"{ret.get('history_bytes', 0) / 1024:.1f} KiB) | {b['capture_trace_bytes'] / 1024:.1f} KiB "
                    f"| {_mib(mem['plain'])} | {_mib(mem['capture'])} | {_mib(mem['capture_extra_peak_bytes'])} "
                    + (f"| {_mib(b['output_logits_held_bytes'])} | {_mib(mem['output_logits_extra_peak_bytes'])} |"
                       if "output_logits_extra_peak_bytes" in mem else "| n/a | n/a |")
                )
            lines += ["", f"Peak method: {ok[0]['memory_peak_bytes']['method']}.", ""]

        if any("breakdown" in b for b in ok):
            lines += [
                "### Where the capture time goes",
                "",
                "From the `capture_timed` arm (the same work as `generate_with_capture`, done step by step "
                "with the hook timed), medians over the repeats, as % of the plain median of the same clock:",
                "",
                "| batch | clock | plain ms/step | hook ms/step | per-step reductions (hook) "
                "| extra final step (forward + hook) | trace building | sum | within-call overhead, median [min, max] "
                "| end-to-end overhead (capture arm, ratio of medians) |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for b in ok:
                if "breakdown" not in b:
                    continue
                for clock in clocks:
                    bd = b["breakdown"][clock]
                    p = bd["pct_of_plain"]
                    lines.append(
                        f"| {b['batch']} | {clock} | {bd['plain_ms_per_step']:.1f} | {bd['hook_ms_per_step']:.2f} "
                        f"| {p['per_step_reductions_in_generate']:.2f} % ({bd['hook_s_total_in_generate'] * 1e3:.0f} ms) "
                        f"| {p['extra_final_step_forward_plus_hook']:.2f} % ({bd['final_step_s'] * 1e3:.0f} ms) "
                        f"| {p['traces_build']:.2f} % ({bd['traces_s'] * 1e3:.1f} ms) | {p['sum_of_the_three']:.2f} % "
                        + (f"| {w['median']:.2f} % [{w['min']:.2f}, {w['max']:.2f}] "
                           if (w := bd.get("within_call_overhead_pct")) else "| n/a ")
                        + f"| {p['measured_capture_overhead_ratio_of_medians']:+.2f} % |"
                    )
            lines += [
                "",
                "Within-call overhead = (hook time in generate + extra final step + trace building) / "
                "(generate time minus hook time), per repeat of the `capture_timed` arm: both parts of the "
                "ratio come from the same call, so machine noise largely cancels; it leaves out indirect "
                "costs such as cache pollution, which only the end-to-end ratio sees.",
            ]
            ops = list(ok[0]["breakdown"]["reduction_microbench_ms_per_step"])
            lines += [
                "",
                "Per-step reductions in isolation (`spill_guard.capture.step_stats` functions on one `[B, V]` "
                "row of real logits; wall ms per call, min over 5 chunks):",
                "",
                "| batch | " + " | ".join(ops) + " |",
                "|---|" + "---|" * len(ops),
            ]
            for b in ok:
                if "breakdown" in b:
                    mb = b["breakdown"]["reduction_microbench_ms_per_step"]
                    lines.append(f"| {b['batch']} | " + " | ".join(f"{mb[o]:.3f}" for o in ops) + " |")
            lines.append("")
    if result.get("analysis"):
        lines += ["## Analysis", ""] + list(result["analysis"]) + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/overhead_cpu.json"), help="JSON result file")
    ap.add_argument("--md", type=Path, default=None, help="markdown summary (default: --out with .md)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="CPU batch sizes")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="CPU: new tokens (also min_new_tokens)")
    ap.add_argument("--repeats", type=int, nargs="+", default=[5],
                    help="CPU: timed repeats per arm; one value, or one per --batches entry")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up rounds (every arm once per round)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--also-output-logits", action="store_true", help="add the output_logits=True arm")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the timed capture arm and microbenchmarks")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory calls")
    ap.add_argument("--micro-iters", type=int, default=30, help="iterations per reduction microbenchmark")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--skip-gpu", action="store_true")
    ap.add_argument("--gpu-batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--gpu-max-new-tokens", type=int, default=256)
    ap.add_argument("--gpu-prompt-tokens", type=int, default=32)
    ap.add_argument("--gpu-repeats", type=int, default=5)
    ap.add_argument("--sample", action="store_true", help="record one decoded answer per batch")
    ap.add_argument("--stats", choices=("full", "energy"), default="full",
                    help="capture mode: full (entropy/JSD too) or energy (what SpillGuard uses for energy scores)")
    ap.add_argument("--note", action="append", default=[], help="free-text note copied into the results")
    ap.add_argument("--render-only", action="store_true", help="only re-write the markdown from the --out JSON")
    ap.add_argument("--analysis", type=Path, default=None,
                    help="markdown file whose text is stored in the results and appended to the .md")
    args = ap.parse_args(argv)
    md_path = args.md or args.out.with_suffix(".md")
    if args.render_only:
        result = json.loads(args.out.read_text())
        if args.analysis:
            result["analysis"] = args.analysis.read_text().rstrip("\n").split("\n")
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        md_path.write_text(markdown(result))
        print(f"wrote {md_path}")
        return 0

    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    import spill_guard

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.perf_counter()
    result: dict[str, Any] = {
        "meta": {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "spill_guard": getattr(spill_guard, "__version__", "?"),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_num_threads": torch.get_num_threads(),
            "cuda_available": torch.cuda.is_available(),
            "loadavg_start": _loadavg(),
            "target_overhead_pct": TARGET_OVERHEAD_PCT,
            "capture_stats": args.stats,
        },
        "notes": list(args.note),
    }
    if args.threads:
        result["meta"]["threads_set_by_flag"] = args.threads
    torch.set_grad_enabled(False)
    if not args.skip_cpu:
        result["cpu"] = cpu_section(args, log)
    result["gpu"] = gpu_section(args, log)
    result["meta"]["loadavg_end"] = _loadavg()
    result["meta"]["total_wall_s"] = time.perf_counter() - started

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.analysis:
        result["analysis"] = args.analysis.read_text().rstrip("\n").split("\n")
    md_path.write_text(markdown(result))
    log(f"wrote {args.out} and {md_path} in {result['meta']['total_wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
