"""job=info: what adam would run with. A short verdict first (does the model fit this machine, and how fast would
it run), then the details; job.format=json prints every field as JSON. Both go to info.json in the run dir. It needs
no weights unless job.load=true."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam.io.writers import write_json_atomic
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext
from adam.jobs.info_text import render, verdict
from adam.paths import is_scratch
from adam.planning import hardware, memory_estimates, size_catalog, sizing, tiers
from adam.planning.cpu_speed import speed_for, tokens_per_s
from adam.planning.memory_plan import BackendTraits, Plan, plan_for, traits_of, traits_of_class
from adam.settings import catalog

MAX_BATCH = tiers.MAX_BATCH  # a larger batch that would still fit is shown as this many


def describe(ctx: JobContext) -> dict[str, Any]:
    """The verdict, the config, the model (context, whether it is here, how to get it), what fits where, the
    machine and size=auto's picks; every memory figure says the batch and context it assumes."""
    if ctx.job.load:
        ctx.backend.load()
    size, hw = ctx.backend.size, ctx.backend.hardware
    detected = hardware.detect_current()
    context = int(ctx.domain.get("context", 2048) or 2048)
    batch = size_catalog.default_batch(size.kind)
    traits = traits_of_class(type(ctx.backend))
    plan = plan_for(hw, context=context, batch=batch, fixed_modes=traits.memory_modes, report=detected)
    speed = speed_for(hw, detected) if plan.device == "cpu" else None
    doc: dict[str, Any] = {
        "verdict": [],  # filled below: the summary a person reads first
        "backend": ctx.backend.info(),
        "size": size.name,
        "selected_by": size.selected_by,
        "plan": {
            "device": plan.device,
            "memory_gb": round(plan.memory_gb, 2),
            "memory_source": plan.source,
            "margin": plan.margin,
            "budget_gb": round(plan.budget_gb, 2),
            "modes": list(plan.modes),  # what this config may load the model as, least quantized first
            "batch": plan.batch,
            "context": plan.context,
        },
        "fits": _fits(size, plan, speed, ctx.backend.name, traits),
        "cpu_speed": speed.as_dict() if speed else None,
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
        "detected": {k: v for k, v in detected.as_dict().items() if k not in ("environment", "speed")},
        "environment": detected.environment.__dict__,
        "recommended": sizing.recommendations(
            hw,
            detected,
            context=context,
            preferred=ctx.domain.get("preferred_size"),
            long_context=bool(size.long_context),
        ),
        # the design's picks per hardware tier, each planned for one sequence (batch 1) of the tier's context
        "tiers": [{**tier, "batch": 1} for tier in tiers.tier_table(ram_gb=detected.ram_available_gb)],
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "available": {"backends": catalog.backends(), "sizes": catalog.sizes()},
    }
    doc["verdict"] = verdict(doc)
    return doc


def _fits(size: Any, plan: Plan, speed: Any, backend: str, traits: BackendTraits) -> list[dict[str, Any]]:
    """Per backend and memory mode: the memory at the plan's batch, whether it fits, the largest batch that does,
    and (on a CPU, for a backend that computes here) the estimated tokens/s. The configured backend comes first,
    with the modes this config may load it in; the others with every mode they can use."""
    rows = []
    others = [(name, traits_of(sizing.target_of(name))) for name in ("huggingface", "ollama") if name != backend]
    for name, their in [(backend, traits), *others]:
        modes = their.memory_modes or memory_estimates.MODES
        if name == backend:  # the modes this config may use first, then the ones an override would give
            modes = (*plan.modes, *(m for m in modes if m not in plan.modes))
        for mode in modes:
            est = memory_estimates.estimate(size, mode, context=plan.context, batch=plan.batch)
            if est is None:
                continue
            rate = tokens_per_s(size, mode, batch=plan.batch, speed=speed) if speed and their.computes_here else None
            rows.append(
                {
                    "backend": name,
                    "mode": mode,
                    "configured": name == backend and mode in plan.modes,  # this config may load it so
                    "total_gb": round(est.total_gb, 2),
                    "batch": plan.batch,
                    "fits": est.total_gb <= plan.budget_gb,
                    "max_batch": _max_batch(est, plan),
                    "tokens_per_s": None if rate is None else round(rate, 2),
                }
            )
    return rows


def _max_batch(est: memory_estimates.Estimate, plan: Plan) -> int:
    """The most sequences of the plan's context that fit next to the weights (capped at MAX_BATCH)."""
    fixed = est.total_gb - est.kv_cache_gb
    room = plan.budget_gb - fixed
    if room < 0:
        return 0
    per_sequence = est.kv_cache_gb / max(plan.batch, 1)
    return MAX_BATCH if per_sequence <= 0 else min(MAX_BATCH, int(room // per_sequence))


def _plain(node: Any) -> Any:
    """A config node or spec as plain JSON-able values."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return dataclasses.asdict(node)
    return node


def run_info(ctx: JobContext) -> JobStats:
    """Print the verdict and details (job.format=text) or every field as JSON (job.format=json); keep the JSON in
    the run dir either way."""
    doc = describe(ctx)
    write_json_atomic(ctx.run_dir / "info.json", doc)
    if str(ctx.job.format) == "json":
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    else:
        kept = "hydra.run.dir=<dir> keeps info.json" if is_scratch(ctx.run_dir) else f"{ctx.run_dir / 'info.json'}"
        sys.stdout.write(render(doc) + f"\nEvery field: job.format=json prints it ({kept})\n")
    return JobStats(ok=1)
