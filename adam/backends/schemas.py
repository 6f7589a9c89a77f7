"""Every schema in Hydra's ConfigStore; backend schemas are made from the backends' constructors: defaults once.

A backend's ``__init__`` signature is the one place its keys and defaults are written. This module
turns each signature into the dataclass its ``conf/backend/<name>.yaml`` extends (``base_<name>``), so
a typo in ``backend.<key>`` fails when the config is composed, and ``--cfg job`` shows every default.
The YAML files hold only ``_target_``, interpolations and comments. Importing this module registers
everything; entry points (``__main__``, ModelManager, tests) import it before composing.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from adam.backends.echo import EchoBackend
from adam.backends.huggingface import HuggingFaceBackend
from adam.backends.llamacpp import LlamaCppBackend
from adam.backends.ollama import OllamaBackend
from adam.backends.openai import OpenAIBackend
from adam.paths import scratch_runs_root
from adam.settings.config import AdamConfig, DomainSpec, HardwareSpec, SizeSpec
from adam.settings.job_schemas import JOB_SCHEMAS

BACKENDS: dict[str, type] = {
    "huggingface": HuggingFaceBackend,
    "ollama": OllamaBackend,
    "openai": OpenAIBackend,
    "llamacpp": LlamaCppBackend,
    "echo": EchoBackend,
}
_PLAIN = (bool, int, float, str)


def _field_type(hint: Any) -> Any:
    """The OmegaConf type for a constructor annotation: plain types and enums kept, Optional kept, else Any."""
    if hint in _PLAIN or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and _field_type(args[0]) is not Any:
            return _field_type(args[0]) | None
    return Any


def backend_schema(cls: type) -> type:
    """A dataclass with ``_target_`` and one field per constructor argument, typed and defaulted as the signature."""
    hints = typing.get_type_hints(cls.__init__)
    fields: list[tuple[str, Any, Any]] = [
        ("_target_", str, dataclasses.field(default=f"{cls.__module__}.{cls.__name__}"))
    ]
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = MISSING if param.default is inspect.Parameter.empty else param.default
        if isinstance(default, enum.Enum):
            default = default.value if _field_type(hints.get(name, Any)) is Any else default
        fields.append((name, _field_type(hints.get(name, Any)), dataclasses.field(default=default)))
    schema = dataclasses.make_dataclass(f"{cls.__name__}Conf", fields)
    schema.__module__ = __name__
    schema.__doc__ = f"Arguments of {cls.__module__}.{cls.__name__} (from its signature)."
    return schema


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore, so the YAML files extend them (``defaults: [base_<name>]``)."""
    cs = ConfigStore.instance()
    cs.store(name="adam_schema", node=AdamConfig)
    cs.store(group="size", name="base_size", node=SizeSpec)
    cs.store(group="domain", name="base_domain", node=DomainSpec)
    cs.store(group="hardware", name="base_hardware", node=HardwareSpec)
    for name, schema in JOB_SCHEMAS.items():
        cs.store(group="job", name=f"base_{name}", node=schema)
    for name, cls in BACKENDS.items():
        cs.store(group="backend", name=f"base_{name}", node=backend_schema(cls))


register_configs()


def runs_root(job_name: str) -> str:
    """The folder hydra.run.dir starts with: outputs for a job that leaves results, else a scratch folder."""
    spec = JOB_SCHEMAS.get(str(job_name))
    return "outputs" if spec is None or getattr(spec, "keeps_run_dir", True) else str(scratch_runs_root())


if not OmegaConf.has_resolver("adam_runs_root"):
    OmegaConf.register_new_resolver("adam_runs_root", runs_root)
