"""A reader that stops early (``spill-guard review list | head``) ends the command quietly, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from spill_guard.review import ReviewRecord, open_log


def test_a_closed_pipe_ends_the_listing_without_a_traceback(tmp_path):
    path = tmp_path / "review.jsonl"
    with open_log(path) as log:  # enough records that the listing outruns the pipe's buffer
        log.write_many(
            [
                ReviewRecord(question=f"question {i}?", answer="an answer", original_answer="an answer",
                             action="passed", flagged=False, score=0.1, threshold=0.5, spec="spilled_energy:mean")
                for i in range(4000)
            ]
        )
    env = {**os.environ, "SPILL_GUARD_LOG": str(path)}
    proc = subprocess.Popen([sys.executable, "-m", "spill_guard.cli.main", "review", "list"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(200)
    proc.stdout.close()  # the reader goes away mid-listing
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
