"""Typed schemas behind the YAML in conf/: a typo or a wrong type fails when the config is composed.

Each config group's YAML files start from one of these schemas (``defaults: [base_size]``), so every
size, domain, hardware profile and job exposes the same keys and Hydra rejects unknown ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from adam.errors import ConfigError
from adam.settings import catalog


class ModelKind(StrEnum):
    """What a model is for."""

    generate = "generate"
    embed = "embed"


class Pooling(StrEnum):
    """How token states become one embedding vector."""

    mean = "mean"  # sentence-transformers encoders such as all-MiniLM-L6-v2
    cls = "cls"
    last = "last"  # decoder embedders such as Qwen3-Embedding


class Device(StrEnum):
    """Where the model runs; auto picks cuda, then mps, then cpu."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class DType(StrEnum):
    """Weight dtype; auto picks bfloat16 on GPUs that support it, float16 on other GPUs, float32 on CPU."""

    auto = "auto"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


class Thinking(StrEnum):
    """Whether a model thinks before it answers (Qwen3's <think> block)."""

    none = "none"  # never: most models, Qwen3 *-Instruct-2507
    switch = "switch"  # when asked: the original Qwen3 (job.thinking=true)
    always = "always"  # every answer: Qwen3 *-Thinking-2507


class WeightsSource(StrEnum):
    """Where the HuggingFace backend finds a size's weights."""

    auto = "auto"  # size.path, then size.package, then the Hugging Face cache or hub
    ollama = "ollama"  # the GGUF Ollama already pulled for size.ollama_tag, without a download


@dataclass
class SizeSpec:
    """One model: where its weights come from and what it can do. Every size file extends this."""

    name: str = MISSING
    hf_id: str | None = None  # Hugging Face hub id, e.g. Qwen/Qwen3-1.7B
    revision: str | None = None  # hub branch, tag or commit; null means main
    ollama_tag: str | None = None  # null where Ollama has no such model
    path: str | None = None  # local HF model directory or .gguf file; wins over hf_id (size=local needs it)
    package: str | None = None  # "module:relative/path" for weights shipped inside a Python package
    source: WeightsSource = WeightsSource.auto  # ollama: load Ollama's pulled GGUF for ollama_tag
    kind: ModelKind = ModelKind.generate
    context_length: int = 32768  # native context in tokens: Qwen3's (the catalog's family), others set theirs
    parameters: int | None = None  # total parameter count
    active_parameters: int | None = None  # per token, for mixture-of-experts models
    pooling: Pooling | None = None  # embedding pooling; null means the model's own default
    max_seq_length: int | None = None  # embedding truncation length; null means context_length
    description: str = ""
    # Long context, embeddings and memory estimates (planning/memory_estimates.py); null where a size lacks them.
    long_context: bool = False  # true: extend the context with YaRN rope scaling to long_context_length
    # context with YaRN; null: no long-context mode (Qwen3 below 4B, the embedders, and sizes whose native context is
    # already long: the 2507 updates' 256k, Llama 3.1's and Phi-3-128k's 128k)
    long_context_length: int | None = None
    query_instruction: str | None = None  # embedders: prefix for queries, with {task}; documents get none
    dimensions: int | None = None  # embedders: keep the first N dimensions (Matryoshka), re-normalised; null: all
    num_layers: int | None = None  # architecture, for the KV-cache estimate (from the model's config.json)
    num_kv_heads: int | None = None
    head_dim: int | None = None
    # Catalog facts (docs/MODEL_MANAGEMENT.md), from the model's config.json and card; null where unknown.
    family: str | None = None  # qwen3, qwen3_2507, llama, gemma, phi, mistral; size=auto picks within one (size.family)
    architecture: str | None = None  # config.json's model_type; job=share refuses what it cannot write, early
    thinking: Thinking = Thinking.none  # none | switch (job.thinking turns it on) | always
    sliding_window: int | None = None  # tokens a sliding-window layer keeps in its KV cache
    sliding_window_layers: int | None = None  # how many layers use the window; null: all of them
    rope_scaling: str | None = None  # scaling the checkpoint ships with (longrope, llama3), applied from config.json
    selected_by: str | None = None  # size=auto: why this size was picked (filled in, recorded in the manifest)


@dataclass
class DomainSpec:
    """A use case: the system prompt and the generation defaults a record does not set itself."""

    name: str = MISSING
    system_prompt: str | None = None  # null: the model's own default
    # Sampling for a record, job and API request that set none (domain=general's, and a bare Engine's): Qwen3's
    # recommended non-thinking settings. 0 is greedy; code domains sample cooler.
    temperature: float = 0.7
    top_p: float = 0.8
    max_tokens: int = 256
    preferred_size: str | None = None  # size=auto takes this size when it fits; null: the largest that fits
    context: int = 2048  # tokens per sequence (prompt + answer) that size=auto reserves KV cache for

    def __post_init__(self) -> None:
        check_generation("domain", max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p)
        at_least("domain", 1, context=self.context)


class Quantization(StrEnum):
    """bitsandbytes weight quantization at load time (HuggingFace backend)."""

    auto = "auto"  # none where the model fits, else 8bit, else 4bit (CUDA only; none on CPU and MPS)
    none = "none"
    q8bit = "8bit"
    q4bit = "4bit"


class QuantType(StrEnum):
    """4-bit data type."""

    nf4 = "nf4"
    fp4 = "fp4"


class Attention(StrEnum):
    """transformers attention implementation."""

    sdpa = "sdpa"
    eager = "eager"
    flash_attention_2 = "flash_attention_2"  # needs flash-attn and a CUDA GPU; else sdpa with a warning


class Runtime(StrEnum):
    """What runs an embedding model's forward pass (HuggingFace backend, backend.runtime)."""

    torch = "torch"
    onnx = "onnx"  # ONNX Runtime on the CPU, exported once from the local weights (encoders only)


class OnnxQuantization(StrEnum):
    """Weights of the ONNX export (backend.quantization): as exported, or dynamic int8 (vectors change slightly)."""

    none = "none"
    int8 = "int8"


# config.json model_types whose ONNX export (torch.onnx.export, dynamo) gives torch's outputs: bert on MiniLM, text by
# text (cosine >= 0.9999), the others on small random models of each (tests/backends/test_hf_onnx.py). Decoder
# embedders (Qwen3-Embedding) are left out until their export is shown to give the same vectors.
ONNX_ARCHITECTURES = frozenset({"bert", "distilbert", "mpnet", "roberta", "xlm-roberta"})


@dataclass
class HardwareSpec:
    """Where and how the model runs."""

    name: str = MISSING
    device: Device = Device.auto  # auto: cuda, then mps, then cpu
    dtype: DType = DType.auto  # auto: bfloat16 where the GPU supports it, float16 on other GPUs, float32 on cpu
    threads: int | None = None  # torch intra-op threads (and llama.cpp's); null: torch's default, llama.cpp every core
    # auto | none | 8bit | 4bit (a str: OmegaConf enums cannot be named 8bit). auto: none where the model fits the GPU,
    # else 8bit, else 4bit; none on cpu and mps
    quantization: str = "none"
    quant_type: QuantType = QuantType.nf4  # 4bit only
    compute_dtype: DType = DType.auto  # 4bit matmul dtype; auto: the model's dtype
    double_quant: bool = True  # 4bit: quantize the quantization constants too
    attention: Attention = Attention.sdpa  # sdpa | eager | flash_attention_2 (sdpa without flash-attn or a GPU)
    memory_gb: float | None = None  # memory size=auto plans for; null: detected (free GPU memory, else available RAM)
    memory_margin: float = 0.2  # fraction of that memory size=auto leaves free
    # size=auto on a CPU, for a backend that computes in adam's process (huggingface, llamacpp): speed counts too
    min_tokens_per_s: float = 5.0  # skip generation models estimated slower (tokens over job.batch_size sequences)
    min_embed_tokens_per_s: float = 100.0  # skip embedders estimated to read fewer input tokens a second; 0: any
    cpu_gflops: float | None = None  # the CPU's float32 matmul speed to estimate with; null: measured (0.1 s)
    memory_bandwidth_gbs: float | None = None  # its memory bandwidth; null: measured (0.1 s)
    selected_by: str | None = None  # quantization=auto: what it resolved to (filled in, recorded in the manifest)
    tier: str | None = None  # the design's hardware tier this profile stands for (job=info)
    picks: list[str] = field(default_factory=list)  # the sizes the design picks for that tier (job=info, docs)


class GgufType(StrEnum):
    """Tensor type of an exported GGUF."""

    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    q8_0 = "q8_0"


@dataclass
class ShareSpec:
    """How a model is shared between backends (job=share, share_with_ollama=true, ModelManager)."""

    dtype: GgufType = GgufType.f16  # GGUF tensor type written for an HF model: f32 | f16 | bf16 | q8_0
    ollama_model: str | None = None  # name:tag in Ollama; null: the size's ollama_tag
    store: str | None = None  # shared store; null: $ADAM_SHARE_DIR, then ~/.cache/adam/shared
    register: bool = True  # upload the GGUF to the Ollama server and create the model there
    ollama: Any = None  # the Ollama backend to register with (a constructor call: conf/config.yaml's share.ollama)


@dataclass
class AdamConfig:
    """The root: one node per config group, plus sharing."""

    backend: Any = MISSING
    size: SizeSpec = MISSING
    domain: DomainSpec = MISSING
    hardware: HardwareSpec = MISSING
    job: Any = MISSING
    share: ShareSpec = field(default_factory=ShareSpec)
    share_with_ollama: bool = False  # after a huggingface run, also share its weights with Ollama (as job=share does)


class PullPolicy(StrEnum):
    """When the Ollama backend pulls a model."""

    missing = "missing"  # pull only when the server does not have it
    never = "never"  # fail with a hint instead
    always = "always"  # pull before every run, to get updates


def at_least(owner: str, minimum: float, **values: Any) -> None:
    """Refuse a number below ``minimum`` (None passes: unset)."""
    for key, value in values.items():
        if value is not None and value < minimum:
            raise ConfigError(f"'{owner}.{key}' must be at least {minimum:g}, got {value}")


def check_generation(owner: str, **settings: Any) -> None:
    """Generation settings, checked by the rules a record's own are (adam/io/schemas/generate.json)."""
    from adam.io.validation import check

    values = {key: value for key, value in settings.items() if value is not None}
    problem = check("generate", {"prompt": "-", **values}, rename={key: f"{owner}.{key}" for key in values})
    if problem:
        raise ConfigError(problem)


def _group_listing() -> str:
    """``group: option, ...`` lines for --help, from the YAML files (the schemas stay out of the list)."""
    return catalog.listing()


def to_spec(cls: type, value: Any) -> Any:
    """Turn a DictConfig, dict or instance into the dataclass ``cls`` (backends accept all three)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping for {cls.__name__}, got {type(value).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise TypeError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    kwargs = {}
    for key, raw in value.items():
        kwargs[key] = _coerce_enum(known[key].type, raw)
    return cls(**kwargs)


_ENUMS = {
    e.__name__: e
    for e in (ModelKind, Pooling, Device, DType, PullPolicy, GgufType, WeightsSource, QuantType, Attention, Thinking)
}


def _coerce_enum(annotation: Any, raw: Any) -> Any:
    """Map a string to the enum a field is annotated with (annotations are strings here)."""
    if raw is None or not isinstance(raw, str):
        return raw
    for name, enum in _ENUMS.items():
        if isinstance(annotation, str) and annotation.split(" ")[0] == name:
            return enum(raw)
    return raw


if not OmegaConf.has_resolver("adam_groups"):
    OmegaConf.register_new_resolver("adam_groups", _group_listing)
