"""job=serve: the OpenAI- and Ollama-compatible HTTP server over the size's model (and job.embed_size's).

Thin: build the engines, build the app (adam/server/), run uvicorn until SIGTERM or Ctrl-C. Nothing
here imports FastAPI or uvicorn until the server starts, so `python -m adam --help` stays light.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam.backends.base import ModelBackend
from adam.engine import Engine
from adam.errors import ConfigError
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext
from adam.settings import catalog
from adam.settings.config import ModelKind
from adam.settings.job_schemas import ServeJob

log = logging.getLogger(__name__)


def check_serve(cfg: DictConfig) -> None:
    """Before any model loads: no open port without a key, no other server on the state dir, and an embed_size
    that is an embedding model."""
    from adam.run.locks import StateDirLock
    from adam.server.security import check_bind, read_key

    job = cfg.job
    check_bind(str(job.host), key=read_key(str(job.api_key_env)), insecure=bool(job.insecure), key_env=job.api_key_env)
    if job.state_dir is not None:  # refuse now; create_app takes it for good
        StateDirLock(Path(str(job.state_dir))).acquire().release()
    if job.embed_size is not None:
        if job.embed_size not in catalog.sizes():
            raise ConfigError(f"job.embed_size={job.embed_size} is not a size; sizes: {', '.join(catalog.sizes())}")
        from adam.planning.size_catalog import load_size

        if load_size(str(job.embed_size)).kind is not ModelKind.embed:
            raise ConfigError(f"job.embed_size={job.embed_size} is not an embedding model (try job.embed_size=minilm)")


def run_serve(ctx: JobContext) -> JobStats:
    """Serve until SIGTERM or Ctrl-C, then finish the requests in flight and return."""
    from adam.server.app import create_app
    from adam.server.listen import serve
    from adam.server.read_timeouts import ReadTimeouts
    from adam.server.security import read_key
    from adam.server.state import ServeOptions

    job = ctx.job
    engines = [ctx.engine]
    embedder = _embed_backend(ctx) if job.embed_size else None
    try:
        if embedder is not None:
            engines.append(Engine.from_config(embedder, job, ctx.domain))
        for engine in engines:  # load now: the first request should not wait for it
            engine.backend.load()
        options = ServeOptions(_serve_job(job), api_key=read_key(str(job.api_key_env)))
        app = create_app(engines, options)  # holds job.state_dir's lock from here
        try:
            names = ", ".join(m.openai_id for m in app.state.adam.models)
            key = "a key from $" + str(job.api_key_env) if options.api_key else "no key"
            url = f"http://{job.host}:{job.port}"
            log.info("serving %s on %s (web page: %s/ui; OpenAI: /v1, Ollama: /api; %s)", names, url, url, key)
            timeouts = ReadTimeouts(header_s=float(job.header_timeout_s), body_s=float(job.body_timeout_s))
            stopped_by = serve(app, str(job.host), int(job.port), timeouts)
            answered = app.state.adam.metrics.answered()
        finally:
            app.state.adam.close()  # the app's shutdown let it go already, unless the server never started
    finally:
        if embedder is not None:
            embedder.close()
    stats = JobStats(ok=answered)  # requests answered; a client's bad request is not the run's failure
    stats.extra["stopped_by"] = stopped_by
    return stats


def _serve_job(job: Any) -> ServeJob:
    """The job node as its dataclass, with ServeJob's defaults under what the node leaves out."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ServeJob), job))  # type: ignore[return-value]


def _embed_backend(ctx: JobContext) -> ModelBackend:
    """The backend for job.embed_size: the same backend= choice, with the embedding size."""
    from hydra.utils import instantiate

    from adam.planning.size_catalog import load_size

    if ctx.config is None:
        raise ConfigError("job.embed_size needs the composed config (run through adam.run.runner.run)")
    size = OmegaConf.structured(load_size(str(ctx.job.embed_size)))
    backend: Any = instantiate(ctx.config.backend, size=size, _convert_="object")
    if not backend.supports_embeddings:
        raise ConfigError(f"the {backend.name} backend cannot embed: job.embed_size needs one that can")
    backend.check_available()
    return backend  # type: ignore[no-any-return]
