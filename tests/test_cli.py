"""python -m adam in a subprocess, the way users run it: exit statuses, outputs, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLES, REPO, read_jsonl, write_jsonl


def adam(*args: str, stdin: str | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run `python -m adam ARGS` and capture everything."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "adam", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_help_and_cfg_do_not_import_torch() -> None:
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['adam', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('adam', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))\n"
    )
    for args in (["--help"], ["--cfg", "job"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=REPO)
        assert "HEAVY=" in done.stderr
        assert done.stderr.rsplit("HEAVY=", 1)[1] == "", done.stderr
    help_text = adam("--help").stdout
    assert "size: auto, demo, local, minilm, qwen3_embedding_0_6b" in help_text
    assert "job: embed, generate, info, search, share" in help_text
    assert "base_" not in help_text  # the schemas are not options


def test_cfg_job_prints_the_composed_config() -> None:
    done = adam("--cfg", "job", "size=qwen3_xl")
    assert done.returncode == 0
    assert "hf_id: Qwen/Qwen3-8B" in done.stdout and "ollama_tag: qwen3:8b" in done.stdout


def test_echo_generate_end_to_end(tmp_path: Path) -> None:
    done = adam("backend=echo", f"job.input={EXAMPLES / 'prompts.jsonl'}", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    results = read_jsonl(tmp_path / "results.jsonl")
    assert [r["id"] for r in sorted(results, key=lambda r: r["id"])] == sorted(
        r["id"] for r in read_jsonl(EXAMPLES / "prompts.jsonl")
    )
    assert (tmp_path / "adam.log").exists()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "completed"


def test_standard_input(tmp_path: Path) -> None:
    done = adam(
        "backend=echo", "job.input=-", f"hydra.run.dir={tmp_path}", stdin='{"id": "s", "prompt": "from stdin"}\n'
    )
    assert done.returncode == 0, done.stderr
    assert read_jsonl(tmp_path / "results.jsonl")[0]["text"] == "from stdin"


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["job.batchsize=8"], 1, "job.batchsize"),
        (["job.input=missing.jsonl"], 1, "missing.jsonl does not exist"),
        (["size=local"], 1, "size.path"),
        (["backend.unavailable=true"], 4, "unavailable"),
    ],
)
def test_exit_statuses_and_one_line_errors(tmp_path: Path, args: list[str], code: int, fragment: str) -> None:
    done = adam("backend=echo", *args, f"hydra.run.dir={tmp_path}")
    assert done.returncode == code, done.stderr
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_partial_failure_exits_3(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "ok"}, "not json"])
    done = adam("backend=echo", f"job.input={src}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 3, done.stderr
    assert len(read_jsonl(tmp_path / "run" / "errors.jsonl")) == 1


def test_multirun_gives_one_dir_per_job(tmp_path: Path) -> None:
    done = adam(
        "-m",
        "backend=echo",
        "size=qwen3_small,qwen3_medium",
        f"job.input={EXAMPLES / 'prompts.txt'}",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr
    for num, size in enumerate(["qwen3_small", "qwen3_medium"]):
        manifest = json.loads((tmp_path / str(num) / "manifest.json").read_text())
        assert manifest["config"]["size"]["name"] == size
        assert len(read_jsonl(tmp_path / str(num) / "results.jsonl")) == 3


def test_default_paths_stay_under_outputs(tmp_path: Path) -> None:
    done = adam("backend=echo", f"job.input={EXAMPLES / 'prompts.txt'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "outputs" / "generate").iterdir()
    assert (run_dir / "results.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]


@pytest.mark.slow
def test_default_job_runs_the_real_demo_model(tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "in.jsonl", [{"id": "capital", "prompt": "What is the capital of France?", "temperature": 0}]
    )
    done = adam(f"job.input={src}", f"hydra.run.dir={tmp_path / 'run'}", "job.max_tokens=24")
    assert done.returncode == 0, done.stderr
    (result,) = read_jsonl(tmp_path / "run" / "results.jsonl")
    assert "Paris" in result["text"]
    assert result["usage"]["completion_tokens"] > 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["backend"]["source"] == "gguf" and len(manifest["backend"]["sha256"]) == 64
