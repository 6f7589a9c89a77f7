"""A sentence-transformers BERT directory (all-MiniLM-L6-v2) written as a GGUF embedder llama.cpp runs.

adam's own GGUF writer covers the chat architectures Ollama shares (adam/sharing/gguf_export.py); this
test helper writes BERT the way llama.cpp's convert_hf_to_gguf.py does (WordPiece vocabulary with
phantom spaces, mean pooling, float32 tensors), so the llamacpp backend's embeddings can be checked
against transformers on the same weights.
"""

from __future__ import annotations

import json
from pathlib import Path

BERT_TOKEN_TYPES = 2


def write_bert_gguf(hf_dir: Path, out: Path) -> Path:
    """Write ``hf_dir`` (config.json, model.safetensors, tokenizer.json) as ``out``; returns ``out``."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((hf_dir / "config.json").read_text())
    tokenizer = json.loads((hf_dir / "tokenizer.json").read_text())
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    tokens = [""] * len(vocab)
    for text, index in vocab.items():
        tokens[index] = text
    types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    # llama.cpp's WordPiece reads word starts as a phantom space (U+2581) and continuations bare
    tokens = [t if t in special else t[2:] if t.startswith("##") else "\u2581" + t for t in tokens]

    writer = gguf.GGUFWriter(out, "bert")
    writer.add_name(hf_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_token_type_count(config.get("type_vocab_size", BERT_TOKEN_TYPES))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    ids = {name: vocab[text] for name, text in (("cls", "[CLS]"), ("sep", "[SEP]"), ("unk", "[UNK]"))}
    ids |= {"pad": vocab["[PAD]"], "mask": vocab["[MASK]"]}
    writer.add_bos_token_id(ids["cls"])
    writer.add_sep_token_id(ids["sep"])
    writer.add_unk_token_id(ids["unk"])
    writer.add_pad_token_id(ids["pad"])
    writer.add_mask_token_id(ids["mask"])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, config["num_hidden_layers"])
    for name, array in load_file(hf_dir / "model.safetensors").items():
        name = name.removeprefix("bert.")
        if name.startswith("pooler.") or name.endswith("position_ids"):
            continue  # the pooler head is not used for sentence embeddings
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ValueError(f"no GGUF name for BERT tensor {name}")
        writer.add_tensor(target, array.astype("float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
