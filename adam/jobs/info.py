"""job=info: what adam would run with, printed and written to info.json."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

from adam import registry
from adam.io.writers import write_json_atomic
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext


def describe(ctx: JobContext) -> dict[str, Any]:
    """Backend and model info, the machine, and what else is configured."""
    if ctx.job.load:
        ctx.backend.load()
    return {
        "backend": ctx.backend.info(),
        "size": ctx.backend.size.name,
        "hardware": {"device": ctx.backend.hardware.device.value, "dtype": ctx.backend.hardware.dtype.value},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "available": {"backends": registry.backends(), "sizes": registry.sizes()},
    }


def run_info(ctx: JobContext) -> JobStats:
    """Print the description as JSON on stdout (it is this job's result) and keep a copy in the run dir."""
    doc = describe(ctx)
    write_json_atomic(ctx.run_dir / "info.json", doc)
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    return JobStats(ok=1)
