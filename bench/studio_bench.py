"""Latency, startup, memory and labelling throughput of the review studio (`spill-guard review serve`).

A benchmark, not a test. For each backend (SQLite file, PostgreSQL table) it:

1. fills a fresh review log with ``--records`` records (default 100,000) shaped like the guard's
   (question, answer, ~10 answer tokens with per-token Δ, a span, a rule version, a model; no
   ``scored`` trace, so a record is a few hundred bytes), written with ``sink.write_many`` in chunks
   of ``--chunk`` (default 5,000); the fill time is recorded. Questions are built from templates and
   subjects, so text search has real text to search; exactly 1 % of them contain the word
   ``zeppelin`` (the ``q=`` filter of the queue).
2. starts the real studio process (``python -m spill_guard.cli.main review serve --log LOG --port P
   --reviewer NAME=TOKEN`` x 5, ``OMP_NUM_THREADS=1``) and records the seconds from ``Popen`` until
   ``GET /login`` answers 200 (interpreter start, imports, opening the log, building the index), and
   its resident memory (``VmRSS`` of ``/proc/<pid>/status``) after start, after the warm-up and at the
   end (plus ``VmHWM``, the peak).
3. drives it from this process over loopback with ONE persistent ``httpx.Client`` per reviewer
   (``Authorization: Bearer <token>``, keep-alive), sequentially, timing every request with
   ``time.perf_counter`` after 20 warm-up requests (the queue kinds and focus views of other records;
   their times are kept as ``warmup_ms``: the first queue page sorts the index, the first focus view
   builds the heatmap reference):

   - queue page ``GET /`` for six filter kinds, round-robin (``--rounds`` rounds, default 50, so 300
     requests): ``default`` (sort -risk), ``action=flagged``, ``label=unlabelled``, ``q=zeppelin``
     (~1 %), ``min_risk=0.2&max_risk=0.4``, ``sort=time&offset=50000`` (deep page);
     p50 / p95 / max per kind and over all of them;
   - focus view ``GET /item/{id}`` for ``--focus`` (200) random records;
   - ``POST /api/label`` for ``--labels`` (1,000) distinct records, one after the other (labels/s,
     p50 / p95 per label); then ``--threads`` (4) threads, each with its own reviewer token and
     client, labelling ``--per-thread`` (250) distinct records each, started together (labels/s
     overall, latency percentiles over all);
   - (extra, not in the issue's target) ``--loop`` (60) rounds of a reviewer's loop after a label:
     ``POST /api/label``, then ``GET /item/{next}``, then ``GET /``. Each label changes the index,
     so these show what the queue and focus view cost when their cached orders were just dropped.

   Every response must be 200; the labels given are checked against ``/api/queue?label=labelled``.

The issue's target: p95 <= 300 ms on this machine for the queue page and for the focus view.
Results: ``--out-json`` (every number, the raw per-request times in ms, the machine) and ``--out-md``
(tables and the command). One PostgreSQL server (``tests/postgres_support.running_postgres``) is
started for the run; every process started is stopped at the end, also on errors.

Command (11 minutes on 2 shared cores, 5.5 of them the SQLite label phases):

    OMP_NUM_THREADS=1 .venv/bin/python bench/studio_bench.py

Quick check on tiny sizes:

    .venv/bin/python bench/studio_bench.py --records 2000 --rounds 4 --focus 10 --labels 20 \\
        --per-thread 5 --loop 5 --deep-offset 1000 --out-json /tmp/sb.json --out-md /tmp/sb.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shlex
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # postgres_support (a throwaway PostgreSQL server)

import httpx  # noqa: E402

from spill_guard.review import ReviewRecord, open_log  # noqa: E402

TARGET_P95_MS = 300.0
RARE_WORD = "zeppelin"
REVIEWERS = [
    ("alice", "alice-token-0123456789abcdef"),
    ("bob", "bob-token-0123456789abcdefgh"),
    ("carol", "carol-token-0123456789abcdef"),
    ("dave", "dave-token-0123456789abcdefg"),
    ("erin", "erin-token-0123456789abcdefg"),
]
WORDS = ["The", " capital", " of", " France", " is", " Paris", ".", " It", " was", " 1969", " Apollo", " 11",
         " river", " longest", " Nile", " element", " gold", " Au", " year", " 1492", " wrote", " Hamlet"]
TEMPLATES = [
    "What is the capital of {s}?", "When was {s} founded?", "Who discovered {s}?", "How long is the {s}?",
    "What is {s} known for?", "Which river flows through {s}?", "What year did {s} become independent?",
    "Who wrote the book about {s}?", "What is the population of {s}?", "Which language is spoken in {s}?",
    "What is the chemical symbol of {s}?", "Who was the first person to climb {s}?",
    "Summarise the history of {s} in one sentence.", "What is the tallest building in {s}?",
    "Which currency does {s} use?", "Name a famous painter from {s}.",
]
SUBJECTS = [
    "France", "Peru", "Kenya", "Norway", "Chile", "Egypt", "Canada", "Poland", "India", "Ghana", "Cuba", "Nepal",
    "Mali", "Japan", "Spain", "Italy", "the Nile", "the Amazon", "Everest", "K2", "gold", "helium", "uranium",
    "penicillin", "Pluto", "the Danube", "Lisbon", "Oslo", "Quito", "Hanoi", "Tasmania", "Iceland", "Mongolia",
    "Bolivia", "Zanzibar", "the Rhine", "Mont Blanc", "Kilimanjaro", "radium", "the Andes",
]
QUEUE_KINDS: dict[str, dict[str, str]] = {  # the deep-offset kind gets its offset from --deep-offset
    "default": {},
    "action=flagged": {"action": "flagged"},
    "label=unlabelled": {"label": "unlabelled"},
    f"q={RARE_WORD}": {"q": RARE_WORD},
    "risk 0.2..0.4": {"min_risk": "0.2", "max_risk": "0.4"},
    "sort=time deep offset": {"sort": "time"},
}


# -- data ----------------------------------------------------------------------------------
def make_records(start_index: int, n: int, rng: random.Random, t0: datetime) -> list[ReviewRecord]:
    """``n`` guard-like records (ids random); record ``i`` is created 30 s after record ``i-1``."""
    out = []
    for i in range(start_index, start_index + n):
        k = rng.randint(8, 12)
        tokens = [rng.choice(WORDS) for _ in range(k)]
        scores = [round(rng.gauss(0.0, 1.0), 4) for _ in range(k)]
        score = round(sum(scores) / k + rng.gauss(0, 0.3), 4)
        threshold = 0.2
        flagged = score > threshold
        action = ("flagged" if flagged else "passed") if i % 7 else ("abstained" if flagged else "passed")
        question = rng.choice(TEMPLATES).format(s=rng.choice(SUBJECTS))
        if i % 100 == 37:  # exactly 1 % carry the rare word
            question = question[:-1] + f" (asked about the {RARE_WORD})?"
        question += f" [case {i}]"
        answer = "".join(tokens)
        out.append(ReviewRecord(
            created_at=(t0 + timedelta(seconds=30 * i)).isoformat(timespec="microseconds"),
            question=question,
            answer=answer if action != "abstained" else "I don't know.",
            original_answer=answer,
            action=action,
            flagged=flagged,
            score=score,
            threshold=threshold,
            rule_version="cal-aaaaaaaaaaaa" if i % 3 else "threshold:0.2",
            spec="spilled_energy:mean",
            tokens=tokens,
            token_scores=scores,
            span={"start": 0, "end": len(tokens[0]), "text": tokens[0], "token_start": 0, "token_end": 1},
            model=("model-a", "model-b", "model-c")[i % 3],
            scored=None,
        ))
    return out


def fill(location: str, n: int, chunk: int, seed: int) -> tuple[dict[str, Any], list[str]]:
    """Write ``n`` records to ``location`` in chunks; the timing and the ids in write order."""
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids: list[str] = []
    build_s = write_s = 0.0
    sizes = []
    with open_log(location) as sink:
        for start in range(0, n, chunk):
            a = time.perf_counter()
            records = make_records(start, min(chunk, n - start), rng, t0)
            b = time.perf_counter()
            ids += sink.write_many(records)
            write_s += time.perf_counter() - b
            build_s += b - a
            if start == 0:
                sizes = [len(r.to_json()) for r in records[:500]]
    return {
        "records": n,
        "chunk": chunk,
        "write_seconds": round(write_s, 3),
        "records_per_s": round(n / write_s, 1) if write_s else None,
        "build_records_seconds": round(build_s, 3),
        "mean_record_json_bytes": round(sum(sizes) / len(sizes), 1) if sizes else None,
    }, ids


# -- the studio process --------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def studio_argv(location: str, port: int) -> list[str]:
    argv = [sys.executable, "-m", "spill_guard.cli.main", "review", "serve", "--log", location, "--port", str(port)]
    for name, token in REVIEWERS:
        argv += ["--reviewer", f"{name}={token}"]
    return argv


@contextlib.contextmanager
def running_studio(location: str, server_log: Path, timeout: float = 600) -> Iterator[tuple[str, int, float]]:
    """The real studio on loopback; yields (base URL, pid, seconds until GET /login answered 200)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SPILL_GUARD_LOG", "SPILL_GUARD_REVIEWERS")}
    env["OMP_NUM_THREADS"] = "1"
    base = f"http://127.0.0.1:{port}"
    out = server_log.open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(studio_argv(location, port), stdout=out, stderr=subprocess.STDOUT, env=env,
                            cwd=str(ROOT), stdin=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=5) as probe:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the studio exited with {proc.returncode}:\n"
                                       + server_log.read_text(errors="replace")[-4000:])
                try:
                    if probe.get(base + "/login").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"the studio did not answer within {timeout} s")
                time.sleep(0.02)
        startup = time.perf_counter() - t0
        yield base, proc.pid, startup
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        out.close()


# -- measuring -------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def stats(ms: list[float]) -> dict[str, Any]:
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "max_ms": round(max(ms), 2) if ms else None,
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else None,
    }


def client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"})


def timed(c: httpx.Client, method: str, url: str, **kw: Any) -> tuple[float, httpx.Response]:
    t = time.perf_counter()
    r = c.request(method, url, **kw)
    ms = (time.perf_counter() - t) * 1000.0
    if r.status_code != 200:
        raise RuntimeError(f"{method} {url} answered {r.status_code}: {r.text[:500]}")
    return ms, r


def label_many(c: httpx.Client, ids: list[str], rng: random.Random) -> list[float]:
    out = []
    for rid in ids:
        ms, r = timed(c, "POST", "/api/label", data={"id": rid, "label": rng.choice(("correct", "incorrect"))})
        out.append(ms)
    return out


def total_of(c: httpx.Client, params: dict[str, str]) -> int:
    return int(c.get("/api/queue", params={**params, "limit": "1"}).json()["total"])


def bench_backend(name: str, location: str, ids: list[str], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed + 1)
    kinds = {k: dict(v) for k, v in QUEUE_KINDS.items()}
    kinds["sort=time deep offset"]["offset"] = str(args.deep_offset)
    n_label = args.labels + args.threads * args.per_thread + args.loop + 1
    chosen = rng.sample(ids, args.focus + 8 + n_label)
    focus_ids, warm_focus, rest = chosen[: args.focus], chosen[args.focus : args.focus + 8], chosen[args.focus + 8 :]
    seq_ids, rest = rest[: args.labels], rest[args.labels :]
    thread_ids = [rest[i * args.per_thread : (i + 1) * args.per_thread] for i in range(args.threads)]
    loop_ids = rest[args.threads * args.per_thread :]
    result: dict[str, Any] = {"log": location.split("#")[0] if name == "postgres" else "sqlite file (temp)"}
    server_log = work / f"studio-{name}.log"
    with running_studio(location, server_log) as (base, pid, startup):
        result["startup"] = {"seconds_to_login_200": round(startup, 3),
                             "rss_mib_after_start": mib(proc_status_kib(pid, "VmRSS"))}
        print(f"[{name}] studio up in {startup:.2f} s, RSS {result['startup']['rss_mib_after_start']} MiB", flush=True)
        main = client(base, REVIEWERS[0][1])
        try:
            # warm-up: 2 rounds of the queue kinds + 8 focus views of records not measured later
            warm: list[tuple[str, float]] = []
            for _ in range(2):
                for kind, params in kinds.items():
                    warm.append((kind, timed(main, "GET", "/", params=params)[0]))
            for rid in warm_focus:
                warm.append(("focus", timed(main, "GET", f"/item/{rid}")[0]))
            result["warmup_ms"] = [(k, round(ms, 2)) for k, ms in warm]
            page_q = timed(main, "GET", "/", params={"q": RARE_WORD})[1].text
            page_default = timed(main, "GET", "/")[1].text
            if RARE_WORD not in page_q or "[case " not in page_default:
                raise RuntimeError("the queue page does not show the records it should (see the server log)")
            result["startup"]["rss_mib_after_warmup"] = mib(proc_status_kib(pid, "VmRSS"))
            result["filter_totals"] = {kind: total_of(main, {k: v for k, v in p.items() if k != "offset"})
                                       for kind, p in kinds.items()}

            # queue page, round-robin over the kinds
            per_kind: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for kind, params in kinds.items():
                    per_kind[kind].append(timed(main, "GET", "/", params=params)[0])
            every = [ms for v in per_kind.values() for ms in v]
            result["queue"] = {"per_kind": {k: stats(v) for k, v in per_kind.items()}, "overall": stats(every)}
            print(f"[{name}] queue overall {result['queue']['overall']}", flush=True)

            # focus view
            focus_ms = [timed(main, "GET", f"/item/{rid}")[0] for rid in focus_ids]
            result["focus"] = stats(focus_ms)
            print(f"[{name}] focus {result['focus']}", flush=True)

            # labels, one after the other
            t = time.perf_counter()
            seq_ms = label_many(main, seq_ids, rng)
            wall = time.perf_counter() - t
            result["label_sequential"] = {**stats(seq_ms), "labels": len(seq_ms), "seconds": round(wall, 3),
                                          "labels_per_s": round(len(seq_ms) / wall, 1)}
            print(f"[{name}] sequential labels {result['label_sequential']}", flush=True)

            # labels from several reviewers at once (each its own token and connection)
            barrier = threading.Barrier(args.threads + 1)
            thread_ms: list[list[float]] = [[] for _ in range(args.threads)]
            errors: list[BaseException] = []

            def worker(i: int) -> None:
                c = client(base, REVIEWERS[1 + i][1])
                try:
                    c.get("/login")  # open the connection before the start
                    barrier.wait()
                    thread_ms[i] = label_many(c, thread_ids[i], random.Random(args.seed + 10 + i))
                except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
                    errors.append(exc)
                finally:
                    c.close()

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
            for th in threads:
                th.start()
            barrier.wait()
            t = time.perf_counter()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t
            if errors:
                raise errors[0]
            flat = [ms for v in thread_ms for ms in v]
            result["label_concurrent"] = {**stats(flat), "threads": args.threads, "labels": len(flat),
                                          "seconds": round(wall, 3), "labels_per_s": round(len(flat) / wall, 1)}
            print(f"[{name}] concurrent labels {result['label_concurrent']}", flush=True)

            # extra: a reviewer's loop (label, next focus view, queue) with caches dropped by each label
            loop_label, loop_focus, loop_queue = [], [], []
            for i in range(args.loop):
                loop_label.append(label_many(main, [loop_ids[i]], rng)[0])
                loop_focus.append(timed(main, "GET", f"/item/{loop_ids[i + 1]}")[0])
                loop_queue.append(timed(main, "GET", "/")[0])
            result["after_label_loop"] = {"label": stats(loop_label), "focus": stats(loop_focus),
                                          "queue_default": stats(loop_queue)}
            print(f"[{name}] after-label loop {result['after_label_loop']}", flush=True)

            expected = args.labels + args.threads * args.per_thread + args.loop
            labelled = total_of(main, {"label": "labelled"})
            result["checks"] = {"labels_given": expected, "labelled_in_queue": labelled, "ok": labelled == expected}
            result["startup"]["rss_mib_end"] = mib(proc_status_kib(pid, "VmRSS"))
            result["startup"]["rss_peak_mib"] = mib(proc_status_kib(pid, "VmHWM"))
            result["raw_ms"] = {
                "queue": {k: [round(x, 3) for x in v] for k, v in per_kind.items()},
                "focus": [round(x, 3) for x in focus_ms],
                "label_sequential": [round(x, 3) for x in seq_ms],
                "label_concurrent": [[round(x, 3) for x in v] for v in thread_ms],
                "after_label_loop": {"label": [round(x, 3) for x in loop_label],
                                     "focus": [round(x, 3) for x in loop_focus],
                                     "queue_default": [round(x, 3) for x in loop_queue]},
            }
        finally:
            main.close()
    tail = server_log.read_text(errors="replace").strip().splitlines()
    result["server_log_tail"] = tail[-10:]
    result["targets"] = {
        "queue_p95_ms": result["queue"]["overall"]["p95_ms"],
        "queue_met": result["queue"]["overall"]["p95_ms"] <= TARGET_P95_MS,
        "queue_worst_kind_p95_ms": max(v["p95_ms"] for v in result["queue"]["per_kind"].values()),
        "queue_every_kind_met": all(v["p95_ms"] <= TARGET_P95_MS for v in result["queue"]["per_kind"].values()),
        "focus_p95_ms": result["focus"]["p95_ms"],
        "focus_met": result["focus"]["p95_ms"] <= TARGET_P95_MS,
    }
    return result


# -- machine facts -----------------------------------------------------------------------------
def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return head + (" dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for pkg in ("fastapi", "starlette", "uvicorn", "jinja2", "httpx", "pydantic", "psycopg"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "loadavg_start": list(os.getloadavg()),
    }


# -- report --------------------------------------------------------------------------------------
def fmt_stats(s: dict[str, Any] | None) -> str:
    if not s:
        return "-"
    return f"{s['p50_ms']:.1f} / {s['p95_ms']:.1f} / {s['max_ms']:.1f}"


def markdown(doc: dict[str, Any]) -> str:
    names = [n for n in ("sqlite", "postgres") if n in doc["backends"]]
    shown = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    b = doc["backends"]
    head = "| | " + " | ".join(shown[n] for n in names) + " |\n|---|" + "---|" * len(names) + "\n"

    def row(title: str, f: Any) -> str:
        return f"| {title} | " + " | ".join(f(b[n]) for n in names) + " |\n"

    def met(ok: bool) -> str:
        return "**met**" if ok else "**NOT met**"

    out = [f"# Review studio benchmark ({doc['config']['records']:,} records)\n\n",
           f"{doc['date']}, commit `{doc['git']}`, {doc['machine']['cpu']}, {doc['machine']['cores']} cores, "
           f"Python {doc['versions']['python']}, load average at start {doc['machine']['loadavg_start'][0]:.2f}, "
           f"at end {doc['machine']['loadavg_end'][0]:.2f}. The studio and this client share the cores; one "
           "persistent HTTP client per reviewer, bearer tokens, sequential requests unless said otherwise.\n\n",
           "```\n" + doc["command"] + "\n```\n\n",
           "## Targets (p95 <= 300 ms on this machine)\n\n", head,
           row("queue page `GET /`, p95 over all kinds", lambda r: f"{r['targets']['queue_p95_ms']:.1f} ms: "
               + met(r["targets"]["queue_met"])),
           row("queue page, worst kind's p95", lambda r: f"{r['targets']['queue_worst_kind_p95_ms']:.1f} ms: "
               + met(r["targets"]["queue_every_kind_met"])),
           row("focus view `GET /item/{id}`, p95", lambda r: f"{r['targets']['focus_p95_ms']:.1f} ms: "
               + met(r["targets"]["focus_met"])),
           row("queue page right after a label (its cached matches dropped), p95",
               lambda r: f"{r['after_label_loop']['queue_default']['p95_ms']:.1f} ms: "
               + met(r["after_label_loop"]["queue_default"]["p95_ms"] <= 300)),
           row("focus view right after a label, p95", lambda r: f"{r['after_label_loop']['focus']['p95_ms']:.1f} ms: "
               + met(r["after_label_loop"]["focus"]["p95_ms"] <= 300)),
           "\nThe first three rows repeat the same filters without a change in between, so the index answers "
           "from its per-filter cache; the last two are the cold case a reviewer meets after each label.\n",
           "\n## Numbers (latency: p50 / p95 / max, ms)\n\n", head,
           row("fill: `write_many` in chunks of "
               f"{doc['config']['chunk']:,} (s, records/s)",
               lambda r: f"{r['fill']['write_seconds']:.1f} s, {r['fill']['records_per_s']:,.0f}/s"),
           row("startup until `GET /login` is 200 (s)", lambda r: f"{r['startup']['seconds_to_login_200']:.2f}"),
           row("RSS after start / after warm-up / end (peak), MiB",
               lambda r: f"{r['startup']['rss_mib_after_start']} / {r['startup']['rss_mib_after_warmup']} / "
               f"{r['startup']['rss_mib_end']} ({r['startup']['rss_peak_mib']})"),
           row(f"queue, all kinds ({b[names[0]]['queue']['overall']['n']} requests)",
               lambda r: fmt_stats(r["queue"]["overall"]))]
    for kind in QUEUE_KINDS:
        label = kind if kind != "sort=time deep offset" else f"sort=time&offset={doc['config']['deep_offset']:,}"
        out.append(row(f"&nbsp;&nbsp;queue `{label}` (matching)",
                       lambda r, k=kind: f"{fmt_stats(r['queue']['per_kind'][k])} ({r['filter_totals'][k]:,})"))
    out += [row(f"focus view ({doc['config']['focus']} random records)", lambda r: fmt_stats(r["focus"])),
            row(f"label, sequential ({doc['config']['labels']:,}): labels/s; p50 / p95 / max",
                lambda r: f"{r['label_sequential']['labels_per_s']:.0f}/s; {fmt_stats(r['label_sequential'])}"),
            row(f"label, {doc['config']['threads']} reviewers at once x {doc['config']['per_thread']}: labels/s; "
                "p50 / p95 / max", lambda r: f"{r['label_concurrent']['labels_per_s']:.0f}/s; "
                f"{fmt_stats(r['label_concurrent'])}"),
            row("first request after start (warm-up, cold): queue `default`; focus view",
                lambda r: f"{r['warmup_ms'][0][1]:,.0f}; "
                f"{next(ms for k, ms in r['warmup_ms'] if k == 'focus'):,.0f}"),
            row("extra, right after a label: focus view of the next record",
                lambda r: fmt_stats(r["after_label_loop"]["focus"])),
            row("extra, right after a label: queue `default`",
                lambda r: fmt_stats(r["after_label_loop"]["queue_default"])),
            row("labels found in the queue afterwards = given", lambda r: f"{r['checks']['labelled_in_queue']:,} = "
                f"{r['checks']['labels_given']:,}: {'yes' if r['checks']['ok'] else 'NO'}")]
    out.append("\nWarm-up requests (not in the numbers; the first ones sort the index and build the heatmap "
               "reference) and every raw time are in the JSON file. The 'right after a label' rows are a "
               "reviewer's loop (label, open the next record, back to the queue): each label changes the "
               "index, which drops the records it had matched per filter (its sort orders stay).\n")
    if doc.get("notes"):
        out.append("\n" + doc["notes"].strip() + "\n")
    return "".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--chunk", type=int, default=5_000)
    p.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    p.add_argument("--rounds", type=int, default=50, help="round-robin rounds over the 6 queue kinds")
    p.add_argument("--deep-offset", type=int, default=50_000)
    p.add_argument("--focus", type=int, default=200)
    p.add_argument("--labels", type=int, default=1_000)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--per-thread", type=int, default=250)
    p.add_argument("--loop", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-json", default=str(ROOT / "bench/results/studio_bench.json"))
    p.add_argument("--out-md", default=str(ROOT / "bench/results/studio_bench.md"))
    p.add_argument("--md-only", action="store_true", help="only rewrite --out-md from the existing --out-json")
    args = p.parse_args()
    if args.md_only:
        Path(args.out_md).write_text(markdown(json.loads(Path(args.out_json).read_text())))
        return 0
    if args.threads > len(REVIEWERS) - 1:
        p.error(f"at most {len(REVIEWERS) - 1} threads (one reviewer token each)")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    command = "OMP_NUM_THREADS=1 .venv/bin/python " + " ".join(shlex.quote(a) for a in
                                                               [str(Path(sys.argv[0]).resolve().relative_to(ROOT))
                                                                if Path(sys.argv[0]).resolve().is_relative_to(ROOT)
                                                                else sys.argv[0], *sys.argv[1:]])
    doc: dict[str, Any] = {
        "command": command,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "machine": machine(),
        "versions": versions(),
        "config": {k: v for k, v in vars(args).items() if k not in ("out_json", "out_md", "md_only")}
        | {"queue_kinds": QUEUE_KINDS, "rare_word": RARE_WORD, "target_p95_ms": TARGET_P95_MS,
           "studio_env": {"OMP_NUM_THREADS": "1"}, "reviewers": len(REVIEWERS)},
        "backends": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        work = Path(tmp)
        for name in backends:
            with contextlib.ExitStack() as stack:
                if name == "sqlite":
                    location = str(work / "guard.sqlite")
                elif name == "postgres":
                    from postgres_support import find_bin_dir, running_postgres

                    server = stack.enter_context(running_postgres())
                    location = server.fresh_log_url()
                    pg = subprocess.run([str(find_bin_dir() / "postgres"), "--version"], capture_output=True, text=True)
                    doc["versions"]["postgresql_server"] = pg.stdout.strip()
                else:
                    p.error(f"unknown backend {name!r}")
                print(f"[{name}] filling {args.records:,} records ...", flush=True)
                info, ids = fill(location, args.records, args.chunk, args.seed)
                if name == "sqlite":
                    info["file_mib"] = round(sum(f.stat().st_size for f in work.glob("guard.sqlite*")) / 2**20, 1)
                print(f"[{name}] fill {info}", flush=True)
                result = {"fill": info}
                result.update(bench_backend(name, location, ids, args, work))
                doc["backends"][name] = result
    doc["machine"]["loadavg_end"] = list(os.getloadavg())
    doc["total_seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out_json).write_text(json.dumps(doc, indent=1) + "\n")
    Path(args.out_md).write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
