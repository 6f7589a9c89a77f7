"""Write a transformers model directory (config.json + safetensors + tokenizer.json) as one GGUF file.

Only what llama.cpp and Ollama need to run the model is written, under the key names gguf-py
defines. Tensors are read and written one at a time, so an 8B model converts in a few hundred MB
of memory rather than the model's size. This module picks the architecture and writes the file;
the hyperparameters (gguf_hparams), the vocabulary (gguf_vocab) and the tensors (gguf_tensors)
are each read and encoded in their own module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adam import hashing
from adam.atomic import atomic_path
from adam.errors import UnsupportedError
from adam.sharing.gguf_hparams import add_hyperparameters
from adam.sharing.gguf_tensors import MATRIX_TYPES, encode_tensor, load_tensor, nbytes, np_float32, plan_tensors
from adam.sharing.gguf_vocab import add_vocab, read_vocab
from adam.sharing.model_dir import read_json, weight_files

logger = logging.getLogger(__name__)

ExportDType = Literal["f32", "f16", "bf16", "q8_0"]
DTYPES: tuple[str, ...] = tuple(MATRIX_TYPES)


@dataclass(frozen=True)
class _Arch:
    """What differs between the architectures adam exports."""

    gguf_name: str  # gguf.MODEL_ARCH member name
    permute_qk: bool  # llama.cpp's llama graph expects interleaved rotary pairs in Q and K
    pre_tokenizer: str | None  # the one name every model of this family uses; None: look at tokenizer.json


ARCHITECTURES: dict[str, _Arch] = {
    "qwen3": _Arch("QWEN3", permute_qk=False, pre_tokenizer="qwen2"),
    "qwen2": _Arch("QWEN2", permute_qk=False, pre_tokenizer="qwen2"),
    "llama": _Arch("LLAMA", permute_qk=True, pre_tokenizer=None),
}

_SUPPORTED = ", ".join(list(ARCHITECTURES)[:-1]) + " and " + list(ARCHITECTURES)[-1]
# Catalog architectures the writer refuses, and what it would take: each needs more than tensor renaming.
_NOT_WRITTEN = {
    "gemma2": "Gemma 2 needs its extra norms, logit soft-capping and a SentencePiece vocabulary",
    "phi3": "Phi-3 needs its fused QKV split, LongRoPE factors and a SentencePiece vocabulary",
    "mistral": "Mistral 7B v0.3 has a SentencePiece vocabulary; the writer does byte-level BPE only",
}


@dataclass(frozen=True)
class GgufExport:
    """One written GGUF file."""

    path: Path
    sha256: str
    size: int
    architecture: str
    dtype: str
    n_tensors: int


def export_gguf(hf_dir: Path, out_path: Path, *, dtype: ExportDType = "f16", name: str | None = None) -> GgufExport:
    """Convert the transformers model in ``hf_dir`` to a GGUF file at ``out_path`` (written atomically)."""
    import gguf
    from safetensors import safe_open

    hf_dir, out_path = Path(hf_dir), Path(out_path)
    if dtype not in DTYPES:
        raise UnsupportedError(f"unsupported GGUF dtype {dtype!r}: adam can export {', '.join(DTYPES)}")
    config = read_json(hf_dir / "config.json", what="a transformers model directory")
    architecture = config.get("model_type")
    check_architecture(str(architecture))
    arch = ARCHITECTURES[str(architecture)]
    model_arch = getattr(gguf.MODEL_ARCH, arch.gguf_name)
    vocab = read_vocab(hf_dir, config, arch.pre_tokenizer)
    files = weight_files(hf_dir)

    handles = {path: safe_open(str(path), framework="pt") for path in set(files.values())}
    plan = plan_tensors(config, arch.permute_qk, model_arch, files, handles, dtype)
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[model_arch])
    try:
        with atomic_path(out_path) as tmp:  # renamed into place only when every tensor is written
            try:
                add_hyperparameters(writer, config, name or hf_dir.name, dtype)
                add_vocab(writer, vocab)
                for item in plan:
                    writer.add_tensor_info(
                        item.gguf_name, item.shape, np_float32(), nbytes(item.shape, item.qtype), raw_dtype=item.qtype
                    )
                writer.write_header_to_file(path=tmp)
                writer.write_kv_data_to_file()
                writer.write_ti_data_to_file()
                for item in plan:
                    tensor = load_tensor(item, files, handles, config)
                    writer.write_tensor_data(encode_tensor(tensor, item.qtype))
            finally:
                writer.close()
    finally:
        handles.clear()

    result = GgufExport(
        path=out_path,
        sha256=hashing.file_sha256(out_path),
        size=out_path.stat().st_size,
        architecture=str(architecture),
        dtype=dtype,
        n_tensors=len(plan),
    )
    logger.info("exported %s to %s (%s, %d tensors, %d bytes)", hf_dir, out_path, dtype, len(plan), result.size)
    return result


def check_architecture(model_type: str) -> None:
    """Refuse, in one line, a config.json model_type the writer cannot write (job=share asks before downloading)."""
    if model_type in ARCHITECTURES:
        return
    why = f" ({_NOT_WRITTEN[model_type]})" if model_type in _NOT_WRITTEN else ""
    raise UnsupportedError(
        f"unsupported architecture {model_type}: adam can export {_SUPPORTED}{why}; "
        "let Ollama pull the model itself (backend=ollama)"
    )
