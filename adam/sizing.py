"""Memory estimates per size, dtype and quantization, and the one place ``size=auto`` is resolved.

``resolve_auto(cfg)`` runs at the start of ``runner.run`` and in ``ModelManager`` before any backend
exists. It checks ``size.long_context``, replaces ``size=auto`` with the largest catalog model of the
job's kind that fits the memory (``hardware.memory_gb``, else the detected free GPU memory or
available RAM, less ``hardware.memory_margin``), and turns ``hardware.quantization=auto`` into
none, 8bit or 4bit. The reason is written into ``size.selected_by``, so the manifest records it.

The estimate is weights (parameters x bytes per parameter) plus a KV-cache allowance
(2 x layers x KV heads x head size x bytes x ``domain.context`` tokens x ``job.batch_size``, a
sliding-window layer counting at most its window; none for embedders) plus 10% and 0.5 GiB for
activations and the runtime. Layer and head counts are in each size's YAML, copied from the model's
config.json on the Hugging Face hub. ``size=auto`` picks within ``size.family`` (Qwen3 by default).
For embeddings on the HuggingFace backend it falls back to a bundled embedder (MiniLM, shipped in a
Python package) when no catalog embedder that fits is in the cache offline, or none fits at all.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam import hardware
from adam.catalog import CONFIG_MODULE
from adam.catalog import sizes as size_options
from adam.config import ModelKind, Quantization, SizeSpec, to_spec
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
AUTO_FAMILY = "qwen3"  # size=auto picks from this family unless size.family says otherwise
ANY_FAMILY = "any"
JOB_OF_KIND = {"generate": "generate", "embed": "embed"}  # the job whose batch_size plans for a kind of model


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


# ----------------------------------------------------------------- the catalog
def load_size(name: str) -> SizeSpec:
    """A size from its YAML file in conf/size, without composing the whole config."""
    text = resources.files(CONFIG_MODULE).joinpath("size", f"{name}.yaml").read_text(encoding="utf-8")
    node = OmegaConf.create(text)
    node.pop("defaults", None)
    merged = OmegaConf.merge(OmegaConf.structured(SizeSpec), node)
    return to_spec(SizeSpec, merged)


def catalog(kind: ModelKind, family: str = AUTO_FAMILY) -> list[SizeSpec]:
    """Sizes size=auto may pick for ``kind`` in ``family`` (or any): those with a hub id, a parameter count and
    architecture numbers, largest first."""
    sizes = []
    for name in size_options():
        if name == AUTO:
            continue
        spec = load_size(name)
        plannable = spec.kind == kind and spec.hf_id and spec.parameters and spec.num_layers
        if plannable and family in (ANY_FAMILY, spec.family):
            sizes.append(spec)
    return sorted(sizes, key=lambda s: s.parameters or 0, reverse=True)


def families(kind: ModelKind) -> list[str]:
    """The families size.family may name for ``kind``, plus any."""
    return [*sorted({s.family for s in catalog(kind, ANY_FAMILY) if s.family}), ANY_FAMILY]


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
    batch = cfg.job.get("batch_size") or default_batch(_kind_for(cfg))
    modes = _traits(cfg).memory_modes
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


@dataclass(frozen=True)
class BackendTraits:
    """What size=auto needs to know of a backend class (its class attributes)."""

    model_field: str = "hf_id"  # the size field naming the model: a size without it cannot run there
    memory_modes: tuple[str, ...] = ()  # fixed memory modes (Ollama's 4-bit tags); (): from hardware settings
    reads_hf_cache: bool = False  # offline, only sizes in the Hugging Face cache can run


def traits_of(target: str) -> BackendTraits:
    """The traits of the backend class a ``_target_`` names (imported, not instantiated)."""
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except Exception:  # a backend that cannot be imported is refused later, in one line, by build_backend
        return BackendTraits()
    return BackendTraits(
        str(getattr(cls, "model_field", "hf_id")),
        tuple(getattr(cls, "memory_modes", ())),
        bool(getattr(cls, "reads_hf_cache", False)),
    )


def _traits(cfg: DictConfig) -> BackendTraits:
    return traits_of(str(cfg.backend.get("_target_", "")))


@cache
def default_batch(kind: ModelKind | str) -> int:
    """job.batch_size of the job that runs ``kind`` (conf/job/<job>.yaml): size=auto and job=info plan for it
    when the job has no batch_size of its own, so the two recommend the same size."""
    job = JOB_OF_KIND[str(getattr(kind, "value", kind))]
    text = resources.files(CONFIG_MODULE).joinpath("job", f"{job}.yaml").read_text(encoding="utf-8")
    return int(OmegaConf.create(text).get("batch_size") or 1)


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
    """The kind of model the job needs (its schema says), else the size's own kind."""
    wanted = getattr(OmegaConf.get_type(cfg.job), "model_kind", None) if isinstance(cfg.job, DictConfig) else None
    return wanted or ModelKind(str(getattr(cfg.size.kind, "value", cfg.size.kind)))


def _carried_overrides(node: DictConfig) -> dict[str, Any]:
    """Keys set on size=auto (size.long_context=true, ...) that differ from auto.yaml, to apply to the pick."""
    base = OmegaConf.to_container(OmegaConf.structured(load_size(AUTO)), resolve=True)
    mine = OmegaConf.to_container(node, resolve=True)
    skip = {"name", "kind", "description", "selected_by", "family", "thinking"}  # facts of the pick, or the filter
    return {k: v for k, v in mine.items() if k not in skip and base.get(k) != v}


def _hf_cached(size: SizeSpec) -> bool:
    from adam.backends import hf_loading

    return hf_loading.cached_snapshot(size.hf_id or "", size.revision) is not None


def _resolve_size(
    cfg: DictConfig, report: hardware.HardwareReport | None, cached: Callable[[SizeSpec], bool] | None
) -> dict[str, Any]:
    plan = make_plan(cfg, report)
    kind = _kind_for(cfg)
    traits = _traits(cfg)
    family = str(cfg.size.get("family") or AUTO_FAMILY)
    if family not in families(kind):
        raise ConfigError(f"size.family={family} has no {kind.value} model: choose one of {', '.join(families(kind))}")
    carried = _carried_overrides(cfg.size)
    fits, smallest = candidates(kind, plan, model_field=traits.model_field, carried=carried, family=family)
    where = f"{plan.budget_gb:.1f} of {plan.memory_gb:.1f} GiB ({plan.source}, {plan.margin:.0%} kept free)"
    where += f" on {plan.device}"
    # a bundled embedder needs no download: the pick when nothing of the catalog can be had
    bundled = bundled_fits(kind, plan, carried) if traits.reads_hf_cache and kind == ModelKind.embed else []
    if not fits and bundled:
        return _pick_bundled(cfg, bundled[0], f"no {kind.value} model of the catalog fits {where}")
    if not fits:
        need = f"; the smallest, {smallest[0].name}, needs {smallest[1].total_gb:.1f} GiB" if smallest else ""
        raise ConfigError(
            f"size=auto: no {kind.value} model in the catalog fits {where}{need}: "
            "set size= explicitly, lower job.batch_size, or set hardware.memory_gb="
        )
    preferred = cfg.domain.get("preferred_size")
    fits = prefer(fits, preferred)
    if traits.reads_hf_cache:
        usable = cached_only(fits, cached)
        if not usable and bundled:
            return _pick_bundled(
                cfg, bundled[0], f"HF_HUB_OFFLINE is set and no {kind.value} model that fits is cached"
            )
        if not usable:
            from adam.backends.hf_loading import download_command

            would = ", ".join(f"{s.name} ({s.hf_id}, {e.total_gb:.1f} GiB as {e.mode})" for s, e in fits[:3])
            raise ModelNotFoundError(
                f"size=auto: HF_HUB_OFFLINE is set and no model that fits {where} is in the Hugging Face cache; "
                f"would fit: {would}; download one with `{download_command(fits[0][0].hf_id or '')}` where there "
                "is network"
            )
        if usable[0] is not fits[0]:
            log.info("size=auto: %s would fit but is not cached (offline); using a cached one", fits[0][0].name)
        fits = usable
    spec, est = fits[0]
    bigger = [s for s in catalog(kind, family) if (s.parameters or 0) > (spec.parameters or 0)]
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
        cfg.hardware.selected_by = f"quantization=auto with size=auto: {cfg.hardware.quantization}"
    return {"size": spec.name, "mode": est.mode, "estimate": est.as_dict(), "why": why}


Fit = tuple[SizeSpec, Estimate]


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


def _pick_bundled(cfg: DictConfig, fit: Fit, reason: str) -> dict[str, Any]:
    """Put a bundled embedder in ``cfg.size``, saying why in size.selected_by."""
    spec, est = fit
    why = f"{spec.name}: bundled (needs no download), {est.total_gb:.1f} GiB as {est.mode}; {reason}"
    log.info("size=auto picked %s", why)
    spec.selected_by = why
    cfg.size = OmegaConf.structured(spec)
    if str(cfg.hardware.quantization) == Quantization.auto.value:
        cfg.hardware.quantization = est.mode if est.mode in ("8bit", "4bit") else Quantization.none.value
        cfg.hardware.selected_by = f"quantization=auto with size=auto: {cfg.hardware.quantization}"
    return {"size": spec.name, "mode": est.mode, "estimate": est.as_dict(), "why": why}


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


def prefer(fits: list[Fit], preferred: str | None) -> list[Fit]:
    """``domain.preferred_size`` first when it fits; the rest stay largest first."""
    return sorted(fits, key=lambda f: f[0].name != preferred) if preferred else fits


def cached_only(fits: list[Fit], cached: Callable[[SizeSpec], bool] | None = None) -> list[Fit]:
    """With HF_HUB_OFFLINE set, the fits that are in the Hugging Face cache; else all of them."""
    from adam.backends.hf_loading import hub_offline

    if not hub_offline():
        return fits
    is_cached = cached or _hf_cached
    return [f for f in fits if is_cached(f[0])]


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
    cfg.hardware.selected_by = f"quantization=auto for size={size.name} on {plan.device}: {chosen}"
    return {"quantization": chosen, "device": plan.device}


@cache
def _target_of(backend: str) -> str:
    """The ``_target_`` of conf/backend/<backend>.yaml."""
    text = resources.files(CONFIG_MODULE).joinpath("backend", f"{backend}.yaml").read_text(encoding="utf-8")
    return str(OmegaConf.create(text).get("_target_", ""))


def recommendations(
    hw: Any,
    report: hardware.HardwareReport,
    *,
    context: int = 2048,
    preferred: str | None = None,
    long_context: bool = False,
) -> dict[str, dict[str, Any]]:
    """What size=auto would pick per backend and kind with this hardware config (for job=info)."""
    out: dict[str, dict[str, Any]] = {}
    for backend in ("huggingface", "ollama"):
        traits = traits_of(_target_of(backend))
        out[backend] = {}
        for kind in ModelKind:
            carried = {"long_context": True} if long_context and kind == ModelKind.generate else None
            plan = plan_for(
                hw, context=context, batch=default_batch(kind), fixed_modes=traits.memory_modes, report=report
            )
            fits = prefer(candidates(kind, plan, model_field=traits.model_field, carried=carried)[0], preferred)
            pick: dict[str, Any] | None = None
            if fits:
                usable = cached_only(fits) if traits.reads_hf_cache else fits
                spec, est = (usable or fits)[0]
                pick = {"size": spec.name, "mode": est.mode, "total_gb": round(est.total_gb, 2), "batch": plan.batch}
                if (
                    traits.reads_hf_cache
                ):  # offline, size=auto takes the largest cached fit, or refuses and names this one
                    pick["cached"] = _hf_cached(spec)
            out[backend][kind.value] = pick
    return out
