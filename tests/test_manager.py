"""ModelManager composes the CLI's config and drives the same backends."""

from __future__ import annotations

import pytest
from helpers import compose_cfg
from hydra import compose, initialize_config_module

from adam import ModelManager
from adam.engine import Settings
from adam.errors import ConfigError


def test_manager_generates_streams_and_embeds_with_echo() -> None:
    m = ModelManager(model_type="echo", model_size="qwen3_small", domain="code")
    assert m.config.domain.name == "code" and m.config.size.hf_id == "Qwen/Qwen3-0.6B"
    prompt = "alpha beta gamma delta"
    assert m.generate_response(prompt=prompt, max_tokens=2) == "alpha beta"
    assert "".join(m.generate_stream(prompt=prompt, max_tokens=50)) == m.generate_response(prompt, max_tokens=50)
    gen = m.generate(prompt, max_tokens=3)
    assert (gen.completion_tokens, gen.finish_reason) == (3, "length")
    vec = m.embed("the cat sat")
    batch = m.batch_embed(["the cat sat", "stock markets fell"])
    assert vec == batch[0] and len(vec) == m.config.backend.dimensions
    assert m.get_model_info()["backend"] == "echo"


def test_manager_rejects_unknown_params_and_options() -> None:
    m = ModelManager(model_type="echo", model_size="qwen3_small")
    with pytest.raises(TypeError, match="max_token"):
        m.generate_response("x", max_token=3)
    with pytest.raises(ConfigError, match="qwen3_tiny"):
        ModelManager(model_type="echo", model_size="qwen3_tiny")


def test_manager_works_inside_a_running_hydra_app() -> None:
    import adam.backends.schemas  # noqa: F401

    with initialize_config_module("adam.conf", version_base="1.3"):
        outer = compose("config", overrides=["size=qwen3_xl"])
        m = ModelManager(model_type="echo", model_size="qwen3_small")
        assert m.config.size.name == "qwen3_small"
        # the app's own Hydra state is intact afterwards
        assert compose("config", overrides=["size=qwen3_medium"]).size.name == "qwen3_medium"
    assert outer.size.name == "qwen3_xl"


def test_request_settings_resolve_record_then_job_then_domain() -> None:
    cfg = compose_cfg("domain=code", "job.temperature=0.5")
    settings = Settings.from_config(cfg.job, cfg.domain)
    req = settings.request(prompt="hi", params={"max_tokens": 7})
    assert req.max_tokens == 7  # record
    assert req.temperature == 0.5  # job
    assert req.top_p == cfg.domain.top_p  # domain
    assert req.messages[0] == {"role": "system", "content": cfg.domain.system_prompt}
    own = settings.request(messages=[{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"}])
    assert [m["content"] for m in own.messages] == ["mine", "hi"]
    raw = settings.request(prompt="continue this", chat=False, system_prompt="ignored")
    assert raw.prompt == "continue this" and raw.messages == ()
