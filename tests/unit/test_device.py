"""Device/dtype 'auto' logic, including the CUDA branches, tested on CPU by faking the probes."""

from __future__ import annotations

import pytest
import torch

from spill_guard import InvalidParameterError
from spill_guard.models.device import resolve_device, resolve_dtype


def test_auto_on_cpu_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_auto_on_cuda_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("auto") == torch.bfloat16


def test_old_gpu_without_bf16_gets_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", torch.device("cuda:0")) == torch.float16


@pytest.mark.parametrize("name,expected", [("bf16", torch.bfloat16), ("float16", torch.float16), ("fp32", torch.float32)])
def test_explicit_dtypes(name, expected):
    assert resolve_dtype(name, torch.device("cpu")) == expected
    assert resolve_dtype(expected) == expected


def test_bad_values_echo_and_suggest(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidParameterError, match="'cuda'.*no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(InvalidParameterError, match="'tpu9'"):
        resolve_device("tpu9")
    with pytest.raises(InvalidParameterError, match="'int3'.*auto"):
        resolve_dtype("int3")
