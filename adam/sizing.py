"""Memory estimates per size, dtype and quantization, and the one place ``size=auto`` is resolved.

``resolve_auto(cfg)`` runs at the start of ``runner.run`` and in ``ModelManager`` before any backend
exists. It checks ``size.long_context``, replaces ``size=auto`` with the largest catalog model of the
job's kind that fits the memory (``hardware.memory_gb``, else the detected free GPU memory or
available RAM, less ``hardware.memory_margin``), and turns ``hardware.quantization=auto`` into
none, 8bit or 4bit. The reason is written into ``size.selected_by``, so the manifest records it.

The estimate is weights (parameters x bytes per parameter) plus a KV-cache allowance
(2 x layers x KV heads x head size x bytes x ``domain.context`` tokens x ``job.batch_size``; none for
embedders) plus 10% and 0.5 GiB for activations and the runtime. Layer and head counts are in each
size's YAML, copied from the model's config.json on the Hugging Face hub.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam import hardware, registry
from adam.config import CONFIG_MODULE, ModelKind, Quantization, SizeSpec, to_spec
from adam.errors import ConfigError, ModelNotFoundError

log = logging.getLogger(__name__)

GIB = 1024**3
# Bytes per parameter. bitsandbytes keeps embeddings and norms unquantized and stores scales per block,
# hence more than 1 and 0.5.
BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.1, "4bit": 0.6}
MODES = ("float32", "bfloat16", "8bit", "4bit")  # the columns job=info prints
OVERHEAD_FRACTION = 0.10
OVERHEAD_GB = 0.5
AUTO = "auto"
DEFAULT_BATCH = 8  # sequences planned for when the job has no batch_size (job=info)
OLLAMA_MODE = "4bit"  # Ollama's default tags are 4-bit (Q4_K_M) GGUFs


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
        tokens = min(context, effective_context(size)) * max(batch, 1)
        kv = 2 * size.num_layers * size.num_kv_heads * size.head_dim * kv_bytes * tokens / GIB
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
        raise ConfigError(
            f"size={size.name} has no long-context mode: YaRN scaling to 131,072 tokens is for Qwen3 4B and larger; "
            f"drop size.long_context=true or pick size=qwen3_large or bigger"
        )


# ----------------------------------------------------------------- the catalog
def load_size(name: str) -> SizeSpec:
    """A size from its YAML file in conf/size, without composing the whole config."""
    text = resources.files(CONFIG_MODULE).joinpath("size", f"{name}.yaml").read_text(encoding="utf-8")
    node = OmegaConf.create(text)
    node.pop("defaults", None)
    merged = OmegaConf.merge(OmegaConf.structured(SizeSpec), node)
    return to_spec(SizeSpec, merged)


def catalog(kind: ModelKind) -> list[SizeSpec]:
    """Sizes size=auto may pick for ``kind``: those with a hub id, a parameter count and architecture numbers."""
    sizes = []
    for name in registry.sizes():
        if name == AUTO:
            continue
        spec = load_size(name)
        if spec.kind == kind and spec.hf_id and spec.parameters and spec.num_layers:
            sizes.append(spec)
    return sorted(sizes, key=lambda s: s.parameters or 0, reverse=True)


@dataclass
class Plan:
    """What size=auto (or quantization=auto) is planning for."""

    device: str
    memory_gb: float
    margin: float
    context: int
    batch: int
    modes: tuple[str, ...]  # modes tried per size, least quantized first
    source: str  # where memory_gb came from

    @property
    def budget_gb(self) -> float:
        """Memory a model may use after the margin."""
        return self.memory_gb * (1 - self.margin)

    def first_fit(self, size: SizeSpec) -> Estimate | None:
        """The least quantized mode of ``size`` that fits, or None."""
        for mode in self.modes:
            est = estimate(size, mode, context=self.context, batch=self.batch)
            if est is not None and est.total_gb <= self.budget_gb:
                return est
        return None


def _unquantized_mode(hw: Any, device: str) -> str:
    dtype = str(getattr(hw.dtype, "value", hw.dtype))
    if dtype != "auto":
        return dtype
    return "float32" if device == "cpu" else "bfloat16"


def make_plan(cfg: DictConfig, report: hardware.HardwareReport | None = None) -> Plan:
    """The device, memory and modes to plan with, from the config and (where needed) detection."""
    hw = cfg.hardware
    wanted = str(getattr(hw.device, "value", hw.device))
    report = report or hardware.detect_current()
    device = report.device if wanted == "auto" else wanted
    if hw.memory_gb:
        memory, source = float(hw.memory_gb), f"hardware.memory_gb={hw.memory_gb:g}"
    elif device == "cuda" and report.gpus:
        memory, source = max(g.free_gb for g in report.gpus), "free GPU memory"
    elif device == "mps":
        memory, source = report.ram_available_gb * 0.75, "75% of available unified memory"
    else:
        memory, source = report.ram_available_gb, "available RAM"
    quant = quantization_of(hw)
    backend = str(cfg.backend.get("_target_", ""))
    if backend.endswith("OllamaBackend"):
        modes: tuple[str, ...] = (OLLAMA_MODE,)
    elif quant == Quantization.auto:
        plain = _unquantized_mode(hw, device)
        modes = (plain, "8bit", "4bit") if device == "cuda" else (plain,)
    elif quant == Quantization.none:
        modes = (_unquantized_mode(hw, device),)
    else:
        modes = (quant.value,)
    batch = int(cfg.job.get("batch_size", DEFAULT_BATCH) or DEFAULT_BATCH)
    context = int(cfg.domain.get("context", 2048) or 2048)
    return Plan(device, memory, float(hw.memory_margin), context, batch, modes, source)


def quantization_of(hw: Any) -> Quantization:
    """hardware.quantization as the enum, with a one-line error for a wrong value."""
    value = str(hw.quantization)
    try:
        return Quantization(value)
    except ValueError:
        choices = " | ".join(q.value for q in Quantization)
        raise ConfigError(f"hardware.quantization={value} is not one of {choices}") from None


# ----------------------------------------------------------------- resolution
def resolve_auto(
    cfg: DictConfig, *, report: hardware.HardwareReport | None = None, cached: Callable[[SizeSpec], bool] | None = None
) -> dict[str, Any] | None:
    """Resolve size=auto and hardware.quantization=auto in ``cfg`` (in place); returns what was decided."""
    quantization_of(cfg.hardware)
    decided: dict[str, Any] = {}
    if cfg.size.name == AUTO:
        decided.update(_resolve_size(cfg, report, cached))
    check_long_context(cfg.size)
    if str(cfg.hardware.quantization) == Quantization.auto.value:
        decided.update(_resolve_quantization(cfg, report))
    return decided or None


def _kind_for(cfg: DictConfig) -> ModelKind:
    if cfg.job.name == "embed":
        return ModelKind.embed
    return ModelKind(str(getattr(cfg.size.kind, "value", cfg.size.kind)))


def _carried_overrides(node: DictConfig) -> dict[str, Any]:
    """Keys set on size=auto (size.long_context=true, ...) that differ from auto.yaml, to apply to the pick."""
    base = OmegaConf.to_container(OmegaConf.structured(load_size(AUTO)), resolve=True)
    mine = OmegaConf.to_container(node, resolve=True)
    skip = {"name", "kind", "description", "selected_by"}
    return {k: v for k, v in mine.items() if k not in skip and base.get(k) != v}


def _hf_cached(size: SizeSpec) -> bool:
    from adam.backends import hf_loading

    return hf_loading.cached_snapshot(size.hf_id or "", size.revision) is not None


def _resolve_size(
    cfg: DictConfig, report: hardware.HardwareReport | None, cached: Callable[[SizeSpec], bool] | None
) -> dict[str, Any]:
    plan = make_plan(cfg, report)
    kind = _kind_for(cfg)
    carried = _carried_overrides(cfg.size)
    backend = str(cfg.backend.get("_target_", ""))
    fits: list[tuple[SizeSpec, Estimate]] = []
    smallest: tuple[SizeSpec, Estimate] | None = None
    for spec in catalog(kind):
        for key, value in carried.items():
            setattr(spec, key, value)
        if spec.long_context and not spec.long_context_length:
            continue  # size.long_context=true rules out the sizes without YaRN
        if backend.endswith("OllamaBackend") and not spec.ollama_tag:
            continue
        est = plan.first_fit(spec)
        if est is not None:
            fits.append((spec, est))
        else:
            smallest = (spec, estimate(spec, plan.modes[-1], context=plan.context, batch=plan.batch))  # type: ignore[assignment]
    where = f"{plan.budget_gb:.1f} of {plan.memory_gb:.1f} GiB ({plan.source}, {plan.margin:.0%} kept free)"
    where += f" on {plan.device}"
    if not fits:
        need = f"; the smallest, {smallest[0].name}, needs {smallest[1].total_gb:.1f} GiB" if smallest else ""
        raise ConfigError(
            f"size=auto: no {kind.value} model in the catalog fits {where}{need}: "
            "set size= explicitly, lower job.batch_size, or set hardware.memory_gb="
        )
    preferred = cfg.domain.get("preferred_size")
    if preferred:
        fits.sort(key=lambda f: f[0].name != preferred)  # stable: the rest stay largest first
    if backend.endswith("HuggingFaceBackend"):
        from adam.backends.hf_loading import hub_offline

        if hub_offline():
            is_cached = cached or _hf_cached
            usable = [f for f in fits if is_cached(f[0])]
            if not usable:
                would = ", ".join(f"{s.name} ({s.hf_id}, {e.total_gb:.1f} GiB as {e.mode})" for s, e in fits[:3])
                raise ModelNotFoundError(
                    f"size=auto: HF_HUB_OFFLINE is set and no model that fits {where} is in the Hugging Face cache; "
                    f"would fit: {would}; download one with `hf download {fits[0][0].hf_id}` where there is network"
                )
            if usable[0] is not fits[0]:
                log.info("size=auto: %s would fit but is not cached (offline); using a cached one", fits[0][0].name)
            fits = usable
    spec, est = fits[0]
    bigger = [s for s in catalog(kind) if (s.parameters or 0) > (spec.parameters or 0)]
    why = f"{spec.name}: {est.total_gb:.1f} GiB as {est.mode} (weights {est.weights_gb:.1f} + KV cache "
    why += f"{est.kv_cache_gb:.1f} for {plan.batch} x {plan.context} tokens + overhead) fits {where}"
    if bigger:
        nxt = bigger[-1]
        nxt_est = estimate(nxt, plan.modes[-1], context=plan.context, batch=plan.batch)
        if nxt_est is not None:
            why += f"; {nxt.name} would need {nxt_est.total_gb:.1f} GiB as {nxt_est.mode}"
    if preferred and spec.name == preferred:
        why += f" (domain={cfg.domain.name} prefers it)"
    log.info("size=auto picked %s", why)
    spec.selected_by = why
    node = OmegaConf.structured(spec)
    cfg.size = node
    if str(cfg.hardware.quantization) == Quantization.auto.value:
        cfg.hardware.quantization = est.mode if est.mode in ("8bit", "4bit") else Quantization.none.value
    return {"size": spec.name, "mode": est.mode, "estimate": est.as_dict(), "why": why}


def _resolve_quantization(cfg: DictConfig, report: hardware.HardwareReport | None) -> dict[str, Any]:
    """quantization=auto for an explicit size: none unless a CUDA model only fits quantized."""
    plan = make_plan(cfg, report)
    size = to_spec(SizeSpec, cfg.size)
    chosen = Quantization.none.value
    if plan.device == "cuda" and size.parameters:
        est = plan.first_fit(size)
        if est is not None and est.mode in ("8bit", "4bit"):
            chosen = est.mode
        elif est is None:
            log.warning("%s does not fit %.1f GiB even at 4bit; loading it unquantized", size.name, plan.budget_gb)
    cfg.hardware.quantization = chosen
    return {"quantization": chosen, "device": plan.device}


def recommendations(report: hardware.HardwareReport, margin: float = 0.2, context: int = 2048, batch: int = 8) -> dict:
    """The largest size per backend and kind that fits the detected machine (for job=info)."""
    budget = report.memory_gb * (1 - margin)
    hf_modes = ("bfloat16" if report.device != "cpu" else "float32",)
    if report.device == "cuda":
        hf_modes += ("8bit", "4bit")
    out: dict[str, dict[str, Any]] = {}
    for backend, modes in (("huggingface", hf_modes), ("ollama", (OLLAMA_MODE,))):
        out[backend] = {}
        for kind in ModelKind:
            pick = None
            for spec in catalog(kind):
                if backend == "ollama" and not spec.ollama_tag:
                    continue
                for mode in modes:
                    est = estimate(spec, mode, context=context, batch=batch)
                    if est is not None and est.total_gb <= budget:
                        pick = {"size": spec.name, "mode": mode, "total_gb": round(est.total_gb, 2)}
                        break
                if pick:
                    break
            out[backend][kind.value] = pick
    return out
