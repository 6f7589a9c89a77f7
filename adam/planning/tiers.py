"""The design's hardware tiers and its model picks for each, with adam's memory estimates.

A tier is a hardware profile in conf/hardware (``cpu``, ``gpu_low``, ``gpu_mid``, ``gpu_high``) that
names its ``tier`` and its ``picks``. For each pick this module finds the least quantized mode the
profile allows that fits the profile's memory (less ``memory_margin``) with one sequence of
``context`` tokens, and the largest ``job.batch_size`` that still fits in that mode. ``job=info``
shows the table for this machine (the CPU tier against the available RAM); docs/MODEL_MANAGEMENT.md
prints :func:`markdown_table`, and a test keeps the two the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from omegaconf import OmegaConf

from adam.planning.memory_estimates import estimate
from adam.planning.memory_plan import quantization_of
from adam.planning.size_catalog import load_size
from adam.settings.catalog import CONFIG_MODULE
from adam.settings.config import HardwareSpec, ModelKind, Quantization, SizeSpec, to_spec

TIER_PROFILES = ("cpu", "gpu_low", "gpu_mid", "gpu_high")
CONTEXT = 2048  # tokens per sequence the table plans for (domain=general's context)
MAX_BATCH = 512  # a larger batch that would still fit is shown as this many


@dataclass(frozen=True)
class Pick:
    """One pick of a tier and how it fits there."""

    size: str
    hf_id: str | None
    ollama_tag: str | None
    parameters: int | None
    mode: str  # the mode it fits in, or the smallest mode the profile allows when nothing fits
    total_gb: float  # weights + KV cache for one sequence + overhead, in that mode
    budget_gb: float | None  # what the tier leaves a model; None: the tier has no fixed memory (the CPU)
    max_batch: int | None  # sequences of the context that fit at once; 0: not even one; None: unknown

    @property
    def fits(self) -> bool | None:
        """Whether one sequence fits the tier; None when the tier's memory is unknown."""
        return None if self.max_batch is None else self.max_batch > 0

    def as_dict(self) -> dict[str, Any]:
        """JSON fields for job=info."""
        return {
            "size": self.size,
            "hf_id": self.hf_id,
            "ollama_tag": self.ollama_tag,
            "parameters": self.parameters,
            "mode": self.mode,
            "total_gb": round(self.total_gb, 2),
            "fits": self.fits,
            "max_batch": self.max_batch,
        }


def load_profile(name: str) -> HardwareSpec:
    """A hardware profile from conf/hardware, with the profiles it extends (``defaults: [cpu]``) merged under it."""
    text = resources.files(CONFIG_MODULE).joinpath("hardware", f"{name}.yaml").read_text(encoding="utf-8")
    node = OmegaConf.create(text)
    parents = [d for d in node.pop("defaults", []) if isinstance(d, str) and d not in ("_self_",)]
    merged = OmegaConf.structured(HardwareSpec)
    for parent in parents:
        if not parent.startswith("base_"):
            merged = OmegaConf.merge(merged, OmegaConf.structured(load_profile(parent)))
    return to_spec(HardwareSpec, OmegaConf.merge(merged, node))


def _modes(hw: HardwareSpec) -> tuple[str, ...]:
    """The modes a profile loads a model in, least quantized first."""
    dtype = hw.dtype.value
    plain = dtype if dtype != "auto" else ("float32" if hw.device.value == "cpu" else "bfloat16")
    quant = quantization_of(hw)
    if quant == Quantization.auto:
        return (plain, "8bit", "4bit") if hw.device.value == "cuda" else (plain,)
    if quant == Quantization.none:
        return (plain,)
    return (quant.value,)


def fit(size: SizeSpec, hw: HardwareSpec, *, memory_gb: float | None, context: int = CONTEXT) -> Pick:
    """How ``size`` fits a profile with ``memory_gb`` (None: unknown, estimate only)."""
    modes = _modes(hw)
    budget = memory_gb * (1 - hw.memory_margin) if memory_gb else None
    chosen = None
    for mode in modes:
        est = estimate(size, mode, context=context, batch=1)
        if est is None:
            raise ValueError(f"size={size.name} has no parameter count to estimate")
        chosen = est
        if budget is None or est.total_gb <= budget:
            break
    assert chosen is not None
    max_batch = None
    if budget is not None:
        room = budget - (chosen.total_gb - chosen.kv_cache_gb)
        per_sequence = chosen.kv_cache_gb
        max_batch = MAX_BATCH if per_sequence <= 0 and room >= 0 else max(0, int(room // per_sequence))
        max_batch = min(max_batch, MAX_BATCH)
    return Pick(
        size.name, size.hf_id, size.ollama_tag, size.parameters, chosen.mode, chosen.total_gb, budget, max_batch
    )


def tier_table(*, ram_gb: float | None = None, context: int = CONTEXT) -> list[dict[str, Any]]:
    """Every tier with its picks; the CPU tier is measured against ``ram_gb`` (None: estimates only)."""
    out = []
    for profile in TIER_PROFILES:
        hw = load_profile(profile)
        memory = hw.memory_gb or (ram_gb if hw.device.value == "cpu" else None)
        picks = [fit(load_size(name), hw, memory_gb=memory, context=context) for name in hw.picks]
        out.append(
            {
                "tier": hw.tier,
                "profile": profile,
                "memory_gb": memory,
                "modes": list(_modes(hw)),
                "context": context,
                "picks": [p.as_dict() for p in picks],
            }
        )
    return out


def _billions(parameters: int | None) -> str:
    return f"{parameters / 1e9:.1f}B" if parameters else "?"


def _verdict(pick: dict[str, Any]) -> str:
    if pick["fits"] is None:
        return "compare with your free RAM (`job=info`)"
    if not pick["fits"]:
        return "no"
    batch = pick["max_batch"]
    return f"yes, `job.batch_size` up to {batch}{'+' if batch >= MAX_BATCH else ''}"


def markdown_table(context: int = CONTEXT) -> str:
    """The tiers as a Markdown table (docs/MODEL_MANAGEMENT.md holds this text between its tier markers)."""
    lines = [
        f"| tier | size | Hugging Face id | Ollama tag | parameters | estimate (1 x {context:,} tokens) | fits |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for tier in tier_table(context=context):
        memory = f", {tier['memory_gb']:g} GB" if tier["memory_gb"] else ""
        label = f"{tier['tier']} (`hardware={tier['profile']}`{memory})"
        for pick in tier["picks"]:
            lines.append(
                f"| {label} | `{pick['size']}` | `{pick['hf_id']}` | `{pick['ollama_tag']}` | "
                f"{_billions(pick['parameters'])} | {pick['total_gb']:.1f} GiB as {pick['mode']} | {_verdict(pick)} |"
            )
    return "\n".join(lines)


def catalog_table() -> str:
    """Every generation size size=auto can plan for, as a Markdown table of the facts the estimates use."""
    from adam.settings import catalog

    lines = [
        "| size | family | Hugging Face id | Ollama tag | context | layers | KV heads x size | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in catalog.sizes():
        spec = load_size(name)
        if spec.kind != ModelKind.generate or not spec.hf_id or not spec.num_layers:
            continue  # the sizes size=auto can plan for
        notes = []
        if spec.thinking.value != "none":
            notes.append(f"thinking: {spec.thinking.value}")
        if spec.sliding_window:
            layers = spec.sliding_window_layers if spec.sliding_window_layers is not None else spec.num_layers
            notes.append(f"sliding window {spec.sliding_window:,} on {layers} layers")
        if spec.rope_scaling:
            notes.append(f"{spec.rope_scaling} rope scaling")
        if spec.long_context_length:
            notes.append(f"YaRN to {spec.long_context_length:,}")
        shape = f"{spec.num_kv_heads} x {spec.head_dim}" if spec.num_kv_heads else "?"
        lines.append(
            f"| `{name}` | {spec.family or '-'} | `{spec.hf_id}` | `{spec.ollama_tag or '-'}` | "
            f"{spec.context_length:,} | {spec.num_layers or '?'} | {shape} | {', '.join(notes) or '-'} |"
        )
    return "\n".join(lines)
