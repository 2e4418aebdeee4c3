"""``spill-guard bench`` checks every argument before loading the model: exit 2 with a fixable message.

The model loader is replaced by a tripwire, so a check made only after the load (as before:
``--batch-size 0`` gave a raw ValueError, ``-2`` a KeyError, an ``--out`` file a
FileExistsError, all after the model had loaded) fails these tests.
"""

from __future__ import annotations

import pytest

from spill_guard.cli.main import main
from spill_guard.spill_model import SpillModel


@pytest.fixture
def no_model_load(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(SpillModel, "load", tripwire)


def bench(tmp_path, *args: str) -> list[str]:
    return ["bench", "--task", "capitals", "--no-progress", *args]


def test_bench_batch_size_zero_is_refused_before_the_model_loads(no_model_load, tmp_path, capsys):
    assert main(bench(tmp_path, "--out", str(tmp_path / "o"), "--batch-size", "0")) == 2
    assert "--batch-size) must be an integer >= 1, got 0" in capsys.readouterr().err


def test_bench_negative_batch_size_is_refused_before_the_model_loads(no_model_load, tmp_path, capsys):
    assert main(bench(tmp_path, "--out", str(tmp_path / "o"), "--batch-size", "-2")) == 2
    assert "got -2" in capsys.readouterr().err


def test_bench_out_an_existing_file_is_refused_before_the_model_loads(no_model_load, tmp_path, capsys):
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    assert main(bench(tmp_path, "--out", str(existing))) == 2
    assert f"--out {str(existing)!r} is an existing file" in capsys.readouterr().err
    assert existing.read_text() == "keep me"


@pytest.mark.parametrize("args, message", [
    (["--max-new-tokens", "0"], "--max-new-tokens) must be an integer >= 1, got 0"),
    (["--bootstrap", "0"], "--bootstrap) must be an integer >= 1, got 0"),
    (["--n", "0"], "--n must be >= 1, got 0"),
    (["--locators", "full,nowhere"], "unknown locator 'nowhere'"),
    (["--locators", "full,,numeric"], "locator name must be a non-empty string"),
    (["--beta", "0"], "beta must be a finite number > 0, got 0.0"),
])
def test_bench_out_of_range_argument_is_refused_before_the_model_loads(no_model_load, tmp_path, capsys, args, message):
    assert main(bench(tmp_path, "--out", str(tmp_path / "o"), *args)) == 2
    assert message in capsys.readouterr().err


def test_bench_out_below_a_file_is_refused_before_the_model_loads(no_model_load, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(bench(tmp_path, "--out", str(tmp_path / "file" / "sub"))) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_bench_split_with_no_items_is_refused_before_the_model_loads(no_model_load, tmp_path, capsys):
    task = tmp_path / "one.jsonl"
    task.write_text('{"id": "x", "question": "q?", "answers": ["a"]}\n')
    from spill_guard.evaluation.splits import split_of

    other = "test" if split_of("x") == "dev" else "dev"
    assert main(["bench", "--task", str(task), "--out", str(tmp_path / "o"), "--split", other]) == 2
    assert "has no items in split" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [(["--device", "tpu"], "tpu"), (["--dtype", "float7"], "float7")])
def test_bench_bad_device_or_dtype_is_refused_before_the_model_loads(no_model_load, tmp_path, capsys, args, message):
    assert main(bench(tmp_path, "--out", str(tmp_path / "o"), *args)) == 2
    assert message in capsys.readouterr().err
