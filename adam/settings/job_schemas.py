"""The job schemas: the keys each job= option has, with what the job needs declared as class attributes.

A job's schema says whether it reads job.input (a batch job: resume, dry run, signals), which kind of
model its size must be, and whether it needs embeddings; the runner and size=auto ask these instead of
testing job names. ``__post_init__`` checks values, so a bad one fails before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from omegaconf import MISSING, DictConfig, OmegaConf

from adam.errors import ConfigError
from adam.settings.config import ModelKind, at_least, check_generation


class ResultsFormat(StrEnum):
    """The files a generate run writes its results to (job.results_format)."""

    jsonl = "jsonl"  # results.jsonl: always written, the run's record
    csv = "csv"  # results.csv
    parquet = "parquet"  # results.parquet


class Overflow(StrEnum):
    """What happens to an input longer than the model's context window."""

    error = "error"  # an error line (code context_overflow)
    truncate = "truncate"  # generation: drop the start of the prompt; embedding: cut the end, as sentence-transformers


@dataclass
class JobSpec:
    """Keys every batch job has (job=generate, job=embed): jobs that read job.input and write a line per record."""

    reads_input: ClassVar[bool] = True  # a batch job: run-dir resume, dry run, stop on signals, max_errors
    model_kind: ClassVar[ModelKind | None] = None  # the kind of model the size must be; None: any
    needs_embeddings: ClassVar[bool] = False  # the backend must embed
    needs_model: ClassVar[bool] = True  # False: describes the model without weights or a server (job=info)
    keeps_run_dir: ClassVar[bool] = True  # False: its results go to stdout (or a server's state dir), not outputs/

    name: str = MISSING
    input: str = MISSING  # a file, a directory (embed), a saved dataset, hf://datasets/<name>, or - for standard input
    split: str | None = None  # a Hugging Face dataset input: the split to read; null: its only one
    subset: str | None = None  # an hf://datasets/ input: the subset (config name) to read
    id_field: str = "id"  # field holding the record id
    text_field: str | None = None  # field holding the prompt or text, when not the usual one (prompt/messages, text)
    # records per backend call: batched decode on a CPU is ~7x one record at a time (bench/RESULTS.md), and size=auto
    # plans its memory for this many sequences (adam/planning/size_catalog.py default_batch)
    batch_size: int = 32
    window: int = 512  # records read ahead and sorted by length (or token count) to cut padding; bounds memory
    progress: bool = True  # tqdm bar on stderr (shown only when stderr is a terminal)
    # Resume and failures (adam/run/resume.py)
    resume: str | None = None  # a run dir to finish, or true: the newest run of this job with the same input and model
    retry_errors: bool = False  # with resume: run again the records that failed at the backend
    dry_run: bool = False  # validate the config and the whole input, load no model, report what would run
    max_errors: float | None = None  # stop (exit 4) past this many failed records; below 1: a fraction of those seen
    # stop (exit 4, resumable) after this many backend errors in a row; null: never
    max_consecutive_failures: int | None = 100
    allow_empty: bool = False  # an input that holds no records: exit 0 instead of 5 (no record succeeded)
    # Sharding (run/sharding.py, docs/scale-out.md): this run takes the records whose id hashes to job.shard, modulo
    # job.num_shards; sweep job.shard='range(0,N)' and combine the shards with job=merge
    shard: int = 0
    num_shards: int = 1
    keep_input: bool = False  # write each record's prompt, messages or text beside its answer in results.jsonl

    def __post_init__(self) -> None:  # value checks run in check_values, before any model loads
        at_least("job", 1, batch_size=self.batch_size, window=self.window, num_shards=self.num_shards)
        at_least("job", 0, max_errors=self.max_errors)
        if not 0 <= self.shard < self.num_shards:
            raise ConfigError(f"'job.shard' must be at least 0 and below job.num_shards={self.num_shards}")
        if self.num_shards > 1 and str(self.input) == "-":
            raise ConfigError("standard input cannot be sharded: write it to a file and set job.input=<file>")


@dataclass
class GenerateJob(JobSpec):
    """Batch generation; null generation settings fall back to the domain's."""

    model_kind: ClassVar[ModelKind | None] = ModelKind.generate

    name: str = "generate"
    max_tokens: int | None = None  # null: the domain's (domain.max_tokens); a record's own wins over both
    temperature: float | None = None  # null: the domain's
    top_p: float | None = None  # null: the domain's
    stop: list[str] = field(default_factory=list)
    seed: int | None = 0  # fixed by default so a rerun gives the same answers
    ignore_eos: bool = False  # answers run to max_tokens (or a stop string), past the end-of-sequence token: benchmarks
    thinking: bool = False  # Qwen3 thinking mode; thinking text goes to its own field
    overflow: Overflow = Overflow.error  # a prompt longer than the context window: error (an error line) | truncate
    # Structured output for every record (a record's own response_format or choice replaces it); set one at most
    response_format: Any = None  # {type: json_object} or {type: json_schema, json_schema: {...}} (Any: OmegaConf
    # cannot merge a mapping into an Optional[Dict] left null; job_constraint checks its shape)
    schema: str | None = None  # a JSON schema file: every answer is an instance of it
    choice: list[str] | None = None  # labels: every answer is exactly one of them
    keep_input: bool = True  # the prompt or messages (and per-record settings) beside each answer, for review
    # results.jsonl is always written; csv and parquet add results.csv / results.parquet, one row per result with
    # the input's columns, rebuilt from results.jsonl when the batches end (adam/io/result_tables.py)
    results_format: list[ResultsFormat] = field(default_factory=lambda: [ResultsFormat.jsonl])

    def __post_init__(self) -> None:
        super().__post_init__()
        settings = {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}
        check_generation("job", **settings, stop=list(self.stop), seed=self.seed)
        from adam.protocol.structured import job_constraint

        job_constraint(self.response_format, self.schema, self.choice)  # a bad schema fails before any model loads


@dataclass
class EmbedJob(JobSpec):
    """Batch embedding into results.jsonl and a Parquet file."""

    model_kind: ClassVar[ModelKind | None] = ModelKind.embed
    needs_embeddings: ClassVar[bool] = True

    name: str = "embed"
    parquet: bool = True  # also write embeddings.parquet
    query_task: str | None = None  # every record is a query for this task (size.query_instruction); null: documents
    overflow: Overflow = Overflow.truncate  # texts over the model's max length: truncate (as sentence-transformers)
    store: str | None = None  # SQLite embedding store: embed only new or changed texts (adam/io/embed_store.py)
    store_text: bool = True  # with store: keep each text beside its hash, so job=search hits carry it; false: hashes
    prune: bool = False  # with store: remove ids that are no longer in the input
    prune_max_fraction: float = 0.5  # with prune: refuse (exit 4) to remove more of the store's records; 1.0: any
    chunk_tokens: int | None = None  # split texts into chunks of at most this many tokens, ids <id>#0, <id>#1, ...
    chunk_overlap: int = 0  # tokens each chunk repeats from the end of the one before
    follow_symlinks: bool = False  # a directory input: read links that lead out of it (else skipped with a warning)

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least("job", 1, chunk_tokens=self.chunk_tokens)
        if not 0 <= self.prune_max_fraction <= 1:
            raise ConfigError(f"'job.prune_max_fraction' must be between 0 and 1, got {self.prune_max_fraction}")
        if self.chunk_tokens and not 0 <= self.chunk_overlap < self.chunk_tokens:
            raise ConfigError(f"'job.chunk_overlap' must be at least 0 and below job.chunk_tokens={self.chunk_tokens}")


@dataclass
class SearchJob:
    """The records of an embedding store most similar to a query (job.query) or to each line of job.queries."""

    reads_input: ClassVar[bool] = False
    model_kind: ClassVar[ModelKind | None] = ModelKind.embed
    needs_embeddings: ClassVar[bool] = True
    needs_model: ClassVar[bool] = True
    keeps_run_dir: ClassVar[bool] = False  # leaves no run dir under outputs/ (adam/paths.py: scratch_runs_root)

    name: str = "search"
    store: str | None = None  # required: the SQLite store a job=embed job.store=... run filled
    query: str | None = None  # one query text
    queries: str | None = None  # or a file of queries: .txt (one a line) or .jsonl with "text" (and "id")
    top_k: int = 5  # hits per query
    query_task: str | None = None  # embed queries with the size's query instruction for this task (Qwen3-Embedding)

    def __post_init__(self) -> None:
        at_least("job", 1, top_k=self.top_k)


@dataclass
class InfoJob:
    """Print what adam would run with: backend, model, hardware."""

    reads_input: ClassVar[bool] = False
    model_kind: ClassVar[ModelKind | None] = None
    needs_embeddings: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
    keeps_run_dir: ClassVar[bool] = False  # leaves no run dir under outputs/ (adam/paths.py: scratch_runs_root)

    name: str = "info"
    load: bool = False  # true: also load the model and report its dtype, device and dimensions
    format: str = "text"  # text: the verdict, then the details as tables | json: every field, as info.json holds

    def __post_init__(self) -> None:
        if self.format not in ("text", "json"):
            raise ConfigError(f"'job.format' must be text or json, got {self.format}")


@dataclass
class ShareJob:
    """Share the size's HuggingFace weights with Ollama; the settings live in the top-level ``share`` node."""

    reads_input: ClassVar[bool] = False
    model_kind: ClassVar[ModelKind | None] = None
    needs_embeddings: ClassVar[bool] = False
    needs_model: ClassVar[bool] = True
    shares_model: ClassVar[bool] = True
    keeps_run_dir: ClassVar[bool] = True

    name: str = "share"


@dataclass
class ServeJob:
    """The OpenAI- and Ollama-compatible HTTP server over the size's model (adam/server/)."""

    reads_input: ClassVar[bool] = False
    model_kind: ClassVar[ModelKind | None] = None  # a chat model or an embedder: the server offers what it can do
    needs_embeddings: ClassVar[bool] = False
    needs_model: ClassVar[bool] = True
    keeps_run_dir: ClassVar[bool] = False  # leaves no run dir under outputs/ (adam/paths.py: scratch_runs_root)

    name: str = "serve"
    host: str = "127.0.0.1"  # 0.0.0.0 (every interface) refuses to start without a key, unless insecure=true
    port: int = 8000
    # the variable holding the key; when it is set, every endpoint but /health needs "Authorization: Bearer <key>".
    # The key itself is never a config value.
    api_key_env: str = "ADAM_API_KEY"
    state_dir: str | None = "outputs/serve"  # state kept across restarts (the Batch API's files); null: no Batch API
    runs_dir: str | None = "outputs"  # the run dirs and sweeps the web page (/ui) browses; null: none
    embed_size: str | None = None  # a second size served for embeddings beside the chat model (minilm)
    max_body_mb: float = 100  # larger request bodies get 413
    insecure: bool = False  # true: allow a non-loopback host without a key
    allowed_hosts: list[str] = field(default_factory=list)  # Host names accepted besides the bound host (a proxy's)
    batch_wait_ms: float = 10  # how long a request waits for others to share its batch
    max_batch: int = 32  # requests per batch at most (adam/server/batcher.py)
    overflow: Overflow = Overflow.error  # a prompt over the context window: a 400 error | truncate (drop its start)
    # A Batch API batch runs as job=generate (or embed) with job.max_batch as its batch_size; these keys of that job
    # override its defaults: max_errors, max_consecutive_failures, window (+job.batch_job.max_errors=10)
    batch_job: dict[str, Any] = field(default_factory=dict)
    # Stalled clients are dropped (adam/server/read_timeouts.py): a request's line and headers must arrive within
    # header_timeout_s (else 408 and close), and a body may pause at most body_timeout_s between two reads.
    header_timeout_s: float = 10
    body_timeout_s: float = 30

    def __post_init__(self) -> None:
        at_least("job", 1, max_batch=self.max_batch, port=self.port)
        for key in ("header_timeout_s", "body_timeout_s"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"'job.{key}' must be above 0, got {getattr(self, key)}")
        at_least("job", 0, batch_wait_ms=self.batch_wait_ms)
        if self.port > 65535:
            raise ConfigError(f"'job.port' must be at most 65535, got {self.port}")
        if not self.max_body_mb > 0:
            raise ConfigError(f"'job.max_body_mb' must be above 0, got {self.max_body_mb}")


@dataclass
class MergeJob:
    """Shard run dirs (a sweep over job.shard) combined into one run dir: results, errors, vectors, manifest."""

    reads_input: ClassVar[bool] = False
    model_kind: ClassVar[ModelKind | None] = None
    needs_embeddings: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False  # reads run dirs; loads no model
    restartable: ClassVar[bool] = True  # stops between steps on a signal; run again into its dir, it starts over
    keeps_run_dir: ClassVar[bool] = True

    name: str = "merge"
    runs: Any = None  # required: a sweep dir, or a list of shard run dirs (job.runs=[outputs/a,outputs/b])
    store: str | None = None  # the shards' embedding stores (job.store=x-${job.shard}.db): merge them into this file
    parquet: bool = True  # merge the shards' embeddings.parquet files (job=embed) into one


def check_values(cfg: DictConfig) -> None:
    """Build the domain and job nodes into their dataclasses, so the checks in ``__post_init__`` run now:
    composing checks types, not ranges, and a bad value would otherwise fail every record after the model loads."""
    for group in ("domain", "job"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) not in (None, dict):
            OmegaConf.to_object(node)


JOB_SCHEMAS: dict[str, type] = {
    "generate": GenerateJob,
    "embed": EmbedJob,
    "search": SearchJob,
    "info": InfoJob,
    "share": ShareJob,
    "serve": ServeJob,
    "merge": MergeJob,
}
