"""The sizes adam ships in conf/size, read as SizeSpecs without composing a whole config.

``size=auto`` picks from the catalog: the sizes of one kind and family (Qwen3 by default) that have
a hub id, a parameter count and architecture numbers. The batch it plans for is that of the job
that runs the kind, from its schema.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources

from omegaconf import OmegaConf

from adam.settings.catalog import CONFIG_MODULE
from adam.settings.catalog import sizes as size_options
from adam.settings.config import ModelKind, SizeSpec, to_spec
from adam.settings.job_schemas import JOB_SCHEMAS

AUTO = "auto"
AUTO_FAMILY = "qwen3"  # size=auto picks from this family unless size.family says otherwise
ANY_FAMILY = "any"
JOB_OF_KIND = {"generate": "generate", "embed": "embed"}  # the job whose batch_size plans for a kind of model


def load_size(name: str) -> SizeSpec:
    """A size from its YAML file in conf/size, without composing the whole config (a copy the caller may change)."""
    return copy.deepcopy(_load_size(name))


@cache
def _load_size(name: str) -> SizeSpec:
    """Parsed once per process: size=auto and job=info read the whole catalog several times over."""
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


def default_batch(kind: ModelKind | str) -> int:
    """job.batch_size of the job that runs ``kind``, as its schema holds it (settings/job_schemas.py): size=auto and
    job=info plan for it when the job has no batch_size of its own, so the two recommend the same size."""
    job = JOB_OF_KIND[str(getattr(kind, "value", kind))]
    return int(JOB_SCHEMAS[job].batch_size)  # type: ignore[attr-defined]
