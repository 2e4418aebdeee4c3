"""Overhead benchmark, part 3: the markdown report written next to the JSON results."""

from __future__ import annotations

from overhead_arms import TARGET_OVERHEAD_PCT

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
        ]
        if "final_step" in sec:  # recorded since --final-step existed; older results always ran the step
            lines += [
                f"Capture final step: `{sec['final_step']}`; answers "
                + ("end on the stop token at exactly max_new_tokens (forced), the guard's usual answer"
                   if sec.get("end_on_stop") else "run to max_new_tokens (no stop token)") + ".",
                "",
            ]
        lines += [
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
