"""Command-line interface: one module per command, dispatched by ``spill_guard.cli.main``."""
