"""Observability for spill_guard: Prometheus metrics and OpenTelemetry events (optional extras).

Nothing is imported eagerly: each submodule imports its optional package (prometheus-client,
opentelemetry-api) itself and names the extra to install when it is missing.
"""
