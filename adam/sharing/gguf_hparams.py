"""A transformers config.json as GGUF hyperparameters: the model's shape, its RoPE base and scaling, the file type.

Both transformers 4 (``rope_theta``, ``rope_scaling``) and 5 (``rope_parameters``) configs are read.
Llama 3.1's long-context RoPE is not a GGUF key but a tensor (``rope_freqs``), computed here and
written with the weights.
"""

from __future__ import annotations

import math
from typing import Any

from adam.errors import UnsupportedError


def rope_theta(config: dict[str, Any]) -> float:
    """The rotary base, from transformers 4 (rope_theta) or 5 (rope_parameters) configs."""
    params = config.get("rope_parameters") or {}
    return float(config.get("rope_theta") or params.get("rope_theta") or 10000.0)


def rope_scaling(config: dict[str, Any]) -> dict[str, Any] | None:
    """The rotary scaling settings with a normalized rope_type, or None for plain RoPE."""
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or None
    if not scaling:
        return None
    rope_type = scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type == "default":
        return None
    return {**scaling, "rope_type": rope_type}


def head_dim(config: dict[str, Any]) -> int:
    """Per-head width: stated in the config, or the hidden size split evenly."""
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def llama3_rope_factors(config: dict[str, Any]) -> list[float] | None:
    """Per-frequency divisors of Llama 3.1's long-context RoPE, which llama.cpp reads from rope_freqs."""
    scaling = rope_scaling(config)
    if scaling is None or scaling["rope_type"] != "llama3":
        return None
    base, dim = rope_theta(config), head_dim(config)
    factor = float(scaling["factor"])
    low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    original = float(scaling.get("original_max_position_embeddings", 8192))
    divisors = []
    for i in range(0, dim, 2):
        wavelength = 2 * math.pi * base ** (i / dim)
        if wavelength < original / high:  # fast rotations keep their frequency
            divisors.append(1.0)
        elif wavelength > original / low:  # slow ones are stretched by the full factor
            divisors.append(factor)
        else:  # in between, blend the two
            blend = (original / wavelength - low) / (high - low)
            divisors.append(1.0 / ((1 - blend) / factor + blend))
    return divisors


def add_hyperparameters(writer: Any, config: dict[str, Any], name: str, dtype: str) -> None:
    """The model's shape and the file's type, under the architecture's keys."""
    import gguf

    n_head = int(config["num_attention_heads"])
    width = head_dim(config)
    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(int(config.get("max_position_embeddings") or 4096))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or n_head))
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(int(config["vocab_size"]))
    if config["model_type"] == "llama":
        writer.add_rope_dimension_count(width)
    if "head_dim" in config or width * n_head != int(config["hidden_size"]):
        writer.add_key_length(width)
        writer.add_value_length(width)
    scaling = rope_scaling(config)
    if scaling is not None:
        kind = scaling["rope_type"]
        if kind == "linear":
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(scaling["factor"]))
        elif kind == "yarn":
            writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            writer.add_rope_scaling_factor(float(scaling["factor"]))
            if "original_max_position_embeddings" in scaling:
                writer.add_rope_scaling_orig_ctx_len(int(scaling["original_max_position_embeddings"]))
        elif not (kind == "llama3" and config["model_type"] == "llama"):
            raise UnsupportedError(f"unsupported rope scaling {kind!r}: adam can export linear, yarn and llama3")
    file_types = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }
    writer.add_file_type(file_types[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
