"""Overhead benchmark, part 4: the z_(T+1) step in a batch where only some rows were cut.

``generate`` stops once every row has ended; the rows that ended before the last column got
their ``z_(T+1)`` from the batch's next decode step, so only the rows that reached the last
column need the extra forward step. A batch of ``B`` real questions: ``--final-rows-cut`` of
them are asked for a long answer (cut by ``max_new_tokens``), the others are short factual
questions that end on ``<|im_end|>`` earlier. Two arms, interleaved with the order reversed
every repeat (AB BA AB ...), one complete captured call each:

  whole_batch  the extra step on every row of the batch (what the capture did before it took
               the cut rows from the KV cache: ``StreamingCapture.ensure_final_step`` with all rows)
  cut_rows     ``StreamingCapture.finish``: the step on the rows that reached the last column only

Timed inside each call: the extra step (forward + hook) with ``process_time`` (the process's CPU
seconds, what survives a shared machine with one torch thread) and ``perf_counter``; the whole
call likewise. A forward pre-hook records the extra step's batch size, and the two arms' traces
are compared (they must agree to float rounding).
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any, Callable

import numpy as np
import torch

from overhead_arms import _loadavg, _summary

#: End on <|im_end|> within a few tokens on the embedded model (checked at run time).
SHORT_QUESTIONS = [
    "What is the capital of France?",
    "Name a colour.",
    "What is 2+2?",
    "What is the chemical symbol for gold?",
    "What is the capital of Italy?",
    "How many legs does a cat have?",
    "What colour is the sky on a clear day?",
    "What is the capital of Japan?",
]
#: Run past max_new_tokens.
LONG_QUESTIONS = [
    "Write a long story about a dragon.",
    "Write a long essay about the history of Rome.",
    "Describe in detail how a car engine works.",
    "Write a long poem about the sea.",
]

ARMS = ("whole_batch", "cut_rows")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--final-step-rows", action="store_true",
                    help="add the section: z_(T+1) step on the whole batch vs on the cut rows only")
    ap.add_argument("--final-rows-batch", type=int, default=8, help="final-step-rows: batch size")
    ap.add_argument("--final-rows-cut", type=int, nargs="+", default=[1],
                    help="final-step-rows: rows cut by max_new_tokens (one run per value)")
    ap.add_argument("--final-rows-repeats", type=int, default=7, help="final-step-rows: timed repeats per arm")


def _call(model: Any, ids: torch.Tensor, mask: torch.Tensor, stop_ids: list[int], gen: dict, stats: str,
          skip_after: frozenset[int], arm: str) -> dict:
    """One captured call; the extra step as ``arm`` says, timed inside the call."""
    from spill_guard.capture.streaming import StreamingCapture, stop_lengths

    sizes: list[int] = []

    def record(module: Any, args: tuple, kwargs: dict) -> None:
        sizes.append(int(kwargs.get("input_ids", args[0] if args else None).shape[0]))

    gc.collect()
    call_wall, call_cpu = time.perf_counter(), time.process_time()
    with StreamingCapture(model, stats=stats) as capture:
        out = model.generate(input_ids=ids, attention_mask=mask, eos_token_id=stop_ids, return_dict_in_generate=True,
                             **gen)
        generated = out.sequences[:, int(ids.shape[1]):]
        lengths, stopped = stop_lengths(generated, stop_ids)
        handle = model.register_forward_pre_hook(record, with_kwargs=True)
        try:
            step_wall, step_cpu = time.perf_counter(), time.process_time()
            if arm == "whole_batch":
                capture.ensure_final_step(out.sequences, mask, out.cache)
            else:
                capture.finish(out.sequences, mask, out.cache, lengths=lengths, stopped=stopped, skip_after=skip_after)
            step_cpu, step_wall = time.process_time() - step_cpu, time.perf_counter() - step_wall
        finally:
            handle.remove()
    traces = capture.traces(generated, lengths)
    call_cpu, call_wall = time.process_time() - call_cpu, time.perf_counter() - call_wall
    return {"lengths": lengths, "stopped": stopped, "extra_step_batch_sizes": sizes, "traces": traces,
            "sequences": out.sequences, "step_cpu_s": step_cpu, "step_wall_s": step_wall,
            "call_cpu_s": call_cpu, "call_wall_s": call_wall}


def _max_trace_difference(a: list[Any], b: list[Any]) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        for field in ("chosen_logit", "log_partition", "entropy", "jsd_next"):
            u, v = getattr(x, field), getattr(y, field)
            both = ~(np.isnan(u) & np.isnan(v))
            if both.any():
                worst = max(worst, float(np.nanmax(np.abs(u[both] - v[both]))))
    return worst


def _one_run(sm: Any, batch: int, n_cut: int, args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from spill_guard.capture.final_step import skip_ids_for
    from spill_guard.capture.padding import left_pad

    loaded = sm.loaded
    questions = [SHORT_QUESTIONS[i % len(SHORT_QUESTIONS)] for i in range(batch)]
    for k in range(n_cut):  # spread over the batch, not first: rows are left-padded to different widths
        questions[(1 + k * max(batch // n_cut, 1)) % batch] = LONG_QUESTIONS[k % len(LONG_QUESTIONS)]
    ids, mask, _ = left_pad([sm.prompt_ids(q) for q in questions], loaded.pad_token_id, loaded.device)
    gen = {"max_new_tokens": args.max_new_tokens, "do_sample": False, "pad_token_id": loaded.pad_token_id}
    skip = skip_ids_for(args.final_step, sm.tokenizer, loaded.stop_token_ids)
    stop_ids = loaded.stop_token_ids

    def call(arm: str) -> dict:
        return _call(loaded.model, ids, mask, stop_ids, gen, args.stats, skip, arm)

    log(f"final-step-rows: batch {batch}, {n_cut} cut row(s), prompt {tuple(ids.shape)}, {args.max_new_tokens} new tokens")
    warm = call("cut_rows")
    for _ in range(args.warmup):
        for arm in ARMS:
            call(arm)
    reached = [n == args.max_new_tokens for n in warm["lengths"]]
    run: dict[str, Any] = {
        "batch": batch, "cut_rows_requested": n_cut, "questions": questions, "prompt_shape": list(ids.shape),
        "answer_lengths": warm["lengths"], "stopped_on_stop_token": warm["stopped"],
        "rows_reaching_last_column": sum(reached),
        "loadavg_start": _loadavg(),
    }
    samples: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    order = []
    for r in range(args.final_rows_repeats):
        arms = ARMS if r % 2 == 0 else ARMS[::-1]
        order.append("".join("W" if a == "whole_batch" else "C" for a in arms))
        for arm in arms:
            samples[arm].append(call(arm))
    run["loadavg_end"] = _loadavg()
    run["order"] = order
    first = {arm: samples[arm][0] for arm in ARMS}
    run["sequences_identical"] = all(torch.equal(s["sequences"], first["whole_batch"]["sequences"])
                                     for arm in ARMS for s in samples[arm])
    run["max_abs_trace_difference_between_arms"] = _max_trace_difference(first["whole_batch"]["traces"],
                                                                         first["cut_rows"]["traces"])
    run["extra_step_batch_sizes"] = {arm: first[arm]["extra_step_batch_sizes"] for arm in ARMS}
    arms_out: dict[str, Any] = {}
    for arm in ARMS:
        got = samples[arm]
        arms_out[arm] = {
            "extra_step_cpu_ms": _summary([s["step_cpu_s"] * 1e3 for s in got]),
            "extra_step_wall_ms": _summary([s["step_wall_s"] * 1e3 for s in got]),
            "call_cpu_s": _summary([s["call_cpu_s"] for s in got]),
            "call_wall_s": _summary([s["call_wall_s"] for s in got]),
            "extra_step_share_of_call_cpu_pct": _summary([100 * s["step_cpu_s"] / s["call_cpu_s"] for s in got]),
            "raw": [{k: s[k] for k in ("step_cpu_s", "step_wall_s", "call_cpu_s", "call_wall_s")} for s in got],
        }
    run["arms"] = arms_out
    pairs = list(zip(samples["cut_rows"], samples["whole_batch"]))
    run["paired_ratio_cut_rows_over_whole_batch"] = {
        "extra_step_cpu": _summary([c["step_cpu_s"] / w["step_cpu_s"] for c, w in pairs]),
        "extra_step_wall": _summary([c["step_wall_s"] / w["step_wall_s"] for c, w in pairs]),
        "call_cpu": _summary([c["call_cpu_s"] / w["call_cpu_s"] for c, w in pairs]),
    }
    run["call_cpu_saved_pct_of_whole_batch_call"] = _summary(
        [100 * (w["step_cpu_s"] - c["step_cpu_s"]) / w["call_cpu_s"] for c, w in pairs])
    w, c = arms_out["whole_batch"]["extra_step_cpu_ms"], arms_out["cut_rows"]["extra_step_cpu_ms"]
    log(f"  extra step CPU ms: whole batch {w['median']:.1f} [{w['min']:.1f}, {w['max']:.1f}], "
        f"cut rows {c['median']:.1f} [{c['min']:.1f}, {c['max']:.1f}]; batch sizes {run['extra_step_batch_sizes']}")
    return run


def final_rows_section(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from spill_guard import SpillModel

    sm = SpillModel.load(device="cpu")
    section: dict[str, Any] = {
        "device": "cpu", "model": sm.loaded.name, "torch_num_threads": torch.get_num_threads(),
        "stats": args.stats, "final_step": args.final_step, "max_new_tokens": args.max_new_tokens,
        "repeats": args.final_rows_repeats, "warmup": args.warmup, "runs": [],
    }
    for n_cut in args.final_rows_cut:
        section["runs"].append(_one_run(sm, args.final_rows_batch, n_cut, args, log))
    return section


def _ms(s: dict) -> str:
    return f"{s['median']:.1f} [{s['min']:.1f}, {s['max']:.1f}]"


def final_rows_markdown(sec: dict) -> list[str]:
    lines = ["", "## z_(T+1) step when only some rows were cut", ""]
    lines.append(f"Model: {sec['model']} (CPU, torch threads {sec['torch_num_threads']}), capture stats="
                 f"`{sec['stats']}`, final_step=`{sec['final_step']}`, max_new_tokens {sec['max_new_tokens']}; "
                 f"{sec['repeats']} repeats per arm after {sec['warmup']} warm-up round(s), interleaved, order reversed "
                 "every repeat. `whole_batch`: the extra step on every row (the capture before this change); "
                 "`cut_rows`: on the rows that reached the last column only (taken from the KV cache). "
                 "Medians [min, max]; cpu = `process_time` (one torch thread), timed inside each call.")
    lines += ["", "| batch | rows reaching the last column | arm | extra-step batch size | extra step cpu ms | "
              "extra step wall ms | extra step % of call cpu | whole call cpu s |",
              "|---|---|---|---|---|---|---|---|"]
    for run in sec["runs"]:
        for arm in ARMS:
            a = run["arms"][arm]
            sizes = run["extra_step_batch_sizes"][arm]
            share = a["extra_step_share_of_call_cpu_pct"]
            lines.append(f"| {run['batch']} | {run['rows_reaching_last_column']} | {arm} | {sizes} | "
                         f"{_ms(a['extra_step_cpu_ms'])} | {_ms(a['extra_step_wall_ms'])} | "
                         f"{share['median']:.2f} [{share['min']:.2f}, {share['max']:.2f}] | "
                         f"{a['call_cpu_s']['median']:.2f} [{a['call_cpu_s']['min']:.2f}, {a['call_cpu_s']['max']:.2f}] |")
    lines += ["", "Paired per repeat (cut_rows / whole_batch), median [min, max]:", "",
              "| batch | extra step cpu | extra step wall | whole call cpu | call cpu saved (% of a whole_batch call) | "
              "answer lengths | sequences identical | max abs trace difference | load average (1 min) start → end |",
              "|---|---|---|---|---|---|---|---|---|"]
    for run in sec["runs"]:
        p = run["paired_ratio_cut_rows_over_whole_batch"]
        saved = run["call_cpu_saved_pct_of_whole_batch_call"]
        la0, la1 = run.get("loadavg_start") or ["?"], run.get("loadavg_end") or ["?"]
        lines.append(f"| {run['batch']} | {p['extra_step_cpu']['median']:.3f} [{p['extra_step_cpu']['min']:.3f}, "
                     f"{p['extra_step_cpu']['max']:.3f}] | {p['extra_step_wall']['median']:.3f} "
                     f"[{p['extra_step_wall']['min']:.3f}, {p['extra_step_wall']['max']:.3f}] | "
                     f"{p['call_cpu']['median']:.4f} [{p['call_cpu']['min']:.4f}, {p['call_cpu']['max']:.4f}] | "
                     f"{saved['median']:.2f} [{saved['min']:.2f}, {saved['max']:.2f}] | {run['answer_lengths']} | "
                     f"{run['sequences_identical']} | {run['max_abs_trace_difference_between_arms']:.2e} | "
                     f"{la0[0]} → {la1[0]} |")
    return lines
