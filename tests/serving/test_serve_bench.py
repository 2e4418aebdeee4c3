"""bench/serve_bench.py (issue 19 item 14): its parsing of /proc and of the server's batch-size
histogram, and one tiny end-to-end run (two real `spill-guard serve` processes on 127.0.0.1,
c = 1, 2, two repeats, one two-token request per client)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import serve_bench  # noqa: E402


def test_process_cpu_seconds_reads_utime_and_stime_after_a_command_name_with_spaces():
    ticks = serve_bench.CLOCK_TICKS
    stat = f"4242 (python (x) y) S 1 2 3 4 5 6 7 8 9 10 {3 * ticks} {2 * ticks} 0 0 20 0 9 0 100"
    assert serve_bench.process_cpu_seconds(stat) == pytest.approx(5.0)


def test_batch_sizes_are_the_histogram_difference_of_a_run():
    text_before = ('spill_guard_batch_size_bucket{le="1.0"} 2.0\nspill_guard_batch_size_bucket{le="2.0"} 2.0\n'
                   'spill_guard_batch_size_bucket{le="+Inf"} 3.0\nspill_guard_batch_size_sum 10.0\n'
                   'spill_guard_batch_size_count 3.0\n')
    text_after = ('spill_guard_batch_size_bucket{le="1.0"} 3.0\nspill_guard_batch_size_bucket{le="2.0"} 5.0\n'
                  'spill_guard_batch_size_bucket{le="+Inf"} 6.0\nspill_guard_batch_size_sum 16.0\n'
                  'spill_guard_batch_size_count 6.0\n')
    header = "# HELP spill_guard_batch_size x\n# TYPE spill_guard_batch_size histogram\n"
    sizes = serve_bench.batch_sizes(serve_bench.batch_histogram(header + text_before),
                                    serve_bench.batch_histogram(header + text_after))
    assert sizes == {"batches": 3, "rows": 6, "mean_size": 2.0, "by_size": {"<=1": 1, "<=2": 2}}


def test_paired_ratios_pair_runs_of_the_same_repeat():
    def run(rps, cpu):
        return {"requests_per_s": rps, "cpu_s_per_request": cpu}

    runs = {"guarded": {1: [run(1.0, 2.0), run(3.0, 1.0)]}, "plain": {1: [run(2.0, 1.0), run(3.0, 0.5)]}}
    p = serve_bench.paired(runs, "guarded", "plain", [1])[1]
    assert p["throughput_ratio"]["values"] == [0.5, 1.0] and p["throughput_ratio"]["median"] == 0.75
    assert p["cpu_per_request_ratio"]["values"] == [2.0, 2.0]


@pytest.mark.model
def test_a_tiny_run_end_to_end(tmp_path):
    out = tmp_path / "serve_bench.json"
    assert serve_bench.main(["--concurrency", "1,2", "--repeats", "2", "--requests-per-client", "1",
                             "--max-tokens", "2", "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["arms"] == ["guarded", "plain"]
    for arm in report["arms"]:
        for c in ("1", "2"):
            runs = report["runs"][arm][c]
            assert [r["repeat"] for r in runs] == [0, 1]
            assert all(r["errors"] == [] and r["requests"] == int(c) for r in runs)
            assert all(r["batches"]["rows"] == int(c) for r in runs)  # every request's row seen in a batch
            assert all(r["server_cpu_s"] > 0 for r in runs)
    assert set(report["paired"]["guarded"]) == {"1", "2"}
    assert "guarded" in out.with_suffix(".md").read_text()
