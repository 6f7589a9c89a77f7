"""A tiny random Qwen3 with a real byte-level BPE tokenizer and a Qwen3-style chat template.

It is saved the way a hub model is (``save_pretrained``), so the backend loads it through exactly
the code path of a real model. Weights are drawn with a large spread (std 0.3) so different prompts
lead to different greedy continuations; with the usual 0.02 every prompt collapses onto one token
and a test comparing batched with one-by-one output could not fail.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
THINK_TOKENS = ("<think>", "</think>")
VOCAB_SIZE = 384
SEED = 1234

# Qwen3's template in miniature: ChatML turns, and an empty think block when thinking is off.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif -%}"
    "{%- endif -%}"
)

CORPUS = """\
The river runs past the old mill and under the stone bridge before it reaches the sea.
In the morning the baker opens the shop, and the smell of fresh bread fills the street.
Paris is the capital of France, Berlin is the capital of Germany, and Rome is the capital of Italy.
A batch job reads many records, sends them to a model, and writes one answer for every record.
Cats sleep for most of the day, while dogs would rather run in the park and chase a ball.
The weather today is cold and wet, so take a coat, an umbrella and a warm cup of tea.
Numbers such as 1, 2, 3, 10, 42 and 2024 appear in text too, as do dates like 12 May.
She asked a question; he gave an answer. Why is the sky blue? Because light scatters!
Mountains, valleys, forests and lakes: the map showed every path through the quiet hills.
Write a short poem about the moon, the stars and the night that never seems to end.
"""


def build_tokenizer() -> object:
    """A byte-level BPE tokenizer trained on CORPUS, wrapped for transformers."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_qwen3(target: Path) -> Path:
    """Write a random 2-layer Qwen3 and its tokenizer to ``target``; returns ``target``."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    torch.manual_seed(SEED)
    model = Qwen3ForCausalLM(config)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.3)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id, do_sample=False)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
