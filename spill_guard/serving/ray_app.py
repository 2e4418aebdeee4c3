"""The guarded server on Ray Serve: the same ASGI app (:func:`create_app`) as N replicas.

Nothing here re-implements a route: each replica builds the app with :func:`create_app` and
hands it to Ray through ``@serve.ingress()`` (late-bound: Ray calls
``__serve_build_asgi_app__`` on the replica after its constructor). The constructor loads the
model, so a replica only counts as running once it can answer, and each replica keeps its
own dynamic batcher; Ray's proxy spreads requests across replicas. With ``backend="vllm"``
each replica owns one vLLM ``AsyncLLM`` (its engine core a child process of the replica),
whose continuous batching the batcher hands each request to at once (capability
``continuous_batching``).

Entry points:

- :func:`guard_application` — a bound Serve application from a :class:`GuardConfig` and
  :class:`ServerSettings` (what ``spill-guard serve --ray`` runs);
- :func:`app_builder` — for ``serve run spill_guard.serving.ray_app:app_builder model=... replicas=2``
  or a Serve config file (``import_path: spill_guard.serving.ray_app:app_builder`` with ``args``);
- :func:`run_ray` — start (or join) a cluster, deploy, block until interrupted. A replica
  whose model fails to load fails the deployment (after Ray's bounded constructor retries), and
  ``run_ray`` raises a :class:`~spill_guard.errors.SpillGuardError` with the replica's error.

Every replica writes the review log the config names. On one machine a JSONL or SQLite
file on a shared path is safe for any number of replica processes (both sinks lock across
processes); replicas on several machines need a ``postgresql://`` log.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import threading
from collections.abc import Mapping
from typing import Any

from spill_guard.backends.options import parse_engine_options
from spill_guard.errors import InvalidParameterError, SpillGuardError
from spill_guard.serving.config import GuardConfig, ServerSettings

#: The deployment's name in Ray (``serve status`` shows it), and its application's.
DEPLOYMENT_NAME = "SpillGuardServer"
APP_NAME = "spill-guard"
#: Logical CPUs a local cluster declares: Ray reserves CPUs for its controller and proxy, and on
#: a 2-core machine the ingress replica would otherwise never be scheduled.
MIN_LOCAL_CPUS = 4


def require_ray_extra() -> Any:
    try:
        from ray import serve
    except ImportError as exc:
        raise SpillGuardError(
            f"Ray Serve is not installed ({exc.name} is missing): pip install 'spill-guard[ray]'"
        ) from exc
    return serve


def guard_application(
    config: GuardConfig, settings: ServerSettings | None = None, *, replicas: int = 1, num_cpus: float = 1.0
) -> Any:
    """A Ray Serve application of ``replicas`` copies of the guarded server.

    ``num_cpus`` is what each replica reserves in the cluster (logical CPUs; fractions allowed).
    """
    serve = require_ray_extra()
    settings = settings or ServerSettings()
    _check_positive_int("replicas", replicas)
    if not isinstance(num_cpus, (int, float)) or isinstance(num_cpus, bool) or num_cpus <= 0:
        raise InvalidParameterError(f"num_cpus per replica must be a number > 0, got {num_cpus!r}.")

    @serve.deployment(
        name=DEPLOYMENT_NAME,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": num_cpus},
        # A replica must accept enough concurrent requests to fill its batches.
        max_ongoing_requests=max(16, 2 * settings.max_batch),
        health_check_period_s=10,
    )
    @serve.ingress()
    class SpillGuardServer:
        def __init__(self, config: GuardConfig, settings: ServerSettings):
            from spill_guard.serving.app import create_app

            self._app = create_app(config, settings, load_on_startup=False)
            self._app.state.server.load()  # blocking: the replica starts only with a loaded model

        def __serve_build_asgi_app__(self) -> Any:
            return self._app

        def check_health(self) -> None:
            if not self._app.state.server.engine.ready:
                raise RuntimeError("the model is not loaded")

        def __del__(self) -> None:  # Ray calls it when it stops a replica: close the log, stop a vLLM engine
            app = getattr(self, "_app", None)
            if app is not None:
                app.state.server.close()

    # Ray's serve.deployment/ingress decorators are typed as returning the class, not a Deployment
    return SpillGuardServer.bind(config, settings)  # type: ignore[attr-defined]


def app_builder(args: Mapping[str, Any]) -> Any:
    """Serve's application builder: ``serve run spill_guard.serving.ray_app:app_builder key=value ...``.

    Keys are the fields of :class:`GuardConfig` and :class:`ServerSettings` (``model``,
    ``policy``, ``log``, ``threshold``, ``max_batch`` ...) plus ``replicas`` and
    ``num_cpus_per_replica``. Values given on the command line arrive as strings and are
    converted to each field's type.
    """
    values = dict(args or {})
    replicas = _as_int("replicas", values.pop("replicas", 1))
    num_cpus = _as_float("num_cpus_per_replica", values.pop("num_cpus_per_replica", 1.0))
    if "api_key" not in values and os.environ.get("SPILL_GUARD_API_KEY"):
        values["api_key"] = os.environ["SPILL_GUARD_API_KEY"]
    guard_kwargs = _typed_fields(GuardConfig, values)
    settings_kwargs = _typed_fields(ServerSettings, values)
    if values:
        known = sorted(f.name for cls in (GuardConfig, ServerSettings) for f in dataclasses.fields(cls))
        raise InvalidParameterError(
            f"unknown argument(s) {sorted(values)} for the spill-guard Ray application; "
            f"use replicas, num_cpus_per_replica or one of {', '.join(known)}."
        )
    return guard_application(
        GuardConfig(**guard_kwargs), ServerSettings(**settings_kwargs), replicas=replicas, num_cpus=num_cpus
    )


def run_ray(
    config: GuardConfig,
    settings: ServerSettings,
    *,
    host: str,
    port: int,
    replicas: int,
    address: str | None = None,
    num_cpus_per_replica: float = 1.0,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Deploy on Ray Serve and block until SIGINT/SIGTERM (or ``stop`` is set), then shut down.

    Without ``address`` a local cluster is started (bound to loopback when ``host`` is); with
    one, the deployment joins that cluster (``"auto"`` for the one ``ray start`` runs here).
    """
    serve = require_ray_extra()
    import ray

    application = guard_application(config, settings, replicas=replicas, num_cpus=num_cpus_per_replica)
    started_cluster = address is None
    if started_cluster:
        needed = max(MIN_LOCAL_CPUS, int(replicas * num_cpus_per_replica) + 2)
        ray.init(num_cpus=needed, include_dashboard=False, **_loopback_node(host))
    else:
        ray.init(address=address)
    stop = stop or threading.Event()
    previous = _install_stop_signals(stop)
    try:
        serve.start(http_options={"host": host, "port": port})
        try:
            serve.run(application, name=APP_NAME, route_prefix="/")
        except RuntimeError as exc:  # DEPLOY_FAILED: a replica's constructor (the model load) kept failing
            raise SpillGuardError(config.load_failed(_replica_error(serve) or str(exc))) from None
        if ready is not None:
            ready.set()
        stop.wait()
    finally:
        _restore_signals(previous)
        serve.shutdown()
        if started_cluster:
            ray.shutdown()


# -- helpers -------------------------------------------------------------------------------
#: The last exception line of a traceback: ``[module.]SomeError: message`` (the message may go on).
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception)): ", re.MULTILINE)


def _replica_error(serve: Any) -> str | None:
    """``SomeError: message`` a failed replica raised, read from the deployment's status (Ray keeps
    the constructor's traceback there as text); ``None`` when there is none to read."""
    try:
        message = serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME].message
    except Exception:  # noqa: BLE001 - no status to read: the caller falls back to Ray's own error
        return None
    found = list(_EXCEPTION_LINE.finditer(message or ""))
    if not found:
        return None
    return f"{found[-1].group(1)}: {message[found[-1].end() :].strip()}"


def _loopback_node(host: str) -> dict[str, Any]:
    # Ray binds its own services (GCS, raylet, object store) on the node address: keep them on
    # loopback unless the HTTP server itself is exposed.
    return {"_node_ip_address": "127.0.0.1"} if host in ("127.0.0.1", "localhost") else {}


def _install_stop_signals(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _typed_fields(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Pop the entries of ``values`` that are fields of dataclass ``cls``, converted to their types."""
    out = {}
    for field in dataclasses.fields(cls):
        if field.name in values:
            out[field.name] = _convert(field.name, str(field.type), values.pop(field.name))
    return out


def _convert(name: str, type_name: str, value: Any) -> Any:
    if type_name.startswith("Mapping"):  # engine_options: a mapping from a config file, or "k=v,k=v"
        return parse_engine_options(value)
    if not isinstance(value, str):
        return value
    if "None" in type_name and value.lower() in ("", "none", "null"):
        return None
    if type_name.startswith("bool"):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise InvalidParameterError(f"{name} must be true or false, got {value!r}.")
    if type_name.startswith("int"):
        return _as_int(name, value)
    if type_name.startswith("float"):
        return _as_float(name, value)
    return value


def _as_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}.") from None
    return number


def _as_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a number, got {value!r}.") from None


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidParameterError(f"{name} must be an integer >= 1, got {value!r}.")
