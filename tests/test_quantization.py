"""bitsandbytes 8-bit and 4-bit loading, attention choice and YaRN, for real on the tiny random Qwen3 (CPU).

Thresholds (cosine similarity of the next-token logits to the float32 model, over every position of
two prompts), measured with bitsandbytes 0.50.2 and torch 2.13 on CPU: 8bit 0.9997, nf4 0.962-0.972,
fp4 0.960-0.974. The tiny model's weights have a large spread (std 0.3), which 4-bit blocks represent
poorly, so 4-bit is held to 0.90 and 8-bit to 0.995; a quantization that scrambled or zeroed the
weights lands near 0. The 4-bit result must also differ from float32, so a silent no-op fails too.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from adam.backends import hf_options
from adam.backends.base import GenerationRequest
from adam.backends.huggingface import HuggingFaceBackend
from adam.errors import ConfigError

pytest.importorskip("bitsandbytes")

PROMPTS = ["The river runs past the old mill", "Paris is the capital of France, Berlin is"]
THRESHOLDS = {"8bit": 0.995, "nf4": 0.90, "fp4": 0.90}


def backend(folder: Path, **hardware: object) -> HuggingFaceBackend:
    spec = {"name": "cpu", "device": "cpu", "dtype": "float32", **hardware}
    return HuggingFaceBackend(size={"name": "local", "path": str(folder), "context_length": 1024}, hardware=spec)


def logits(b: HuggingFaceBackend):
    import torch

    lm = b._model()
    enc = lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = lm.model(**enc).logits.float()
    return out[enc["attention_mask"].bool()]  # real tokens only


@pytest.fixture(scope="module")
def reference(tiny_qwen3_dir: Path):
    return logits(backend(tiny_qwen3_dir))


@pytest.mark.parametrize(
    ("hardware", "mode", "layer"),
    [
        ({"quantization": "8bit"}, "8bit", "Linear8bitLt"),
        ({"quantization": "4bit", "quant_type": "nf4", "double_quant": True}, "nf4", "Linear4bit"),
        ({"quantization": "4bit", "quant_type": "fp4", "double_quant": False}, "fp4", "Linear4bit"),
    ],
)
def test_quantized_logits_stay_close(tiny_qwen3_dir: Path, reference, hardware: dict, mode: str, layer: str) -> None:
    import torch

    b = backend(tiny_qwen3_dir, **hardware)
    quantized = logits(b)
    model = b._model().model
    assert type(model.model.layers[0].mlp.down_proj).__name__ == layer  # really quantized
    qc = model.config.quantization_config
    assert qc.load_in_8bit if mode == "8bit" else (qc.load_in_4bit and qc.bnb_4bit_quant_type == mode)
    cosine = torch.nn.functional.cosine_similarity(quantized, reference, dim=-1)
    assert cosine.min().item() > THRESHOLDS[mode], cosine.tolist()
    if mode != "8bit":
        assert cosine.mean().item() < 0.9999  # 4-bit changes the numbers: not a silent no-op


def test_a_4bit_model_generates_through_the_backend(tiny_qwen3_dir: Path) -> None:
    b = backend(tiny_qwen3_dir, quantization="4bit")
    gen = b.generate_one(GenerationRequest(prompt="The river", max_tokens=5, temperature=0.0))
    assert gen.completion_tokens >= 1 and gen.finish_reason in ("stop", "length")


def test_quantization_is_part_of_the_loaded_model_key(tiny_qwen3_dir: Path) -> None:
    plain, q8 = backend(tiny_qwen3_dir), backend(tiny_qwen3_dir, quantization="8bit")
    assert plain._model().model is not q8._model().model


def test_missing_bitsandbytes_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import torch

    from adam.settings.config import HardwareSpec

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name))
    spec = HardwareSpec(name="x", quantization="8bit")
    with pytest.raises(ConfigError, match=re.escape("bitsandbytes: `pip install -e '.[quantization]'` in adam's")):
        hf_options.bnb_config(spec, "cpu", torch.float32)
    with pytest.raises(ConfigError, match="does not run on mps"):
        hf_options.bnb_config(spec, "mps", torch.float32)


def test_flash_attention_falls_back_to_sdpa_with_a_warning(tiny_qwen3_dir: Path, caplog) -> None:
    b = backend(tiny_qwen3_dir, attention="flash_attention_2")
    with caplog.at_level(logging.WARNING, logger="adam.backends.hf_options"):
        lm = b._model()
    assert lm.model.config._attn_implementation == "sdpa"
    assert "flash_attention_2" in caplog.text and "using sdpa" in caplog.text
    eager = backend(tiny_qwen3_dir, attention="eager")._model()
    assert eager.model.config._attn_implementation == "eager"


def test_long_context_loads_with_yarn_rope_scaling(tiny_qwen3_dir: Path) -> None:
    size = {"name": "local", "path": str(tiny_qwen3_dir), "context_length": 1024}
    b = HuggingFaceBackend(
        size={**size, "long_context": True, "long_context_length": 4096}, hardware={"name": "cpu", "device": "cpu"}
    )
    config = b._model().model.config
    assert config.rope_parameters["rope_type"] == "yarn" and config.rope_parameters["factor"] == 4.0
    assert config.rope_parameters["original_max_position_embeddings"] == 1024
    assert config.max_position_embeddings == 4096
    gen = b.generate_one(GenerationRequest(prompt="The river", max_tokens=3, temperature=0.0))
    assert gen.completion_tokens >= 1
    no_yarn = HuggingFaceBackend(size={**size, "long_context": True}, hardware={"name": "cpu", "device": "cpu"})
    with pytest.raises(ConfigError, match="no long-context mode"):
        no_yarn.load()
