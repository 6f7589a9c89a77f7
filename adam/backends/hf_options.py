"""How the HuggingFace backend loads a model beyond device and dtype: quantization, attention, YaRN.

``load_kwargs`` turns the hardware and size specs into ``from_pretrained`` arguments: a
``BitsAndBytesConfig`` for hardware.quantization=8bit|4bit, ``attn_implementation`` (flash attention
falls back to sdpa with a warning where it cannot run), and a config with YaRN rope scaling for
size.long_context=true.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adam.errors import ConfigError, install_hint
from adam.settings.config import Attention, DType, HardwareSpec, Quantization, SizeSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def quantization(hardware: HardwareSpec) -> Quantization:
    """The quantization to load with; an unresolved auto (backend built outside runner.run) means none."""
    try:
        value = Quantization(str(hardware.quantization))
    except ValueError:
        raise ConfigError(f"hardware.quantization={hardware.quantization} is not one of none | 8bit | 4bit") from None
    return Quantization.none if value == Quantization.auto else value


def attention(hardware: HardwareSpec, device: str) -> str:
    """hardware.attention, with flash_attention_2 falling back to sdpa without flash-attn or a CUDA GPU."""
    wanted = Attention(hardware.attention)
    if wanted != Attention.flash_attention_2:
        return wanted.value
    if not device.startswith("cuda"):
        log.warning("hardware.attention=flash_attention_2 needs a CUDA GPU (device is %s); using sdpa", device)
        return Attention.sdpa.value
    if importlib.util.find_spec("flash_attn") is None:
        log.warning("hardware.attention=flash_attention_2 needs the flash-attn package; using sdpa")
        return Attention.sdpa.value
    return wanted.value


def cache_parts(size: SizeSpec, hardware: HardwareSpec) -> tuple[Any, ...]:
    """What besides weights, device and dtype makes a loaded model different."""
    quant = quantization(hardware)
    q4 = (hardware.quant_type.value, str(hardware.compute_dtype), hardware.double_quant)
    if size.long_context and not size.long_context_length:  # checked before a cached model could be reused
        raise ConfigError(f"size={size.name} has no long-context mode (YaRN is for Qwen3 4B and larger)")
    long = size.long_context_length if size.long_context else None
    return (quant.value, *(q4 if quant == Quantization.q4bit else ()), str(hardware.attention), long)


def bnb_config(hardware: HardwareSpec, device: str, dtype: torch.dtype) -> Any:
    """The BitsAndBytesConfig for hardware.quantization, or None."""
    quant = quantization(hardware)
    if quant == Quantization.none:
        return None
    if device == "mps":
        raise ConfigError(f"hardware.quantization={quant.value} (bitsandbytes) does not run on mps; use cuda or cpu")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"hardware.quantization={quant.value} needs bitsandbytes: {install_hint('quantization')}")
    import torch
    from transformers import BitsAndBytesConfig

    if quant == Quantization.q8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if hardware.compute_dtype == DType.auto else getattr(torch, hardware.compute_dtype.value)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=hardware.quant_type.value,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_use_double_quant=hardware.double_quant,
    )


def yarn_config(folder: Path, size: SizeSpec, trust_remote_code: bool) -> Any:
    """The model config with YaRN rope scaling to size.long_context_length, or None when it is off."""
    if not size.long_context:
        return None
    if not size.long_context_length:
        raise ConfigError(f"size={size.name} has no long-context mode (YaRN is for Qwen3 4B and larger)")
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    native = size.context_length
    rope = dict(getattr(config, "rope_parameters", None) or {})
    rope.update(rope_type="yarn", factor=size.long_context_length / native, original_max_position_embeddings=native)
    config.rope_parameters = rope
    config.max_position_embeddings = size.long_context_length
    log.info("YaRN rope scaling x%g: context %d -> %d", rope["factor"], native, size.long_context_length)
    return config


def load_kwargs(
    folder: Path, size: SizeSpec, hardware: HardwareSpec, device: str, dtype: torch.dtype, trust_remote_code: bool
) -> dict[str, Any]:
    """Extra from_pretrained arguments for quantization, attention and long context."""
    kwargs: dict[str, Any] = {"attn_implementation": attention(hardware, device)}
    quant = bnb_config(hardware, device, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
    config = yarn_config(folder, size, trust_remote_code)
    if config is not None:
        kwargs["config"] = config
    return kwargs
