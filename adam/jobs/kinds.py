"""JOBS: every job= option as an object that says what it needs; the runner asks it instead of testing names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from omegaconf import DictConfig

from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext
from adam.jobs.embed import check_embed, run_embed
from adam.jobs.generate import run_generate
from adam.jobs.info import run_info
from adam.jobs.merge import check_merge, run_merge
from adam.jobs.search import check_search, run_search
from adam.jobs.serve import check_serve, run_serve
from adam.jobs.share import run_share
from adam.settings.config import ModelKind
from adam.settings.job_schemas import JOB_SCHEMAS


@dataclass(frozen=True)
class JobKind:
    """One job: its schema (which declares its needs as class attributes), what runs it, and its own checks."""

    name: str
    run: Callable[[JobContext], JobStats]
    preflight: Callable[[DictConfig], None] | None = None  # config checks of this job, before any model loads

    @property
    def schema(self) -> type:
        """The job's config dataclass (adam/settings/job_schemas.py)."""
        return JOB_SCHEMAS[self.name]

    @property
    def reads_input(self) -> bool:
        """A batch job over job.input: resume, dry run, signals, max_errors."""
        return bool(self.schema.reads_input)

    @property
    def model_kind(self) -> ModelKind | None:
        """The kind of model its size must be (None: any)."""
        return self.schema.model_kind

    @property
    def needs_embeddings(self) -> bool:
        """Whether the backend must embed."""
        return bool(self.schema.needs_embeddings)

    @property
    def needs_model(self) -> bool:
        """False for a job that only describes the model: no weights, no server (job=info)."""
        return bool(self.schema.needs_model)

    @property
    def shares_model(self) -> bool:
        """The job shares the model itself (job=share), so share_with_ollama has nothing to add."""
        return bool(getattr(self.schema, "shares_model", False))

    @property
    def restartable(self) -> bool:
        """Not a batch job, yet stopped by Ctrl-C/SIGTERM between its steps, and run again into the run dir it
        left unfinished it starts over (job=merge)."""
        return bool(getattr(self.schema, "restartable", False))

    @property
    def records(self) -> Literal["generate", "embed"]:
        """How the reader reads its job.input."""
        return "embed" if self.model_kind is ModelKind.embed else "generate"


JOBS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind("generate", run_generate),
        JobKind("embed", run_embed, check_embed),
        JobKind("search", run_search, check_search),
        JobKind("info", run_info),
        JobKind("share", run_share),
        JobKind("serve", run_serve, check_serve),
        JobKind("merge", run_merge, check_merge),
    )
}
