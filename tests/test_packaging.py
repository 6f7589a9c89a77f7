"""Installing: a plain (non-editable) install ships conf/ as adam.conf and every schema the code reads, without
setuptools warnings; the Makefile picks the index torch comes from."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import REPO
from pytest_httpserver import HTTPServer


def test_wheel_ships_the_config_tree_and_schemas(tmp_path: Path) -> None:
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(tmp_path)]
    done = subprocess.run([*build, str(REPO)], check=True, capture_output=True, text=True)
    # Each folder missing from packages, and the license as a TOML table, printed a setuptools warning.
    log = done.stdout + done.stderr
    assert "is absent from the `packages` configuration" not in log
    assert "BuildBackendWarning" not in log and "SetuptoolsDeprecationWarning" not in log
    (wheel,) = tmp_path.glob("adam_batch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert conf and {f"adam/{p}" for p in conf} <= names
    assert "adam/conf/__init__.py" in names
    schemas = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "adam").rglob("*.json"))
    assert schemas and set(schemas) <= names
    assert "adam/py.typed" in names
    page = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "adam" / "server" / "static").iterdir())
    assert "adam/server/static/index.html" in page and set(page) <= names  # the web page (/ui)


@pytest.fixture
def no_driver_path(tmp_path: Path) -> str:
    """A PATH without nvidia-smi (python3 and the usual tools stay), on a Linux machine without the driver."""
    if platform.system() != "Linux" or Path("/proc/driver/nvidia").exists():
        pytest.skip("needs Linux without an NVIDIA driver")
    if shutil.which("make") is None:
        pytest.skip("needs make")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))  # the probe needs only the standard library
    uname = shutil.which("uname")
    assert uname
    (bin_dir / "uname").symlink_to(uname)
    return str(bin_dir)


def torch_index(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`make -s torch-index ARGS` with this PATH: the index the Makefile would install torch from."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_INDEX", "TORCH_CPU_INDEX", "MAKEFLAGS")}
    make = shutil.which("make")
    assert make
    return subprocess.run(
        [make, "-s", "-C", str(REPO), "torch-index", *args],
        env={**env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_torch_comes_from_the_cpu_index_without_an_nvidia_driver(no_driver_path: str, httpserver: HTTPServer) -> None:
    """make installed the multi-GB CUDA build of torch on machines without a GPU."""
    httpserver.expect_request("/whl/cpu/").respond_with_data("<html></html>")
    index = httpserver.url_for("/whl/cpu")
    done = torch_index(no_driver_path, f"TORCH_CPU_INDEX={index}")
    assert (done.returncode, done.stdout.strip()) == (0, index), done.stderr


def test_an_unreachable_cpu_index_falls_back_to_the_default(no_driver_path: str, closed_port_url: str) -> None:
    """Only this branch can run where download.pytorch.org cannot be reached (README, Development)."""
    done = torch_index(no_driver_path, f"TORCH_CPU_INDEX={closed_port_url}/whl/cpu", "TORCH_PROBE_S=3")
    assert (done.returncode, done.stdout.strip()) == (0, "")  # empty: pip's default index
    assert "did not answer: torch comes from the default index" in done.stderr


def test_torch_index_override_and_an_nvidia_driver(no_driver_path: str, tmp_path: Path) -> None:
    assert torch_index(no_driver_path, "TORCH_INDEX=https://mirror.example/torch").stdout.strip() == (
        "https://mirror.example/torch"
    )
    done = torch_index(no_driver_path, "TORCH_INDEX=", "TORCH_CPU_INDEX=http://127.0.0.1:9/never")
    assert (done.stdout.strip(), done.stderr) == ("", "")  # set but empty: the default index, no probe
    smi = Path(no_driver_path) / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexit 0\n")
    smi.chmod(0o755)
    done = torch_index(no_driver_path, "TORCH_CPU_INDEX=http://127.0.0.1:9/never")
    assert (done.stdout.strip(), done.stderr) == ("", "")  # a driver: the default index's CUDA build


def test_install_advice_names_what_works_from_a_clone() -> None:
    """Errors advised installing extras of the `adam` distribution, but `adam` on PyPI is another project."""
    import tomllib

    from adam.errors import DISTRIBUTION, install_hint

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION != "adam"
    assert set(project["optional-dependencies"]) >= {"llamacpp", "quantization", "datasets"}
    assert install_hint("llamacpp") == "`make llamacpp` (or `pip install -e '.[llamacpp]'`) in adam's folder"
    assert install_hint("datasets") == "`pip install -e '.[datasets]'` in adam's folder"
    texts = [REPO / "README.md", REPO / "Makefile", *(REPO / "docs").glob("*.md")]
    for folder in ("adam", "conf", "examples", "tests", "bench", "jobs"):
        texts += [p for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".yaml", ".md")]
    wrong = re.compile(r"pip install '?adam\[")
    assert [str(p.relative_to(REPO)) for p in texts if wrong.search(p.read_text(encoding="utf-8"))] == []


def _make_dry(folder: Path, target: str) -> str:
    """The commands `make -n TARGET` would run in ``folder`` (a copy of the Makefile and pyproject.toml)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("needs make")
    env = {k: v for k, v in os.environ.items() if k != "MAKEFLAGS"}
    done = subprocess.run([make, "-n", "-C", str(folder), target], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_run_installs_what_running_needs_and_make_test_the_rest(tmp_path: Path) -> None:
    """make run installed pytest, selenium and bitsandbytes just to run a job."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    fresh_run = _make_dry(tmp_path, "run")
    assert "pip install -q -e .\n" in fresh_run and ".[test]" not in fresh_run and "-m adam" in fresh_run
    fresh_test = _make_dry(tmp_path, "test")  # a fresh clone: everything, in order
    assert fresh_test.index("pip install -q -e .\n") < fresh_test.index("pip install -q -e '.[test]'")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed").touch()  # after `make run` (or a venv from before this split)
    after_run = _make_dry(tmp_path, "test")
    assert "pip install -q -e '.[test]'" in after_run and "pip install -q -e .\n" not in after_run
    assert "pip install" not in _make_dry(tmp_path, "run")
