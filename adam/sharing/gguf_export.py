"""Write a transformers model directory (config.json + safetensors + tokenizer.json) as one GGUF file.

Only what llama.cpp and Ollama need to run the model is written, under the key names gguf-py
defines. Tensors are read and written one at a time, so an 8B model converts in a few hundred MB
of memory rather than the model's size.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from adam import hashing
from adam.atomic import atomic_path
from adam.errors import UnsupportedError
from adam.sharing import SharedStoreError

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

ExportDType = Literal["f32", "f16", "bf16", "q8_0"]
# export dtype -> gguf.GGMLQuantizationType of 2-D tensors (1-D ones are always F32)
_MATRIX_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}
DTYPES: tuple[str, ...] = tuple(_MATRIX_TYPES)


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
_SKIPPED_TENSORS = ("rotary_emb.inv_freq",)  # recomputed by every runtime, never stored in GGUF


@dataclass(frozen=True)
class GgufExport:
    """One written GGUF file."""

    path: Path
    sha256: str
    size: int
    architecture: str
    dtype: str
    n_tensors: int


@dataclass(frozen=True)
class _Vocab:
    """The tokenizer as GGUF stores it."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int]  # bos, eos, pad, unk -> id
    add_bos: bool
    chat_template: str | list[dict[str, str]] | None


@dataclass(frozen=True)
class _Planned:
    """One tensor to write: where it is read from and how it is stored."""

    gguf_name: str
    hf_name: str | None  # None for tensors adam computes (rope_freqs)
    shape: tuple[int, ...]
    qtype: Any  # gguf.GGMLQuantizationType
    permute_heads: int | None  # head count for the Q/K rotary permutation, None for no permutation


def export_gguf(hf_dir: Path, out_path: Path, *, dtype: ExportDType = "f16", name: str | None = None) -> GgufExport:
    """Convert the transformers model in ``hf_dir`` to a GGUF file at ``out_path`` (written atomically)."""
    import gguf
    from safetensors import safe_open

    hf_dir, out_path = Path(hf_dir), Path(out_path)
    if dtype not in DTYPES:
        raise UnsupportedError(f"unsupported GGUF dtype {dtype!r}: adam can export {', '.join(DTYPES)}")
    config = _read_json(hf_dir / "config.json", what="a transformers model directory")
    architecture = config.get("model_type")
    check_architecture(str(architecture))
    arch = ARCHITECTURES[str(architecture)]
    model_arch = getattr(gguf.MODEL_ARCH, arch.gguf_name)
    vocab = _read_vocab(hf_dir, config, arch)
    weight_files = _weight_files(hf_dir)

    handles = {path: safe_open(str(path), framework="pt") for path in set(weight_files.values())}
    plan = _plan_tensors(config, arch, model_arch, weight_files, handles, dtype)
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[model_arch])
    try:
        with atomic_path(out_path) as tmp:  # renamed into place only when every tensor is written
            try:
                _add_hyperparameters(writer, config, name or hf_dir.name, dtype)
                _add_vocab(writer, vocab)
                for item in plan:
                    writer.add_tensor_info(
                        item.gguf_name, item.shape, _np_float32(), _nbytes(item.shape, item.qtype), raw_dtype=item.qtype
                    )
                writer.write_header_to_file(path=tmp)
                writer.write_kv_data_to_file()
                writer.write_ti_data_to_file()
                for item in plan:
                    tensor = _load(item, weight_files, handles, config)
                    writer.write_tensor_data(_encode(tensor, item.qtype))
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


def _read_json(path: Path, *, what: str) -> dict[str, Any]:
    """A JSON object from disk, or one clear error naming the file."""
    if not path.is_file():
        raise SharedStoreError(f"{path.parent} is not {what}: {path.name} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SharedStoreError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise SharedStoreError(f"{path} does not hold a JSON object")
    return data


def _weight_files(hf_dir: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (sharded or not)."""
    from safetensors import safe_open

    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index, what="a sharded safetensors checkpoint").get("weight_map") or {}
        return {name: hf_dir / file for name, file in weight_map.items()}
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise SharedStoreError(f"no safetensors weights in {hf_dir} (adam does not convert pytorch_model.bin)")
    found: dict[str, Path] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            found.update(dict.fromkeys(f.keys(), path))
    return found


def _plan_tensors(
    config: dict[str, Any],
    arch: _Arch,
    model_arch: Any,
    weight_files: dict[str, Path],
    handles: dict[Path, Any],
    dtype: str,
) -> list[_Planned]:
    """Map every HF tensor to its GGUF name, shape and storage type."""
    import gguf

    n_layers = int(config["num_hidden_layers"])
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    tied = bool(config.get("tie_word_embeddings", False))
    name_map = gguf.get_tensor_name_map(model_arch, n_layers)
    plan: list[_Planned] = []
    for hf_name in weight_files:
        if hf_name.endswith(_SKIPPED_TENSORS) or (tied and hf_name.startswith("lm_head.")):
            continue
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UnsupportedError(f"cannot export tensor {hf_name}: it has no GGUF name for {config['model_type']}")
        shape = tuple(handles[weight_files[hf_name]].get_slice(hf_name).get_shape())
        permute = None
        if arch.permute_qk and ".self_attn.q_proj." in hf_name:
            permute = n_head
        elif arch.permute_qk and ".self_attn.k_proj." in hf_name:
            permute = n_head_kv
        plan.append(_Planned(gguf_name, hf_name, shape, _storage_type(shape, dtype), permute))
    rope_freqs = _llama3_rope_factors(config)
    if rope_freqs is not None:
        name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
        plan.append(_Planned(name, None, (len(rope_freqs),), gguf.GGMLQuantizationType.F32, None))
    return sorted(plan, key=_tensor_order)


def _tensor_order(item: _Planned) -> tuple[int, int, str]:
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
    qtype = GGMLQuantizationType[_MATRIX_TYPES[dtype]]
    block = GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:
        # a row that does not split into whole blocks cannot be quantized; llama.cpp falls back the same way
        logger.debug("row of %d values does not split into %s blocks; storing f16", shape[-1], dtype)
        return GGMLQuantizationType.F16
    return qtype


def _nbytes(shape: tuple[int, ...], qtype: Any) -> int:
    """Bytes one tensor takes on disk in its storage type."""
    from gguf import GGML_QUANT_SIZES

    block, type_size = GGML_QUANT_SIZES[qtype]
    return math.prod(shape) // block * type_size


def _np_float32() -> np.dtype:
    """The dtype handed to add_tensor_info with a raw type: anything but uint8 keeps the shape as given."""
    import numpy as np

    return np.dtype(np.float32)


def _load(
    item: _Planned, weight_files: dict[str, Path], handles: dict[Path, Any], config: dict[str, Any]
) -> torch.Tensor:
    """Read one tensor and bring it into llama.cpp's layout."""
    import torch

    if item.hf_name is None:
        return torch.tensor(_llama3_rope_factors(config), dtype=torch.float32)
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


def _encode(tensor: torch.Tensor, qtype: Any) -> np.ndarray:
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


def _rope_theta(config: dict[str, Any]) -> float:
    """The rotary base, from transformers 4 (rope_theta) or 5 (rope_parameters) configs."""
    params = config.get("rope_parameters") or {}
    return float(config.get("rope_theta") or params.get("rope_theta") or 10000.0)


def _rope_scaling(config: dict[str, Any]) -> dict[str, Any] | None:
    """The rotary scaling settings with a normalized rope_type, or None for plain RoPE."""
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or None
    if not scaling:
        return None
    rope_type = scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type == "default":
        return None
    return {**scaling, "rope_type": rope_type}


def _head_dim(config: dict[str, Any]) -> int:
    """Per-head width: stated in the config, or the hidden size split evenly."""
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def _llama3_rope_factors(config: dict[str, Any]) -> list[float] | None:
    """Per-frequency divisors of Llama 3.1's long-context RoPE, which llama.cpp reads from rope_freqs."""
    scaling = _rope_scaling(config)
    if scaling is None or scaling["rope_type"] != "llama3":
        return None
    base, dim = _rope_theta(config), _head_dim(config)
    factor = float(scaling["factor"])
    low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    original = float(scaling.get("original_max_position_embeddings", 8192))
    divisors = []
    for i in range(0, dim, 2):
        wavelength = 2 * math.pi * base ** (i / dim)
        if wavelength < original / high:  # fast rotations keep their frequency
            divisors.append(1.0)
        elif wavelength > original / low:  # slow ones are stretched by the full factor
            divisors.append(factor)
        else:  # in between, blend the two
            blend = (original / wavelength - low) / (high - low)
            divisors.append(1.0 / ((1 - blend) / factor + blend))
    return divisors


def _add_hyperparameters(writer: Any, config: dict[str, Any], name: str, dtype: str) -> None:
    """The model's shape and the file's type, under the architecture's keys."""
    import gguf

    n_head = int(config["num_attention_heads"])
    head_dim = _head_dim(config)
    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(int(config.get("max_position_embeddings") or 4096))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or n_head))
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(int(config["vocab_size"]))
    if config["model_type"] == "llama":
        writer.add_rope_dimension_count(head_dim)
    if "head_dim" in config or head_dim * n_head != int(config["hidden_size"]):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    scaling = _rope_scaling(config)
    if scaling is not None:
        kind = scaling["rope_type"]
        if kind == "linear":
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(scaling["factor"]))
        elif kind == "yarn":
            writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            writer.add_rope_scaling_factor(float(scaling["factor"]))
            if "original_max_position_embeddings" in scaling:
                writer.add_rope_scaling_orig_ctx_len(int(scaling["original_max_position_embeddings"]))
        elif not (kind == "llama3" and config["model_type"] == "llama"):
            raise UnsupportedError(f"unsupported rope scaling {kind!r}: adam can export linear, yarn and llama3")
    file_types = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }
    writer.add_file_type(file_types[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_vocab(writer: Any, vocab: _Vocab) -> None:
    """The tokenizer keys llama.cpp reads for a byte-level BPE vocabulary."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    adders = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "pad": writer.add_pad_token_id,
        "unk": writer.add_unk_token_id,
    }
    for role, token_id in vocab.special_ids.items():
        adders[role](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def _read_vocab(hf_dir: Path, config: dict[str, Any], arch: _Arch) -> _Vocab:
    """Tokens, types, merges, special ids and chat template from tokenizer.json and its config."""
    import gguf

    tokenizer = _read_json(hf_dir / "tokenizer.json", what="a model directory with a fast tokenizer")
    tok_config_path = hf_dir / "tokenizer_config.json"
    tok_config = _read_json(tok_config_path, what="a tokenizer directory") if tok_config_path.is_file() else {}
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE" or not _has_part(tokenizer, "ByteLevel"):
        raise UnsupportedError(
            f"unsupported tokenizer in {hf_dir}: adam exports byte-level BPE tokenizers (GPT-2 style) only"
        )
    by_id: dict[int, str] = {int(i): tok for tok, i in model.get("vocab", {}).items()}
    special: set[int] = set()
    added: set[int] = set()
    for entry in tokenizer.get("added_tokens") or []:
        by_id[int(entry["id"])] = entry["content"]
        added.add(int(entry["id"]))
        if entry.get("special"):
            special.add(int(entry["id"]))
    vocab_size = int(config["vocab_size"])
    if by_id and max(by_id) >= vocab_size:
        raise UnsupportedError(
            f"the tokenizer in {hf_dir} has ids up to {max(by_id)} but the model's vocab_size is {vocab_size}"
        )
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:  # rows of the embedding no token uses; llama.cpp names them the same way
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in special or (i in added and re.fullmatch(r"<\|.*\|>", token)):
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL)
        elif i in added:
            tokens.append(token)
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    token_ids = {tok: i for i, tok in by_id.items()}
    special_ids = _special_ids(tok_config, config, token_ids)
    return _Vocab(
        tokens=tokens,
        types=[int(t) for t in types],
        merges=merges,
        pre=arch.pre_tokenizer or pre_tokenizer_name(tokenizer),
        special_ids=special_ids,
        add_bos=_adds_bos(tok_config, tokenizer, special_ids.get("bos"), token_ids),
        chat_template=_chat_template(hf_dir, tok_config),
    )


def _has_part(node: Any, kind: str) -> bool:
    """Whether any component of a tokenizer.json section has this type."""
    if isinstance(node, dict):
        return node.get("type") == kind or any(_has_part(v, kind) for v in node.values())
    if isinstance(node, list):
        return any(_has_part(v, kind) for v in node)
    return False


def _parts(node: Any) -> list[dict[str, Any]]:
    """The pre-tokenizer's components, a Sequence flattened."""
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        return [p for child in node.get("pretokenizers") or [] for p in _parts(child)]
    return [node]


def pre_tokenizer_name(tokenizer: dict[str, Any]) -> str:
    """llama.cpp's name for how this tokenizer.json splits text before BPE (``tokenizer.ggml.pre``)."""
    parts = _parts(tokenizer.get("pre_tokenizer"))
    regexes = [str((p.get("pattern") or {}).get("Regex", "")) for p in parts if p.get("type") == "Split"]
    byte_level_regex = any(p.get("type") == "ByteLevel" and p.get("use_regex", True) for p in parts)
    single_digits = any(p.get("type") == "Digits" and p.get("individual_digits") for p in parts)
    if any(r"\p{N}{1,3}" in r for r in regexes):
        return "llama-bpe"  # Llama 3's split: numbers in groups of up to three
    if any(r"\p{N}|" in r or r == r"\p{N}" for r in regexes) and any(r"(?i:'s" in r for r in regexes):
        return "qwen2"
    if single_digits and byte_level_regex and not regexes:
        return "smollm"  # GPT-2's split after one digit per piece (SmolLM, StarCoder)
    if byte_level_regex and not regexes:
        return "gpt-2"
    logger.warning("unrecognized pre-tokenizer %s; writing 'default'", json.dumps(tokenizer.get("pre_tokenizer")))
    return "default"


def _token_content(value: Any) -> str | None:
    """A special token as tokenizer_config.json gives it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _special_ids(tok_config: dict[str, Any], config: dict[str, Any], token_ids: dict[str, int]) -> dict[str, int]:
    """bos/eos/pad/unk ids: the tokenizer config's tokens first, config.json's ids where it has none."""
    found: dict[str, int] = {}
    for role in ("bos", "eos", "pad", "unk"):
        content = _token_content(tok_config.get(f"{role}_token"))
        if content is not None and content in token_ids:
            found[role] = token_ids[content]
            continue
        value = config.get(f"{role}_token_id")
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int):
            found[role] = value
    return found


def _adds_bos(
    tok_config: dict[str, Any], tokenizer: dict[str, Any], bos_id: int | None, token_ids: dict[str, int]
) -> bool:
    """Whether encoding starts with BOS: the config's flag, else the post-processor's template."""
    if isinstance(tok_config.get("add_bos_token"), bool):
        return bool(tok_config["add_bos_token"])
    post = tokenizer.get("post_processor") or {}
    processors = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for processor in processors:
        if processor.get("type") == "TemplateProcessing" and processor.get("single"):
            first = processor["single"][0].get("SpecialToken", {}).get("id")
            if first is not None and bos_id is not None and token_ids.get(first) == bos_id:
                return True
    return False


def read_chat_template(hf_dir: Path) -> str | list[dict[str, str]] | None:
    """The Jinja chat template of a transformers model directory, or None if it has none."""
    hf_dir = Path(hf_dir)
    tok_config_path = hf_dir / "tokenizer_config.json"
    tok_config = _read_json(tok_config_path, what="a tokenizer directory") if tok_config_path.is_file() else {}
    return _chat_template(hf_dir, tok_config)


def _chat_template(hf_dir: Path, tok_config: dict[str, Any]) -> str | list[dict[str, str]] | None:
    """The Jinja chat template: tokenizer_config.json's, else chat_template.jinja (transformers 5)."""
    template = tok_config.get("chat_template")
    if template:
        return template
    jinja = hf_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    legacy = hf_dir / "chat_template.json"
    if legacy.is_file():
        return _read_json(legacy, what="a chat template file").get("chat_template")
    return None
