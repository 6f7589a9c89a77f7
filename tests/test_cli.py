"""python -m adam in a subprocess, the way users run it: exit statuses, outputs, lazy imports."""

from __future__ import annotations

import json
import os
import shutil
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
    assert "size: auto, demo, gemma2_2b, gemma2_9b, llama3_1_8b, llama3_70b, llama3_8b, local, minilm" in help_text
    assert "job: embed, generate, info, merge, search, serve, share" in help_text
    assert "base_" not in help_text  # the schemas are not options


_COUNT_LOADS = (
    "import runpy, sys\n"
    "from hydra._internal import config_repository as repo\n"
    "loads = []\n"
    "init = repo.CachingConfigRepository.__init__\n"
    "def counted(self, *a, **k):\n    loads.append(1)\n    init(self, *a, **k)\n"
    "repo.CachingConfigRepository.__init__ = counted\n"
    "sys.argv = ['adam', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('adam', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "sys.stderr.write(f'LOADS={len(loads)}')\n"
)


def _config_loads(*args: str) -> tuple[int, str]:
    """How many times `python -m adam ARGS` builds Hydra's config repository (each one deep-copies every schema)."""
    done = subprocess.run([sys.executable, "-c", _COUNT_LOADS, *args], capture_output=True, text=True, cwd=REPO)
    assert "LOADS=" in done.stderr, done.stderr[-2000:]
    return int(done.stderr.rsplit("LOADS=", 1)[1]), done.stdout


def test_help_loads_the_config_once_however_many_options_there_are() -> None:
    # Hydra's own help listed every config group, one repository copy each: ~80 with 30 sizes, 2 s of --help.
    loads, out = _config_loads("--help")
    assert "== Config groups" in out and "size: auto, demo" in out
    assert loads == 1, f"--help built the config repository {loads} times"
    loads, out = _config_loads("--help", "size=qwen3_xl")  # overrides still reach the shown config
    assert loads == 1 and "hf_id: Qwen/Qwen3-8B" in out
    loads, out = _config_loads("--hydra-help")  # Hydra's own help, whose template lists the groups, still does
    assert "hydra/launcher:" in out and "adam_joblib" in out and loads > 1


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


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["job.batchsize=8"], "unknown config key job.batchsize (did you mean job.batch_size?)"),
        (["job=embed", "job.chunk_tokenz=3"], "unknown config key job.chunk_tokenz (did you mean job.chunk_tokens?)"),
        (["size=qwen3_smal"], "unknown size=qwen3_smal (did you mean size=qwen3_small?)"),
        (["job.batch_size=abc"], "invalid value for job.batch_size: Value 'abc' of type 'str' could not be converted"),
        (["-m", "job.batchsize=8,16"], "unknown config key job.batchsize (did you mean job.batch_size?)"),
    ],
)
def test_config_mistakes_print_one_line_of_adams(tmp_path: Path, args: list[str], line: str) -> None:
    """Hydra printed six lines suggesting +job.batchsize=8; the README promises adam's one line."""
    done = adam(*args, "backend=echo", f"hydra.run.dir={tmp_path}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert all(text.startswith(line) for text in lines) and lines, done.stderr  # a multirun: once per job at most
    assert "+job" not in done.stderr and "HYDRA_FULL_ERROR" not in done.stderr


def test_job_values_fail_before_the_model_loads(tmp_path: Path) -> None:
    """job.max_tokens=-5 failed on every record after the model loaded; now the config is refused first."""
    done = adam("job.max_tokens=-5", "size=qwen3_xl", f"hydra.run.dir={tmp_path}")  # weights not even present
    assert done.returncode == 1
    assert "'job.max_tokens' must be an integer of at least 1, got -5" in done.stderr
    assert "Qwen3-8B" not in done.stderr and not (tmp_path / "results.jsonl").exists()


def test_info_needs_no_weights(tmp_path: Path) -> None:
    """job=info size=qwen3_xl stopped at the missing weights; it describes the model without them."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "adam",
            "job=info",
            "job.format=json",
            "size=qwen3_xl",
            "size.long_context=true",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["config"]["size"]["hf_id"] == "Qwen/Qwen3-8B" and info["config"]["hardware"]["name"] == "auto"
    assert info["context"] == {
        "native": 32768,
        "long_context": True,
        "long_context_length": 131072,
        "effective": 131072,
    }
    modes = info["memory_estimate_gb"]["modes"]
    assert set(modes) == {"float32", "bfloat16", "8bit", "4bit"} and modes["4bit"]["total_gb"] > 0
    weights = info["weights"]
    assert weights["cached"] is False and weights["download"].endswith("download Qwen/Qwen3-8B")
    command = weights["download"].split()[0]
    assert Path(command).is_file() or shutil.which(command, path=env["PATH"]), command  # runnable as printed


def test_only_runs_that_leave_results_make_a_run_dir_and_the_server_names_its_page(tmp_path: Path) -> None:
    """job=info, job=serve (and job=search) made a run dir under outputs/ each: 71 after 35 minutes."""
    import signal
    import socket
    import time

    import httpx

    from adam.paths import scratch_runs_root

    started = time.time()
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "prompt": "hello"}\n')
    info = adam("job=info", "backend=echo", "job.format=json", cwd=tmp_path)
    assert info.returncode == 0 and json.loads(info.stdout)["config"]["job"]["name"] == "info", info.stderr[-2000:]
    generated = adam("backend=echo", f"job.input={src}", cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr[-2000:]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ADAM_API_KEY", None)
    command = [sys.executable, "-m", "adam", "job=serve", "backend=echo", f"job.port={port}", "job.state_dir=state"]
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        said = ""
        while "web page" not in said:
            line = server.stderr.readline()  # type: ignore[union-attr]
            assert line, f"the server ended before it said where it serves: {said}"
            said += line
        assert f"(web page: http://127.0.0.1:{port}/ui; OpenAI: /v1, Ollama: /api; no key)" in said
        deadline = time.monotonic() + 60
        while True:  # serving (its signal handlers in place) before it is stopped
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["generate"]  # the one run that left results
    (run,) = (tmp_path / "outputs" / "generate").iterdir()
    assert (run / "results.jsonl").read_text().count("\n") == 1
    scratch = scratch_runs_root()
    left = [p for job in ("info", "serve") for p in (scratch / job).glob("*") if p.stat().st_mtime >= started]
    assert not left, left  # the scratch run dirs went when their jobs ended
