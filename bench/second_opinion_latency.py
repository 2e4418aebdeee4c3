"""Latency and cost of the second opinion beside one pass: library (batch 1 and 8), server (c = 1 and 16).

The same fixed questions (capitals, elements, arithmetic from the built-in tasks) go through two arms:

    one_pass         the guard as shipped for the embedded model (its packaged calibration), Flag policy
    second_opinion   the same guard with ``second_opinion=Consistency(samples=K, temperature=1.0,
                     cascade=Cascade(-1e9, 1e9, 0.5))``: a band that holds every one-pass risk, so every
                     question is sampled K more times (the worst case; one generate call per sample)

Library (in this process, one model shared by both guards): batch 1 is ``guard.ask(q)`` per question,
batch 8 is ``guard.ask_batch(8 questions)`` (the first answers in one padded generate; the samples still
one generate each). Per call: wall time (``perf_counter``), CPU time of this process (``process_time``:
every torch thread) and the tokens the model generated (first answers and samples, counted from the
answers ``generate_params`` returned). Per question = per call / questions in the call.

Server: two real ``spill-guard serve`` processes on 127.0.0.1 (free ports, started together, stopped at
the end, ready within ``--ready-timeout``): one with the packaged calibration (one pass) and one with
``--calibration`` pointing at a copy of that calibration carrying a ``second_opinion`` section with the
band above. ``serve`` has no second-opinion flag: a calibration file fitted with
``spill-guard calibrate --second-opinion K`` is how a server gets one, and this copy keeps the packaged
threshold (not refitted on the final risk: the decisions are not meaningful, the work is the same). The
server helpers (process, free port, /proc CPU time, batch histogram) are bench/serve_bench.py's. At
c = 1 and c = 16, c client threads start together and send every question once (greedy chat
completions, ``max_tokens`` fixed); per run: per-request latency p50 / p95, requests/s, server CPU per
request (/proc, all its threads), completion tokens (``usage``) and the sampled answers' tokens
(re-tokenised from the response's ``spill_guard.second_opinion.answers``: the server does not report
them as token counts).

Rounds: every round runs every arm once per setting, the arms' order alternating between rounds (AB,
BA, ...) after one warm-up call per arm; ratios second_opinion / one_pass are taken within a round
(paired) and summarised over rounds (median, min-max). The expected cost at a sampled share s (the share
of questions a fitted band samples, from bench/results/second_opinion_eval.json when present) is
``one_pass + s * (second_opinion_all - one_pass)`` per question.

    OMP_NUM_THREADS=2 .venv/bin/python bench/second_opinion_latency.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from serve_bench import Server, arm_flags, batch_histogram, batch_sizes, free_port, quantile  # noqa: E402

ARMS = ("one_pass", "second_opinion")
BAND = (-1e9, 1e9)  # holds every finite one-pass risk: every question gets a second opinion
WEIGHT = 0.5
TASKS = (("capitals", 6), ("elements", 5), ("arithmetic", 5))
EVAL = ROOT / "bench" / "results" / "second_opinion_eval.json"


def fixed_questions(total: int) -> list[dict[str, str]]:
    """``total`` questions from the built-in tasks, spread evenly through each file (a fixed list)."""
    from spill_guard.tasks import load_task

    shares = [n * total // 16 for _, n in TASKS]
    shares[0] += total - sum(shares)
    out = []
    for (task, _), n in zip(TASKS, shares):
        items = load_task(task)
        step = max(1, len(items) // max(n, 1))
        out += [{"task": task, "id": it.id, "question": it.question} for it in items[::step][:n]]
    return out


# -- numbers ------------------------------------------------------------------------------------
def spread(values: list[float]) -> dict[str, Any]:
    """Median, quartiles and range (NaN-free values)."""
    v = sorted(x for x in values if x == x)
    if not v:
        return {
            "median": float("nan"),
            "q1": float("nan"),
            "q3": float("nan"),
            "min": float("nan"),
            "max": float("nan"),
            "n": 0,
        }
    q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else (v[0], v[0], v[0])
    return {"median": statistics.median(v), "q1": q1, "q3": q3, "min": v[0], "max": v[-1], "n": len(v)}


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def sampled_share() -> dict[str, Any] | None:
    """The share of questions the fitted band sampled in the accuracy benchmark (test split, mean over tasks)."""
    try:
        doc = json.loads(EVAL.read_text())
        share = float(doc["test_mean"]["sampled_fraction"])
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return {
        "share": share,
        "source": f"{EVAL.relative_to(ROOT)} test_mean.sampled_fraction",
        "source_command": doc.get("command"),
        "source_date": doc.get("date"),
    }


# -- library ------------------------------------------------------------------------------------
class TokenCount:
    """Counts generate calls and generated tokens of one SpillModel (wraps its ``generate_params``)."""

    def __init__(self, model: Any):
        self.calls = 0
        self.tokens = 0
        inner = model.generate_params

        def counted(prompts: Any, params: Any, **kwargs: Any) -> Any:
            answers = inner(prompts, params, **kwargs)
            self.calls += 1
            self.tokens += sum(len(a.answer_ids) for a in answers)
            return answers

        model.generate_params = counted

    def take(self) -> tuple[int, int]:
        out = (self.calls, self.tokens)
        self.calls = self.tokens = 0
        return out


def library(args: argparse.Namespace, questions: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from spill_guard import Cascade, Consistency, SpillGuard, SpillModel

    torch.set_num_threads(args.threads)
    model = SpillModel.load(device="cpu")
    counter = TokenCount(model)
    consistency = Consistency(samples=args.samples, temperature=args.temperature, cascade=Cascade(*BAND, WEIGHT))
    guards = {
        "one_pass": SpillGuard(model, max_new_tokens=args.max_new_tokens),
        "second_opinion": SpillGuard(model, max_new_tokens=args.max_new_tokens, second_opinion=consistency),
    }
    rule = guards["one_pass"].rule
    out: dict[str, Any] = {
        "model": model.loaded.name,
        "torch_threads": torch.get_num_threads(),
        "rule": {"spec": rule.spec.name, "locator": rule.locator, "threshold": rule.threshold, "source": rule.source},
        "batches": {},
    }
    first_answers: dict[str, dict[str, str]] = {a: {} for a in ARMS}
    sampled: list[bool] = []

    def call(arm: str, chunk: list[str], record: bool) -> dict[str, Any]:
        guard = guards[arm]
        counter.take()
        w0, c0 = time.perf_counter(), time.process_time()
        verdicts = guard.ask(chunk[0]) if len(chunk) == 1 else guard.ask_batch(chunk)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        calls, tokens = counter.take()
        verdicts = [verdicts] if len(chunk) == 1 else verdicts
        if record:
            for q, v in zip(chunk, verdicts):
                first_answers[arm][q] = v.attempts[0].answer if v.attempts else v.original_answer
                if arm == "second_opinion":
                    sampled.append(v.second_opinion is not None)
        return {
            "questions": len(chunk),
            "wall_s": wall,
            "cpu_s": cpu,
            "generate_calls": calls,
            "tokens": tokens,
            "first_tokens": sum(len(v.scored.answer_ids) for v in verdicts if v.scored is not None),
        }

    for batch in args.batches:
        chunks = [questions[i : i + batch] for i in range(0, len(questions), batch)]
        for arm in ARMS:  # warm-up, not measured
            call(arm, chunks[0], record=False)
        runs: dict[str, list[list[dict[str, Any]]]] = {a: [] for a in ARMS}
        for r in range(args.rounds):
            for arm in ARMS if r % 2 == 0 else ARMS[::-1]:
                load = os.getloadavg()[0]
                calls = [call(arm, chunk, record=True) for chunk in chunks]
                runs[arm].append(calls)
                tot = {k: sum(c[k] for c in calls) for k in ("wall_s", "cpu_s", "tokens")}
                log(
                    f"library batch {batch} round {r} {arm:<15} wall {tot['wall_s']:7.2f} s  cpu {tot['cpu_s']:7.2f} s"
                    f"  tokens {tot['tokens']:5d}  load {load:.2f}"
                )
        out["batches"][str(batch)] = summarize_library(runs, len(questions), batch)
    out["first_answers_identical"] = first_answers["one_pass"] == first_answers["second_opinion"]
    out["second_opinion_on_every_question"] = bool(sampled) and all(sampled)
    return out


def summarize_library(runs: dict[str, list[list[dict[str, Any]]]], n_questions: int, batch: int) -> dict[str, Any]:
    """Per question (per call / its questions), per round totals, and second_opinion / one_pass paired by round."""
    res: dict[str, Any] = {"batch": batch, "calls_per_round": len(runs["one_pass"][0]), "arms": {}, "ratio": {}}
    metrics = ("wall_s", "cpu_s", "tokens", "generate_calls")
    per_round: dict[str, dict[str, list[float]]] = {}
    for arm in ARMS:
        per_q = {m: [c[m] / c["questions"] for rnd in runs[arm] for c in rnd] for m in metrics}
        per_round[arm] = {m: [sum(c[m] for c in rnd) / n_questions for rnd in runs[arm]] for m in metrics}
        res["arms"][arm] = {
            "per_question_by_call": {m: spread(v) for m, v in per_q.items()},
            "per_question_by_round": {m: spread(v) for m, v in per_round[arm].items()},
            "first_tokens_per_question": sum(c["first_tokens"] for rnd in runs[arm] for c in rnd)
            / (n_questions * len(runs[arm])),
            "runs": runs[arm],
        }
    for m in metrics:
        res["ratio"][m] = spread(
            [ratio(s, o) for s, o in zip(per_round["second_opinion"][m], per_round["one_pass"][m])]
        )
    # per call, paired by position within the same round (batch 1: the same question in both arms)
    res["ratio_by_call"] = {
        m: spread(
            [ratio(s[m], o[m]) for rs, ro in zip(runs["second_opinion"], runs["one_pass"]) for s, o in zip(rs, ro)]
        )
        for m in ("wall_s", "cpu_s", "tokens")
    }
    return res


# -- server -------------------------------------------------------------------------------------
def second_opinion_calibration(path: Path, model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """A copy of the model's packaged calibration with a second opinion whose band holds every risk."""
    from spill_guard.calibration.consistency import AGREEMENT_LOCATOR
    from spill_guard.calibration.file import SecondOpinionFit, default_calibration

    packaged = default_calibration(model_name)
    if packaged is None:
        raise RuntimeError(f"no packaged calibration for {model_name!r}: the server arms need one")
    unfitted = -1.0  # AUROCs of a fit that was not made (the file requires numbers; NaN is refused)
    fit = SecondOpinionFit(
        samples=args.samples,
        temperature=args.temperature,
        top_p=1.0,
        locator=AGREEMENT_LOCATOR,
        equivalence="judge",
        low=BAND[0],
        high=BAND[1],
        weight=WEIGHT,
        budget=1.0,
        sampled_share=1.0,
        one_pass_auroc=unfitted,
        auroc=unfitted,
        consistency_auroc=unfitted,
        max_new_tokens=args.max_new_tokens,
    )
    packaged.model_copy(update={"second_opinion": fit}).save(path)
    return {
        "threshold": packaged.threshold,
        "spec": packaged.spec,
        "locator": packaged.locator,
        "second_opinion": fit.model_dump(mode="json"),
    }


def serve_cmd(port: int, args: argparse.Namespace, calibration: Path | None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "spill_guard.cli.main",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--max-batch",
        str(args.max_batch),
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--log-level",
        "warning",
    ]
    return cmd + (["--calibration", str(calibration)] if calibration is not None else [])


def drive(
    client: Any,
    server: Server,
    questions: list[str],
    concurrency: int,
    max_tokens: int,
    model: str,
    count_tokens: Callable[[str], int],
) -> dict[str, Any]:
    """``concurrency`` client threads start together and send every question once between them."""
    latencies: list[float] = []
    tokens = {"completion": 0, "samples": 0, "sampled_requests": 0, "samples_drawn": 0}
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def worker(i: int) -> None:
        barrier.wait()
        for q in questions[i::concurrency]:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": q}],
                "max_tokens": max_tokens,
                "temperature": 0.0,
            }
            t0 = time.perf_counter()
            try:
                resp = client.post(server.url + "/v1/chat/completions", json=body)
                resp.raise_for_status()
                doc = resp.json()
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(repr(exc)[:300])
                continue
            took = time.perf_counter() - t0
            opinion = (doc["choices"][0].get("spill_guard") or {}).get("second_opinion")
            drawn = [a.get("answer") or "" for a in opinion["answers"]] if opinion else []
            n_sample_tokens = sum(count_tokens(a) for a in drawn)
            with lock:
                latencies.append(took)
                tokens["completion"] += doc["usage"]["completion_tokens"]
                tokens["samples"] += n_sample_tokens
                tokens["sampled_requests"] += bool(opinion)
                tokens["samples_drawn"] += len(drawn)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    hist0 = batch_histogram(client.get(server.url + "/metrics").text)
    load = os.getloadavg()[0]
    cpu0 = server.cpu_seconds()
    t0 = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = server.cpu_seconds() - cpu0
    hist1 = batch_histogram(client.get(server.url + "/metrics").text)
    ok = len(latencies)
    return {
        "requests": ok,
        "errors": errors,
        "wall_s": wall,
        "requests_per_s": ok / wall if wall else float("nan"),
        "server_cpu_s": cpu,
        "cpu_s_per_request": cpu / ok if ok else float("nan"),
        "p50_latency_s": quantile(latencies, 0.5),
        "p95_latency_s": quantile(latencies, 0.95),
        "latencies_s": latencies,
        **{f"{k}_tokens" if k in ("completion", "samples") else k: v for k, v in tokens.items()},
        "batches": batch_sizes(hist0, hist1),
        "load_1min_before": round(load, 2),
    }


def server(args: argparse.Namespace, questions: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    import httpx

    from spill_guard import SpillModel

    tokenizer = SpillModel.load(device="cpu").tokenizer  # only to count the sampled answers' tokens

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    work = Path(tempfile.mkdtemp(prefix="so_latency_"))
    cal_path = work / "second_opinion_calibration.json"
    from spill_guard.models.embedded import DEFAULT_MODEL

    cal = second_opinion_calibration(cal_path, DEFAULT_MODEL, args)
    servers: dict[str, Server] = {}
    commands: dict[str, list[str]] = {}
    limits = httpx.Limits(
        max_connections=max(args.concurrency) * 2, max_keepalive_connections=max(args.concurrency) * 2
    )
    client = httpx.Client(timeout=600, limits=limits)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {a: {c: [] for c in args.concurrency} for a in ARMS}
    ready_s: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        for arm in ARMS:
            port = free_port()
            commands[arm] = serve_cmd(port, args, cal_path if arm == "second_opinion" else None)
            servers[arm] = Server(arm, commands[arm], port, args.threads, work / f"{arm}.stderr")
        for arm in ARMS:
            servers[arm].wait_ready(client, args.ready_timeout)
            ready_s[arm] = round(time.perf_counter() - t0, 1)
        model = client.get(servers[ARMS[0]].url + "/v1/models").json()["data"][0]["id"]
        for arm in ARMS:  # warm-up: one request per arm
            drive(client, servers[arm], questions[:1], 1, args.max_new_tokens, model, count_tokens)
        for r in range(args.rounds):
            for c in args.concurrency:
                for arm in ARMS if r % 2 == 0 else ARMS[::-1]:
                    run = drive(client, servers[arm], questions, c, args.max_new_tokens, model, count_tokens)
                    run["round"] = r
                    runs[arm][c].append(run)
                    log(
                        f"server c={c} round {r} {arm:<15} {run['requests']} ok ({len(run['errors'])} errors)  "
                        f"p50 {run['p50_latency_s']:.2f} s  p95 {run['p95_latency_s']:.2f} s  "
                        f"{run['requests_per_s']:.2f} req/s  cpu/req {run['cpu_s_per_request']:.2f} s  "
                        f"batches {run['batches']['by_size']}  load {run['load_1min_before']}"
                    )
    finally:
        client.close()
        for s in servers.values():
            s.stop()
    res: dict[str, Any] = {
        "calibration_second_opinion_arm": cal,
        "ready_after_s": ready_s,
        "commands": {a: ["python", *(x.replace(str(work), "$TMP") for x in commands[a][1:])] for a in ARMS},
        "concurrency": {},
    }
    for c in args.concurrency:
        by_arm = {}
        for arm in ARMS:
            rs = runs[arm][c]
            n = [r["requests"] or float("nan") for r in rs]
            by_arm[arm] = {
                "requests": sum(r["requests"] for r in rs),
                "errors": sum(len(r["errors"]) for r in rs),
                "p50_latency_s": spread([r["p50_latency_s"] for r in rs]),
                "p95_latency_s": spread([r["p95_latency_s"] for r in rs]),
                "latency_all_runs_s": {
                    "p50": quantile([x for r in rs for x in r["latencies_s"]], 0.5),
                    "p95": quantile([x for r in rs for x in r["latencies_s"]], 0.95),
                },
                "requests_per_s": spread([r["requests_per_s"] for r in rs]),
                "cpu_s_per_request": spread([r["cpu_s_per_request"] for r in rs]),
                "completion_tokens_per_request": spread([r["completion_tokens"] / k for r, k in zip(rs, n)]),
                "sample_tokens_per_request": spread([r["samples_tokens"] / k for r, k in zip(rs, n)]),
                "sampled_share": spread([r["sampled_requests"] / k for r, k in zip(rs, n)]),
                "mean_batch_size": spread([r["batches"]["mean_size"] for r in rs]),
                "runs": rs,
            }
        pairs = list(zip(runs["second_opinion"][c], runs["one_pass"][c]))
        by_arm["ratio"] = {
            "p50_latency": spread([ratio(s["p50_latency_s"], o["p50_latency_s"]) for s, o in pairs]),
            "p95_latency": spread([ratio(s["p95_latency_s"], o["p95_latency_s"]) for s, o in pairs]),
            "throughput": spread([ratio(s["requests_per_s"], o["requests_per_s"]) for s, o in pairs]),
            "cpu_per_request": spread([ratio(s["cpu_s_per_request"], o["cpu_s_per_request"]) for s, o in pairs]),
        }
        res["concurrency"][str(c)] = by_arm
    return res


# -- expected cost ------------------------------------------------------------------------------
def expected_costs(lib: dict[str, Any] | None, srv: dict[str, Any] | None, share: float) -> dict[str, Any]:
    """``one_pass + s * (all - one_pass)`` per question (library) and per request CPU (server), and as a ratio."""
    out: dict[str, Any] = {"share": share}
    if lib:
        for b, r in lib["batches"].items():
            row = {}
            for m in ("wall_s", "cpu_s", "tokens"):
                one = r["arms"]["one_pass"]["per_question_by_round"][m]["median"]
                every = r["arms"]["second_opinion"]["per_question_by_round"][m]["median"]
                row[m] = {
                    "one_pass": one,
                    "all_sampled": every,
                    "expected": one + share * (every - one),
                    "expected_ratio": 1 + share * (r["ratio"][m]["median"] - 1),
                }
            out[f"library_batch_{b}"] = row
    if srv:
        for c, r in srv["concurrency"].items():
            one = r["one_pass"]["cpu_s_per_request"]["median"]
            every = r["second_opinion"]["cpu_s_per_request"]["median"]
            out[f"server_c_{c}"] = {
                "cpu_s_per_request": {
                    "one_pass": one,
                    "all_sampled": every,
                    "expected": one + share * (every - one),
                    "expected_ratio": 1 + share * (r["ratio"]["cpu_per_request"]["median"] - 1),
                }
            }
    return out


# -- report -------------------------------------------------------------------------------------
def f(s: dict[str, Any], scale: float = 1.0, digits: int = 0, iqr: bool = True) -> str:
    if iqr:
        return f"{s['median'] * scale:.{digits}f} [{s['q1'] * scale:.{digits}f}, {s['q3'] * scale:.{digits}f}]"
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f} … {s['max'] * scale:.{digits}f})"


def render(rep: dict[str, Any]) -> str:
    cfg = rep["config"]
    tasks = ", ".join(f"{t} {n}" for t, n in rep["question_counts"].items())
    lines = [
        "# Second opinion vs one pass: latency and cost per question (library and server)",
        "",
        f"- date: {rep['date']}; commit `{rep['commit']}`"
        + (
            f" at the start, `{rep['commit_at_end']}` at the end"
            if rep.get("commit_at_end", rep["commit"]) != rep["commit"]
            else ""
        ),
        f"- command: `{rep['command']}`",
        f"- machine: {rep['machine']}",
        f"- load average (1/5/15 min) before {rep['load_before']}, after {rep['load_after']}; whole run "
        f"{rep['bench_wall_s']:.0f} s",
        f"- {len(rep['questions'])} fixed questions ({tasks}),"
        f" greedy first answer, max_new_tokens {cfg['max_new_tokens']}; second opinion: K = {cfg['samples']} "
        f"samples at temperature {cfg['temperature']}, band {list(BAND)} (every question sampled: the worst "
        f"case), weight {WEIGHT}; {cfg['rounds']} rounds, arms interleaved (order alternating), one warm-up "
        f"call per arm",
        "",
    ]
    lib = rep.get("library")
    if lib:
        lines += [
            "## Library (`guard.ask` at batch 1, `guard.ask_batch` of 8 at batch 8)",
            "",
            f"Model {lib['model']}, {lib['torch_threads']} torch threads; rule {lib['rule']['spec']} on "
            f"`{lib['rule']['locator']}`, threshold {lib['rule']['threshold']:.4g} ({lib['rule']['source']}). "
            f"First answers identical in both arms: {lib['first_answers_identical']}; every question of the "
            f"second-opinion arm sampled: {lib['second_opinion_on_every_question']}.",
            "",
            "Per question: median over calls [IQR] (batch B: a call's numbers / B). Ratio: second opinion / "
            "one pass per round (total over the questions), median (min … max) over rounds.",
            "",
            "| batch | arm | wall ms | CPU ms | generated tokens (first + samples) | first-answer tokens | "
            "generate calls |",
            "|---|---|---|---|---|---|---|",
        ]
        for b, r in lib["batches"].items():
            for arm in ARMS:
                a = r["arms"][arm]
                pq = a["per_question_by_call"]
                lines.append(
                    f"| {b} | {arm} | {f(pq['wall_s'], 1e3)} | {f(pq['cpu_s'], 1e3)} | "
                    f"{f(pq['tokens'], digits=1)} | {a['first_tokens_per_question']:.1f} | "
                    f"{f(pq['generate_calls'], digits=2)} |"
                )
            q = r["ratio"]
            lines.append(
                f"| {b} | **ratio** | **{f(q['wall_s'], digits=2, iqr=False)}** | "
                f"**{f(q['cpu_s'], digits=2, iqr=False)}** | **{f(q['tokens'], digits=2, iqr=False)}** | | "
                f"{f(q['generate_calls'], digits=2, iqr=False)} |"
            )
        lines += [
            "",
            "Paired per call (the same question, or the same 8, in both arms of a round), second opinion / "
            "one pass, median [IQR] (min … max):",
            "",
            "| batch | wall | CPU | tokens |",
            "|---|---|---|---|",
        ]
        for b, r in lib["batches"].items():
            q = r["ratio_by_call"]
            lines.append(
                f"| {b} | "
                + " | ".join(
                    f"{f(q[m], digits=2)} ({q[m]['min']:.2f} … {q[m]['max']:.2f})"
                    for m in ("wall_s", "cpu_s", "tokens")
                )
                + " |"
            )
        lines += [
            "",
            "Per-round totals per question (median (min … max) over rounds):",
            "",
            "| batch | arm | wall ms | CPU ms | tokens |",
            "|---|---|---|---|---|",
        ]
        for b, r in lib["batches"].items():
            for arm in ARMS:
                pr = r["arms"][arm]["per_question_by_round"]
                lines.append(
                    f"| {b} | {arm} | {f(pr['wall_s'], 1e3, iqr=False)} | {f(pr['cpu_s'], 1e3, iqr=False)} | "
                    f"{f(pr['tokens'], digits=1, iqr=False)} |"
                )
        lines += [""]
    srv = rep.get("server")
    if srv:
        cal = srv["calibration_second_opinion_arm"]
        lines += [
            "## Server (`spill-guard serve`, 127.0.0.1, chat completions, greedy)",
            "",
            "Arms: `one_pass` = `spill-guard " + arm_flags(srv["commands"]["one_pass"]) + "` (packaged "
            "calibration); `second_opinion` = `spill-guard "
            + arm_flags(srv["commands"]["second_opinion"])
            + f"` (each on a free port, `--host 127.0.0.1`, `OMP_NUM_THREADS={rep['config']['threads']}`), "
            "where the file is the "
            f"packaged calibration (threshold {cal['threshold']:.4g}, "
            f"{cal['spec']} on `{cal['locator']}`) plus a `second_opinion` section with the band above "
            "(`serve` takes a second opinion only from a calibration file; none is fitted here, so its "
            "flags mean nothing: only the work is measured). Servers ready after "
            f"{srv['ready_after_s']} s.",
            "",
            f"Each run: c client threads start together and send the {len(rep['questions'])} questions once "
            "between them (max_tokens fixed). Values: median (min … max) over rounds; latency per request "
            "within a run, and pooled over all rounds' requests.",
            "",
            "| c | arm | requests (errors) | p50 latency s | p95 latency s | pooled p50 / p95 s | requests/s "
            "| server CPU s / request | completion tokens / req | sample tokens / req (re-tokenised) | "
            "sampled share | mean batch |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c, r in srv["concurrency"].items():
            for arm in ARMS:
                a = r[arm]
                lines.append(
                    f"| {c} | {arm} | {a['requests']} ({a['errors']}) | {f(a['p50_latency_s'], digits=2, iqr=False)} | "
                    f"{f(a['p95_latency_s'], digits=2, iqr=False)} | {a['latency_all_runs_s']['p50']:.2f} / "
                    f"{a['latency_all_runs_s']['p95']:.2f} | {f(a['requests_per_s'], digits=2, iqr=False)} | "
                    f"{f(a['cpu_s_per_request'], digits=3, iqr=False)} | "
                    f"{f(a['completion_tokens_per_request'], digits=1, iqr=False)} | "
                    f"{f(a['sample_tokens_per_request'], digits=1, iqr=False)} | "
                    f"{a['sampled_share']['median']:.2f} | {f(a['mean_batch_size'], digits=2, iqr=False)} |"
                )
            q = r["ratio"]
            lines.append(
                f"| {c} | **ratio** | | **{f(q['p50_latency'], digits=2, iqr=False)}** | "
                f"**{f(q['p95_latency'], digits=2, iqr=False)}** | | "
                f"**{f(q['throughput'], digits=2, iqr=False)}** | "
                f"**{f(q['cpu_per_request'], digits=2, iqr=False)}** | | | | |"
            )
        lines += [""]
    elif rep.get("server_skipped"):
        lines += ["## Server", "", f"Not measured: {rep['server_skipped']}", ""]
    exp = rep.get("expected")
    if exp:
        src = rep["sampled_share_source"]
        lines += [
            f"## Expected cost at the measured sampled share s = {exp['share']:.3f}",
            "",
            f"s from {src['source']} ({src['source_date']}; `{src['source_command']}`): the share of test "
            "questions the band fitted there samples. Per question: one_pass + s × (all sampled − one_pass); "
            "ratio: 1 + s × (measured ratio − 1).",
            "",
            "| setting | measure | one pass | all sampled | expected at s | expected ratio |",
            "|---|---|---|---|---|---|",
        ]
        units = {
            "wall_s": ("wall ms", 1e3, 0),
            "cpu_s": ("CPU ms", 1e3, 0),
            "tokens": ("tokens", 1, 1),
            "cpu_s_per_request": ("server CPU s / request", 1, 3),
        }
        for setting, row in exp.items():
            if setting == "share":
                continue
            for m, v in row.items():
                name, scale, d = units[m]
                lines.append(
                    f"| {setting.replace('_', ' ')} | {name} | {v['one_pass'] * scale:.{d}f} | "
                    f"{v['all_sampled'] * scale:.{d}f} | {v['expected'] * scale:.{d}f} | "
                    f"{v['expected_ratio']:.2f} |"
                )
        lines += [""]
    lines += [
        "## Reading it",
        "",
        "- CPU time is the steadier measure on this shared 2-core machine; wall time also measures the other "
        "jobs (see the load average).",
        "- The second opinion draws a question's K samples in one generate call of K rows, each row with its "
        "own seed, after the first answer (in the library one call per question, whatever the first answer's "
        "batch; in the server the samples of the requests decided together share calls, through a sample "
        "batcher), so its cost grows with K × the samples' length: sampled answers (here at temperature "
        f"{rep['config']['temperature']:g}) tend to run longer than the greedy first answer (compare the token "
        "columns).",
        "- Library and server prompts differ (the guard's question prompt vs the chat template over the "
        "message as sent), so compare arms within a section, not across sections.",
        "",
    ]
    if rep.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in rep["notes"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=int, default=16, help="how many fixed questions (default 16)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samples", type=int, default=5, help="K, the second opinion's samples")
    p.add_argument("--temperature", type=float, default=0.5, help="the samples' temperature (default 0.5, Consistency's)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--concurrency", default="1,16")
    p.add_argument("--threads", type=int, default=2, help="torch threads here and OMP_NUM_THREADS of each server")
    p.add_argument("--max-batch", type=int, default=8, help="the servers' --max-batch")
    p.add_argument("--max-wait-ms", type=float, default=50.0, help="the servers' --max-wait-ms (as serve_bench)")
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.add_argument("--skip-library", action="store_true")
    p.add_argument("--skip-server", action="store_true")
    p.add_argument("--note", action="append", default=[], help="a line copied into the results")
    p.add_argument("--render-only", action="store_true", help="rewrite the .md from the --out JSON")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "second_opinion_latency.json"))
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.render_only:
        out.with_suffix(".md").write_text(render(json.loads(out.read_text())))
        return 0
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    if args.rounds < 1 or args.questions < 1 or min(args.batches + args.concurrency) < 1:
        p.error("--rounds, --questions, every batch and every concurrency must be >= 1")

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.perf_counter()
    commit_at_start = git_commit()  # the code the processes load; the tree may move on during a long run
    load_before = [round(x, 2) for x in os.getloadavg()]
    items = fixed_questions(args.questions)
    questions = [it["question"] for it in items]
    lib = library(args, questions, log) if not args.skip_library else None
    srv = server(args, questions, log) if not args.skip_server else None
    import torch
    import transformers

    share = sampled_share()
    counts: dict[str, int] = {}
    for it in items:
        counts[it["task"]] = counts.get(it["task"], 0) + 1
    rep: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit_at_start,
        "commit_at_end": git_commit(),
        "command": (f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else "")
        + ".venv/bin/python bench/second_opinion_latency.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"{'GPU: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}; python "
        f"{platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        "config": {k: v for k, v in vars(args).items() if k not in ("render_only", "note", "out")},
        "questions": items,
        "question_counts": counts,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "bench_wall_s": time.perf_counter() - started,
        "library": lib,
        "server": srv,
        "server_skipped": "--skip-server" if args.skip_server else None,
        "sampled_share_source": share,
        "expected": expected_costs(lib, srv, share["share"]) if share else None,
        "notes": args.note,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(rep))
    print(render(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
