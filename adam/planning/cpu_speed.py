"""How fast a model runs on this CPU: the machine's matmul GFLOP/s and memory bandwidth, and tokens/s from them.

Memory alone would let ``size=auto`` pick an 8B model on a 2-core machine with enough RAM, where it decodes at well
under a token per second. On a CPU each decode step reads every weight once (bandwidth) and does 2 FLOPs per
active parameter per sequence (compute); a step takes the longer of the two. An embedder reads the whole text in one
pass, so compute alone bounds it. The bounds are divided by what adam reaches in practice (bench/RESULTS.md: batched
decode of the demo model reached 16% of its compute bound, MiniLM embedding about half): the estimates are good to
a factor of two or three, enough to rule out a model that is ten times too slow.

The machine is measured once per process (hardware.measure_speed: a float32 matmul and an array copy, ~0.2 s),
only when a CPU plan needs it; ``hardware.cpu_gflops`` and ``hardware.memory_bandwidth_gbs`` replace the measurement.
"""

from __future__ import annotations

from typing import Any

from adam.planning.hardware import CpuSpeed, cpu_speed_of
from adam.planning.memory_estimates import BYTES_PER_PARAM
from adam.settings.config import ModelKind, SizeSpec

__all__ = ["CpuSpeed", "floor_for", "speed_for", "tokens_per_s"]

DECODE_EFFICIENCY = 0.2  # share of the bound batched decode reaches (bench/RESULTS.md: 16% with the 135M demo)
ENCODE_EFFICIENCY = 0.5  # share of the compute bound an embedding pass reaches (MiniLM: more, counted this way)


def speed_for(hw: Any, report: Any) -> CpuSpeed:
    """The speed to plan with: hardware.cpu_gflops / hardware.memory_bandwidth_gbs where set, else the report's
    (measured the first time it is needed)."""
    gflops, bandwidth = getattr(hw, "cpu_gflops", None), getattr(hw, "memory_bandwidth_gbs", None)
    if gflops and bandwidth:
        return CpuSpeed(float(gflops), float(bandwidth), "hardware.cpu_gflops, hardware.memory_bandwidth_gbs")
    base = cpu_speed_of(report)
    if not gflops and not bandwidth:
        return base
    set_by = "hardware.cpu_gflops" if gflops else "hardware.memory_bandwidth_gbs"
    return CpuSpeed(float(gflops or base.gflops), float(bandwidth or base.bandwidth_gbs), f"{set_by}; rest measured")


def tokens_per_s(size: SizeSpec, mode: str, *, batch: int, speed: CpuSpeed) -> float | None:
    """Estimated tokens/s of ``size`` in ``mode`` on this CPU: generated tokens over ``batch`` sequences at once
    (generate), or input tokens read (embed); None without a parameter count."""
    if not size.parameters:
        return None
    flops = speed.gflops * 1e9
    if size.kind == ModelKind.embed:
        return ENCODE_EFFICIENCY * flops / (2 * size.parameters)
    active = size.active_parameters or size.parameters
    batch = max(batch, 1)
    read = min(size.parameters, active * batch) * BYTES_PER_PARAM[mode]  # a MoE step reads the experts it routes to
    step_s = max(read / (speed.bandwidth_gbs * 1e9), 2 * active * batch / flops) / DECODE_EFFICIENCY
    return batch / step_s


def floor_for(hw: Any, kind: ModelKind) -> float:
    """The slowest tokens/s size=auto may pick for ``kind`` on a CPU (hardware.min_*tokens_per_s; 0: any)."""
    key = "min_embed_tokens_per_s" if kind == ModelKind.embed else "min_tokens_per_s"
    return float(getattr(hw, key, 0) or 0)
