"""What a calibration depends on besides the scorer: model, tokenizer and prompt, as comparable facts.

A threshold is only meaningful for the exact score distribution it was fitted on; a
different vocabulary, chat template or instruction shifts every score. These small records
let a saved calibration be checked against the model it is applied to.

A model is identified by what it is, not by the name it was loaded under (the same embedded
model is ``"smollm2-135m-instruct"`` to ``SpillModel.load()`` and a cache path to a
``ChatHuggingFace`` built over it): :class:`ModelFingerprint` is the architecture (model type
and parameter shapes) plus a sample of weight values at fixed positions spread over every
parameter tensor, compared within the rounding of the coarser dtype (so a bf16 load of the
same checkpoint matches; a fine-tune, which moves the weights, does not).
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from typing import Any

from pydantic import BaseModel, ConfigDict

#: Weight values sampled per model: enough to tell checkpoints apart, cheap to read (about 1 ms).
WEIGHT_SAMPLES = 64


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class TokenizerInfo(BaseModel):
    """``name_or_path`` is informational (it is a machine-specific path for converted models);
    ``vocab_size`` and ``vocab_hash`` (over every token string and id) identify the vocabulary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name_or_path: str
    vocab_size: int
    vocab_hash: str


class PromptInfo(BaseModel):
    """How questions are framed: the instruction appended, the system message, the chat template."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction: str | None
    system: str | None
    chat_template_hash: str  # "none" for base models framed without a chat template


class ModelFingerprint(BaseModel):
    """The architecture and a weight sample of a torch model; see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    architecture_hash: str  # model type and every parameter's shape
    weights_dtype: str  # the dtype the sample was read at, e.g. "float32": it sets the tolerance
    weights_sample: list[float]

    def matches(self, other: ModelFingerprint) -> bool:
        """Same architecture and every sampled weight equal within the coarser dtype's rounding."""
        import torch

        if self.architecture_hash != other.architecture_hash or len(self.weights_sample) != len(other.weights_sample):
            return False
        try:
            infos = [torch.finfo(getattr(torch, name)) for name in (self.weights_dtype, other.weights_dtype)]
        except (AttributeError, TypeError):  # not a floating dtype torch knows
            return False
        rtol = max(info.eps for info in infos)  # one rounding of the coarser dtype is eps / 2
        atol = 2 * max(info.smallest_normal * info.eps for info in infos)  # subnormals (fp16)
        return all(
            abs(a - b) <= rtol * max(abs(a), abs(b)) + atol for a, b in zip(self.weights_sample, other.weights_sample)
        )


_FINGERPRINTS: weakref.WeakKeyDictionary[Any, ModelFingerprint | None] = weakref.WeakKeyDictionary()
_FINGERPRINTS_LOCK = threading.Lock()


def model_fingerprint(torch_model: Any) -> ModelFingerprint | None:
    """The :class:`ModelFingerprint` of a transformers model, computed once per model object.

    None where the weights cannot be read here (a vLLM engine holds them; offloaded or
    quantised weights): such a model is identified by its name only.
    """
    try:
        with _FINGERPRINTS_LOCK:
            if torch_model in _FINGERPRINTS:
                return _FINGERPRINTS[torch_model]
    except TypeError:  # not weak-referenceable: computed each time (not a torch module anyway)
        return _compute_fingerprint(torch_model)
    found = _compute_fingerprint(torch_model)
    with _FINGERPRINTS_LOCK:
        _FINGERPRINTS[torch_model] = found
    return found


def _compute_fingerprint(torch_model: Any) -> ModelFingerprint | None:
    import torch

    named = getattr(torch_model, "named_parameters", None)
    if not callable(named):
        return None
    params = [p for _, p in named()]
    if not params or any(p.device.type == "meta" or not p.dtype.is_floating_point or p.numel() == 0 for p in params):
        return None
    model_type = str(getattr(getattr(torch_model, "config", None), "model_type", "") or type(torch_model).__name__)
    architecture = short_hash(json.dumps([model_type, [list(p.shape) for p in params]]))
    values = []
    with torch.no_grad():
        for i in range(WEIGHT_SAMPLES):
            p = params[i * len(params) // WEIGHT_SAMPLES]
            flat = (i * 2654435761 + 12345) % p.numel()  # fixed positions, spread over the tensor
            index = []
            for size in reversed(p.shape):
                flat, k = divmod(flat, size)
                index.append(k)
            values.append(p[tuple(reversed(index))].float())
        sample = torch.stack(values).cpu().tolist()
    coarsest = max({p.dtype for p in params}, key=lambda d: torch.finfo(d).eps)  # the one that rounds most
    return ModelFingerprint(
        architecture_hash=architecture, weights_dtype=str(coarsest).removeprefix("torch."), weights_sample=sample
    )


def same_model(name: str, recorded: ModelFingerprint | None, spill_model: Any) -> bool:
    """Whether a calibration recorded for model ``name`` (fingerprint ``recorded``) is for ``spill_model``'s model.

    The same name is the same model (as before fingerprints were recorded); otherwise both
    fingerprints must be known and match.
    """
    loaded = spill_model.loaded
    if name == loaded.name:
        return True
    if recorded is None:
        return False
    got = model_fingerprint(getattr(loaded, "model", None))
    return got is not None and recorded.matches(got)


def tokenizer_info(tokenizer: Any) -> TokenizerInfo:
    vocab = tokenizer.get_vocab()
    return TokenizerInfo(
        name_or_path=str(getattr(tokenizer, "name_or_path", "") or ""),
        vocab_size=len(tokenizer),
        vocab_hash=short_hash(json.dumps(sorted(vocab.items()))),
    )


def prompt_info(spill_model: Any) -> PromptInfo:
    template = getattr(spill_model.tokenizer, "chat_template", None)
    return PromptInfo(
        instruction=spill_model.instruction,
        system=spill_model.system,
        chat_template_hash=short_hash(template) if isinstance(template, str) and template else "none",
    )


def fingerprint(spill_model: Any) -> dict[str, Any]:
    """``model``, ``model_fingerprint``, ``tokenizer`` and ``prompt`` of a :class:`~spill_guard.SpillModel`,
    as keyword arguments for :meth:`Calibration.from_fit`."""
    return {
        "model": spill_model.loaded.name,
        "model_fingerprint": model_fingerprint(getattr(spill_model.loaded, "model", None)),
        "tokenizer": tokenizer_info(spill_model.tokenizer),
        "prompt": prompt_info(spill_model),
    }
