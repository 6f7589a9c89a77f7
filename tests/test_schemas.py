"""Backend defaults are written once, in the constructor: the schema comes from it and the YAML holds no values."""

from __future__ import annotations

import inspect
from importlib import resources

import pytest
import yaml
from helpers import compose_cfg
from omegaconf import OmegaConf

from adam.backends.schemas import BACKENDS, backend_schema
from adam.settings.catalog import CONFIG_MODULE, backends


def _yaml(name: str) -> dict:
    return yaml.safe_load(resources.files(CONFIG_MODULE).joinpath("backend", f"{name}.yaml").read_text())


def test_every_backend_option_has_a_schema_from_its_class() -> None:
    assert set(BACKENDS) == set(backends())


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_a_backend_yaml_holds_only_its_target_and_interpolations(name: str) -> None:
    doc = _yaml(name)
    literal = {k: v for k, v in doc.items() if k not in ("defaults", "_target_") and "${" not in str(v)}
    assert literal == {}, f"conf/backend/{name}.yaml writes a value; defaults belong in the constructor"
    assert doc["_target_"] == f"{BACKENDS[name].__module__}.{BACKENDS[name].__name__}"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_the_composed_defaults_are_the_constructors(name: str) -> None:
    composed = OmegaConf.to_container(compose_cfg(f"backend={name}").backend, resolve=False)
    params = inspect.signature(BACKENDS[name].__init__).parameters
    assert set(composed) - {"_target_"} == set(params) - {"self"}
    interpolated = {k for k, v in _yaml(name).items() if "${" in str(v)}
    for key, param in params.items():
        if key in ("self", *interpolated):
            continue
        default = getattr(param.default, "value", param.default)  # an enum default is composed as its value
        assert getattr(composed[key], "value", composed[key]) == default, f"backend.{key}"


def test_share_ollama_is_the_ollama_backend_plus_only_what_differs() -> None:
    written = yaml.safe_load(resources.files(CONFIG_MODULE).joinpath("config.yaml").read_text())["share"]["ollama"]
    params = inspect.signature(BACKENDS["ollama"].__init__).parameters
    for key, value in written.items():
        default = getattr(params[key].default, "value", params[key].default)
        assert value != default, f"share.ollama.{key} repeats the constructor's default"
    composed = compose_cfg("share.ollama.host=http://gpu-box:11434").share.ollama
    assert composed.host == "http://gpu-box:11434" and composed.pull == "never" and composed.concurrency == 4


def test_a_typo_in_a_backend_key_fails_at_compose() -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="concurency"):
        compose_cfg("backend=ollama", "backend.concurency=8")


def test_the_schema_types_come_from_the_annotations() -> None:
    fields = {f: t for f, t in backend_schema(BACKENDS["ollama"]).__annotations__.items()}
    assert fields["concurrency"] is int and fields["timeout"] is float
    with pytest.raises(Exception, match="concurrency"):
        compose_cfg("backend=ollama", "backend.concurrency=many")
