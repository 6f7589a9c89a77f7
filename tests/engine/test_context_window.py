"""One context window for every rule: with size.long_context the prompt check, info() and Ollama's num_ctx agree."""

from __future__ import annotations

import json
from pathlib import Path

from fake_ollama import FakeOllama, Model
from helpers import compose_cfg, read_jsonl, write_jsonl

from adam.errors import ExitCode
from adam.run.runner import build_backend, run

LONG = ["size=qwen3_large", "size.long_context=true"]  # Qwen3-4B: 32,768 native, 131,072 with YaRN


def _long_prompt(words: int) -> list[dict]:
    return [{"id": "long", "prompt": " ".join(f"w{i}" for i in range(words))}, {"id": "short", "prompt": "hi"}]


def test_ollama_generates_a_prompt_that_fits_only_the_long_context(
    fake_ollama: FakeOllama, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url)
    fake_ollama.models["qwen3:4b"] = Model("qwen3:4b")
    # ~45,000 estimated tokens (4 characters a token): over 32,768, well under 131,072
    src = write_jsonl(tmp_path / "in.jsonl", _long_prompt(30_000))
    common = ["backend=ollama", "backend.pull=never", f"job.input={src}", "job.max_tokens=16"]
    short = run(compose_cfg(*common, "size=qwen3_large", run_dir=tmp_path / "short"))
    assert [e["error"]["code"] for e in read_jsonl(short.run_dir / "errors.jsonl")] == ["context_overflow"]
    assert "32752 that fit" in read_jsonl(short.run_dir / "errors.jsonl")[0]["error"]["message"]
    long = run(compose_cfg(*common, *LONG, run_dir=tmp_path / "long"))
    assert long.exit_code == ExitCode.OK
    assert sorted(r["id"] for r in read_jsonl(long.run_dir / "results.jsonl")) == ["long", "short"]
    assert {b["options"]["num_ctx"] for b in fake_ollama.bodies("/api/chat")} == {32768, 131072}
    assert build_backend(compose_cfg("backend=ollama", *LONG)).info()["context_length"] == 131072


def test_huggingface_checks_prompts_against_the_long_context_and_reports_it(
    tiny_qwen3_dir: Path, tmp_path: Path
) -> None:
    sizes = ["size=local", f"size.path={tiny_qwen3_dir}", "size.context_length=64", "size.long_context_length=512"]
    common = ["hardware=cpu", f"job.input={write_jsonl(tmp_path / 'in.jsonl', _long_prompt(100))}", "job.max_tokens=4"]
    short = run(compose_cfg(*sizes, *common, run_dir=tmp_path / "short"))
    assert [e["error"]["code"] for e in read_jsonl(short.run_dir / "errors.jsonl")] == ["context_overflow"]
    long = run(compose_cfg(*sizes, "size.long_context=true", *common, run_dir=tmp_path / "long"))
    assert long.exit_code == ExitCode.OK and len(read_jsonl(long.run_dir / "results.jsonl")) == 2
    backend = build_backend(compose_cfg(*sizes, "size.long_context=true", "hardware=cpu"))
    assert backend.info()["context_length"] == backend.context_window() == 512


def test_info_reports_the_long_context_on_both_backends(tmp_path: Path, closed_port_url: str) -> None:
    for backend in ("huggingface", "ollama"):
        overrides = ["job=info", f"backend={backend}", *LONG]
        if backend == "ollama":
            overrides.append(f"backend.host={closed_port_url}")  # info needs no server
        summary = run(compose_cfg(*overrides, run_dir=tmp_path / backend))
        assert summary.exit_code == ExitCode.OK
        doc = json.loads((summary.run_dir / "info.json").read_text())
        assert doc["backend"]["context_length"] == 131072, backend
        assert doc["context"]["effective"] == 131072, backend
