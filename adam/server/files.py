"""The OpenAI Files API for batch input: upload (multipart, purpose=batch), retrieve, content, delete, list.

An upload is stored as it came; its lines are validated when a batch is created from it, for that
batch's endpoint, in the batch worker's thread (adam/server/batch_input.py), never on the event loop.
On a full disk an upload gets 507 and nothing is kept. The multipart body is parsed with the standard
library's email parser, so the server needs no extra package.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from adam.server.errors import ApiError
from adam.server.file_store import PURPOSES, FileStore
from adam.server.state import state_of

router = APIRouter()


def store_of(request: Request) -> FileStore:
    """The server's file store; 404 when it was started without a state_dir."""
    store = state_of(request).files
    if store is None:
        raise ApiError(404, "the Files API needs a state dir: start the server with job.state_dir=<dir>")
    return store


@router.post("/v1/files")
async def upload(request: Request) -> dict[str, Any]:
    """Store an uploaded batch input file under a new id."""
    store, content_type = store_of(request), request.headers.get("content-type", "")
    body = await request.body()
    # parsing a large multipart body and writing it durably take a while: not on the event loop
    return await asyncio.to_thread(_store_upload, store, content_type, body)


def _store_upload(store: FileStore, content_type: str, body: bytes) -> dict[str, Any]:
    fields, data, filename = _multipart(content_type, body)
    purpose = fields.get("purpose")
    if purpose != "batch":
        raise ApiError(400, f"purpose must be 'batch', got {purpose!r}", code="invalid_request", param="purpose")
    if data is None:
        raise ApiError(400, "the upload has no 'file' part", code="invalid_request", param="file")
    return _public(store.create(data, filename=filename or "upload.jsonl", purpose=purpose))


@router.get("/v1/files")
def list_files(request: Request, purpose: str | None = None) -> dict[str, Any]:
    """Every stored file, newest first."""
    files = [_public(f) for f in store_of(request).list(purpose)]
    return {"object": "list", "data": files, "has_more": False}


@router.get("/v1/files/{file_id}")
def retrieve(request: Request, file_id: str) -> dict[str, Any]:
    """One file object."""
    return _public(_get(store_of(request), file_id))


@router.get("/v1/files/{file_id}/content")
def content(request: Request, file_id: str) -> Response:
    """A file's bytes."""
    store = store_of(request)
    _get(store, file_id)
    return Response(store.content(file_id) or b"", media_type="application/jsonl")


@router.delete("/v1/files/{file_id}")
def delete(request: Request, file_id: str) -> dict[str, Any]:
    """Remove a file."""
    deleted = store_of(request).delete(file_id)
    if not deleted:
        raise _missing(file_id)
    worker = state_of(request).batch_worker
    if worker is not None:  # a batch paused on a full disk may go on now
        worker.wake()
    return {"id": file_id, "object": "file", "deleted": True}


def _get(store: FileStore, file_id: str) -> dict[str, Any]:
    meta = store.get(file_id)
    if meta is None:
        raise _missing(file_id)
    return meta


def _missing(file_id: str) -> ApiError:
    return ApiError(404, f"no file with id '{file_id}'", code="not_found", param="file_id")


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI file object, without adam's own keys."""
    return {k: v for k, v in meta.items() if not k.startswith("adam_")}


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], bytes | None, str | None]:
    """(text fields, the 'file' part's bytes, its filename) of a multipart/form-data body."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(400, "upload a file as multipart/form-data with a 'file' and a 'purpose' part")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ApiError(400, "the multipart body could not be read", code="invalid_request")
    fields: dict[str, str] = {}
    data = filename = None
    for part in message.iter_parts():
        try:
            name = part.get_param("name", header="content-disposition")
            part_filename = part.get_filename() if name == "file" else None
        except UnicodeError as err:  # an RFC 2231 parameter (filename*=utf-7''...) decoded to a lone surrogate
            raise ApiError(
                400, "a part's name or file name holds a lone UTF-16 surrogate, which is not text: rename the file",
                code="invalid_request", param="file",
            ) from err  # fmt: skip
        payload = part.get_payload(decode=True) or b""
        if name == "file":
            data, filename = payload, part_filename
        elif isinstance(name, str) and name in ("purpose",):
            fields[name] = payload.decode("utf-8", "replace").strip()
    if "purpose" in fields and fields["purpose"] not in PURPOSES:
        raise ApiError(400, f"unknown purpose {fields['purpose']!r}", code="invalid_request", param="purpose")
    return fields, data, filename
