"""bench/overhead.py (split over four modules) re-renders its committed results exactly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("name", ["overhead_cpu", "overhead_cpu_energy", "overhead_cpu_guard"])
def test_render_only_reproduces_the_committed_markdown(name, tmp_path):
    result = tmp_path / f"{name}.json"
    shutil.copy(BENCH / "results" / f"{name}.json", result)
    done = subprocess.run(
        [sys.executable, str(BENCH / "overhead.py"), "--render-only", "--out", str(result)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / f"{name}.md").read_text() == (BENCH / "results" / f"{name}.md").read_text()
