"""A fast tokenizer (tokenizer.json, tokenizer_config.json) as the GGUF keys llama.cpp reads.

Only byte-level BPE vocabularies (GPT-2 style) are written: tokens with their types, merges, the
pre-tokenizer's llama.cpp name, the special token ids, whether encoding adds BOS, and the chat template.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adam.errors import UnsupportedError
from adam.sharing.model_dir import read_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vocab:
    """The tokenizer as GGUF stores it."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int]  # bos, eos, pad, unk -> id
    add_bos: bool
    chat_template: str | list[dict[str, str]] | None


def read_vocab(hf_dir: Path, config: dict[str, Any], pre_tokenizer: str | None) -> Vocab:
    """Tokens, types, merges, special ids and chat template from tokenizer.json and its config.

    ``pre_tokenizer`` is the name every model of the family uses; None reads it from tokenizer.json.
    """
    import gguf

    tokenizer = read_json(hf_dir / "tokenizer.json", what="a model directory with a fast tokenizer")
    tok_config = _tokenizer_config(hf_dir)
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
    return Vocab(
        tokens=tokens,
        types=[int(t) for t in types],
        merges=merges,
        pre=pre_tokenizer or pre_tokenizer_name(tokenizer),
        special_ids=special_ids,
        add_bos=_adds_bos(tok_config, tokenizer, special_ids.get("bos"), token_ids),
        chat_template=_chat_template(hf_dir, tok_config),
    )


def add_vocab(writer: Any, vocab: Vocab) -> None:
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


def _tokenizer_config(hf_dir: Path) -> dict[str, Any]:
    """tokenizer_config.json, or nothing when the directory has none."""
    path = hf_dir / "tokenizer_config.json"
    return read_json(path, what="a tokenizer directory") if path.is_file() else {}


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
    return _chat_template(hf_dir, _tokenizer_config(hf_dir))


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
        return read_json(legacy, what="a chat template file").get("chat_template")
    return None
