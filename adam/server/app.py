"""The FastAPI app: the engines it serves, by the names each protocol uses, behind the guard and the metrics.

``create_app(engines, options)`` is all a caller needs (job=serve, the tests, a notebook). Each engine
gets a Batcher; the routes (openai_routes, ollama_routes) make one call into it per request. Every
error becomes the protocol's own error body: a bad request a 4xx, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from adam.engine import Engine
from adam.errors import AdamError, ConfigError, is_disk_full
from adam.run.locks import StateDirLock
from adam.server.batcher import Batcher
from adam.server.errors import ApiError, error_body, from_adam_error
from adam.server.metrics import Metrics, MetricsMiddleware
from adam.server.security import Guard, allowed_hosts
from adam.server.state import Served, ServeOptions, ServerState, names_of

log = logging.getLogger(__name__)


def create_app(engines: Sequence[Engine], options: ServeOptions | None = None) -> Any:
    """The ASGI app serving ``engines`` (a chat model, and an embedder beside it, say) over both protocols.

    With a state dir it holds that dir's lock until the app shuts down (or ``app.state.adam.close()``).
    """
    options = options or ServeOptions()
    job = options.job
    # first: a second server on this state dir refuses before it starts anything (see StateDirLock)
    state_lock = StateDirLock(Path(job.state_dir)).acquire() if job.state_dir is not None else None
    try:
        return _build(engines, options, state_lock)
    except BaseException:
        if state_lock is not None:
            state_lock.release()
        raise


def _build(engines: Sequence[Engine], options: ServeOptions, state_lock: StateDirLock | None) -> Any:
    from adam.server import batches, files, ollama_routes, openai_routes, ui
    from adam.server.runs_browser import RunsBrowser

    job = options.job
    models: list[Served] = []
    app = FastAPI(title="adam", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan)
    app.include_router(openai_routes.router)
    app.include_router(ollama_routes.router)
    app.include_router(files.router)
    app.include_router(batches.router)
    app.include_router(ui.router)
    routers = (openai_routes.router, ollama_routes.router, files.router, batches.router, ui.router)
    paths = {getattr(r, "path", "") for router in routers for r in router.routes}
    metrics = Metrics(paths | {"/health", "/metrics"})
    named = [(engine, *names_of(engine)) for engine in engines]
    for i, (_, openai_id, _, aliases) in enumerate(named):
        if any(aliases & other for *_, other in named[:i]):
            raise ConfigError(f"two served models share a name ({openai_id}): serve each size once")
    for engine, openai_id, ollama, aliases in named:
        observer = metrics.observer(openai_id)
        batcher = Batcher(engine, wait_s=job.batch_wait_ms / 1000, max_batch=job.max_batch, observer=observer)
        metrics.watch_queue(openai_id, lambda b=batcher: b.queue_depth)
        models.append(Served(engine, batcher, openai_id, ollama, aliases))
    app.state.adam = ServerState(models, options, metrics)
    app.state.adam.state_lock = state_lock
    if job.state_dir is not None:
        _add_batch_api(app.state.adam, Path(job.state_dir))
    if job.runs_dir is not None:
        app.state.adam.runs = RunsBrowser(job.runs_dir)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": [m.openai_id for m in models]}

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    _add_error_handlers(app)
    app.add_middleware(  # refused requests never reach a route
        Guard,
        key=options.api_key,
        hosts=allowed_hosts(job.host, job.allowed_hosts),
        max_body=int(job.max_body_mb * 2**20),
        proxied=job.allowed_hosts,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: refusals are counted too
    return app


def _add_batch_api(state: ServerState, state_dir: Path) -> None:
    """The Files and Batch APIs' stores under ``state_dir``, and the worker that runs batches."""
    from adam.server.batch_store import BatchStore
    from adam.server.batch_worker import BatchWorker
    from adam.server.file_store import FileStore

    state.files = FileStore(state_dir / "files")
    state.batches = BatchStore(state_dir / "batches")
    state.batch_worker = BatchWorker(
        state.batches,
        state.files,
        state.models,
        chunk=state.options.job.max_batch,
        resolve=state.for_endpoint,
        job_overrides=state.options.job.batch_job,
    )


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    worker = app.state.adam.batch_worker
    if worker is not None:  # batches left in progress by a previous server resume now
        worker.start()
    yield
    if worker is not None:  # after the chunk in flight, before the batchers stop
        await asyncio.to_thread(worker.stop, 60)
    # uvicorn has finished the requests in flight: let the workers finish their queues and stop
    for served in app.state.adam.models:
        await asyncio.to_thread(served.batcher.close, 60)
    app.state.adam.close()  # the state dir is free for the next server


def _add_error_handlers(app: FastAPI) -> None:
    def answer(request: Request, error: ApiError) -> JSONResponse:
        body = error_body(request.url.path, error.status, error.message, error.code, error.param)
        return JSONResponse(body, status_code=error.status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return answer(request, err)

    @app.exception_handler(AdamError)
    async def adam_error(request: Request, err: AdamError) -> JSONResponse:
        return answer(request, from_adam_error(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return answer(request, ApiError(400, _validation_message(err), code="invalid_request"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return answer(request, ApiError(err.status_code, str(err.detail)))

    @app.exception_handler(OSError)
    async def os_error(request: Request, err: OSError) -> JSONResponse:
        if not is_disk_full(err):
            return await bug(request, err)
        # an upload, a batch or a cancel the state dir has no room for: nothing of it was kept
        log.warning("%s %s refused: %s", request.method, request.url.path, err)
        message = "the server's disk is full (job.state_dir): nothing was stored; free some space and try again"
        return answer(request, ApiError(507, message, code="insufficient_storage"))

    @app.exception_handler(Exception)
    async def bug(request: Request, err: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return answer(request, ApiError(500, f"internal error ({type(err).__name__}); see the server log"))


def _validation_message(err: RequestValidationError) -> str:
    """The first problem pydantic found, as one line ("messages: field required")."""
    problems = err.errors()
    if not problems:
        return "invalid request"
    first = problems[0]
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where + ': ' if where else ''}{first.get('msg', 'invalid')}{more}"
