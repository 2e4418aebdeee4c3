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
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from overhead_arms import TARGET_OVERHEAD_PCT, _loadavg
from overhead_final_rows import add_arguments as add_final_rows_arguments
from overhead_final_rows import final_rows_markdown, final_rows_section
from overhead_runs import cpu_section, gpu_section
from overhead_report import markdown as sections_markdown


def markdown(result: dict) -> str:
    """The report: CPU / GPU sections, then the final-step-rows section when it was run."""
    text = sections_markdown(result)
    if "final_step_rows" in result:
        text = text.rstrip("\n") + "\n" + "\n".join(final_rows_markdown(result["final_step_rows"])) + "\n"
    return text


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
    ap.add_argument("--final-step", choices=("always", "auto"), default="always",
                    help="capture arms: always run the z_(T+1) step, or skip it after a textless stop token (the guard)")
    ap.add_argument("--end-on-stop", action="store_true",
                    help="every row ends on the stop token at exactly --max-new-tokens (the guard's usual answer)")
    add_final_rows_arguments(ap)
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
    if args.final_step_rows:
        result["final_step_rows"] = final_rows_section(args, log)
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
