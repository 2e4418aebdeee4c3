"""Overhead benchmark, part 2: one batch size's interleaved repeats, and the CPU / GPU sections."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import torch

from overhead_arms import (
    Bench,
    QUESTIONS,
    TARGET_OVERHEAD_PCT,
    _cpu_peak_bytes,
    _cuda_peak_bytes,
    _loadavg,
    _microbench_reductions,
    _summary,
    _sync,
    _timed,
)


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
        "min_new_tokens": bench.gen_kwargs["min_new_tokens"],
        "forced_eos_token_id": bench.gen_kwargs.get("forced_eos_token_id"),
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
    from spill_guard.capture.final_step import skip_ids_for
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
        "final_step": args.final_step,
        "end_on_stop": args.end_on_stop,
        "batches": [],
    }
    repeats = args.repeats if len(args.repeats) == len(args.batches) else [args.repeats[0]] * len(args.batches)
    for B, n_rep in zip(args.batches, repeats):
        qs = [QUESTIONS[i % len(QUESTIONS)] for i in range(B)]
        ids, mask, _ = left_pad([sm.prompt_ids(q) for q in qs], loaded.pad_token_id, loaded.device)
        skip = skip_ids_for(args.final_step, sm.tokenizer, loaded.stop_token_ids)
        bench = Bench(model, ids, mask, loaded.stop_token_ids, loaded.pad_token_id, args.max_new_tokens, args.stats,
                      end_on_stop=args.end_on_stop, skip_final_step_after=skip)
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
