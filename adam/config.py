"""Typed schemas behind the YAML in conf/: a typo or a wrong type fails when the config is composed.

Each config group's YAML files start from one of these schemas (``defaults: [base_size]``), so every
size, domain, hardware profile and job exposes the same keys and Hydra rejects unknown ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

CONFIG_MODULE = "adam.conf"  # where Hydra finds conf/ after any install (see pyproject.toml)


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
    path: str | None = None  # local HF model directory or .gguf file; wins over hf_id
    package: str | None = None  # "module:relative/path" for weights shipped inside a Python package
    source: WeightsSource = WeightsSource.auto  # ollama: load Ollama's pulled GGUF for ollama_tag
    kind: ModelKind = ModelKind.generate
    context_length: int = 32768
    parameters: int | None = None  # total parameter count
    active_parameters: int | None = None  # per token, for mixture-of-experts models
    pooling: Pooling | None = None  # embedding pooling; null means the model's own default
    max_seq_length: int | None = None  # embedding truncation length; null means context_length
    description: str = ""
    # Long context, embeddings and memory estimates (adam/sizing.py); null where a size does not have them.
    long_context: bool = False  # true: extend the context with YaRN rope scaling to long_context_length
    long_context_length: int | None = None  # context with YaRN; null: this size has no long-context mode
    query_instruction: str | None = None  # embedders: prefix for queries, with {task}; documents get none
    dimensions: int | None = None  # embedders: keep the first N dimensions (Matryoshka), re-normalised
    num_layers: int | None = None  # architecture, for the KV-cache estimate (from the model's config.json)
    num_kv_heads: int | None = None
    head_dim: int | None = None
    selected_by: str | None = None  # size=auto: why this size was picked (filled in, recorded in the manifest)


@dataclass
class DomainSpec:
    """A use case: the system prompt and the generation defaults a record does not set itself."""

    name: str = MISSING
    system_prompt: str | None = None
    temperature: float = 0.7
    top_p: float = 0.8
    max_tokens: int = 256
    preferred_size: str | None = None  # size=auto takes this size when it fits the hardware
    context: int = 2048  # tokens per sequence that size=auto reserves KV cache for


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


@dataclass
class HardwareSpec:
    """Where and how the model runs."""

    name: str = MISSING
    device: Device = Device.auto
    dtype: DType = DType.auto
    threads: int | None = None  # torch intra-op threads; null leaves torch's default
    quantization: str = "none"  # auto | none | 8bit | 4bit (a str: OmegaConf enums cannot be named 8bit)
    quant_type: QuantType = QuantType.nf4  # 4bit only
    compute_dtype: DType = DType.auto  # 4bit matmul dtype; auto: the model's dtype
    double_quant: bool = True  # 4bit: quantize the quantization constants too
    attention: Attention = Attention.sdpa
    memory_gb: float | None = None  # memory size=auto plans for; null: detected (GPU free memory, else RAM)
    memory_margin: float = 0.2  # fraction of that memory size=auto leaves free


class Overflow(StrEnum):
    """What happens to an input longer than the model's context window."""

    error = "error"  # an error line (code context_overflow)
    truncate = "truncate"  # generation: drop the start of the prompt; embedding: cut the end, as sentence-transformers


@dataclass
class JobSpec:
    """Keys every job has."""

    name: str = MISSING
    input: str = MISSING  # a file, a directory (embed), or - for standard input
    id_field: str = "id"  # field holding the record id
    text_field: str | None = None  # field holding the prompt or text, when not the usual name
    batch_size: int = 8  # records per backend call
    window: int = 512  # records read ahead and sorted by length to cut padding
    progress: bool = True  # tqdm bar on stderr (shown only when stderr is a terminal)
    # Resume and failures (adam/resume.py)
    resume: str | None = None  # a run dir to finish, or true: the newest run of this job with the same input and model
    retry_errors: bool = False  # with resume: run again the records that failed at the backend
    dry_run: bool = False  # validate the config and the whole input, load no model, report what would run
    max_errors: float | None = None  # stop (exit 4) past this many failed records; below 1: a fraction of those seen


@dataclass
class GenerateJob(JobSpec):
    """Batch generation; null generation settings fall back to the domain's."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = 0  # fixed by default so a rerun gives the same answers
    thinking: bool = False  # Qwen3 thinking mode; thinking text goes to its own field
    overflow: Overflow = Overflow.error  # prompts over the context window


@dataclass
class EmbedJob(JobSpec):
    """Batch embedding into results.jsonl and a Parquet file."""

    parquet: bool = True  # also write embeddings.parquet
    query_task: str | None = None  # every record is a query for this task (size.query_instruction); null: documents
    overflow: Overflow = Overflow.truncate  # texts over the model's max length
    store: str | None = None  # SQLite embedding store: embed only new or changed texts (adam/embed_store.py)
    prune: bool = False  # with store: remove ids that are no longer in the input
    chunk_tokens: int | None = None  # split texts into chunks of at most this many tokens, ids <id>#<n>; null: whole
    chunk_overlap: int = 0  # tokens each chunk repeats from the end of the one before


@dataclass
class SearchJob:
    """The records of an embedding store most similar to a query (job.query) or to each line of job.queries."""

    name: str = "search"
    store: str | None = None  # the SQLite store a job=embed run filled (job.store there); required
    query: str | None = None  # one query text
    queries: str | None = None  # or a file of queries: .txt (one a line) or .jsonl with "text" (and "id")
    top_k: int = 5
    query_task: str | None = None  # embed queries with the size's query instruction for this task


@dataclass
class InfoJob:
    """Print what adam would run with: backend, model, hardware."""

    name: str = "info"
    load: bool = False  # also load the model and report its dtype, device and dimensions


@dataclass
class ShareJob:
    """Share the size's HuggingFace weights with Ollama; the settings live in the top-level ``share`` node."""

    name: str = "share"


class GgufType(StrEnum):
    """Tensor type of an exported GGUF."""

    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    q8_0 = "q8_0"


@dataclass
class ShareSpec:
    """How a model is shared between backends (job=share, share_with_ollama=true, ModelManager)."""

    dtype: GgufType = GgufType.f16  # GGUF tensor type written for an HF model
    ollama_model: str | None = None  # name:tag in Ollama; null: the size's ollama_tag
    store: str | None = None  # shared store; null: $ADAM_SHARE_DIR, then ~/.cache/adam/shared
    register: bool = True  # upload to the Ollama server and create the model there
    ollama: Any = None  # the Ollama backend to register with (a constructor call)


@dataclass
class AdamConfig:
    """The root: one node per config group, plus sharing."""

    backend: Any = MISSING
    size: SizeSpec = MISSING
    domain: DomainSpec = MISSING
    hardware: HardwareSpec = MISSING
    job: Any = MISSING
    share: ShareSpec = field(default_factory=ShareSpec)
    share_with_ollama: bool = False  # after a huggingface run, also share its weights with Ollama


@dataclass
class HuggingFaceBackendConf:
    """Arguments of adam.backends.huggingface.HuggingFaceBackend."""

    _target_: str = "adam.backends.huggingface.HuggingFaceBackend"
    size: Any = "${size}"
    hardware: Any = "${hardware}"
    trust_remote_code: bool = False
    cache_dir: str | None = None  # null: $ADAM_CACHE_DIR, then the user cache dir
    token_budget: int | None = None  # max padded tokens in one forward batch; null: the backend decides


@dataclass
class EchoBackendConf:
    """Arguments of adam.backends.echo.EchoBackend."""

    _target_: str = "adam.backends.echo.EchoBackend"
    size: Any = "${size}"
    hardware: Any = "${hardware}"
    dimensions: int = 32
    delay: float = 0.0  # seconds per call
    failure_rate: float = 0.0  # fraction of texts that fail, chosen by a hash of the text
    unavailable: bool = False  # pretend the backend is down


class PullPolicy(StrEnum):
    """When the Ollama backend pulls a model."""

    missing = "missing"  # pull only when the server does not have it
    never = "never"  # fail with a hint instead
    always = "always"  # pull before every run, to get updates


@dataclass
class OllamaBackendConf:
    """Arguments of adam.backends.ollama.OllamaBackend."""

    _target_: str = "adam.backends.ollama.OllamaBackend"
    size: Any = "${size}"
    hardware: Any = "${hardware}"
    host: str | None = None  # null: $OLLAMA_HOST, then http://127.0.0.1:11434
    concurrency: int = 4  # requests in flight
    timeout: float = 300.0  # seconds per request
    keep_alive: str | None = None  # how long the server keeps the model loaded, e.g. 5m; null: server default
    pull: PullPolicy = PullPolicy.missing
    retries: int = 3  # retries of 429, 5xx and timeouts
    backoff: float = 0.5  # first retry delay in seconds, doubled each retry, with jitter
    max_backoff: float = 30.0
    dimensions: int | None = None  # embedding dimensions to request; null: the model's
    truncate: bool = True  # let the server truncate embedding inputs to the context window
    share_store: str | None = None  # shared-model store; null: $ADAM_SHARE_DIR, then ~/.cache/adam/shared


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore so the YAML files can extend them."""
    cs = ConfigStore.instance()
    cs.store(name="adam_schema", node=AdamConfig)
    cs.store(group="size", name="base_size", node=SizeSpec)
    cs.store(group="domain", name="base_domain", node=DomainSpec)
    cs.store(group="hardware", name="base_hardware", node=HardwareSpec)
    cs.store(group="job", name="base_generate", node=GenerateJob)
    cs.store(group="job", name="base_embed", node=EmbedJob)
    cs.store(group="job", name="base_info", node=InfoJob)
    cs.store(group="job", name="base_search", node=SearchJob)
    cs.store(group="job", name="base_share", node=ShareJob)
    cs.store(group="backend", name="base_huggingface", node=HuggingFaceBackendConf)
    cs.store(group="backend", name="base_echo", node=EchoBackendConf)
    cs.store(group="backend", name="base_ollama", node=OllamaBackendConf)


def _group_listing() -> str:
    """``group: option, ...`` lines for --help, from the YAML files (the schemas stay out of the list)."""
    from adam import registry

    return "\n".join(f"{group}: {', '.join(registry.options(group))}" for group in registry.GROUPS)


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
    for e in (ModelKind, Pooling, Device, DType, PullPolicy, GgufType, WeightsSource, QuantType, Attention)
}


def _coerce_enum(annotation: Any, raw: Any) -> Any:
    """Map a string to the enum a field is annotated with (annotations are strings here)."""
    if raw is None or not isinstance(raw, str):
        return raw
    for name, enum in _ENUMS.items():
        if isinstance(annotation, str) and annotation.split(" ")[0] == name:
            return enum(raw)
    return raw


register_configs()
if not OmegaConf.has_resolver("adam_groups"):
    OmegaConf.register_new_resolver("adam_groups", _group_listing)
