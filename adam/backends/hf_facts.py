"""Facts about the machine and the model that loading needs: device, dtype, decoder or encoder, pooling."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adam.errors import ConfigError
from adam.settings.config import Device, DType, HardwareSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def choose_device(hardware: HardwareSpec) -> str:
    """hardware.device, with auto meaning cuda, then mps, then cpu."""
    import torch

    wanted = hardware.device
    if wanted == Device.cuda and not torch.cuda.is_available():
        raise ConfigError("hardware.device=cuda but torch sees no CUDA GPU; use hardware=cpu or hardware.device=auto")
    if wanted != Device.auto:
        return wanted.value
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(hardware: HardwareSpec, device: str) -> torch.dtype:
    """hardware.dtype, with auto meaning bfloat16 (or float16) on GPUs and float32 on the CPU."""
    import torch

    if hardware.dtype != DType.auto:
        return getattr(torch, hardware.dtype.value)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def is_decoder(config: Any) -> bool:
    """Whether a model config describes a causal (decoder-only) language model."""
    names = getattr(config, "architectures", None) or []
    return bool(getattr(config, "is_decoder", False)) or any(n.endswith(("ForCausalLM", "LMHeadModel")) for n in names)


_ST_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_lasttoken": "last"}
_ST_APPLIED = {"Transformer", "Pooling", "Normalize"}


def sentence_transformers_pooling(folder: Path) -> str | None:
    """The pooling a sentence-transformers model directory declares, if it declares one we implement."""
    pooling_dir = folder / "1_Pooling"
    modules = read_json(folder / "modules.json")
    if isinstance(modules, list):
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind == "Pooling":
                pooling_dir = folder / str(module.get("path", "1_Pooling"))
            elif kind not in _ST_APPLIED:
                log.warning("%s: sentence-transformers module %s is not applied by adam", folder.name, kind)
    settings = read_json(pooling_dir / "config.json")
    if not isinstance(settings, dict):
        return None
    for key, pooling in _ST_POOLING.items():
        if settings.get(key):
            return pooling
    return None


def sentence_transformers_max_length(folder: Path) -> int | None:
    """max_seq_length from sentence_bert_config.json, if the directory has one."""
    settings = read_json(folder / "sentence_bert_config.json")
    value = settings.get("max_seq_length") if isinstance(settings, dict) else None
    return int(value) if isinstance(value, int) and value > 0 else None


def read_json(path: Path) -> Any:
    """A JSON file's value; None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
