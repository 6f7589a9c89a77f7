"""The tensors of a GGUF export: which HF tensor becomes which GGUF one, how each is stored, and its bytes.

Vectors stay f32 and matrices take the export dtype where their rows split into whole blocks. Q and K
of the llama graph are reordered to llama.cpp's rotary layout, and Llama 3.1's RoPE factors become a
``rope_freqs`` tensor. Tensors are read one at a time from open safetensors handles.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adam.errors import UnsupportedError
from adam.sharing.gguf_hparams import llama3_rope_factors

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

# export dtype -> gguf.GGMLQuantizationType of 2-D tensors (1-D ones are always F32)
MATRIX_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}
_SKIPPED_TENSORS = ("rotary_emb.inv_freq",)  # recomputed by every runtime, never stored in GGUF


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor to write: where it is read from and how it is stored."""

    gguf_name: str
    hf_name: str | None  # None for tensors adam computes (rope_freqs)
    shape: tuple[int, ...]
    qtype: Any  # gguf.GGMLQuantizationType
    permute_heads: int | None  # head count for the Q/K rotary permutation, None for no permutation


def plan_tensors(
    config: dict[str, Any],
    permute_qk: bool,
    model_arch: Any,
    weight_files: dict[str, Path],
    handles: dict[Path, Any],
    dtype: str,
) -> list[PlannedTensor]:
    """Map every HF tensor to its GGUF name, shape and storage type."""
    import gguf

    n_layers = int(config["num_hidden_layers"])
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    tied = bool(config.get("tie_word_embeddings", False))
    name_map = gguf.get_tensor_name_map(model_arch, n_layers)
    plan: list[PlannedTensor] = []
    for hf_name in weight_files:
        if hf_name.endswith(_SKIPPED_TENSORS) or (tied and hf_name.startswith("lm_head.")):
            continue
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UnsupportedError(f"cannot export tensor {hf_name}: it has no GGUF name for {config['model_type']}")
        shape = tuple(handles[weight_files[hf_name]].get_slice(hf_name).get_shape())
        permute = None
        if permute_qk and ".self_attn.q_proj." in hf_name:
            permute = n_head
        elif permute_qk and ".self_attn.k_proj." in hf_name:
            permute = n_head_kv
        plan.append(PlannedTensor(gguf_name, hf_name, shape, _storage_type(shape, dtype), permute))
    rope_freqs = llama3_rope_factors(config)
    if rope_freqs is not None:
        name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
        plan.append(PlannedTensor(name, None, (len(rope_freqs),), gguf.GGMLQuantizationType.F32, None))
    return sorted(plan, key=_tensor_order)


def _tensor_order(item: PlannedTensor) -> tuple[int, int, str]:
    """Embeddings first, then blocks in order, then the output head, like llama.cpp's own files."""
    match = re.match(r"blk\.(\d+)\.", item.gguf_name)
    if match:
        return (1, int(match.group(1)), item.gguf_name)
    return (0 if item.gguf_name.startswith(("token_embd", "rope_freqs")) else 2, 0, item.gguf_name)


def _storage_type(shape: tuple[int, ...], dtype: str) -> Any:
    """How one tensor is stored: vectors stay f32; matrices take the export dtype where it fits."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if len(shape) < 2:
        return GGMLQuantizationType.F32
    qtype = GGMLQuantizationType[MATRIX_TYPES[dtype]]
    block = GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:
        # a row that does not split into whole blocks cannot be quantized; llama.cpp falls back the same way
        logger.debug("row of %d values does not split into %s blocks; storing f16", shape[-1], dtype)
        return GGMLQuantizationType.F16
    return qtype


def nbytes(shape: tuple[int, ...], qtype: Any) -> int:
    """Bytes one tensor takes on disk in its storage type."""
    from gguf import GGML_QUANT_SIZES

    block, type_size = GGML_QUANT_SIZES[qtype]
    return math.prod(shape) // block * type_size


def np_float32() -> np.dtype:
    """The dtype handed to add_tensor_info with a raw type: anything but uint8 keeps the shape as given."""
    import numpy as np

    return np.dtype(np.float32)


def load_tensor(
    item: PlannedTensor, weight_files: dict[str, Path], handles: dict[Path, Any], config: dict[str, Any]
) -> torch.Tensor:
    """Read one tensor and bring it into llama.cpp's layout."""
    import torch

    if item.hf_name is None:
        return torch.tensor(llama3_rope_factors(config), dtype=torch.float32)
    tensor = handles[weight_files[item.hf_name]].get_tensor(item.hf_name)
    if item.permute_heads is not None:
        tensor = _interleave_rotary_halves(tensor, item.permute_heads)
    return tensor


def _interleave_rotary_halves(tensor: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder each head's rows from HF's two rotary halves to llama.cpp's adjacent pairs.

    transformers rotates dimension i with i + head_dim/2; llama.cpp's llama graph rotates 2i with 2i+1.
    Row j of the first half and row j of the second half become rows 2j and 2j+1.
    """
    rows = tensor.shape[0]
    half = rows // n_heads // 2
    split = tensor.reshape(n_heads, 2, half, *tensor.shape[1:])
    return split.transpose(1, 2).reshape(tensor.shape).contiguous()


def encode_tensor(tensor: torch.Tensor, qtype: Any) -> np.ndarray:
    """The bytes of one tensor in its storage type, as the numpy array GGUFWriter writes."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType, quants

    tensor = tensor.contiguous()
    if qtype == GGMLQuantizationType.F32:
        return tensor.to(torch.float32).numpy()
    if qtype == GGMLQuantizationType.F16:
        return tensor.to(torch.float16).numpy()
    if qtype == GGMLQuantizationType.BF16:
        # torch rounds to nearest even like ggml; numpy has no bfloat16, so hand over the raw bytes
        return tensor.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint8)
    return quants.quantize(tensor.to(torch.float32).numpy(), qtype)
