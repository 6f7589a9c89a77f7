"""The one place ``size=auto`` and ``hardware.quantization=auto`` are resolved, and job=info's recommendations.

``resolve_auto(cfg)`` runs at the start of ``runner.run`` and in ``ModelManager`` before any backend
exists. It checks ``size.long_context``, replaces ``size=auto`` with the largest catalog model of the
job's kind that fits the memory (memory_plan.py; the estimates are in memory_estimates.py), and turns
``hardware.quantization=auto`` into none, 8bit or 4bit. The reason is written into
``size.selected_by``, so the manifest records it. ``size=auto`` picks within ``size.family`` (Qwen3
by default). For embeddings on the HuggingFace backend it falls back to a bundled embedder (MiniLM,
shipped in a Python package) when no catalog embedder that fits is in the cache offline, or none
fits at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam.errors import ConfigError, ModelNotFoundError
from adam.planning import hardware
from adam.planning.cpu_speed import CpuSpeed, speed_for, tokens_per_s
from adam.planning.memory_estimates import check_long_context, estimate
from adam.planning.memory_plan import (
    BackendTraits,
    Fit,
    Plan,
    backend_traits,
    bundled_fits,
    cached_only,
    candidates,
    fast_enough,
    hf_cached,
    make_plan,
    model_kind_for,
    plan_for,
    prefer,
    quantization_of,
    traits_of,
)
from adam.planning.size_catalog import AUTO, AUTO_FAMILY, catalog, default_batch, families, load_size
from adam.settings.catalog import CONFIG_MODULE
from adam.settings.config import ONNX_ARCHITECTURES, DomainSpec, ModelKind, Quantization, SizeSpec, to_spec

log = logging.getLogger(__name__)


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


def _carried_overrides(node: DictConfig) -> dict[str, Any]:
    """Keys set on size=auto (size.long_context=true, ...) that differ from auto.yaml, to apply to the pick."""
    base = OmegaConf.to_container(OmegaConf.structured(load_size(AUTO)), resolve=True)
    mine = OmegaConf.to_container(node, resolve=True)
    skip = {"name", "kind", "description", "selected_by", "family", "thinking"}  # facts of the pick, or the filter
    return {k: v for k, v in mine.items() if k not in skip and base.get(k) != v}


@dataclass
class Choice:
    """What size=auto picks for one kind of model on one backend, and why."""

    fit: Fit
    why: str
    bundled: bool = False  # a bundled embedder (needs no download)
    tokens_per_s: float | None = None  # estimated on this CPU (None: not a CPU plan, or the backend runs elsewhere)
    speed: CpuSpeed | None = None  # what the estimate used


def choose(
    kind: ModelKind,
    plan: Plan,
    traits: BackendTraits,
    hw: Any,
    report: hardware.HardwareReport,
    *,
    carried: dict[str, Any] | None = None,
    family: str = AUTO_FAMILY,
    preferred: str | None = None,
    cached: Callable[[SizeSpec], bool] | None = None,
    offline_strict: bool = True,
) -> Choice:
    """The size size=auto picks: the largest of ``kind`` that fits ``plan``'s memory and, on a CPU for a backend that
    computes here, runs fast enough (cpu_speed.py); offline, a cached one. ``offline_strict=False`` (job=info) names
    the uncached pick instead of refusing."""
    fits, smallest = candidates(kind, plan, model_field=traits.model_field, carried=carried, family=family)
    where = f"{plan.budget_gb:.1f} of {plan.memory_gb:.1f} GiB ({plan.source}, {plan.margin:.0%} kept free)"
    where += f" on {plan.device}"
    # a bundled embedder needs no download: the pick when nothing of the catalog can be had
    bundled = bundled_fits(kind, plan, carried) if traits.reads_hf_cache and kind == ModelKind.embed else []
    if not fits and bundled:
        return _bundled(bundled[0], f"no {kind.value} model of the catalog fits {where}", plan, traits, hw, report)
    if not fits:
        need = f"; the smallest, {smallest[0].name}, needs {smallest[1].total_gb:.1f} GiB" if smallest else ""
        raise ConfigError(
            f"size=auto: no {kind.value} model in the catalog fits {where}{need}: "
            "set size= explicitly, lower job.batch_size, or set hardware.memory_gb="
        )
    fits = prefer(fits, preferred)
    speed, slow_note = None, ""
    if plan.device == "cpu" and traits.computes_here:
        speed = speed_for(hw, report)
        fits, slow_note = fast_enough(fits, kind, plan, hw, speed)
        if slow_note.startswith("no ") and bundled:
            return _bundled(bundled[0], slow_note, plan, traits, hw, report)
    if traits.reads_hf_cache:
        usable = cached_only(fits, cached)
        if not usable and bundled:
            reason = f"HF_HUB_OFFLINE is set and no {kind.value} model that fits is cached"
            return _bundled(bundled[0], reason, plan, traits, hw, report)
        if not usable and offline_strict:
            from adam.backends.hf_loading import download_command

            would = ", ".join(f"{s.name} ({s.hf_id}, {e.total_gb:.1f} GiB as {e.mode})" for s, e in fits[:3])
            raise ModelNotFoundError(
                f"size=auto: HF_HUB_OFFLINE is set and no model that fits {where} is in the Hugging Face cache; "
                f"would fit: {would}; download one with `{download_command(fits[0][0].hf_id or '')}` where there "
                f"is network{f' ({slow_note})' if slow_note else ''}"
            )
        if usable and usable[0] is not fits[0]:
            log.info("size=auto: %s would fit but is not cached (offline); using a cached one", fits[0][0].name)
        fits = usable or fits
    spec, est = fits[0]
    why = f"{spec.name}: {est.total_gb:.1f} GiB as {est.mode} (weights {est.weights_gb:.1f} + KV cache "
    why += f"{est.kv_cache_gb:.1f} for {plan.batch} x {plan.context} tokens + overhead) fits {where}"
    rate = tokens_per_s(spec, est.mode, batch=plan.batch, speed=speed) if speed else None
    if rate is not None and speed is not None:
        what = "input tokens" if kind == ModelKind.embed else f"tokens over {plan.batch} sequences"
        why += f"; estimated {rate:.1f} {what} a second on this CPU ({speed.describe()})"
    bigger = [s for s in catalog(kind, family) if (s.parameters or 0) > (spec.parameters or 0)]
    if slow_note:
        why += f"; {slow_note}"
    elif bigger:
        nxt = bigger[-1]
        nxt_est = estimate(nxt, plan.modes[-1], context=plan.context, batch=plan.batch)
        if nxt_est is not None:
            why += f"; {nxt.name} would need {nxt_est.total_gb:.1f} GiB as {nxt_est.mode}"
    if preferred and spec.name == preferred:
        why += f" (domain preferred_size={preferred})"
    return Choice(fits[0], why, tokens_per_s=rate, speed=speed)


def onnx_fits(spec: SizeSpec, device: str, runtimes: tuple[str, ...]) -> bool:
    """Whether backend.runtime=onnx could run ``spec`` here: an encoder embedder, on a CPU, a backend that has it."""
    encoder = spec.kind == ModelKind.embed and spec.architecture in ONNX_ARCHITECTURES
    return encoder and device == "cpu" and "onnx" in runtimes


def onnx_note(cfg: DictConfig, spec: SizeSpec, device: str) -> str:
    """size=auto's word on an encoder embedder picked for a CPU while backend.runtime is torch: ONNX is faster."""
    if str(cfg.backend.get("runtime", "torch")) != "torch" or not onnx_fits(spec, device, backend_traits(cfg).runtimes):
        return ""
    return (
        "; on a CPU backend.runtime=onnx embeds it faster with the same vectors"
        " (docs/backends.md: Embeddings on ONNX Runtime)"
    )


def _bundled(fit: Fit, reason: str, plan: Plan, traits: BackendTraits, hw: Any, report: Any) -> Choice:
    """A bundled embedder as the choice, saying why."""
    spec, est = fit
    speed = speed_for(hw, report) if plan.device == "cpu" and traits.computes_here else None
    rate = tokens_per_s(spec, est.mode, batch=plan.batch, speed=speed) if speed else None
    why = f"{spec.name}: bundled (needs no download), {est.total_gb:.1f} GiB as {est.mode}"
    if rate is not None:
        why += f", estimated {rate:.0f} input tokens a second here"
    return Choice(fit, f"{why}; {reason}", bundled=True, tokens_per_s=rate, speed=speed)


def _resolve_size(
    cfg: DictConfig, report: hardware.HardwareReport | None, cached: Callable[[SizeSpec], bool] | None
) -> dict[str, Any]:
    report = report or hardware.detect_current()
    plan = make_plan(cfg, report)
    kind = model_kind_for(cfg)
    family = str(cfg.size.get("family") or AUTO_FAMILY)
    if family not in families(kind):
        raise ConfigError(f"size.family={family} has no {kind.value} model: choose one of {', '.join(families(kind))}")
    preferred = cfg.domain.get("preferred_size")
    choice = choose(
        kind,
        plan,
        backend_traits(cfg),
        cfg.hardware,
        report,
        carried=_carried_overrides(cfg.size),
        family=family,
        preferred=preferred,
        cached=cached,
    )
    why = choice.why
    if preferred and choice.fit[0].name == preferred:
        why = why.replace(f"(domain preferred_size={preferred})", f"(domain={cfg.domain.name} prefers it)")
    return _apply_pick(cfg, choice.fit, why + onnx_note(cfg, choice.fit[0], plan.device))


def _apply_pick(cfg: DictConfig, fit: Fit, why: str) -> dict[str, Any]:
    """Put the picked size in ``cfg.size`` (and its mode in quantization=auto), saying why; returns the decision."""
    spec, est = fit
    log.info("size=auto picked %s", why)
    spec.selected_by = why
    cfg.size = OmegaConf.structured(spec)
    if str(cfg.hardware.quantization) == Quantization.auto.value:
        cfg.hardware.quantization = est.mode if est.mode in ("8bit", "4bit") else Quantization.none.value
        cfg.hardware.selected_by = f"quantization=auto with size=auto: {cfg.hardware.quantization}"
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
    cfg.hardware.selected_by = f"quantization=auto for size={size.name} on {plan.device}: {chosen}"
    return {"quantization": chosen, "device": plan.device}


@cache
def target_of(backend: str) -> str:
    """The ``_target_`` of conf/backend/<backend>.yaml."""
    text = resources.files(CONFIG_MODULE).joinpath("backend", f"{backend}.yaml").read_text(encoding="utf-8")
    return str(OmegaConf.create(text).get("_target_", ""))


def recommendations(
    hw: Any,
    report: hardware.HardwareReport,
    *,
    context: int = DomainSpec.context,
    preferred: str | None = None,
    long_context: bool = False,
) -> dict[str, dict[str, Any]]:
    """What size=auto would pick per backend and kind with this hardware config (for job=info), each with the batch
    and context it planned for and why."""
    out: dict[str, dict[str, Any]] = {}
    for backend in ("huggingface", "ollama"):
        traits = traits_of(target_of(backend))
        out[backend] = {}
        for kind in ModelKind:
            carried = {"long_context": True} if long_context and kind == ModelKind.generate else None
            plan = plan_for(
                hw, context=context, batch=default_batch(kind), fixed_modes=traits.memory_modes, report=report
            )
            try:
                choice = choose(
                    kind, plan, traits, hw, report, carried=carried, preferred=preferred, offline_strict=False
                )
            except ConfigError:  # nothing fits
                out[backend][kind.value] = None
                continue
            spec, est = choice.fit
            pick: dict[str, Any] = {
                "size": spec.name,
                "mode": est.mode,
                "total_gb": round(est.total_gb, 2),
                "batch": plan.batch,
                "context": plan.context,
                "tokens_per_s": None if choice.tokens_per_s is None else round(choice.tokens_per_s, 1),
                "why": choice.why,
            }
            if onnx_fits(spec, plan.device, traits.runtimes):
                pick["runtime"] = "backend.runtime=onnx is faster on this CPU (torch is the default)"
            if traits.reads_hf_cache and not choice.bundled:  # offline, size=auto takes the largest cached fit
                pick["cached"] = hf_cached(spec)
            out[backend][kind.value] = pick
    return out
