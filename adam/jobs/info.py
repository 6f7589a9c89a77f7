"""job=info: what adam would run with, printed and written to info.json."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

from adam import hardware, registry, sizing
from adam.io.writers import write_json_atomic
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext

INFO_BATCH = sizing.DEFAULT_BATCH  # sequences the memory estimates reserve KV cache for


def describe(ctx: JobContext) -> dict[str, Any]:
    """Backend and model info, the machine, and what else is configured."""
    if ctx.job.load:
        ctx.backend.load()
    size, hw = ctx.backend.size, ctx.backend.hardware
    detected = hardware.detect_current()
    context = int(ctx.domain.get("context", 2048) or 2048)
    return {
        "backend": ctx.backend.info(),
        "size": size.name,
        "selected_by": size.selected_by,
        "hardware": {
            "profile": hw.name,
            "device": hw.device.value,
            "dtype": hw.dtype.value,
            "quantization": str(hw.quantization),
            "attention": hw.attention.value,
        },
        "memory_estimate_gb": {
            "context": context,
            "batch": INFO_BATCH,
            "modes": sizing.memory_table(size, context=context, batch=INFO_BATCH),
        },
        "detected": {k: v for k, v in detected.as_dict().items() if k != "environment"},
        "environment": detected.environment.__dict__,
        "recommended": sizing.recommendations(detected, hw.memory_margin, context, INFO_BATCH),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "available": {"backends": registry.backends(), "sizes": registry.sizes()},
    }


def run_info(ctx: JobContext) -> JobStats:
    """Print the description as JSON on stdout (it is this job's result) and keep a copy in the run dir."""
    doc = describe(ctx)
    write_json_atomic(ctx.run_dir / "info.json", doc)
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    return JobStats(ok=1)
