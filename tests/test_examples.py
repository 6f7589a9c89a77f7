"""examples/ runs as users run it: each script in a subprocess, on the bundled models (the tiny test
Qwen3 for qwen3_example.py, a fake Ollama for the sharing example); and every job config under
jobs/examples composes and runs through the runner with the echo backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fake_ollama import FakeOllama
from helpers import EXAMPLES, REPO, read_jsonl
from hydra import compose, initialize_config_dir

from adam.errors import ExitCode
from adam.run.runner import run

SCRIPTS = REPO / "examples"
JOB_CONFIGS = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


def run_example(name: str, *args: str, ok: bool = True, env: dict[str, str] | None = None) -> str:
    """Run examples/<name>.py from the repo root, offline; its stdout (its stderr when ``ok`` is False)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    if not ok:
        assert done.returncode == 1, done.stderr[-3000:]
        return done.stderr
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_example_has_a_job_config_and_an_input() -> None:
    scripts = {p.stem for p in SCRIPTS.glob("*.py")}
    assert scripts == {
        "basic_usage",
        "streaming_example",
        "embedding_example",
        "model_sharing_example",
        "qwen3_example",
    }
    assert scripts == set(JOB_CONFIGS)
    for name in scripts - {"model_sharing_example"}:  # a share job has no input
        assert (EXAMPLES / f"{name}.jsonl").is_file()
        assert f"--config-name {name}" in (SCRIPTS / f"{name}.py").read_text(encoding="utf-8")


def _job_config(name: str, *overrides: str, run_dir: Path):
    with initialize_config_dir(str(EXAMPLES), version_base="1.3"):
        return compose(
            name,
            [*overrides, "hydra.searchpath=[pkg://adam.conf]", f"hydra.run.dir={run_dir}"],
            return_hydra_config=True,
        )


@pytest.mark.parametrize("name", JOB_CONFIGS)
def test_every_job_config_composes_and_its_input_runs(name: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)  # job.input is relative to the repo root, where the docs run it
    cfg = _job_config(name, "backend=echo", run_dir=tmp_path)
    if cfg.job.name == "share":  # the echo backend has no weights to share; the config itself is the point
        assert (cfg.size.name, cfg.share.register) == ("demo", True)
        return
    summary = run(cfg)
    assert summary.exit_code == ExitCode.OK, summary.message
    expected = {r["id"] for r in read_jsonl(REPO / cfg.job.input)}
    assert {r["id"] for r in read_jsonl(tmp_path / "results.jsonl")} == expected


@pytest.mark.slow
def test_basic_usage_answers_on_the_demo_model() -> None:
    out = run_example("basic_usage")
    assert "model: HuggingFaceTB/SmolLM2-135M-Instruct" in out
    assert re.search(r"\[capital\].*\n  -> .*Paris", out)
    assert "[python]" in out


@pytest.mark.slow
def test_streaming_example_prints_pieces() -> None:
    out = run_example("streaming_example", "--max-tokens", "16")
    pieces = int(re.search(r"\((\d+) pieces\)", out).group(1))
    assert out.startswith("[robot] ") and pieces > 1


@pytest.mark.slow
def test_embedding_example_ranks_the_right_documents() -> None:
    out = run_example("embedding_example")
    assert "4 documents, 384 dimensions" in out
    first_hits = re.findall(r"query: .*\n  [\d.]+  \[(\w+)\]", out)
    assert first_hits == ["cat", "rates"]


@pytest.mark.slow
def test_model_sharing_example_registers_and_asks_ollama(fake_ollama: FakeOllama, adam_share_dir: Path) -> None:
    out = run_example("model_sharing_example", "--host", fake_ollama.url)
    assert "GGUF: " + str(adam_share_dir) in out
    assert [b["model"] for b in fake_ollama.bodies("/api/create")] == ["smollm2:135m"]
    digest = re.search(r"sha256: (\w+)", out).group(1)
    assert fake_ollama.calls(f"/api/blobs/sha256:{digest}", "POST")
    assert "Ollama says: You said: What is the capital of France?" in out


@pytest.mark.slow
def test_qwen3_example_shows_both_thinking_modes(tiny_qwen3_dir: Path) -> None:
    out = run_example("qwen3_example", "--path", str(tiny_qwen3_dir), "--max-tokens", "8")
    assert "local: thinking=switch, context" in out
    assert "thinking=False: 8 tokens" in out and "thinking=True: 8 tokens" in out


def test_an_example_without_what_it_needs_ends_in_one_line(tmp_path: Path, closed_port_url: str) -> None:
    """docs/MODEL_MANAGEMENT.md: qwen3_example.py needs a Qwen3, model_sharing_example.py an Ollama server; without
    them each ended in a 30-line traceback (the sharing one after a 20-second export)."""
    env = {"HF_HOME": str(tmp_path / "hf"), "ADAM_SHARE_DIR": str(tmp_path / "store")}
    for name, args, needs in (
        ("qwen3_example", (), "Qwen/Qwen3-0.6B is not in the Hugging Face cache"),
        ("model_sharing_example", ("--host", closed_port_url), f"no Ollama server at {closed_port_url}"),
    ):
        err = run_example(name, *args, ok=False, env=env)
        assert "Traceback" not in err, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"{name}.py: ") and needs in last, err[-3000:]
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.gguf"))  # nothing exported
