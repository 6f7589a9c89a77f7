"""What size=auto and quantization=auto plan against, and which catalog sizes fit it.

A Plan is the device, the memory (``hardware.memory_gb``, else the detected free GPU memory or
available RAM, less ``hardware.memory_margin``), the context and batch, and the memory modes to try.
The backend class says which size field names its model and whether it fixes the modes
(BackendTraits). For embeddings on the HuggingFace backend, a bundled embedder (MiniLM, shipped in
a Python package) can fit where no catalog embedder can be had.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam.errors import ConfigError
from adam.planning import hardware
from adam.planning.cpu_speed import CpuSpeed, floor_for, tokens_per_s
from adam.planning.memory_estimates import Estimate, estimate
from adam.planning.size_catalog import AUTO, AUTO_FAMILY, catalog, default_batch, load_size
from adam.settings.catalog import sizes as size_options
from adam.settings.config import ModelKind, Quantization, SizeSpec

Fit = tuple[SizeSpec, Estimate]


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
    batch = cfg.job.get("batch_size") or default_batch(model_kind_for(cfg))
    modes = backend_traits(cfg).memory_modes
    return plan_for(cfg.hardware, context=_context(cfg.domain), batch=int(batch), fixed_modes=modes, report=report)


def plan_for(
    hw: Any,
    *,
    context: int,
    batch: int,
    fixed_modes: tuple[str, ...] = (),
    report: hardware.HardwareReport | None = None,
) -> Plan:
    """The plan for a hardware node or spec: size=auto and job=info's recommendations both start here."""
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
    quant = requested_quantization(hw)
    if fixed_modes:  # the backend decides how the model sits in memory (Ollama's 4-bit tags)
        modes: tuple[str, ...] = fixed_modes
    elif quant == Quantization.auto:
        plain = _unquantized_mode(hw, device)
        modes = (plain, "8bit", "4bit") if device == "cuda" else (plain,)
    elif quant == Quantization.none:
        modes = (_unquantized_mode(hw, device),)
    else:
        modes = (quant.value,)
    return Plan(device, memory, float(hw.memory_margin), context, batch, modes, source)


def _context(domain: Any) -> int:
    return int(domain.get("context", 2048) or 2048)


def model_kind_for(cfg: DictConfig) -> ModelKind:
    """The kind of model the job needs (its schema says), else the size's own kind."""
    wanted = getattr(OmegaConf.get_type(cfg.job), "model_kind", None) if isinstance(cfg.job, DictConfig) else None
    return wanted or ModelKind(str(getattr(cfg.size.kind, "value", cfg.size.kind)))


@dataclass(frozen=True)
class BackendTraits:
    """What size=auto needs to know of a backend class (its class attributes)."""

    model_field: str = "hf_id"  # the size field naming the model: a size without it cannot run there
    memory_modes: tuple[str, ...] = ()  # fixed memory modes (Ollama's 4-bit tags); (): from hardware settings
    reads_hf_cache: bool = False  # offline, only sizes in the Hugging Face cache can run
    computes_here: bool = False  # the model runs in this process (loads_in_process): on a CPU its speed is ours
    runtimes: tuple[str, ...] = ()  # backend.runtime's choices (the HuggingFace backend's torch | onnx)


def traits_of(target: str) -> BackendTraits:
    """The traits of the backend class a ``_target_`` names (imported, not instantiated)."""
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except Exception:  # a backend that cannot be imported is refused later, in one line, by build_backend
        return BackendTraits()
    return traits_of_class(cls)


def traits_of_class(cls: type) -> BackendTraits:
    """The traits a backend class declares."""
    return BackendTraits(
        str(getattr(cls, "model_field", "hf_id")),
        tuple(getattr(cls, "memory_modes", ())),
        bool(getattr(cls, "reads_hf_cache", False)),
        bool(getattr(cls, "loads_in_process", False)),
        tuple(str(r) for r in getattr(cls, "runtimes", ())),
    )


def backend_traits(cfg: DictConfig) -> BackendTraits:
    """The traits of the config's backend."""
    return traits_of(str(cfg.backend.get("_target_", "")))


def requested_quantization(hw: Any) -> Quantization:
    """hardware.quantization as the user set it: auto even after resolve_auto replaced it (hardware.selected_by)."""
    if getattr(hw, "selected_by", None):
        return Quantization.auto
    return quantization_of(hw)


def quantization_of(hw: Any) -> Quantization:
    """hardware.quantization as the enum, with a one-line error for a wrong value."""
    value = str(hw.quantization)
    try:
        return Quantization(value)
    except ValueError:
        choices = " | ".join(q.value for q in Quantization)
        raise ConfigError(f"hardware.quantization={value} is not one of {choices}") from None


# ----------------------------------------------------------------- what fits
def candidates(
    kind: ModelKind,
    plan: Plan,
    *,
    model_field: str = "hf_id",
    carried: dict[str, Any] | None = None,
    family: str = AUTO_FAMILY,
) -> tuple[list[Fit], Fit | None]:
    """The catalog sizes of ``kind`` in ``family`` that fit ``plan``, largest first, and the last one that did not."""
    fits: list[Fit] = []
    smallest: Fit | None = None
    for spec in catalog(kind, family):
        for key, value in (carried or {}).items():
            setattr(spec, key, value)
        if spec.long_context and not spec.long_context_length:
            continue  # size.long_context=true rules out the sizes without YaRN
        if not getattr(spec, model_field, None):  # the backend has no name for this size's model
            continue
        est = plan.first_fit(spec)
        if est is not None:
            fits.append((spec, est))
        else:
            smallest = (spec, estimate(spec, plan.modes[-1], context=plan.context, batch=plan.batch))  # type: ignore[assignment]
    return fits, smallest


def bundled_fits(kind: ModelKind, plan: Plan, carried: dict[str, Any] | None = None) -> list[Fit]:
    """Sizes of ``kind`` whose weights ship in an installed Python package (size.package) and fit, largest first."""
    fits: list[Fit] = []
    for name in size_options():
        if name == AUTO:
            continue
        spec = load_size(name)
        if spec.kind != kind or not spec.package or not _importable(spec.package.partition(":")[0]):
            continue
        for key, value in (carried or {}).items():
            setattr(spec, key, value)
        est = plan.first_fit(spec)
        if est is not None:
            fits.append((spec, est))
    return sorted(fits, key=lambda f: f[0].parameters or 0, reverse=True)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def prefer(fits: list[Fit], preferred: str | None) -> list[Fit]:
    """``domain.preferred_size`` first when it fits; the rest stay largest first."""
    return sorted(fits, key=lambda f: f[0].name != preferred) if preferred else fits


def hf_cached(size: SizeSpec) -> bool:
    """Whether the size's hub snapshot is in the Hugging Face cache."""
    from adam.backends import hf_loading

    return hf_loading.cached_snapshot(size.hf_id or "", size.revision) is not None


def cached_only(fits: list[Fit], cached: Callable[[SizeSpec], bool] | None = None) -> list[Fit]:
    """With HF_HUB_OFFLINE set, the fits that are in the Hugging Face cache; else all of them."""
    from adam.backends.hf_loading import hub_offline

    if not hub_offline():
        return fits
    is_cached = cached or hf_cached
    return [f for f in fits if is_cached(f[0])]


def fast_enough(fits: list[Fit], kind: ModelKind, plan: Plan, hw: Any, speed: CpuSpeed) -> tuple[list[Fit], str]:
    """The fits estimated to reach hardware.min_(embed_)tokens_per_s on this CPU, in their order, and a note on
    the bigger ones left out; when none does, all of them, fastest first, and a note that says so."""
    floor = floor_for(hw, kind)
    key = "min_embed_tokens_per_s" if kind == ModelKind.embed else "min_tokens_per_s"
    rated = [(fit, tokens_per_s(fit[0], fit[1].mode, batch=plan.batch, speed=speed)) for fit in fits]
    slow = [(fit, rate) for fit, rate in rated if rate is not None and rate < floor]
    fast = [fit for fit, rate in rated if rate is None or rate >= floor]
    if not slow:
        return fits, ""
    (first, rate), what = slow[0], "input tokens" if kind == ModelKind.embed else f"tokens over {plan.batch} sequences"
    if fast:
        note = f"{first[0].name} would fit but is estimated at {rate:.1f} {what} a second on this CPU"
        return fast, f"{note} ({speed.describe()}), below hardware.{key}={floor:g}"
    ranked = sorted(rated, key=lambda item: item[1] or 0.0, reverse=True)
    best, best_rate = ranked[0]
    note = f"no {kind.value} model that fits reaches hardware.{key}={floor:g} on this CPU ({speed.describe()}); "
    note += f"the fastest, {best[0].name}, is estimated at {best_rate or 0:.1f} {what} a second"
    return [fit for fit, _ in ranked], note
