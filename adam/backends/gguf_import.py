"""GGUF files imported once into an HF-format directory in adam's cache, keyed by the file's sha256.

Reading a GGUF through transformers (de-quantising every tensor) takes many times longer than loading
safetensors, so the first load converts and later loads read the converted copy. Heavy libraries
(torch, transformers) are imported inside the functions.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adam.errors import UnsupportedError, first_line
from adam.hashing import cached_file_sha256

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_convert_lock = threading.Lock()  # one conversion at a time in this process; os.replace guards across processes


def file_sha256(path: Path, cache_dir: Path) -> str:
    """The sha256 of a file, remembered by (path, size, mtime) so a large GGUF is hashed once."""
    return cached_file_sha256(path, cache_dir / "gguf" / "hashes.json")


def converted_dir(gguf: Path, cache_dir: Path) -> Path:
    """Where the HF-format copy of a GGUF file lives (it may not exist yet)."""
    return cache_dir / "gguf" / file_sha256(gguf, cache_dir)


def ensure_converted(gguf: Path, cache_dir: Path) -> Path:
    """The HF-format copy of a GGUF file, converting it the first time."""
    target = converted_dir(gguf, cache_dir)
    if (target / "config.json").is_file():
        return target
    with _convert_lock:
        if not (target / "config.json").is_file():
            _convert(gguf, target)
    return target


def _gguf_field(reader: Any, key: str) -> Any:
    """A scalar or string metadata value of a GGUF file, or None."""
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    return bytes(value).decode("utf-8") if field.types and field.types[0].name == "STRING" else value[0].item()


def _gguf_config(gguf: Path, reader: Any) -> Any:
    """The transformers config of a GGUF, with the head size the file records.

    transformers 5.x does not read ``<arch>.attention.key_length`` for Qwen3 and assumes 128; a model
    with another head size would load with mismatched attention shapes.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    arch = _gguf_field(reader, "general.architecture")
    key_length = _gguf_field(reader, f"{arch}.attention.key_length")
    if key_length and getattr(config, "head_dim", None) not in (None, key_length):
        config.head_dim = int(key_length)
    return config


def _gguf_dtype(reader: Any) -> torch.dtype:
    """float16/bfloat16 when every float tensor already is one, else float32 so de-quantised values stay exact."""
    import torch
    from gguf import GGMLQuantizationType

    kinds = {t.tensor_type for t in reader.tensors} - {GGMLQuantizationType.F32}
    if kinds == {GGMLQuantizationType.F16}:
        return torch.float16
    if kinds == {GGMLQuantizationType.BF16}:
        return torch.bfloat16
    return torch.float32


def _convert(gguf: Path, target: Path) -> None:
    """Write the HF-format copy of ``gguf`` at ``target`` through a temp dir, so a crash leaves no half copy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("one-time conversion of %s into %s; later runs load the converted copy", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name[:16]}-"))
    try:
        try:
            from gguf import GGUFReader

            reader = GGUFReader(gguf)
            dtype = _gguf_dtype(reader)
            config = _gguf_config(gguf, reader)
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=dtype, config=config
            )
        except (ValueError, KeyError, OSError, NotImplementedError) as err:
            raise UnsupportedError(f"transformers cannot read {gguf}: {first_line(err)}") from err
        # A GGUF-loaded model refuses save_pretrained; an unquantised twin sharing its tensors does not.
        config = copy.deepcopy(loaded.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with torch.device("meta"):
            twin = AutoModelForCausalLM.from_config(config, dtype=dtype)
        twin.load_state_dict(loaded.state_dict(), assign=True)
        twin.generation_config = loaded.generation_config
        twin.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "adam_source.json").write_text(
            json.dumps({"gguf": str(gguf), "sha256": target.name, "dtype": str(dtype).removeprefix("torch.")}),
            encoding="utf-8",
        )
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # else another process finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
