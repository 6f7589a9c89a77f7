"""The job schemas: the keys each job= option has, with what the job needs declared as class attributes.

A job's schema says whether it reads job.input (a batch job: resume, dry run, signals), which kind of
model its size must be, and whether it needs embeddings; the runner and size=auto ask these instead of
testing job names. ``__post_init__`` checks values, so a bad one fails before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from omegaconf import MISSING, DictConfig, OmegaConf

from adam.config import ModelKind, at_least, check_generation
from adam.errors import ConfigError


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
    max_consecutive_failures: int | None = 100  # stop (exit 4) after this many backend errors in a row; null: never

    def __post_init__(self) -> None:  # value checks run in check_values, before any model loads
        at_least("job", 1, batch_size=self.batch_size, window=self.window)
        at_least("job", 0, max_errors=self.max_errors)


@dataclass
class GenerateJob(JobSpec):
    """Batch generation; null generation settings fall back to the domain's."""

    model_kind: ClassVar[ModelKind | None] = ModelKind.generate

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = 0  # fixed by default so a rerun gives the same answers
    thinking: bool = False  # Qwen3 thinking mode; thinking text goes to its own field
    overflow: Overflow = Overflow.error  # prompts over the context window

    def __post_init__(self) -> None:
        super().__post_init__()
        settings = {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}
        check_generation("job", **settings, stop=list(self.stop), seed=self.seed)


@dataclass
class EmbedJob(JobSpec):
    """Batch embedding into results.jsonl and a Parquet file."""

    model_kind: ClassVar[ModelKind | None] = ModelKind.embed
    needs_embeddings: ClassVar[bool] = True

    parquet: bool = True  # also write embeddings.parquet
    query_task: str | None = None  # every record is a query for this task (size.query_instruction); null: documents
    overflow: Overflow = Overflow.truncate  # texts over the model's max length
    store: str | None = None  # SQLite embedding store: embed only new or changed texts (adam/embed_store.py)
    prune: bool = False  # with store: remove ids that are no longer in the input
    chunk_tokens: int | None = None  # split texts into chunks of at most this many tokens, ids <id>#<n>; null: whole
    chunk_overlap: int = 0  # tokens each chunk repeats from the end of the one before
    follow_symlinks: bool = False  # a directory input: read links that lead out of it (else skipped with a warning)

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least("job", 1, chunk_tokens=self.chunk_tokens)
        if self.chunk_tokens and not 0 <= self.chunk_overlap < self.chunk_tokens:
            raise ConfigError(f"'job.chunk_overlap' must be at least 0 and below job.chunk_tokens={self.chunk_tokens}")


@dataclass
class SearchJob:
    """The records of an embedding store most similar to a query (job.query) or to each line of job.queries."""

    reads_input: ClassVar[bool] = False
    model_kind: ClassVar[ModelKind | None] = ModelKind.embed
    needs_embeddings: ClassVar[bool] = True
    needs_model: ClassVar[bool] = True

    name: str = "search"
    store: str | None = None  # the SQLite store a job=embed run filled (job.store there); required
    query: str | None = None  # one query text
    queries: str | None = None  # or a file of queries: .txt (one a line) or .jsonl with "text" (and "id")
    top_k: int = 5
    query_task: str | None = None  # embed queries with the size's query instruction for this task

    def __post_init__(self) -> None:
        at_least("job", 1, top_k=self.top_k)


@dataclass
class InfoJob:
    """Print what adam would run with: backend, model, hardware."""

    reads_input: ClassVar[bool] = False
    model_kind: ClassVar[ModelKind | None] = None
    needs_embeddings: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False

    name: str = "info"
    load: bool = False  # also load the model and report its dtype, device and dimensions


@dataclass
class ShareJob:
    """Share the size's HuggingFace weights with Ollama; the settings live in the top-level ``share`` node."""

    reads_input: ClassVar[bool] = False
    model_kind: ClassVar[ModelKind | None] = None
    needs_embeddings: ClassVar[bool] = False
    needs_model: ClassVar[bool] = True
    shares_model: ClassVar[bool] = True

    name: str = "share"


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
}
