"""The shared store and its metadata: convert once, find by Ollama name, never trust a broken entry."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from adam import hashing
from adam.backends.types import WeightsLocation
from adam.errors import AdamError
from adam.sharing import SharedStoreError, gguf_export
from adam.sharing.metadata import adam_version, build_metadata, read_metadata, write_metadata
from adam.sharing.store import SharedStore, default_root, find_shared_gguf


@pytest.fixture
def hf_copy(tmp_path: Path, tiny_models: dict[str, Path]) -> Path:
    """A private copy of the tiny Qwen3, so tests may change it."""
    return Path(shutil.copytree(tiny_models["qwen3"], tmp_path / "hf-qwen3"))


def sample_metadata(**changes: Any) -> dict[str, Any]:
    doc = build_metadata(
        source_backend="huggingface",
        model_id="Qwen/Qwen3-0.6B",
        revision="main",
        files=[{"path": "model.gguf", "sha256": "0" * 64, "size": 10, "role": "gguf"}],
        architecture="qwen3",
        quantization="f16",
        ollama_model="qwen3:0.6b",
    )
    return {**doc, **changes}


def test_metadata_round_trip(tmp_path: Path) -> None:
    doc = sample_metadata()
    path = write_metadata(tmp_path / "metadata.json", doc)
    assert read_metadata(path) == doc
    assert doc["created"].endswith("Z") and doc["schema_version"] == 1
    assert doc["adam_version"] == adam_version() != ""


def test_invalid_metadata_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(SharedStoreError, match="source_backend"):
        write_metadata(tmp_path / "metadata.json", sample_metadata(source_backend="vllm"))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is corrupt: not valid JSON"),
        (json.dumps({"hello": "world"}), "is not an adam shared-model file"),
        (json.dumps([1, 2, 3]), "is not an adam shared-model file"),
    ],
)
def test_corrupt_or_foreign_metadata_is_reported(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "metadata.json"
    path.write_text(content)
    with pytest.raises(SharedStoreError, match=problem) as info:
        read_metadata(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, AdamError)


def test_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAM_SHARE_DIR", str(tmp_path / "env"))
    assert SharedStore().root == tmp_path / "env"
    assert SharedStore(tmp_path / "arg").root == tmp_path / "arg"
    monkeypatch.delenv("ADAM_SHARE_DIR")
    assert default_root().name == "shared" and "adam" in str(default_root())


def test_export_converts_once(tmp_path: Path, hf_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = SharedStore(tmp_path / "store")
    weights = WeightsLocation(path=str(hf_copy), format="hf", model_id="tiny/qwen3", revision="abc123")
    entry = shared.export(weights, dtype="f16", ollama_model="tiny-qwen3")

    assert entry.gguf_path == tmp_path / "store" / entry.key / "model.gguf"
    assert entry.key.endswith("-f16")
    doc = read_metadata(entry.metadata_path)
    assert doc == entry.metadata
    assert doc["source_backend"] == "huggingface"
    assert (doc["model_id"], doc["revision"], doc["architecture"]) == ("tiny/qwen3", "abc123", "qwen3")
    assert doc["ollama_model"] == "tiny-qwen3:latest"
    assert doc["quantization"] == "f16"
    assert entry.sha256 == hashing.file_sha256(entry.gguf_path)
    roles = {Path(f["path"]).name: f["role"] for f in doc["files"]}
    assert roles["model.gguf"] == "gguf" and roles["model.safetensors"] == "hf" and roles["config.json"] == "hf"
    assert "<|im_start|>" in doc["chat_template"]

    # the same model again: no conversion and no re-hashing
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("should not run again")

    monkeypatch.setattr(gguf_export, "export_gguf", refuse)
    monkeypatch.setattr(hashing, "file_sha256", refuse)
    again = SharedStore(tmp_path / "store").export(weights, dtype="f16")
    assert again.gguf_path == entry.gguf_path and again.metadata == entry.metadata


def test_dtype_and_content_pick_the_entry(tmp_path: Path, hf_copy: Path) -> None:
    shared = SharedStore(tmp_path / "store")
    weights = WeightsLocation(path=str(hf_copy), format="hf")
    f16 = shared.export(weights, dtype="f16")
    f32 = shared.export(weights, dtype="f32")
    assert f16.key != f32.key and f16.key[:16] == f32.key[:16]
    config = json.loads((hf_copy / "config.json").read_text())
    (hf_copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    changed = shared.export(weights, dtype="f16")
    assert changed.key != f16.key
    assert len(shared.entries()) == 3


def test_find_by_ollama_model(tmp_path: Path, hf_copy: Path) -> None:
    shared = SharedStore(tmp_path / "store")
    weights = WeightsLocation(path=str(hf_copy), format="hf")
    plain = shared.export(weights, dtype="f32")
    assert plain.ollama_model is None
    assert shared.find_by_ollama_model("tiny-qwen3") is None
    named = shared.export(weights, dtype="f32", ollama_model="tiny-qwen3:latest")  # names the existing entry
    assert named.key == plain.key
    assert read_metadata(named.metadata_path)["ollama_model"] == "tiny-qwen3:latest"
    found = shared.find_by_ollama_model("tiny-qwen3")
    assert found is not None and found.gguf_path == plain.gguf_path
    assert find_shared_gguf("tiny-qwen3:latest", root=tmp_path / "store") == plain.gguf_path
    assert find_shared_gguf("other", root=tmp_path / "store") is None
    assert find_shared_gguf("tiny-qwen3", root=tmp_path / "empty") is None


def test_broken_entries_are_skipped_with_a_warning(
    tmp_path: Path, hf_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = SharedStore(tmp_path / "store")
    good = shared.export(WeightsLocation(path=str(hf_copy), format="hf"), dtype="f32", ollama_model="tiny-qwen3")
    for name, content in {"corrupt": "{oops", "foreign": json.dumps({"model": "x"})}.items():
        (shared.root / name).mkdir()
        (shared.root / name / "metadata.json").write_text(content)
        (shared.root / name / "model.gguf").write_bytes(b"GGUF")
    no_gguf = shared.root / "no-gguf"
    no_gguf.mkdir()
    write_metadata(no_gguf / "metadata.json", sample_metadata(ollama_model="tiny-qwen3:latest"))
    truncated = shared.root / "truncated"
    truncated.mkdir()
    write_metadata(truncated / "metadata.json", sample_metadata(ollama_model="tiny-qwen3:latest"))
    (truncated / "model.gguf").write_bytes(b"GGUF")

    with caplog.at_level(logging.WARNING, logger="adam.sharing.store"):
        assert [e.key for e in shared.entries()] == [good.key]
        found = shared.find_by_ollama_model("tiny-qwen3")
    assert found is not None and found.key == good.key
    skipped = " ".join(r.getMessage() for r in caplog.records)
    for name in ("corrupt", "foreign", "no-gguf", "truncated"):
        assert f"skipping shared model {name}" in skipped
    with pytest.raises(SharedStoreError, match="is corrupt"):
        shared.get("corrupt")


def test_a_broken_entry_is_converted_again(tmp_path: Path, hf_copy: Path) -> None:
    shared = SharedStore(tmp_path / "store")
    weights = WeightsLocation(path=str(hf_copy), format="hf")
    entry = shared.export(weights, dtype="f32")
    entry.metadata_path.write_text("{broken")
    entry.gguf_path.write_bytes(b"")
    again = shared.export(weights, dtype="f32")
    assert again.key == entry.key
    assert again.gguf_path.stat().st_size == again.metadata["files"][0]["size"] > 0


def test_an_existing_gguf_is_linked_not_copied(tmp_path: Path, tiny_exports: Any) -> None:
    source = tmp_path / "blobs" / f"sha256-{tiny_exports('qwen2', 'f32').sha256}"
    source.parent.mkdir()
    shutil.copy(tiny_exports("qwen2", "f32").path, source)
    shared = SharedStore(tmp_path / "store")
    entry = shared.export(WeightsLocation(path=str(source), format="gguf", model_id="tiny-qwen2"), ollama_model="q2")
    assert os.path.samefile(entry.gguf_path, source)
    doc = entry.metadata
    assert (doc["source_backend"], doc["architecture"], doc["quantization"]) == ("ollama", "qwen2", "f32")
    assert doc["files"][0]["sha256"] == tiny_exports("qwen2", "f32").sha256
    assert doc["ollama_model"] == "q2:latest"
    assert shared.find_by_ollama_model("q2") == entry
    template, params = entry.ollama_template()
    assert "<|im_start|>" in template and params["stop"] == ["<|im_start|>", "<|im_end|>"]


def test_hub_blob_names_are_their_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = tmp_path / "blobs" / ("ab" * 32)
    blob.parent.mkdir()
    blob.write_bytes(b"weights")
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "model.safetensors").symlink_to(blob)
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(hashing, "file_sha256", lambda path: "c" * 64)
    digest = SharedStore(tmp_path / "store").source_hash(WeightsLocation(path=str(snapshot), format="hf"))
    expected = hashlib.sha256(f"config.json\0{'c' * 64}\nmodel.safetensors\0{'ab' * 32}\n".encode()).hexdigest()
    assert digest == expected


def test_unshareable_inputs(tmp_path: Path) -> None:
    shared = SharedStore(tmp_path / "store")
    with pytest.raises(SharedStoreError, match="format 'onnx'"):
        shared.export(WeightsLocation(path=str(tmp_path), format="onnx"))
    with pytest.raises(SharedStoreError, match=r"config\.json is missing"):
        shared.export(WeightsLocation(path=str(tmp_path), format="hf"))
    with pytest.raises(SharedStoreError, match="no such GGUF file"):
        shared.export(WeightsLocation(path=str(tmp_path / "x.gguf"), format="gguf"))
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(SharedStoreError, match="not a readable GGUF file"):
        shared.export(WeightsLocation(path=str(tmp_path / "bad.gguf"), format="gguf"))


def test_an_hf_dir_converted_from_a_gguf_shares_that_gguf(
    tmp_path: Path, hf_copy: Path, tiny_exports: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = tiny_exports("qwen3", "q8_0")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the original GGUF is shared as it is")

    monkeypatch.setattr(gguf_export, "export_gguf", refuse)
    monkeypatch.setattr(hashing, "file_sha256", refuse)
    extra = {"source": "gguf", "gguf": str(original.path), "sha256": original.sha256}
    weights = WeightsLocation(path=str(hf_copy), format="hf", model_id="demo", extra=extra)
    entry = SharedStore(tmp_path / "store").export(weights, dtype="f16", ollama_model="demo")
    assert os.path.samefile(entry.gguf_path, original.path)
    assert entry.sha256 == original.sha256
    assert (entry.metadata["source_backend"], entry.metadata["quantization"]) == ("huggingface", "q8_0")
