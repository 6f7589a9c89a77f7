"""What one size needs to run: the context it runs with and the memory it takes in each mode.

The estimate is weights (parameters x bytes per parameter) plus a KV-cache allowance
(2 x layers x KV heads x head size x bytes x ``domain.context`` tokens x ``job.batch_size``, a
sliding-window layer counting at most its window; none for embedders) plus 10% and 0.5 GiB for
activations and the runtime. Layer and head counts are in each size's YAML, copied from the model's
config.json on the Hugging Face hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adam.errors import ConfigError
from adam.settings.config import ModelKind, SizeSpec

GIB = 1024**3
# Bytes per parameter. bitsandbytes keeps embeddings and norms unquantized and stores scales per block,
# hence more than 1 and 0.5.
BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.1, "4bit": 0.6}
MODES = ("float32", "bfloat16", "8bit", "4bit")  # the columns job=info prints
OVERHEAD_FRACTION = 0.10
OVERHEAD_GB = 0.5


@dataclass(frozen=True)
class Estimate:
    """Memory one model needs in one mode, in GiB."""

    mode: str  # float32 | bfloat16 | float16 | 8bit | 4bit
    weights_gb: float
    kv_cache_gb: float
    overhead_gb: float

    @property
    def total_gb(self) -> float:
        """All of it."""
        return self.weights_gb + self.kv_cache_gb + self.overhead_gb

    def as_dict(self) -> dict[str, float]:
        """Rounded fields for JSON."""
        return {
            "weights_gb": round(self.weights_gb, 2),
            "kv_cache_gb": round(self.kv_cache_gb, 2),
            "overhead_gb": round(self.overhead_gb, 2),
            "total_gb": round(self.total_gb, 2),
        }


def estimate(size: SizeSpec, mode: str, *, context: int, batch: int) -> Estimate | None:
    """Memory for ``size`` in ``mode`` for ``batch`` sequences of ``context`` tokens; None without parameters."""
    if not size.parameters:
        return None
    weights = size.parameters * BYTES_PER_PARAM[mode] / GIB
    kv = 0.0
    if size.kind == ModelKind.generate and size.num_layers and size.num_kv_heads and size.head_dim:
        kv_bytes = 4 if mode == "float32" else 2  # the cache is kept in the compute dtype
        tokens = min(context, effective_context(size))
        windowed = size.sliding_window_layers if size.sliding_window_layers is not None else size.num_layers
        windowed = min(windowed, size.num_layers) if size.sliding_window else 0
        # sliding-window layers (Gemma 2's every other layer) keep at most the window
        cached = (size.num_layers - windowed) * tokens + windowed * min(tokens, size.sliding_window or tokens)
        kv = 2 * size.num_kv_heads * size.head_dim * kv_bytes * cached * max(batch, 1) / GIB
    return Estimate(mode, weights, kv, weights * OVERHEAD_FRACTION + OVERHEAD_GB)


def memory_table(size: SizeSpec, *, context: int, batch: int) -> dict[str, dict[str, float]] | None:
    """Estimates for every mode job=info shows, or None when the size has no parameter count."""
    out = {}
    for mode in MODES:
        est = estimate(size, mode, context=context, batch=batch)
        if est is None:
            return None
        out[mode] = est.as_dict()
    return out


def effective_context(size: SizeSpec) -> int:
    """The context the model will run with: the YaRN length when size.long_context is on."""
    return size.long_context_length if size.long_context and size.long_context_length else size.context_length


def check_long_context(size: Any) -> None:
    """Refuse size.long_context=true for sizes without a YaRN mode, before anything loads."""
    if size.long_context and not size.long_context_length:
        native = ""
        if size.context_length > 32768:  # Phi-3 128k, Llama 3.1, the 2507 models: long already, without YaRN
            native = f" (its native context is already {size.context_length:,} tokens)"
        raise ConfigError(
            f"size={size.name} has no long-context mode{native}: YaRN scaling to 131,072 tokens is for Qwen3 4B and "
            f"larger; drop size.long_context=true or pick size=qwen3_large or bigger"
        )
