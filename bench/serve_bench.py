"""Throughput and CPU per request of `spill-guard serve`: guarded vs scoring off, paired.

Each arm is a real `spill-guard serve` process on 127.0.0.1 (its own interpreter, model and
worker thread), started once and driven over HTTP by this process through ONE persistent
httpx client per arm (keep-alive connections, reused by every run):

    guarded            the guard on, dynamic batching (--max-batch), a JSONL review log (fsync on)
    plain              --no-guard: scoring off (plain generate, no capture, no log), same batching
    guarded_nolog      (optional) the guard on, no review log
    guarded_unbatched  (optional) the guard on, --max-batch 1, the JSONL log

At each concurrency c, c threads start together (a barrier) and each sends
--requests-per-client greedy chat requests (max_tokens fixed, so every arm generates the
same tokens). A run of every arm makes one repeat; arms alternate order between repeats
(ABBA...), so a drift in machine speed hits them alike, and every comparison is paired: the
guarded / plain ratio of throughput and of server CPU per request is taken within a repeat,
then summarised over repeats (median and min–max). Per run the bench records the batch
sizes the server formed (its Prometheus histogram `spill_guard_batch_size`, read before and
after the run), the server process's CPU time (/proc/<pid>/stat: all its threads) and the
load average, so a run whose batches formed differently can be seen, not guessed.

    .venv/bin/python bench/serve_bench.py --threads 1 --out bench/results/serve_bench.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

QUESTIONS = [f"What is the capital of {c}?" for c in (
    "France", "Spain", "Italy", "Japan", "Peru", "Kenya", "Norway", "Chile",
    "Egypt", "Canada", "Poland", "India", "Ghana", "Cuba", "Nepal", "Mali")]
ARMS = ("guarded", "plain", "guarded_nolog", "guarded_unbatched", "guarded_base")
DEFAULT_ARMS = ("guarded", "plain")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- servers ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(arm: str, port: int, max_batch: int, max_wait_ms: float, log_dir: Path) -> list[str]:
    """The `spill-guard serve` command line of ``arm``."""
    cmd = [sys.executable, "-m", "spill_guard.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--max-wait-ms", str(max_wait_ms), "--log-level", "warning",
           "--max-batch", str(1 if arm == "guarded_unbatched" else max_batch)]
    if arm == "plain":
        cmd.append("--no-guard")
    elif arm == "guarded_base":  # the guarded server of another source tree (--base-src): same flags
        cmd += ["--log", str(log_dir / f"{arm}.jsonl")]
    elif arm != "guarded_nolog":
        cmd += ["--log", str(log_dir / f"{arm}.jsonl")]
    return cmd


class Server:
    """One `spill-guard serve` subprocess; its stderr goes to a file (shown if it fails)."""

    def __init__(self, arm: str, cmd: list[str], port: int, threads: int | None, stderr_path: Path,
                 source: str | None = None):
        env = dict(os.environ)
        if source:  # this arm imports spill_guard from another checkout (e.g. `git archive` of a base commit)
            env["PYTHONPATH"] = source
        if threads:  # torch's intra-op threads (read when torch starts)
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.arm, self.port, self.stderr_path = arm, port, stderr_path
        self._stderr = open(stderr_path, "wb")
        # `python -m` puts the working directory first on sys.path: run in the tree the arm imports
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr, cwd=source or ROOT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, client: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.arm} server exited ({self.proc.returncode}): {self.stderr_tail()}")
            try:
                if client.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the {self.arm} server was not ready after {timeout:.0f} s: {self.stderr_tail()}")

    def stderr_tail(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-2000:]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads), from /proc."""
        return process_cpu_seconds(Path(f"/proc/{self.proc.pid}/stat").read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._stderr.close()


def process_cpu_seconds(stat: str) -> float:
    """utime + stime (fields 14 and 15) of a /proc/<pid>/stat line, in seconds."""
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces; fields after it start at 3
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def batch_histogram(metrics_text: str) -> dict[str, float]:
    """The server's `spill_guard_batch_size` histogram: cumulative bucket counts by ``le``, sum and count."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "spill_guard_batch_size":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                out[f"le={sample.labels['le']}"] = sample.value
            elif sample.name.endswith("_sum"):
                out["sum"] = sample.value
            elif sample.name.endswith("_count"):
                out["count"] = sample.value
    return out


def batch_sizes(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Batches a run formed: how many, their mean size, and how many of each size bucket."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    count = delta.get("count", 0.0)
    buckets = sorted(((float(k[3:]), v) for k, v in delta.items() if k.startswith("le=")), key=lambda kv: kv[0])
    by_size, below = {}, 0.0
    for le, cumulative in buckets:
        if cumulative - below > 0:
            by_size["+Inf" if le == float("inf") else f"<={le:g}"] = int(cumulative - below)
        below = cumulative
    return {"batches": int(count), "rows": int(delta.get("sum", 0.0)),
            "mean_size": delta.get("sum", 0.0) / count if count else float("nan"), "by_size": by_size}


# -- load -------------------------------------------------------------------------------------
def drive(client: Any, server: Server, concurrency: int, per_client: int, max_tokens: int, model: str,
          offset: int = 0) -> dict[str, Any]:
    """``concurrency`` threads sharing ``client`` send ``per_client`` requests each; one run's numbers."""
    latencies: list[float] = []
    tokens: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)

    def worker(i: int) -> None:
        start.wait()
        for j in range(per_client):
            q = QUESTIONS[(offset + i * per_client + j) % len(QUESTIONS)]
            body = {"model": model, "messages": [{"role": "user", "content": q}], "max_tokens": max_tokens,
                    "temperature": 0.0}
            t0 = time.perf_counter()
            try:
                resp = client.post(server.url + "/v1/chat/completions", json=body)
                resp.raise_for_status()
                n = resp.json()["usage"]["completion_tokens"]
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                with lock:
                    errors.append(repr(exc)[:300])
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                tokens.append(n)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    hist0 = batch_histogram(client.get(server.url + "/metrics").text)
    load0 = os.getloadavg()[0]
    cpu0 = server.cpu_seconds()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = server.cpu_seconds() - cpu0
    hist1 = batch_histogram(client.get(server.url + "/metrics").text)
    ok = len(latencies)
    return {"requests": ok, "errors": errors, "tokens": sum(tokens), "wall_s": wall,
            "requests_per_s": ok / wall if wall > 0 else float("nan"),
            "server_cpu_s": cpu, "cpu_s_per_request": cpu / ok if ok else float("nan"),
            "p50_latency_s": quantile(latencies, 0.5), "p95_latency_s": quantile(latencies, 0.95),
            "batches": batch_sizes(hist0, hist1), "load_1min_before": round(load0, 2),
            "load_1min_after": round(os.getloadavg()[0], 2)}


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


# -- summary ----------------------------------------------------------------------------------
def spread(values: list[float]) -> dict[str, Any]:
    """Median and range of per-repeat values (NaN-free values only)."""
    finite = [v for v in values if v == v]
    if not finite:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "values": values}
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite), "values": values}


def paired(runs: dict[str, dict[int, list[dict[str, Any]]]], arm: str, base: str, concurrency: list[int]
           ) -> dict[int, dict[str, Any]]:
    """Per concurrency, ``arm`` / ``base`` within each repeat: throughput and CPU per request."""
    out = {}
    for c in concurrency:
        pairs = list(zip(runs[arm][c], runs[base][c]))
        out[c] = {"throughput_ratio": spread([ratio(a["requests_per_s"], b["requests_per_s"]) for a, b in pairs]),
                  "cpu_per_request_ratio": spread([ratio(a["cpu_s_per_request"], b["cpu_s_per_request"])
                                                   for a, b in pairs])}
    return out


def ratio(a: float, b: float) -> float:
    return a / b if b and b == b else float("nan")


def summarize(arm_runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"requests": sum(r["requests"] for r in arm_runs), "errors": sum(len(r["errors"]) for r in arm_runs),
            "requests_per_s": spread([r["requests_per_s"] for r in arm_runs]),
            "cpu_s_per_request": spread([r["cpu_s_per_request"] for r in arm_runs]),
            "p50_latency_s": spread([r["p50_latency_s"] for r in arm_runs]),
            "mean_batch_size": spread([r["batches"]["mean_size"] for r in arm_runs]),
            "batches_per_run": [r["batches"]["batches"] for r in arm_runs],
            "batch_sizes_per_run": [r["batches"]["by_size"] for r in arm_runs]}


def arm_flags(command: list[str]) -> str:
    """``serve`` and the flags that set an arm apart (no host, port or log level)."""
    shown, skip = [], False
    for x in command[3:]:
        if skip:
            skip = False
        elif x in ("--host", "--port", "--log-level"):
            skip = True
        else:
            shown.append(x)
    return " ".join(shown)


def fmt(s: dict[str, Any], digits: int = 3, pct: bool = False) -> str:
    if pct:
        return f"{(s['median'] - 1) * 100:+.1f} % ({(s['min'] - 1) * 100:+.1f} … {(s['max'] - 1) * 100:+.1f})"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f} … {s['max']:.{digits}f})"


def render(report: dict[str, Any]) -> str:
    lines = ["# `spill-guard serve`: throughput and CPU per request, guarded vs scoring off", "",
             f"Command: `{report['command']}`  ", f"Date: {report['date']}; {report['machine']}  ",
             f"Load average (1, 5, 15 min) before / after: {report['load_before']} / {report['load_after']}; "
             f"whole bench {report['bench_wall_s']:.0f} s.", "",
             f"Each arm is its own `spill-guard serve` process on 127.0.0.1 driven by one persistent httpx client; "
             f"greedy chat requests, max_tokens={report['max_tokens']}, {report['requests_per_client']} per client "
             f"thread per run (threads start together), {report['repeats']} repeats with the arms' order alternating; "
             f"max_batch {report['max_batch']}, max_wait_ms {report['max_wait_ms']}. Arms: "
             + ", ".join(f"`{a}` = `spill-guard {arm_flags(report['commands'][a])}`" for a in report["arms"]) + ".",
             f"1-minute load average during the runs: {report['load_during']['min']:.1f} … "
             f"{report['load_during']['max']:.1f} (median {report['load_during']['median']:.1f}).", "",
             "Values are the median over repeats (min … max).", "",
             "| arm | c | requests (errors) | requests/s | server CPU s / request | p50 latency s | mean batch size "
             "| batches per run |", "|---|---|---|---|---|---|---|---|"]
    for arm in report["arms"]:
        for c in report["concurrency"]:
            r = report["results"][arm][str(c)]
            lines.append(f"| {arm} | {c} | {r['requests']} ({r['errors']}) | {fmt(r['requests_per_s'], 2)} | "
                         f"{fmt(r['cpu_s_per_request'])} | {fmt(r['p50_latency_s'])} | "
                         f"{fmt(r['mean_batch_size'], 2)} | {', '.join(map(str, r['batches_per_run']))} |")
    for arm, by_c in report["paired"].items():
        lines += ["", f"Paired within each repeat, `{arm}` / `plain` − 1 (median, min … max over repeats):", "",
                  "| c | throughput | server CPU per request |", "|---|---|---|"]
        for c in report["concurrency"]:
            p = by_c[str(c)]
            lines.append(f"| {c} | {fmt(p['throughput_ratio'], pct=True)} | {fmt(p['cpu_per_request_ratio'], pct=True)} |")
    if report.get("paired_base"):
        lines += ["", f"Paired within each repeat, `guarded` / `guarded_base` − 1 (`guarded_base`: the same server "
                  f"from `{report['base_src']}`):", "", "| c | throughput | server CPU per request |", "|---|---|---|"]
        for c in report["concurrency"]:
            p = report["paired_base"][str(c)]
            lines.append(f"| {c} | {fmt(p['throughput_ratio'], pct=True)} | {fmt(p['cpu_per_request_ratio'], pct=True)} |")
    lines += ["", "Batch sizes per run (size bucket: batches), from each server's `spill_guard_batch_size` histogram:", ""]
    for arm in report["arms"]:
        for c in report["concurrency"]:
            sizes = report["results"][arm][str(c)]["batch_sizes_per_run"]
            lines.append(f"- {arm}, c={c}: " + " ".join(
                "[" + ", ".join(f"{k}: {v}" for k, v in s.items()) + "]" for s in sizes))
    lines += ["", "The machine is shared (other jobs run alongside; see the load average): wall-clock throughput "
              "swings with the load, so CPU time per request of the server process (all its threads, /proc) is the "
              "steadier measure of the work each arm does. Compare arms within this run only: every ratio pairs "
              "two runs made back to back.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--requests-per-client", type=int, default=3)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=50.0,
                   help="the servers' --max-wait-ms (default 50, above serve's 10: on a loaded machine c closed-loop "
                        "clients' next requests can arrive more than 10 ms apart, and batches would form by luck)")
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument("--threads", type=int, default=None, help="torch threads in each server (OMP_NUM_THREADS)")
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.add_argument("--base-src", default=None,
                   help="source tree the guarded_base arm imports spill_guard from (e.g. a `git archive` of the "
                        "commit before a change); the report then pairs guarded / guarded_base too")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_bench.json"))
    args = p.parse_args(argv)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - set(ARMS)
    if unknown:
        p.error(f"unknown arms {sorted(unknown)}; choose from {ARMS}")
    if ("guarded_base" in arms) != (args.base_src is not None):
        p.error("the guarded_base arm and --base-src go together")
    if args.repeats < 1 or args.requests_per_client < 1 or min(concurrency) < 1:
        p.error("--repeats, --requests-per-client and every concurrency must be >= 1")

    import httpx

    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="serve_bench_"))
    commands, servers, clients = {}, {}, {}
    limits = httpx.Limits(max_connections=max(concurrency) * 2, max_keepalive_connections=max(concurrency) * 2)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {a: {c: [] for c in concurrency} for a in arms}
    try:
        for arm in arms:  # all start (and load) together; each waits idle while another arm runs
            port = free_port()
            commands[arm] = serve_command(arm, port, args.max_batch, args.max_wait_ms, work)
            source = args.base_src if arm == "guarded_base" else None
            servers[arm] = Server(arm, commands[arm], port, args.threads, work / f"{arm}.stderr", source)
            clients[arm] = httpx.Client(timeout=600, limits=limits)
        for arm in arms:
            servers[arm].wait_ready(clients[arm], args.ready_timeout)
        model = clients[arms[0]].get(servers[arms[0]].url + "/v1/models").json()["data"][0]["id"]
        for arm in arms:  # warm-up (not measured): opens the client's connections, first batches, caches
            drive(clients[arm], servers[arm], max(concurrency), 1, args.max_tokens, model)
        for repeat in range(args.repeats):
            for c in concurrency:
                order = arms if repeat % 2 == 0 else list(reversed(arms))
                for arm in order:
                    run = drive(clients[arm], servers[arm], c, args.requests_per_client, args.max_tokens, model,
                                offset=repeat)
                    run["repeat"] = repeat
                    runs[arm][c].append(run)
                    print(f"repeat {repeat} c={c} {arm}: {run['requests']} ok, {len(run['errors'])} errors, "
                          f"{run['requests_per_s']:.2f} req/s, {run['cpu_s_per_request']:.3f} CPU s/req, "
                          f"batches {run['batches']['by_size']}, load {run['load_1min_after']}", flush=True)
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
    import torch

    report: dict[str, Any] = {
        "command": "python bench/serve_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                   f"{args.threads or 'default'} torch threads per server",
        "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
        "bench_wall_s": time.perf_counter() - started,
        "max_tokens": args.max_tokens, "requests_per_client": args.requests_per_client, "repeats": args.repeats,
        "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "concurrency": concurrency, "arms": arms,
        "commands": {a: ["python", *(x.replace(str(work), "$TMP") for x in commands[a][1:])] for a in arms},
        "results": {a: {str(c): summarize(runs[a][c]) for c in concurrency} for a in arms},
        "paired": {a: {str(c): v for c, v in paired(runs, a, "plain", concurrency).items()}
                   for a in arms if a != "plain" and "plain" in arms},
        "base_src": args.base_src,
        "paired_base": ({str(c): v for c, v in paired(runs, "guarded", "guarded_base", concurrency).items()}
                        if {"guarded", "guarded_base"} <= set(arms) else None),
        "runs": {a: {str(c): runs[a][c] for c in concurrency} for a in arms},
        "load_during": spread([r[k] for a in arms for c in concurrency for r in runs[a][c]
                               for k in ("load_1min_before", "load_1min_after")]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
