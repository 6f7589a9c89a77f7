"""Model sharing end to end: HF weights into Ollama (job=share), Ollama using the store, Ollama's GGUF into HF."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from fake_ollama import FakeOllama
from helpers import compose_cfg, read_jsonl, write_jsonl
from hydra.utils import instantiate

from adam.engine import Settings
from adam.errors import ExitCode
from adam.run.runner import run
from adam.sharing.metadata import read_metadata

TINY_TAG = "tiny-qwen3:latest"
MODEL_LAYER = "application/vnd.ollama.image.model"


def _share_overrides(tiny: Path, fake: FakeOllama, *extra: str) -> list[str]:
    return [
        "job=share",
        "size=local",
        f"size.path={tiny}",
        "hardware=cpu",
        f"share.ollama_model={TINY_TAG}",
        f"share.ollama.host={fake.url}",
        "share.dtype=f32",
        *extra,
    ]


def test_share_job_writes_a_gguf_once_and_registers_it_with_ollama(
    tmp_path: Path, tiny_qwen3_dir: Path, fake_ollama: FakeOllama
) -> None:
    import gguf

    first = run(compose_cfg(*_share_overrides(tiny_qwen3_dir, fake_ollama), run_dir=tmp_path / "one"))
    assert first.exit_code == ExitCode.OK
    meta = read_metadata(tmp_path / "one" / "shared_model.json")  # validated against the schema
    (gguf_file,) = [f for f in meta["files"] if f["role"] == "gguf"]
    path = Path(gguf_file["path"])
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert gguf_file["sha256"] == digest.removeprefix("sha256:") and gguf_file["size"] == path.stat().st_size
    assert (meta["source_backend"], meta["architecture"], meta["ollama_model"]) == ("huggingface", "qwen3", TINY_TAG)
    reader = gguf.GGUFReader(path)
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "qwen3"

    # The blob went up once, after a HEAD, with the digest of the file; then create named it.
    assert [r.method for r in fake_ollama.requests if r.path == f"/api/blobs/{digest}"] == ["HEAD", "POST"]
    (create,) = fake_ollama.bodies("/api/create")
    assert create["model"] == TINY_TAG and create["files"] == {path.name: digest}
    assert "<|im_start|>" in create["template"] and "<|im_end|>" in create["parameters"]["stop"]
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert manifest["shared"]["ollama_model"] == TINY_TAG and manifest["shared"]["digest"] == digest

    # Sharing again converts nothing and uploads nothing: the store and the server already have it.
    mtime = path.stat().st_mtime_ns
    second = run(compose_cfg(*_share_overrides(tiny_qwen3_dir, fake_ollama), run_dir=tmp_path / "two"))
    assert second.exit_code == ExitCode.OK
    assert path.stat().st_mtime_ns == mtime
    assert [r.method for r in fake_ollama.requests if r.path == f"/api/blobs/{digest}"] == ["HEAD", "POST", "HEAD"]
    assert len(fake_ollama.bodies("/api/create")) == 2


def test_ollama_creates_a_shared_model_instead_of_pulling_it(
    tmp_path: Path, tiny_qwen3_dir: Path, fake_ollama: FakeOllama
) -> None:
    run(compose_cfg(*_share_overrides(tiny_qwen3_dir, fake_ollama, "share.register=false"), run_dir=tmp_path / "s"))
    assert fake_ollama.requests == []  # register=false: the store only
    fake_ollama.models.clear()

    cfg = compose_cfg(
        "backend=ollama",
        "size=local",
        f"size.path={tiny_qwen3_dir}",
        f"size.ollama_tag={TINY_TAG}",
        f"backend.host={fake_ollama.url}",
    )
    backend = instantiate(cfg.backend, _convert_="object")
    backend.check_available()
    assert fake_ollama.calls("/api/pull") == []
    (create,) = fake_ollama.bodies("/api/create")
    assert create["model"] == TINY_TAG
    assert backend.generate_one(Settings(max_tokens=8).request(prompt="hello")).text == "You said: hello"


def test_share_with_ollama_after_a_run(tmp_path: Path, tiny_qwen3_dir: Path, fake_ollama: FakeOllama) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "hi"}])
    cfg = compose_cfg(
        "size=local",
        f"size.path={tiny_qwen3_dir}",
        "hardware=cpu",
        f"job.input={src}",
        "job.max_tokens=4",
        "share_with_ollama=true",
        f"share.ollama_model={TINY_TAG}",
        f"share.ollama.host={fake_ollama.url}",
        run_dir=tmp_path / "run",
    )
    summary = run(cfg)
    assert summary.exit_code == ExitCode.OK and len(read_jsonl(tmp_path / "run" / "results.jsonl")) == 1
    assert fake_ollama.bodies("/api/create")[0]["model"] == TINY_TAG
    assert (tmp_path / "run" / "shared_model.json").exists()


def test_share_needs_an_ollama_name(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    from adam.errors import ConfigError

    with pytest.raises(ConfigError, match=r"share\.ollama_model"):
        run(compose_cfg("job=share", "size=local", f"size.path={tiny_qwen3_dir}", run_dir=tmp_path / "r"))


@pytest.fixture
def ollama_models_dir(tmp_path: Path, tiny_qwen3_dir: Path) -> Path:
    """An Ollama models dir holding the tiny model as Ollama keeps a pulled one: manifest -> blob."""
    from adam.sharing.gguf_export import export_gguf

    models = tmp_path / "ollama-models"
    exported = export_gguf(tiny_qwen3_dir, tmp_path / "tiny.gguf", dtype="f32")
    blob_hex = exported.sha256
    (models / "blobs").mkdir(parents=True)
    os.link(exported.path, models / "blobs" / f"sha256-{blob_hex}")
    manifest = models / "manifests" / "registry.ollama.ai" / "library" / "tiny-qwen3" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": "sha256:" + "0" * 64,
                    "size": 2,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.ollama.image.model",
                        "digest": f"sha256:{blob_hex}",
                        "size": exported.size,
                    }
                ],
            }
        )
    )
    return models


def test_huggingface_loads_the_gguf_ollama_already_pulled(
    ollama_models_dir: Path, tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch, fresh_models: None
) -> None:
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama_models_dir))
    common = ["hardware=cpu", f"size.ollama_tag={TINY_TAG}"]
    from_ollama = instantiate(compose_cfg("size=local", "size.source=ollama", *common).backend, _convert_="object")
    original = instantiate(
        compose_cfg("size=local", f"size.path={tiny_qwen3_dir}", *common).backend, _convert_="object"
    )
    greedy = Settings(max_tokens=12, temperature=0.0)  # the two loads may differ in the last bits: no sampling
    requests = [greedy.request(prompt=p) for p in ("hello there", "the quick brown fox", "a")]
    assert [g.text for g in from_ollama.generate(requests)] == [g.text for g in original.generate(requests)]
    info = from_ollama.info()
    blob = next((ollama_models_dir / "blobs").iterdir())
    assert info["source"] == "gguf" and blob.name == f"sha256-{info['sha256']}"


def test_source_ollama_without_the_model_pulled_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from adam.errors import ModelNotFoundError

    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    backend = instantiate(compose_cfg("size=qwen3_small", "size.source=ollama").backend, _convert_="object")
    with pytest.raises(ModelNotFoundError, match=r"ollama pull qwen3:0\.6b"):
        backend.check_available()
