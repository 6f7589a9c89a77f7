"""The models a server serves, by the names each protocol uses, and what routes reach through the request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adam.engine import Engine
from adam.io.record_parser import URLS
from adam.server.batcher import Batcher
from adam.server.errors import ApiError, model_not_found
from adam.settings.config import ModelKind
from adam.settings.job_schemas import ServeJob

if TYPE_CHECKING:
    from fastapi import Request

    from adam.run.locks import StateDirLock
    from adam.server.batch_store import BatchStore
    from adam.server.batch_worker import BatchWorker
    from adam.server.file_store import FileStore
    from adam.server.metrics import Metrics
    from adam.server.runs_browser import RunsBrowser


def python_serve_job(**keys: Any) -> ServeJob:
    """job=serve's node for an app built in Python (tests, ModelManager): no state dir and no runs browsed unless
    given, where job=serve on the command line keeps them under outputs/."""
    return ServeJob(**{"state_dir": None, "runs_dir": None, **keys})


@dataclass
class ServeOptions:
    """How the app guards and batches: the job=serve node, whose schema (ServeJob) holds every default, plus what a
    config never holds."""

    job: ServeJob = field(default_factory=python_serve_job)
    api_key: str | None = None  # read from $job.api_key_env: the key itself is never a config value
    batch_window_s: float = 24 * 3600  # completion_window "24h"; shorter only in tests, to watch expiry

    @classmethod
    def of(cls, *, api_key: str | None = None, batch_window_s: float | None = None, **job: Any) -> ServeOptions:
        """Options from ServeJob's keys (max_batch=4, state_dir=...) and this class's own, by name."""
        own = {} if batch_window_s is None else {"batch_window_s": batch_window_s}
        return cls(python_serve_job(**job), api_key=api_key, **own)


@dataclass
class Served:
    """One model the server serves: its engine and batcher, and the names clients may call it by."""

    engine: Engine
    batcher: Batcher
    openai_id: str  # /v1/models lists it: the hub id, else the size name
    ollama_name: str  # /api/tags lists it: name:tag
    aliases: frozenset[str]
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def kind(self) -> ModelKind:
        """What the model is for."""
        return self.engine.backend.size.kind

    @property
    def can_embed(self) -> bool:
        """Whether it answers embedding requests."""
        return self.engine.backend.supports_embeddings

    @property
    def can_generate(self) -> bool:
        """Whether it answers generation requests (an embedding model does not)."""
        return self.kind is ModelKind.generate and self.engine.backend.supports_generation


def names_of(engine: Engine) -> tuple[str, str, frozenset[str]]:
    """(OpenAI id, Ollama name:tag, every name a request may use) for an engine's model."""
    size = engine.backend.size
    openai_id = size.hf_id or size.name
    tag = size.ollama_tag or size.name
    ollama = tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"
    aliases = {openai_id, ollama, size.name, f"{size.name}:latest"}
    if ollama.endswith(":latest"):
        aliases.add(ollama.removesuffix(":latest"))
    return openai_id, ollama, frozenset(aliases)


class ServerState:
    """What the routes reach through ``request.app.state.adam``."""

    def __init__(self, models: list[Served], options: ServeOptions, metrics: Metrics) -> None:
        self.models = models
        self.options = options
        self.metrics = metrics
        self.started = time.time()
        self.files: FileStore | None = None  # the Files API's store, when the server has a state dir
        self.batches: BatchStore | None = None
        self.batch_worker: BatchWorker | None = None
        self.runs: RunsBrowser | None = None  # the web page's runs browser, when the server has a runs dir
        self.state_lock: StateDirLock | None = None  # held from create_app until the server stops

    def close(self) -> None:
        """Let the state dir go (after the server has stopped); closing twice is fine."""
        if self.state_lock is not None:
            self.state_lock.release()

    def find(self, name: str, *, ollama: bool = False) -> Served:
        """The served model called ``name``; 404 model_not_found for any other."""
        for served in self.models:
            if name in served.aliases:
                return served
        raise model_not_found(name, [s.ollama_name if ollama else s.openai_id for s in self.models])

    def for_generation(self, name: str, *, ollama: bool = False) -> Served:
        """The model called ``name``, if it generates text."""
        served = self.find(name, ollama=ollama)
        if not served.can_generate:
            raise ApiError(400, f"model '{name}' is an embedding model: it does not generate text", param="model")
        return served

    def for_endpoint(self, endpoint: str, name: str) -> Served:
        """The model called ``name``, if it answers ``endpoint`` (/v1/embeddings embeds, the others generate)."""
        return self.for_embeddings(name) if endpoint in URLS["embed"] else self.for_generation(name)

    def for_embeddings(self, name: str, *, ollama: bool = False) -> Served:
        """The model called ``name``, if it embeds."""
        served = self.find(name, ollama=ollama)
        if not served.can_embed:
            raise ApiError(400, f"model '{name}' cannot embed text on the {served.engine.backend.name} backend")
        return served


def state_of(request: Request) -> ServerState:
    """The server's state, from a route."""
    return request.app.state.adam  # type: ignore[no-any-return]
