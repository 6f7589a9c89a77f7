"""backend.weight_type: which weight type llama.cpp runs a GGUF as, the file made once and cached by content hash.

On a CPU the weight type picks the matmul kernels. llama.cpp repacks Q4_0 for AVX2, AVX512 and NEON
(interleaved rows, batched GEMM), while Q4_1, Q5_x and the float types go through the generic dot
products.

- ``auto`` (the default for the bundled demo and GGUFs adam shares), where this llama.cpp build has
  repacked kernels and the file's type has none:
  - a float or 8-bit file (F32, F16, BF16, Q8_0) runs as Q4_0: one 4-bit rounding, as any Q4_0 file has;
  - a file already rounded to 4 or 5 bits (Q4_1, Q5_0, Q5_1) runs as Q8_0. Rounding it to 4 bits a second
    time wrecks it: the demo (Q4_1) as Q4_0 gave greedy answers that left the shipped file's at their first
    token on every bench prompt, and looped. As Q8_0 they stay close (85 characters in common on average over
    64 tokens, against float32's 118), and it decodes 1.45x faster than Q4_1 at 32 sequences and 1.14x at one
    (bench/RESULTS.md);
  anything else runs as it is.
- ``as_is`` (the default for a GGUF named by size.path or an Ollama blob): the file exactly as given.
- a named type (Q4_0, Q8_0, F16, Q4_K_M, ...): that type, whatever the file holds.

A converted file is written by llama.cpp's own ``llama_model_quantize`` to a temp name next to its final
one and renamed, so a killed conversion never leaves half a file; later runs reuse it.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adam.errors import BackendError, ConfigError

log = logging.getLogger(__name__)

# llama_ftype numbers (llama.h) of the types a file may be written as; the names are llama-quantize's
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
}  # fmt: skip
SETTINGS = ("auto", "as_is")
FAST = "Q4_0"  # the type with repacked (interleaved, batched-GEMM) CPU kernels
WIDE = "Q8_0"  # what a file already rounded to 4 or 5 bits runs as: fast, and no second coarse rounding
_ROUNDED = {"Q4_1", "Q5_0", "Q5_1"}  # legacy low-bit types without repacked kernels
# types that already have fast CPU kernels (repacked, or K-/IQ-quants with their own SIMD dot products):
# auto keeps them rather than lose precision to a second rounding
_KEEP = {"Q4_0", "IQ4_NL"} | {t for t in FILE_TYPES.values() if "_K" in t or t.startswith("IQ")}
_lock = threading.Lock()  # one conversion at a time in this process; os.replace guards across processes


def check_setting(value: str | None) -> str | None:
    """``value`` normalised (``q4_0`` -> ``Q4_0``); a ConfigError listing the choices when it names none."""
    if value is None or value in SETTINGS:
        return value
    if value.upper() in FILE_TYPES.values():
        return value.upper()
    named = ", ".join(sorted(set(FILE_TYPES.values())))
    raise ConfigError(f"backend.weight_type={value} is not one of auto, as_is, {named}")


@dataclass(frozen=True)
class WeightPlan:
    """The type a GGUF runs as, why, and the file llama.cpp loads for it."""

    file_type: str | None  # the source file's own type (general.file_type), None when it records none
    weight_type: str  # the type that runs
    reason: str
    path: Path  # the source itself, or its converted copy in the cache
    converts: bool = False  # whether ``path`` is a converted copy rather than the source


def plan(
    source: Path, sha256: str, setting: str | None, *, user_named: bool, embeds: bool, gpu: bool, cache: Path
) -> WeightPlan:
    """Which type ``source`` runs as under ``backend.weight_type=setting`` (None: the default for the source)."""
    file_type = file_type_of(source)
    if setting is None:
        setting = "as_is" if user_named else "auto"
        why_default = "the default for a GGUF you name" if user_named else "the default"
    else:
        why_default = "as set"
    have = file_type or "an unrecorded type"
    if setting == "as_is":
        return WeightPlan(file_type, file_type or "as_is", f"backend.weight_type=as_is ({why_default})", source)
    if setting != "auto":
        if setting == file_type:
            return WeightPlan(file_type, setting, f"backend.weight_type={setting}: the file already is", source)
        why = f"backend.weight_type={setting}, from {have}"
        return WeightPlan(file_type, setting, why, cached_path(cache, sha256, setting), converts=True)
    auto = f"backend.weight_type=auto ({why_default})"
    if file_type is None:
        return WeightPlan(None, "as_is", f"{auto}: the file records no type, so it runs as is", source)
    if embeds:
        return WeightPlan(file_type, file_type, f"{auto}: an embedding model runs as is, its vectors unchanged", source)
    if gpu:
        return WeightPlan(file_type, file_type, f"{auto}: layers run on the GPU, whose kernels take {have}", source)
    if file_type in _KEEP:
        return WeightPlan(file_type, file_type, f"{auto}: {file_type} already has fast kernels on this CPU", source)
    if not repacked_kernels():
        return WeightPlan(file_type, file_type, f"{auto}: this llama.cpp build has no repacked kernels here", source)
    if file_type in _ROUNDED:
        why = (f"{auto}: {file_type} has no repacked kernels on this CPU; {WIDE} runs faster and keeps its "
               f"weights, where {FAST} would round them to 4 bits a second time")  # fmt: skip
        return WeightPlan(file_type, WIDE, why, cached_path(cache, sha256, WIDE), converts=True)
    why = f"{auto}: {file_type} has no repacked kernels on this CPU and {FAST} has"
    return WeightPlan(file_type, FAST, why, cached_path(cache, sha256, FAST), converts=True)


def cached_path(cache: Path, sha256: str, weight_type: str) -> Path:
    """Where the copy of the GGUF with content ``sha256`` converted to ``weight_type`` lives."""
    return cache / "gguf" / f"{sha256}.{weight_type}.gguf"


def repacked_kernels() -> bool:
    """Whether this llama.cpp build repacks Q4_0 on this CPU (its REPACK feature with AVX2, AVX512 or NEON)."""
    try:
        import llama_cpp
    except ImportError:
        return False
    info = (llama_cpp.llama_print_system_info() or b"").decode(errors="replace")
    features = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in info.replace(":", "|").split("|"))}
    return features.get("REPACK") == "1" and any(features.get(f) == "1" for f in ("AVX2", "AVX512", "NEON"))


def ensure(weights: WeightPlan, source: Path, threads: int) -> Path:
    """The file to load for ``weights``: the source, or its converted copy, made now when it is not cached."""
    if not weights.converts or weights.path.is_file():
        return weights.path
    with _lock:
        if not weights.path.is_file():
            _quantize(source, weights.path, weights.weight_type, threads)
    return weights.path


def _quantize(source: Path, target: Path, weight_type: str, threads: int) -> None:
    """llama_model_quantize into a temp file, then rename it into place."""
    import llama_cpp

    from adam.backends.llamacpp_native import _init_backend

    _init_backend()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _ftype(weight_type)
    params.nthread = threads
    params.allow_requantize = True  # the source may be quantized already (the demo is Q4_1)
    started = time.monotonic()
    try:
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
        if code != 0 or not tmp.is_file():
            raise BackendError(f"llama.cpp could not write {source.name} as {weight_type} (code {code})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s as %s once in %.1f s: %s", source.name, weight_type, time.monotonic() - started, target)


def _ftype(weight_type: str) -> int:
    for number, name in FILE_TYPES.items():
        if name == weight_type:
            return number
    raise ConfigError(f"backend.weight_type={weight_type} is not a type llama.cpp writes")


# ----------------------------------------------------------------- reading general.file_type from a GGUF header
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def file_type_of(path: Path) -> str | None:
    """The type a GGUF records in ``general.file_type`` (``Q4_1``), read from its header alone; None without one."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                return None
            version, _tensors, n_kv = struct.unpack("<IQQ", f.read(20))
            if version < 2:
                return None
            for _ in range(n_kv):
                key = _read_string(f)
                (kind,) = struct.unpack("<I", f.read(4))
                value = _read_value(f, kind)
                if key == "general.file_type":
                    return FILE_TYPES.get(int(value), f"ftype {value}")
    except (OSError, struct.error, ValueError):
        return None
    return None


def _read_string(f: Any) -> str:
    (n,) = struct.unpack("<Q", f.read(8))
    return f.read(n).decode("utf-8", errors="replace")


def _read_value(f: Any, kind: int) -> Any:
    """One metadata value; arrays are skipped (their items read past, not kept)."""
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
    if kind == _STRING:
        return _read_string(f)
    if kind == _ARRAY:
        item, n = struct.unpack("<IQ", f.read(12))
        if item in _SCALARS:
            f.seek(n * struct.calcsize(_SCALARS[item]), os.SEEK_CUR)
        else:
            for _ in range(n):
                _read_value(f, item)
        return None
    raise ValueError(f"unknown GGUF value type {kind}")
