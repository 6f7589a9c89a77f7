"""export_gguf round trips: HF directory -> GGUF -> transformers gives the same model back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from adam.errors import UnsupportedError
from adam.sharing import SharedStoreError
from adam.sharing.gguf_export import export_gguf
from adam.sharing.gguf_hparams import llama3_rope_factors
from adam.sharing.gguf_tensors import _interleave_rotary_halves
from adam.sharing.gguf_vocab import pre_tokenizer_name

from .conftest import TINY_MODELS

PROMPT_IDS = [[5, 17, 40, 90, 3, 200, 11, 7, 64, 33]]

# measured on the tiny models (weights ~ N(0, 0.3), 2 layers): max|Δ| is f16 <= 0.30%, bf16 <= 3.1% of max|logits|
RELATIVE_TOLERANCE = {"f16": 1e-2, "bf16": 5e-2}


def load_source(hf_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)


def load_gguf(path: Path, hf_dir: Path | None = None) -> Any:
    """The GGUF through transformers; Qwen3 needs the source config (transformers ignores the file's key length)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    if hf_dir is not None:
        kwargs["config"] = AutoConfig.from_pretrained(hf_dir)
    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32, **kwargs)


def needs_config(name: str) -> bool:
    """transformers 5.23 reads no head size from a qwen3 GGUF and uses Qwen3Config's default of 128."""
    model_type, overrides = TINY_MODELS[name]
    return model_type == "qwen3" and overrides.get("head_dim", 128) != 128


def logits(model: Any, ids: list[list[int]] = PROMPT_IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor(ids)).logits


def greedy(model: Any, ids: list[list[int]] = PROMPT_IDS, n: int = 10) -> list[int]:
    """n greedy tokens by plain forward passes, so no generation config can differ between the two models."""
    tokens = list(ids[0])
    for _ in range(n):
        tokens.append(int(logits(model, [tokens])[0, -1].argmax()))
    return tokens[len(ids[0]) :]


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_f32_round_trip_is_exact(name: str, tiny_models: dict[str, Path], tiny_exports: Any) -> None:
    src = tiny_models[name]
    exported = tiny_exports(name, "f32")
    source, back = load_source(src), load_gguf(exported.path, src if needs_config(name) else None)
    assert torch.equal(logits(source), logits(back))
    assert greedy(source) == greedy(back)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("name", ["qwen3", "qwen3_narrow_heads", "qwen2", "llama"])
def test_half_precision_round_trip(name: str, dtype: str, tiny_models: dict[str, Path], tiny_exports: Any) -> None:
    src = tiny_models[name]
    expected = logits(load_source(src))
    back = load_gguf(tiny_exports(name, dtype).path, src if needs_config(name) else None)
    got = logits(back)
    assert (got - expected).abs().max() <= RELATIVE_TOLERANCE[dtype] * expected.abs().max()
    if dtype == "f16":
        assert greedy(load_source(src)) == greedy(back)


@pytest.mark.parametrize("name", ["qwen3", "llama"])
def test_q8_0_round_trip_is_close(name: str, tiny_models: dict[str, Path], tiny_exports: Any) -> None:
    src = tiny_models[name]
    expected = logits(load_source(src)).flatten()
    got = logits(load_gguf(tiny_exports(name, "q8_0").path, src if needs_config(name) else None)).flatten()
    assert torch.nn.functional.cosine_similarity(expected, got, dim=0) > 0.99


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_file_reads_back_with_gguf_reader(name: str, tiny_models: dict[str, Path], tiny_exports: Any) -> None:
    import gguf

    exported = tiny_exports(name, "f32")
    config = json.loads((tiny_models[name] / "config.json").read_text())
    reader = gguf.GGUFReader(exported.path)
    fields = {key: field.contents() for key, field in reader.fields.items()}
    arch = config["model_type"]
    assert fields["general.architecture"] == arch == exported.architecture
    assert len(reader.tensors) == exported.n_tensors == fields["GGUF.tensor_count"]
    assert len(fields["tokenizer.ggml.tokens"]) == config["vocab_size"]
    assert fields["tokenizer.ggml.tokens"][-1] == f"[PAD{config['vocab_size'] - 1}]"
    assert fields["tokenizer.ggml.pre"] == ("gpt-2" if arch == "llama" else "qwen2")
    assert fields[f"{arch}.block_count"] == config["num_hidden_layers"]
    assert fields[f"{arch}.attention.head_count_kv"] == config["num_key_value_heads"]
    assert fields["tokenizer.chat_template"].startswith("{% for message in messages %}")
    names = {t.name for t in reader.tensors}
    assert ("output.weight" in names) == (not config["tie_word_embeddings"])
    if arch == "qwen3":
        assert fields["qwen3.attention.key_length"] == config["head_dim"]
    # vectors stay f32 whatever the export dtype
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in reader.tensors if len(t.shape) == 1)


def test_q8_0_file_is_quantized(tiny_exports: Any) -> None:
    import gguf

    reader = gguf.GGUFReader(tiny_exports("qwen3", "q8_0").path)
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert reader.fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q8_0


def test_tokenizer_round_trips(tiny_models: dict[str, Path], tiny_exports: Any) -> None:
    from transformers import AutoTokenizer

    for name in ("qwen3", "llama"):
        path = tiny_exports(name, "f32").path
        source = AutoTokenizer.from_pretrained(tiny_models[name])
        back = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        text = "<|im_start|>user\nThe quick brown fox, jumps over 12 dogs!<|im_end|>\n"
        assert back.encode(text, add_special_tokens=False) == source.encode(text, add_special_tokens=False)
        assert back.chat_template == source.chat_template
        assert back.eos_token == source.eos_token == "<|im_end|>"


def test_llama_rotary_permutation_is_the_one_transformers_undoes() -> None:
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weight = torch.arange(6 * 16 * 5, dtype=torch.float32).reshape(6 * 16, 5)
    permuted = _interleave_rotary_halves(weight, 6)
    assert not torch.equal(permuted, weight)
    undo = LlamaTensorProcessor({"num_attention_heads": 6, "num_key_value_heads": 6})
    restored = undo.process(permuted.numpy(), "blk.0.attn_q.weight").weights
    assert torch.equal(torch.from_numpy(restored), weight)


def test_llama3_rope_factors_match_transformers() -> None:
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    config = {"hidden_size": 256, "num_attention_heads": 4, "rope_theta": 500000.0, "rope_scaling": scaling}
    factors = torch.tensor(llama3_rope_factors(config), dtype=torch.float64)
    hf = LlamaConfig(
        hidden_size=256,
        num_attention_heads=4,
        max_position_embeddings=131072,
        rope_parameters={**scaling, "rope_theta": 500000.0},
    )
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    base = 1.0 / (500000.0 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64))
    torch.testing.assert_close(base / scaled.double(), factors, rtol=1e-5, atol=0)


def test_unsupported_architecture_is_refused(tmp_path: Path) -> None:
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedError, match="unsupported architecture gpt2: adam can export qwen3, qwen2 and llama"):
        export_gguf(tmp_path, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_bad_inputs_fail_with_one_line(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    with pytest.raises(SharedStoreError, match=r"config\.json is missing"):
        export_gguf(tmp_path, tmp_path / "out.gguf")
    with pytest.raises(UnsupportedError, match=r"unsupported GGUF dtype 'q4_0'"):
        export_gguf(tiny_models["qwen3"], tmp_path / "out.gguf", dtype="q4_0")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("pre_tokenizer", "expected"),
    [
        ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, "gpt-2"),
        (
            {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Digits", "individual_digits": True},
                    {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
                ],
            },
            "smollm",
        ),
        (
            {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": r"(?i:'s|'t)|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"}},
                    {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
                ],
            },
            "llama-bpe",
        ),
    ],
)
def test_pre_tokenizer_names(pre_tokenizer: dict[str, Any], expected: str) -> None:
    assert pre_tokenizer_name({"pre_tokenizer": pre_tokenizer}) == expected


def test_the_suites_shared_tiny_qwen3_round_trips(tmp_path: Path) -> None:
    """tests/tiny_model.py's Qwen3 (added <think> tokens, no BOS) exports exactly too."""
    tiny_model = pytest.importorskip("tests.tiny_model")
    src = tiny_model.build_tiny_qwen3(tmp_path / "hf")
    exported = export_gguf(src, tmp_path / "gguf" / "model.gguf", dtype="f32")
    source, back = load_source(src), load_gguf(exported.path, src)
    assert torch.equal(logits(source), logits(back))
    import gguf

    fields = gguf.GGUFReader(exported.path).fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()
    assert types[tokens.index("<think>")] == gguf.TokenType.USER_DEFINED
    assert types[tokens.index("<|im_end|>")] == gguf.TokenType.CONTROL
    assert "tokenizer.ggml.bos_token_id" not in fields


@pytest.mark.slow
def test_demo_model_round_trips(smollm2_hf_dir: Path, tmp_path: Path) -> None:
    """SmolLM2 (a real llama) through f32 GGUF: the same greedy answer to the same chat prompt."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    exported = export_gguf(smollm2_hf_dir, tmp_path / "smollm2.gguf", dtype="f32")
    assert gguf.GGUFReader(exported.path).fields["tokenizer.ggml.pre"].contents() == "smollm"
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answers = []
    for model_dir, kwargs in ((smollm2_hf_dir, {}), (tmp_path, {"gguf_file": exported.path.name})):
        tokenizer = AutoTokenizer.from_pretrained(model_dir, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs)
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False, eos_token_id=2, pad_token_id=2)
        answers.append(output[0].tolist())
    assert answers[0] == answers[1]
    assert "Paris" in AutoTokenizer.from_pretrained(smollm2_hf_dir).decode(answers[0])
