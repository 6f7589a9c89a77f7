"""The OpenAI Files API for batch input: upload (multipart, purpose=batch), retrieve, content, delete, list.

Uploads are validated line by line as a generate or embed job reads an OpenAI Batch file; what is
wrong is kept with the file and reported in the ``errors`` of a batch created from it. The multipart
body is parsed with the standard library's email parser, so the server needs no extra package.
"""

from __future__ import annotations

import email.parser
import email.policy
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from adam.server.errors import ApiError
from adam.server.file_store import PURPOSES, FileStore, validate_batch
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
    fields, data, filename = _multipart(request.headers.get("content-type", ""), await request.body())
    purpose = fields.get("purpose")
    if purpose != "batch":
        raise ApiError(400, f"purpose must be 'batch', got {purpose!r}", code="invalid_request", param="purpose")
    if data is None:
        raise ApiError(400, "the upload has no 'file' part", code="invalid_request", param="file")
    validation = validate_batch(data)
    return store_of(request).create(data, filename=filename or "upload.jsonl", purpose=purpose, validation=validation)


@router.get("/v1/files")
async def list_files(request: Request, purpose: str | None = None) -> dict[str, Any]:
    """Every stored file, newest first."""
    files = [_public(f) for f in store_of(request).list(purpose)]
    return {"object": "list", "data": files, "has_more": False}


@router.get("/v1/files/{file_id}")
async def retrieve(request: Request, file_id: str) -> dict[str, Any]:
    """One file object."""
    return _public(_get(store_of(request), file_id))


@router.get("/v1/files/{file_id}/content")
async def content(request: Request, file_id: str) -> Response:
    """A file's bytes."""
    store = store_of(request)
    _get(store, file_id)
    return Response(store.content(file_id) or b"", media_type="application/jsonl")


@router.delete("/v1/files/{file_id}")
async def delete(request: Request, file_id: str) -> dict[str, Any]:
    """Remove a file."""
    deleted = store_of(request).delete(file_id)
    if not deleted:
        raise _missing(file_id)
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
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "file":
            data, filename = payload, part.get_filename()
        elif isinstance(name, str) and name in ("purpose",):
            fields[name] = payload.decode("utf-8", "replace").strip()
    if "purpose" in fields and fields["purpose"] not in PURPOSES:
        raise ApiError(400, f"unknown purpose {fields['purpose']!r}", code="invalid_request", param="purpose")
    return fields, data, filename
