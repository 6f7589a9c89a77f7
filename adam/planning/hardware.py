"""What this machine has: CPU cores, RAM, CUDA GPUs, Apple MPS, and the environment adam runs in.

Detection never needs the hardware to be tested: everything is read through a ``Probe`` whose sources
can be swapped. Files (``/proc/meminfo``, ``/proc/version``, ``/.dockerenv``, cgroup limits) are read
under ``Probe.root``; environment variables come from ``Probe.env``; GPUs and MPS come from two
functions. The default GPU probe asks ``nvidia-smi`` (no torch import), or torch when it is already
imported, so ``job=info`` stays cheap.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from adam.paths import cache_root

log = logging.getLogger(__name__)

GIB = 1024**3
# Profiles by usable GPU memory (GiB): below the first bound the GPU is not worth using.
PROFILE_BOUNDS = (("cpu", 2.0), ("gpu_low", 8.0), ("gpu_mid", 24.0))
MEASURE_S = 0.1  # per CPU speed measurement; the best of the runs that fit counts
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA GPU."""

    name: str
    total_gb: float
    free_gb: float
    bf16: bool  # compute capability 8.0 or newer


def _nvidia_smi_gpus() -> list[GpuInfo]:
    """CUDA GPUs as nvidia-smi reports them; torch's view when torch is already imported."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if not torch.cuda.is_available():
                return []
            gpus = []
            for i in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(i)
                major, _ = torch.cuda.get_device_capability(i)
                gpus.append(GpuInfo(torch.cuda.get_device_name(i), total / GIB, free / GIB, major >= 8))
            return gpus
        except Exception as err:  # a broken driver must not stop a CPU run
            log.debug("torch cannot query CUDA: %s", err)
            return []
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = "--query-gpu=name,memory.total,memory.free,compute_cap"
    try:
        out = subprocess.run(
            [exe, query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        log.debug("nvidia-smi failed: %s", err)
        return []
    return parse_nvidia_smi(out)


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total,memory.free,compute_cap --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        try:
            cap = float(parts[3])
        except ValueError:
            cap = 0.0
        gpus.append(GpuInfo(parts[0], float(parts[1]) / 1024, float(parts[2]) / 1024, cap >= 8.0))
    return gpus


def _mps_available() -> bool:
    """Apple silicon GPU: torch's answer when torch is loaded, else the platform."""
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return False
    torch = sys.modules.get("torch")
    if torch is None:
        return True
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


@dataclass(frozen=True)
class CpuSpeed:
    """What one process can do on this CPU."""

    gflops: float  # float32 matmul, all threads
    bandwidth_gbs: float  # bytes read and written per second by a large array copy
    source: str  # "measured" or the hardware.* keys that set it

    def describe(self) -> str:
        """``60 GFLOP/s, 14 GB/s (measured)``."""
        return f"{self.gflops:.0f} GFLOP/s, {self.bandwidth_gbs:.0f} GB/s ({self.source})"

    def as_dict(self) -> dict[str, Any]:
        """JSON fields for job=info."""
        return {"gflops": round(self.gflops, 1), "bandwidth_gbs": round(self.bandwidth_gbs, 1), "source": self.source}


def _best_rate(work: float, step: Any) -> float:
    """``work`` units per second of the fastest of the ``step()`` calls made within MEASURE_S (at least two)."""
    best = float("inf")
    start = time.perf_counter()
    runs = 0
    while runs < 2 or time.perf_counter() - start < MEASURE_S:
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return work / max(best, 1e-9)


@cache
def measure_speed() -> CpuSpeed:
    """This CPU's float32 matmul GFLOP/s and copy bandwidth, measured once per process."""
    import numpy as np

    n = 1024
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.copy()
    gflops = _best_rate(2 * n**3 / 1e9, lambda: a @ b)
    src = np.ones(32 * 1024 * 1024 // 4, dtype=np.float32)  # 32 MiB: past the caches of most CPUs
    dst = np.empty_like(src)
    bandwidth = _best_rate(2 * src.nbytes / 1e9, lambda: np.copyto(dst, src))
    return CpuSpeed(gflops, bandwidth, "measured")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class Probe:
    """Where detection reads from; tests pass fake roots, environments and GPU lists."""

    root: Path = Path("/")
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    gpus: Callable[[], list[GpuInfo]] = _nvidia_smi_gpus
    mps: Callable[[], bool] = _mps_available
    cpu_count: Callable[[], int] = _cpu_count
    speed: Callable[[], CpuSpeed] = measure_speed  # measured only when a CPU plan weighs speed (cpu_speed.py)

    def read(self, path: str) -> str | None:
        """The text of a file under the root, or None."""
        try:
            return (self.root / path.lstrip("/")).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        """Whether a path exists under the root."""
        return (self.root / path.lstrip("/")).exists()


@dataclass
class Environment:
    """Where adam runs and which caches and servers it will use."""

    docker: bool
    wsl: bool
    devcontainer: bool
    codespaces: bool
    hf_cache: str
    hf_offline: bool
    ollama_host: str
    adam_cache: str


@dataclass
class HardwareReport:
    """What was detected and what adam would pick on it."""

    cpu_cores: int
    ram_total_gb: float
    ram_available_gb: float
    gpus: list[GpuInfo]
    mps: bool
    device: str  # cuda | mps | cpu
    dtype: str  # bfloat16 | float16 | float32
    profile: str  # cpu | gpu_low | gpu_mid | gpu_high
    memory_gb: float  # what a model may use: the best GPU's free memory, else available RAM
    quantize: bool  # whether a quantized model is recommended (a small GPU)
    environment: Environment
    speed: CpuSpeed | None = None  # matmul GFLOP/s and bandwidth; None: not measured yet (see cpu_speed_of)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields, rounded."""
        doc = asdict(self)
        for key in ("ram_total_gb", "ram_available_gb", "memory_gb"):
            doc[key] = round(doc[key], 2)
        doc["gpus"] = [
            {**g, "total_gb": round(g["total_gb"], 2), "free_gb": round(g["free_gb"], 2)} for g in doc["gpus"]
        ]
        return doc


def _meminfo(probe: Probe) -> tuple[float, float]:
    """(total, available) RAM in GiB from /proc/meminfo, capped by a cgroup memory limit (containers)."""
    total = available = 0.0
    text = probe.read("/proc/meminfo")
    if text:
        values = {}
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key.strip()] = int(parts[0]) * 1024  # kB
        total = values.get("MemTotal", 0) / GIB
        available = values.get("MemAvailable", values.get("MemFree", 0)) / GIB
    elif hasattr(os, "sysconf"):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / GIB
        except (ValueError, OSError):
            pass
    limit = _cgroup_limit(probe)
    if limit is not None:
        total = min(total, limit) if total else limit
        available = min(available, limit) if available else limit
    return total, available


def _cgroup_limit(probe: Probe) -> float | None:
    """A container's memory limit in GiB (cgroup v2, then v1), or None when unlimited."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        text = (probe.read(path) or "").strip()
        if text.isdigit() and int(text) < 1 << 60:  # v1 writes a huge number for "no limit"
            return int(text) / GIB
    return None


def detect_environment(probe: Probe) -> Environment:
    """Docker, WSL, devcontainer/Codespaces, and the HF cache and Ollama host adam will use."""
    env = probe.env
    cgroup = probe.read("/proc/1/cgroup") or ""
    docker = probe.exists("/.dockerenv") or any(word in cgroup for word in ("docker", "containerd", "kubepods"))
    version = (probe.read("/proc/version") or "").lower()
    wsl = "microsoft" in version or "WSL_DISTRO_NAME" in env
    codespaces = env.get("CODESPACES", "").lower() in _TRUE
    devcontainer = codespaces or env.get("REMOTE_CONTAINERS", "").lower() in _TRUE or "DEVCONTAINER" in env
    devcontainer = devcontainer or probe.exists("/workspaces/.codespaces") or "REMOTE_CONTAINERS_IPC" in env
    hf_home = env.get("HF_HOME") or str(Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface")
    hf_cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or str(Path(hf_home) / "hub")
    offline = any(env.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    host = env.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
    if "://" not in host:
        host = f"http://{host}"
    adam_cache = str(cache_root(env=env))
    return Environment(docker, wsl, devcontainer, codespaces, hf_cache, offline, host, adam_cache)


def profile_for(gpu_free_gb: float | None) -> str:
    """cpu, gpu_low, gpu_mid or gpu_high for the best GPU's free memory (None: no GPU)."""
    if gpu_free_gb is None:
        return "cpu"
    for name, bound in PROFILE_BOUNDS:
        if gpu_free_gb < bound:
            return name
    return "gpu_high"


def detect(probe: Probe | None = None) -> HardwareReport:
    """Detect the machine through ``probe`` (the real one by default)."""
    probe = probe or Probe()
    total, available = _meminfo(probe)
    gpus = probe.gpus()
    mps = not gpus and probe.mps()
    best = max(gpus, key=lambda g: g.free_gb) if gpus else None
    profile = profile_for(best.free_gb if best else None)
    if best is not None and profile != "cpu":
        device, dtype, memory = "cuda", "bfloat16" if best.bf16 else "float16", best.free_gb
    elif mps:
        device, dtype, memory = "mps", "float16", available * 0.75  # unified memory shared with the system
    else:
        device, dtype, memory = "cpu", "float32", available
    return HardwareReport(
        cpu_cores=probe.cpu_count(),
        ram_total_gb=total,
        ram_available_gb=available,
        gpus=gpus,
        mps=mps,
        device=device,
        dtype=dtype,
        profile=profile,
        memory_gb=memory,
        quantize=profile in ("gpu_low", "gpu_mid"),
        environment=detect_environment(probe),
    )


_probe: Probe | None = None  # tests install a fake probe with use_probe()


def current_probe() -> Probe:
    """The probe detection uses in this process."""
    return _probe or Probe()


def use_probe(probe: Probe | None) -> None:
    """Make ``detect_current()`` read from ``probe`` (None: the real machine again)."""
    global _probe
    _probe = probe


def cpu_speed_of(report: HardwareReport) -> CpuSpeed:
    """The report's CPU speed, measured through the probe in use the first time it is asked for."""
    if report.speed is None:
        report.speed = current_probe().speed()
    return report.speed


def detect_current() -> HardwareReport:
    """Detect through the probe in use (the real machine unless a test installed another)."""
    return detect(current_probe())
