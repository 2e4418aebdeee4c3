"""``spill-guard calibrate`` checks every argument, and every ``--from-bench`` folder, before loading
the model; files read from a bench folder give clear errors and are never used as paths.

The model loader is a tripwire: a check made after the load fails these tests.
"""

from __future__ import annotations

import json

import pytest

from spill_guard.cli.main import main
from spill_guard.spill_model import SpillModel

HEADER = {"header": {"kind": "generations", "entry_key": "sha256 of the prompt token ids", "model": "smollm2-135m-instruct"}}


@pytest.fixture
def no_model_load(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(SpillModel, "load", tripwire)


def calibrate(*args: str) -> list[str]:
    return ["calibrate", "--no-progress", *args]


def bench_folder(tmp_path, results: bytes | None) -> str:
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "generations.jsonl").write_text(json.dumps(HEADER) + "\n")
    if results is not None:
        (folder / "results.json").write_bytes(results)
    return str(folder)


def test_calibrate_target_above_one_is_refused_before_the_model_loads(no_model_load, tmp_path, capsys):
    assert main(calibrate("capitals", "-o", str(tmp_path / "c.json"), "--target", "1.5")) == 2
    assert "strictly between 0 and 1, got 1.5" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--strategy", "false-flag", "--target", "0"], "got 0.0"),
    (["--target", "nan"], "got nan"),
    (["--select", "--folds", "1"], "--folds must be >= 2"),
    (["--n", "0"], "--n must be >= 1"),
    (["--batch-size", "0"], "--batch-size) must be an integer >= 1, got 0"),
    (["--batch-size", "-2"], "got -2"),
    (["--max-new-tokens", "0"], "--max-new-tokens) must be an integer >= 1"),
    (["--spec", "spilled_energy:nope"], "nope"),
    (["--beta", "-1"], "beta must be a finite number > 0, got -1.0"),
    (["--dtype", "float7"], "float7"),
])
def test_calibrate_out_of_range_argument_is_refused_before_the_model_loads(no_model_load, tmp_path, capsys, args, message):
    assert main(calibrate("capitals", "-o", str(tmp_path / "c.json"), *args)) == 2
    assert message in capsys.readouterr().err


def test_calibrate_output_paths_are_checked_before_the_model_loads(no_model_load, tmp_path, capsys):
    assert main(calibrate("capitals", "-o", str(tmp_path))) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert main(calibrate("capitals", "-o", str(tmp_path / "f" / "c.json"))) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(calibrate("capitals", "-o", str(tmp_path / "c.json"), "--cache", str(tmp_path / "f"))) == 2
    assert "--cache" in capsys.readouterr().err


def test_calibrate_missing_inputs_are_refused_before_the_model_loads(no_model_load, tmp_path, capsys):
    out = str(tmp_path / "c.json")
    assert main(calibrate("no-such-task", "-o", out)) == 2
    assert "unknown task 'no-such-task'" in capsys.readouterr().err
    assert main(calibrate("--from-log", str(tmp_path / "nowhere.jsonl"), "-o", out)) == 2
    err = capsys.readouterr().err
    assert "--from-log" in err and "does not exist" in err
    assert main(calibrate("--from-bench", str(tmp_path / "nowhere"), "-o", out)) == 2
    assert "--from-bench" in capsys.readouterr().err
    assert main(calibrate(",", "-o", out)) == 2
    assert "names no task" in capsys.readouterr().err


def test_truncated_results_json_from_bench_is_a_clear_error_naming_the_file(no_model_load, tmp_path, capsys):
    folder = bench_folder(tmp_path, b'{"task": "capitals", "split": "de')
    assert main(calibrate("--from-bench", folder, "-o", str(tmp_path / "c.json"))) == 2
    err = capsys.readouterr().err
    assert "results.json" in err and folder in err and "truncated" in err


@pytest.mark.parametrize("content", [b"\xff\xfe{}", b"[1, 2]", b'"capitals"'])
def test_results_json_not_utf8_or_not_an_object_is_a_clear_error(no_model_load, tmp_path, capsys, content):
    folder = bench_folder(tmp_path, content)
    assert main(calibrate("--from-bench", folder, "-o", str(tmp_path / "c.json"))) == 2
    assert "results.json" in capsys.readouterr().err


def test_from_bench_task_path_from_results_json_is_not_read(no_model_load, tmp_path, capsys):
    secret = tmp_path / "secret.jsonl"
    secret.write_text("TOP-SECRET first line\n")
    folder = bench_folder(tmp_path, json.dumps({"task": str(secret), "split": "dev"}).encode())
    assert main(calibrate("--from-bench", folder, "-o", str(tmp_path / "c.json"))) == 2
    err = capsys.readouterr().err
    assert "TOP-SECRET" not in err
    assert "not a built-in task" in err and "TASK argument" in err


def test_from_bench_task_name_from_results_json_must_be_a_string(no_model_load, tmp_path, capsys):
    folder = bench_folder(tmp_path, json.dumps({"task": ["capitals"]}).encode())
    assert main(calibrate("--from-bench", folder, "-o", str(tmp_path / "c.json"))) == 2
    assert "not a built-in task" in capsys.readouterr().err


def test_calibrate_from_a_log_with_no_labelled_trace_fails_before_the_model_loads(no_model_load, tmp_path, capsys):
    log = tmp_path / "review.jsonl"
    log.write_text("")
    assert main(calibrate("--from-log", str(log), "-o", str(tmp_path / "c.json"))) == 2
    assert "no labelled records" in capsys.readouterr().err
