"""Issue 19 item 6: a module that cannot be imported during a load (gguf, safetensors, the
architecture's modeling module) was reported as "the file is corrupt or truncated … replace it".

Each case runs the real load of the real embedded model in a fresh interpreter in which one
module is made unimportable (``sys.modules[name] = None``, what Python does for a blocked
import, or an import hook raising ImportError as a broken install does), and checks that the
error is a DependencyImportError naming the module and the install command, not corruption.
The genuine-corruption messages stay tested in test_model_load_errors.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.model

_PROBE = textwrap.dedent("""
    import importlib.abc, json, sys

    block, how, target = sys.argv[1], sys.argv[2], sys.argv[3]
    if how == "none":
        sys.modules[block] = None
    else:  # a broken install: the module is found, but importing it fails
        class Broken(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == block:
                    raise ImportError(f"cannot import name 'x' from {block!r} (broken install)", name=block)
                return None
        sys.meta_path.insert(0, Broken())
    from spill_guard import errors
    from spill_guard.errors import SpillGuardError
    environment_error = getattr(errors, "DependencyImportError", ())
    from spill_guard.models.loader import load_model
    try:
        load_model(target, device="cpu")
        print(json.dumps({"loaded": True}))
    except SpillGuardError as exc:
        print(json.dumps({"loaded": False, "type": type(exc).__name__, "message": str(exc),
                          "environment": isinstance(exc, environment_error) and isinstance(exc, ImportError)}))
""")


def _load_with(block: str, how: str, target: str, cache) -> dict:
    env = dict(os.environ, SPILL_GUARD_CACHE=str(cache), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", _PROBE, block, how, target], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def converted_dir():
    """The session's converted copy of the embedded model (a folder with config.json and model.safetensors)."""
    from spill_guard.errors import ModelNotFoundError
    from spill_guard.models import loader
    from spill_guard.models.embedded import smollm2_gguf

    try:
        return loader.converted_gguf(smollm2_gguf())
    except ModelNotFoundError:
        pytest.skip("the embedded model is not installed")


@pytest.mark.parametrize("block,how,install", [
    ("gguf", "none", "pip install -U 'gguf>=0.10.0'"),
    ("safetensors", "none", "pip install -U safetensors"),
    ("safetensors", "hook", "pip install -U safetensors"),
    ("transformers.models.llama.modeling_llama", "none", "pip install -U --force-reinstall transformers"),
])
def test_unimportable_module_during_a_gguf_conversion_is_an_environment_error(tmp_path, converted_dir, block, how,
                                                                              install):
    result = _load_with(block, how, "smollm2-135m-instruct", tmp_path / "fresh-cache")  # a fresh cache: converts
    assert result["loaded"] is False
    assert result["type"] == "DependencyImportError" and result["environment"], result
    message = result["message"]
    assert f"module {block!r}" in message and install in message, message
    assert "corrupt" not in message and "download it again" not in message and "reinstall its package" not in message
    assert not list((tmp_path / "fresh-cache" / "converted").glob("*"))  # nothing half-converted left


@pytest.mark.parametrize("block,how,install", [
    ("safetensors", "none", "pip install -U safetensors"),
    ("transformers.models.llama.modeling_llama", "none", "pip install -U --force-reinstall transformers"),
    ("transformers.models.llama.modeling_llama", "hook", "pip install -U --force-reinstall transformers"),
])
def test_unimportable_module_while_loading_a_saved_folder_is_an_environment_error(tmp_path, converted_dir, block, how,
                                                                                  install):
    result = _load_with(block, how, str(converted_dir), tmp_path / "cache")
    assert result["loaded"] is False
    assert result["type"] == "DependencyImportError" and result["environment"], result
    message = result["message"]
    assert f"module {block!r}" in message and install in message, message
    assert "corrupt" not in message and "replace it" not in message


def test_the_same_folder_loads_when_nothing_is_blocked(tmp_path, converted_dir):
    """The probe itself is sound: blocking a module the load never needs changes nothing."""
    assert _load_with("no_such_module_xyz", "none", str(converted_dir), tmp_path / "cache") == {"loaded": True}


def test_older_transformers_runtime_error_wrapping_the_import_error_is_recognised():
    """transformers < 4.50 raised RuntimeError("Failed to import ...") from the ImportError of a modeling module."""
    from spill_guard.errors import DependencyImportError
    from spill_guard.models.loader import import_failure

    try:
        try:
            raise ModuleNotFoundError("No module named 'safetensors'", name="safetensors")
        except ImportError as inner:
            raise RuntimeError("Failed to import transformers.models.llama.modeling_llama because of the "
                               "following error (look up to see its traceback):\nNo module named 'safetensors'") from inner
    except RuntimeError as exc:
        found = import_failure(exc, "could not load model 'm'", ())
    assert isinstance(found, DependencyImportError)
    assert "module 'safetensors'" in str(found) and "pip install -U safetensors" in str(found)


def test_a_parse_error_raised_while_an_optional_import_failed_still_blames_the_file():
    """An ImportError met (and handled) on the way is not the failure: a ValueError stays a file problem."""
    from spill_guard.models.loader import import_failure

    try:
        try:
            raise ImportError("optional accelerator missing", name="flash_attn")
        except ImportError:
            raise ValueError("header too large")
    except ValueError as exc:
        assert import_failure(exc, "could not load model 'm'", ("safetensors",)) is None
