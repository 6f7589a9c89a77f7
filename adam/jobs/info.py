"""job=info: what adam would run with, printed and written to info.json; needs no weights unless job.load=true."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam import catalog, hardware, memory_estimates, size_catalog, sizing, tiers
from adam.io.writers import write_json_atomic
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext


def describe(ctx: JobContext) -> dict[str, Any]:
    """The config, the model (context, whether it is here, how to get it), memory estimates and the machine."""
    if ctx.job.load:
        ctx.backend.load()
    size, hw = ctx.backend.size, ctx.backend.hardware
    detected = hardware.detect_current()
    context = int(ctx.domain.get("context", 2048) or 2048)
    batch = size_catalog.default_batch(size.kind)
    return {
        "backend": ctx.backend.info(),
        "size": size.name,
        "selected_by": size.selected_by,
        "config": {"size": _plain(size), "hardware": _plain(hw), "domain": _plain(ctx.domain), "job": _plain(ctx.job)},
        "context": {
            "native": size.context_length,
            "long_context": size.long_context,
            "long_context_length": size.long_context_length,  # with YaRN; null: no long-context mode
            "effective": memory_estimates.effective_context(size),
        },
        "weights": ctx.backend.weights(),
        "suggestions": ctx.backend.suggestions(),
        "hardware": {
            "profile": hw.name,
            "device": hw.device.value,
            "dtype": hw.dtype.value,
            "quantization": str(hw.quantization),
            "attention": hw.attention.value,
        },
        "memory_estimate_gb": {
            "context": context,
            "batch": batch,
            "modes": memory_estimates.memory_table(size, context=context, batch=batch),
        },
        "detected": {k: v for k, v in detected.as_dict().items() if k != "environment"},
        "environment": detected.environment.__dict__,
        "recommended": sizing.recommendations(
            hw,
            detected,
            context=context,
            preferred=ctx.domain.get("preferred_size"),
            long_context=bool(size.long_context),
        ),
        "tiers": tiers.tier_table(ram_gb=detected.ram_available_gb),  # the design's picks per hardware tier
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "available": {"backends": catalog.backends(), "sizes": catalog.sizes()},
    }


def _plain(node: Any) -> Any:
    """A config node or spec as plain JSON-able values."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return dataclasses.asdict(node)
    return node


def run_info(ctx: JobContext) -> JobStats:
    """Print the description as JSON on stdout (it is this job's result) and keep a copy in the run dir."""
    doc = describe(ctx)
    write_json_atomic(ctx.run_dir / "info.json", doc)
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    return JobStats(ok=1)
