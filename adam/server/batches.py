"""The OpenAI Batch API: create, retrieve, list (after, limit) and cancel; BatchWorker runs what is created.

Only ``completion_window="24h"`` is accepted, as OpenAI does; the window itself is ServeOptions'
batch_window_s, so tests can watch a batch expire. The routes are plain functions, which FastAPI runs on its
thread pool: a store's writes and fsyncs never hold the event loop (nor /health) while they wait on the disk.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import Field

from adam.io.record_parser import URLS
from adam.protocol.bodies import RequestBody
from adam.server.batch_store import BatchStore, public
from adam.server.errors import ApiError
from adam.server.files import store_of
from adam.server.json_body import JsonBodyRoute
from adam.server.state import state_of

router = APIRouter(route_class=JsonBodyRoute)  # a JSON body whatever its Content-Type
ENDPOINTS = tuple(url for urls in URLS.values() for url in urls)


class CreateBatch(RequestBody):
    input_file_id: str = Field(min_length=1)
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None


def batches_of(request: Request) -> BatchStore:
    """The server's batch store; 404 when it was started without a state_dir."""
    store = state_of(request).batches
    if store is None:
        raise ApiError(404, "the Batch API needs a state dir: start the server with job.state_dir=<dir>")
    return store


@router.post("/v1/batches")
def create(request: Request, body: CreateBatch) -> dict[str, Any]:
    """A new batch over an uploaded file; it runs after the batches created before it."""
    state = state_of(request)
    batches, files = batches_of(request), store_of(request)
    if body.endpoint not in ENDPOINTS:
        raise ApiError(400, f"endpoint must be one of {', '.join(ENDPOINTS)}", code="invalid_request", param="endpoint")
    if body.completion_window != "24h":
        raise ApiError(400, "completion_window must be '24h'", code="invalid_request", param="completion_window")
    meta = files.get(body.input_file_id)
    if meta is None or meta["purpose"] != "batch":
        raise ApiError(404, f"no batch input file with id '{body.input_file_id}'", param="input_file_id")
    doc = batches.create(
        input_file_id=body.input_file_id,
        endpoint=body.endpoint,
        metadata=body.metadata,
        window_s=state.options.batch_window_s,
    )
    if state.batch_worker is not None:
        state.batch_worker.wake()
    return public(doc)


@router.get("/v1/batches")
def list_batches(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
    """Batches, newest first; ``after`` is the last id of the previous page."""
    docs = list(reversed(batches_of(request).in_order()))
    if after is not None:
        ids = [d["id"] for d in docs]
        docs = docs[ids.index(after) + 1 :] if after in ids else []
    page = [public(d) for d in docs[:limit]]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(docs) > limit,
    }


@router.get("/v1/batches/{batch_id}")
def retrieve(request: Request, batch_id: str) -> dict[str, Any]:
    """One batch."""
    doc = batches_of(request).get(batch_id)
    if doc is None:
        raise _missing(batch_id)
    return public(doc)


@router.post("/v1/batches/{batch_id}/cancel")
def cancel(request: Request, batch_id: str) -> dict[str, Any]:
    """Stop a batch after the chunk in flight: cancelling, then cancelled."""
    doc = batches_of(request).cancel(batch_id)
    if doc is None:
        raise _missing(batch_id)
    worker = state_of(request).batch_worker
    if worker is not None:
        worker.wake()
    return public(doc)


def _missing(batch_id: str) -> ApiError:
    return ApiError(404, f"no batch with id '{batch_id}'", code="not_found", param="batch_id")
