"""Hardware and environment detection through fake probes: every profile and environment, no hardware needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from adam.planning import hardware
from adam.planning.hardware import GIB, GpuInfo, Probe, detect, parse_nvidia_smi, profile_for

MEMINFO = "MemTotal:       32768000 kB\nMemFree:         1000000 kB\nMemAvailable:   16384000 kB\n"


def fake_root(tmp_path: Path, files: dict[str, str]) -> Path:
    """A directory standing in for / with the given files."""
    for rel, text in {"proc/meminfo": MEMINFO, **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def probe(root: Path, gpus: list[GpuInfo] | None = None, env: dict[str, str] | None = None, mps: bool = False) -> Probe:
    return Probe(root=root, env=env or {}, gpus=lambda: list(gpus or []), mps=lambda: mps, cpu_count=lambda: 12)


def test_cpu_machine_reads_cores_and_ram(tmp_path: Path) -> None:
    report = detect(probe(fake_root(tmp_path, {})))
    assert (report.cpu_cores, report.device, report.dtype, report.profile) == (12, "cpu", "float32", "cpu")
    assert report.ram_total_gb == pytest.approx(32768000 * 1024 / GIB)
    assert report.memory_gb == pytest.approx(16384000 * 1024 / GIB)
    assert report.quantize is False


@pytest.mark.parametrize(
    ("free_gb", "bf16", "profile", "dtype", "quantize"),
    [
        (3.5, False, "gpu_low", "float16", True),
        (11.0, True, "gpu_mid", "bfloat16", True),
        (23.5, True, "gpu_mid", "bfloat16", True),
        (40.0, True, "gpu_high", "bfloat16", False),
        (1.0, True, "cpu", "float32", False),  # too small to be worth using
    ],
)
def test_gpu_profiles(tmp_path: Path, free_gb: float, bf16: bool, profile: str, dtype: str, quantize: bool) -> None:
    gpus = [GpuInfo("small", 2.0, 0.5, False), GpuInfo("big", free_gb + 1, free_gb, bf16)]
    report = detect(probe(fake_root(tmp_path, {}), gpus))
    assert (report.profile, report.dtype, report.quantize) == (profile, dtype, quantize)
    if profile != "cpu":
        assert (report.device, report.memory_gb) == ("cuda", free_gb)  # the GPU with the most free memory


def test_mps_uses_part_of_unified_memory(tmp_path: Path) -> None:
    report = detect(probe(fake_root(tmp_path, {}), mps=True))
    assert (report.device, report.dtype, report.mps) == ("mps", "float16", True)
    assert report.memory_gb == pytest.approx(0.75 * 16384000 * 1024 / GIB)


def test_cgroup_limit_caps_ram_in_a_container(tmp_path: Path) -> None:
    root = fake_root(tmp_path, {"sys/fs/cgroup/memory.max": str(4 * GIB)})
    report = detect(probe(root))
    assert report.ram_total_gb == pytest.approx(4.0) and report.ram_available_gb == pytest.approx(4.0)
    unlimited = detect(probe(fake_root(tmp_path, {"sys/fs/cgroup/memory.max": "max"})))
    assert unlimited.ram_total_gb == pytest.approx(32768000 * 1024 / GIB)


def test_nvidia_smi_output_parses() -> None:
    gpus = parse_nvidia_smi("NVIDIA A100-SXM4-40GB, 40960, 39000, 8.0\nTesla T4, 15360, 15000, 7.5\n")
    assert [(g.name, g.bf16) for g in gpus] == [("NVIDIA A100-SXM4-40GB", True), ("Tesla T4", False)]
    assert gpus[0].total_gb == pytest.approx(40.0) and gpus[1].free_gb == pytest.approx(15000 / 1024)


def test_profile_bounds() -> None:
    assert [profile_for(x) for x in (None, 1.9, 2.0, 7.9, 8.0, 23.9, 24.0)] == [
        "cpu",
        "cpu",
        "gpu_low",
        "gpu_low",
        "gpu_mid",
        "gpu_mid",
        "gpu_high",
    ]


def test_bare_machine_is_no_container(tmp_path: Path) -> None:
    env = detect(probe(fake_root(tmp_path, {"proc/version": "Linux version 6.8.0-generic (gcc)"}))).environment
    assert (env.docker, env.wsl, env.devcontainer, env.codespaces) == (False, False, False, False)


@pytest.mark.parametrize(
    "files",
    [{".dockerenv": ""}, {"proc/1/cgroup": "0::/docker/3f2a9c\n"}, {"proc/1/cgroup": "12:memory:/kubepods/pod1\n"}],
)
def test_docker_is_detected(tmp_path: Path, files: dict[str, str]) -> None:
    assert detect(probe(fake_root(tmp_path, files))).environment.docker is True


def test_wsl_is_detected(tmp_path: Path) -> None:
    version = "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@host)"
    env = detect(probe(fake_root(tmp_path, {"proc/version": version}))).environment
    assert env.wsl is True and env.docker is False


@pytest.mark.parametrize(
    ("variables", "codespaces"),
    [({"REMOTE_CONTAINERS": "true"}, False), ({"CODESPACES": "true"}, True), ({"DEVCONTAINER": "1"}, False)],
)
def test_devcontainers_and_codespaces(tmp_path: Path, variables: dict[str, str], codespaces: bool) -> None:
    env = detect(probe(fake_root(tmp_path, {}), env=variables)).environment
    assert env.devcontainer is True and env.codespaces is codespaces


def test_caches_and_ollama_host_follow_the_environment(tmp_path: Path) -> None:
    variables = {"HF_HOME": "/data/hf", "OLLAMA_HOST": "gpu-box:11434", "HF_HUB_OFFLINE": "1", "ADAM_CACHE_DIR": "/c"}
    env = detect(probe(fake_root(tmp_path, {}), env=variables)).environment
    assert (env.hf_cache, env.ollama_host, env.hf_offline, env.adam_cache) == (
        "/data/hf/hub",
        "http://gpu-box:11434",
        True,
        "/c",
    )
    env = detect(probe(fake_root(tmp_path, {}), env={"HF_HUB_CACHE": "/x"})).environment
    assert (env.hf_cache, env.ollama_host, env.hf_offline) == ("/x", "http://127.0.0.1:11434", False)


def test_cpu_speed_is_measured_once_and_only_when_asked(tmp_path: Path) -> None:
    from adam.planning.hardware import cpu_speed_of, measure_speed

    calls: list[int] = []

    def counted() -> hardware.CpuSpeed:
        calls.append(1)
        return measure_speed()

    hardware.use_probe(hardware.Probe(root=tmp_path, env={}, gpus=list, mps=lambda: False, speed=counted))
    try:
        report = hardware.detect_current()
        assert report.speed is None and not calls  # detection stays cheap
        speed = cpu_speed_of(report)
        assert cpu_speed_of(report) is speed and len(calls) == 1
    finally:
        hardware.use_probe(None)
    assert speed.source == "measured" and speed.gflops > 0.1 and speed.bandwidth_gbs > 0.1
