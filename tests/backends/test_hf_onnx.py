"""backend.runtime=onnx: MiniLM exported once to ONNX Runtime gives torch's vectors; int8, the cache, the refusals.

The export (about 10 s) lands in the session's private adam cache and is shared by every test here and
by the CLI test, which runs `python -m adam` with that cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import REPO, compose_cfg, read_jsonl, write_jsonl
from hydra.errors import ConfigCompositionException

from adam.backends import hf_onnx
from adam.backends.huggingface import HuggingFaceBackend
from adam.backends.types import Embedding
from adam.errors import ConfigError
from adam.planning.sizing import resolve_auto
from adam.run.runner import build_backend, run
from adam.settings.config import OnnxQuantization
from bench.embed import make_texts

pytestmark = pytest.mark.slow

# the bench's mix (short sentences to paragraphs past MiniLM's 256 tokens), and a text alone in its batch
TEXTS = [*make_texts(40, seed=3), "one", "x " * 400]


def make_backend(*overrides: str) -> HuggingFaceBackend:
    backend = build_backend(compose_cfg("job=embed", "size=minilm", "hardware=cpu", *overrides))
    assert isinstance(backend, HuggingFaceBackend)
    return backend


def vectors(backend: HuggingFaceBackend, texts: list[str]) -> tuple[np.ndarray, list[Embedding]]:
    out = backend.embed(texts)
    assert all(isinstance(e, Embedding) for e in out), out
    return np.stack([e.vector for e in out]), out  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def torch_vectors() -> tuple[np.ndarray, list[Embedding]]:
    return vectors(make_backend(), TEXTS)


@pytest.fixture(scope="module")
def onnx_vectors() -> tuple[np.ndarray, list[Embedding]]:
    return vectors(make_backend("backend.runtime=onnx"), TEXTS)


def test_onnx_gives_torchs_vectors_for_every_text(torch_vectors, onnx_vectors) -> None:
    (ours, meta), (ref, ref_meta) = onnx_vectors, torch_vectors
    cosine = (ours * ref).sum(axis=1)  # both are unit vectors
    assert cosine.min() >= 0.9999, cosine.min()
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert [(e.tokens, e.truncated) for e in meta] == [(e.tokens, e.truncated) for e in ref_meta]
    assert meta[-1].truncated and meta[-1].tokens == 256  # the size's max_seq_length, as on torch
    alone, _ = vectors(make_backend("backend.runtime=onnx"), [TEXTS[0]])  # no padding: the same vector
    assert float(alone[0] @ ours[0]) >= 0.99999


def test_int8_moves_vectors_within_the_issues_bounds(onnx_vectors) -> None:
    backend = make_backend("backend.runtime=onnx", "backend.quantization=int8")
    q, _ = vectors(backend, TEXTS)
    cosine = (q * onnx_vectors[0]).sum(axis=1)
    assert np.median(cosine) >= 0.99 and cosine.min() >= 0.97, (np.median(cosine), cosine.min())
    assert cosine.min() < 0.99999  # it is quantized: vectors do move
    info = backend.info()
    assert info["runtime"] == "onnx" and info["quantization"] == "int8"
    assert info["onnx_file"].endswith("model.int8.onnx")


def test_the_export_is_cached_by_the_weights_hash_and_reused(onnx_vectors, monkeypatch, adam_cache_dir) -> None:
    from adam.backends.loaded_models import loaded_models

    first = make_backend("backend.runtime=onnx")
    first.load()
    path = Path(first.info()["onnx_file"])
    sha = hf_onnx.weights_sha256(first.model_dir(), adam_cache_dir)
    assert path == adam_cache_dir / "onnx" / f"v{hf_onnx.EXPORT_VERSION}" / sha[:32] / "model.onnx"
    loaded_models.clear()

    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(hf_onnx, "export_float32", no_export)
    again, _ = vectors(make_backend("backend.runtime=onnx"), TEXTS[:3])
    assert np.allclose(again, onnx_vectors[0][:3], atol=1e-6)


@pytest.mark.parametrize("model_type", ["distilbert", "mpnet", "roberta", "xlm-roberta"])
def test_the_other_allowed_encoders_export_to_torchs_hidden_states(model_type: str, tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch
    from transformers import AutoConfig, AutoModel

    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    if model_type == "distilbert":
        shape = dict(dim=32, hidden_dim=64, n_layers=2, n_heads=4)
    torch.manual_seed(0)
    model = AutoModel.from_config(AutoConfig.for_model(model_type, vocab_size=100, **shape)).eval()
    model.save_pretrained(tmp_path)
    hf_onnx.check_folder(tmp_path, model_type)  # allowed
    hf_onnx.export_float32(tmp_path, tmp_path / "model.onnx")
    ids = torch.randint(3, 100, (3, 40))
    mask = torch.ones_like(ids)
    mask[1, 20:] = mask[2, 5:] = 0  # padded rows: only their real tokens count
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    real = mask.numpy()[..., None].astype(bool)
    assert np.abs((got - ref) * real).max() < 1e-4


def test_the_weights_hash_follows_the_weights_and_config(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "README.md").write_text("notes")
    base = hf_onnx.weights_sha256(folder, tmp_path)
    (folder / "README.md").write_text("other notes")
    assert hf_onnx.weights_sha256(folder, tmp_path) == base
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    changed = hf_onnx.weights_sha256(folder, tmp_path)
    (folder / "model.safetensors").write_bytes(b"weightz")
    assert len({base, changed, hf_onnx.weights_sha256(folder, tmp_path)}) == 3


def test_an_export_cut_short_leaves_nothing_a_later_run_would_load(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "config.json").write_text('{"model_type": "bert"}')

    def half(folder: Path, dest: Path) -> None:
        dest.write_bytes(b"half an onnx file")
        raise ConfigError("cannot export: killed")

    monkeypatch.setattr(hf_onnx, "export_float32", half)
    with pytest.raises(ConfigError, match="killed"):
        hf_onnx.ensure_export(folder, tmp_path, OnnxQuantization.none)
    directory = hf_onnx.export_dir(folder, tmp_path)
    assert not directory.exists() or list(directory.iterdir()) == []
    monkeypatch.setattr(hf_onnx, "export_float32", lambda folder, dest: dest.write_bytes(b"whole"))
    path = hf_onnx.ensure_export(folder, tmp_path, OnnxQuantization.none)
    assert path.read_bytes() == b"whole" and [p.name for p in directory.iterdir()] == ["model.onnx"]


def test_decoder_embedders_and_generators_are_refused_before_any_model_loads(tiny_qwen3_dir: Path) -> None:
    refused = r"encoder embedders \(bert, distilbert, mpnet, roberta, xlm-roberta\) only; size=qwen3_embedding_0_6b is"
    with pytest.raises(ConfigError, match=refused):
        build_backend(compose_cfg("job=embed", "size=qwen3_embedding_0_6b", "backend.runtime=onnx"))
    local = build_backend(
        compose_cfg("job=embed", "size=local", f"size.path={tiny_qwen3_dir}", "size.kind=embed", "hardware=cpu",
                    "backend.runtime=onnx")
    )  # fmt: skip
    with pytest.raises(ConfigError, match="is a qwen3 model") as err:
        local.check_available()  # no architecture in the size: config.json's model_type decides
    assert "\n" not in str(err.value) and local._loaded is None and local._onnx is None
    with pytest.raises(ConfigError, match="runs embedding models only"):
        build_backend(compose_cfg("size=demo", "backend.runtime=onnx"))
    with pytest.raises(ConfigError, match=r"backend\.quantization=int8 needs backend\.runtime=onnx"):
        make_backend("backend.quantization=int8")
    with pytest.raises(ConfigError, match="on the CPU"):
        make_backend("backend.runtime=onnx", "hardware.dtype=bfloat16").check_available()
    with pytest.raises(ConfigCompositionException):
        compose_cfg("job=embed", "backend.runtime=onx")  # a typed key: a typo fails when composing


def test_resume_refuses_a_changed_runtime_in_one_line(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS[:4])])
    base = ("job=embed", "size=minilm", "hardware=cpu", f"job.input={src}", "job.progress=false")
    first = run(compose_cfg(*base, run_dir=tmp_path / "a"))
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert manifest["backend"]["runtime"] == "torch" and manifest["backend"]["quantization"] == "none"
    with pytest.raises(ConfigError) as err:
        run(compose_cfg(*base, "backend.runtime=onnx", f"job.resume={first.run_dir}", run_dir=tmp_path / "b"))
    message = str(err.value)
    assert "\n" not in message
    assert "its vectors came from runtime=torch (quantization=none)" in message
    assert "resume with backend.runtime=torch backend.quantization=none" in message
    assert json.loads((first.run_dir / "manifest.json").read_text())["status"] == "completed"


def test_the_store_keeps_onnx_vectors_apart() -> None:
    from adam.engine import Engine

    engine = Engine(make_backend("backend.runtime=onnx"))
    assert engine.store_key({"model": "m", "runtime": "torch", "quantization": "none"}) == "m"
    assert engine.store_key({"model": "m", "runtime": "onnx", "quantization": "none"}) == "m+onnx"
    assert engine.store_key({"model": "m", "runtime": "onnx", "quantization": "int8"}) == "m+onnx-int8"


def test_info_and_size_auto_mention_onnx_for_an_encoder_on_a_cpu(monkeypatch, tmp_path: Path) -> None:
    def suggestions(*overrides: str) -> list[str]:
        where = tmp_path / "_".join(overrides).replace("=", "-")
        summary = run(compose_cfg("job=info", "hardware=cpu", *overrides, run_dir=where))
        return json.loads((summary.run_dir / "info.json").read_text())["suggestions"]

    assert any("backend.runtime=onnx" in s for s in suggestions("size=minilm"))
    assert suggestions("size=minilm", "backend.runtime=onnx") == []
    assert suggestions("size=qwen3_embedding_0_6b") == []  # a decoder: torch only
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_cfg("size=auto", "job=embed", "hardware=cpu")
    resolve_auto(cfg, cached=lambda spec: False)
    assert cfg.size.name == "minilm" and "backend.runtime=onnx" in cfg.size.selected_by
    torch_picks = compose_cfg("size=auto", "job=embed", "hardware=cpu", "backend.runtime=onnx")
    resolve_auto(torch_picks, cached=lambda spec: False)
    assert "backend.runtime=onnx" not in torch_picks.size.selected_by  # already on it


def test_the_cli_embeds_on_onnx_offline(tmp_path: Path, onnx_vectors) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS[:6])])
    done = subprocess.run(
        [sys.executable, "-m", "adam", "job=embed", "size=minilm", "backend.runtime=onnx", f"job.input={src}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[torch.onnx]" not in done.stdout
    rows = read_jsonl(tmp_path / "run" / "results.jsonl")
    assert sorted(r["id"] for r in rows) == [f"t{i}" for i in range(6)]  # in batch order: sorted by length
    table = pq.read_table(tmp_path / "run" / "embeddings.parquet").to_pylist()
    got = {r["id"]: np.asarray(r["vector"], dtype=np.float32) for r in table}
    for i in range(6):
        assert float(got[f"t{i}"] @ onnx_vectors[0][i]) >= 0.9999
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["backend"]["runtime"] == "onnx" and manifest["backend"]["runtime"] == "onnx"
    assert manifest["backend"]["quantization"] == "none" and "onnxruntime" in manifest["versions"]
