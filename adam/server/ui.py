"""The web page at /ui: static files shipped with the package, and the JSON endpoints under /ui/api it reads.

The page itself (/ui and /ui/static/*) holds no data, so it loads without the key: a browser cannot
send one with a navigation. Everything under /ui/api is behind the Guard like the rest of the server.
The routes are thin: runs_browser finds runs and checks names, jsonl_pages reads pages of results.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from adam.server.answers import asked_of_request, same_answer, view
from adam.server.batch_store import public
from adam.server.errors import ApiError
from adam.server.jsonl_pages import Page, decode
from adam.server.runs_browser import RunsBrowser, read_json
from adam.server.state import ServerState, state_of

router = APIRouter()

PAGE_PATHS = ("/ui", "/ui/")  # the page, open without a key
STATIC_PREFIX = "/ui/static/"
STATIC = {  # the only files served from the package: a fixed table, no name from the request reaches the disk
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# Nothing but the page's own script, styles and requests; blob: for the report chart, fetched with the key.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
MAX_LIMIT = 500
MAX_COMPARED = 8  # runs side by side at most


def _static(name: str) -> Response:
    if name not in STATIC:
        raise ApiError(404, f"no file '{name}' in the page", code="not_found")
    body = resources.files("adam.server").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={**HEADERS, "Cache-Control": "no-cache"})


@router.get("/ui", include_in_schema=False)
@router.get("/ui/", include_in_schema=False)
def page() -> Response:
    """The page."""
    return _static("index.html")


@router.get("/ui/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    """The page's script and styles."""
    return _static(name)


def browser_of(request: Request) -> RunsBrowser:
    """The server's runs browser; 404 when it was started without a runs dir."""
    browser = state_of(request).runs
    if browser is None:
        raise ApiError(404, "the runs browser needs a runs dir: start the server with job.runs_dir=<dir>")
    return browser


@router.get("/ui/api/info")
def info(request: Request) -> dict[str, Any]:
    """What the page needs to know of the server: its models, runs dir and whether the Batch API is on."""
    state = state_of(request)
    return {
        "models": [{"id": m.openai_id, "chat": m.can_generate, "embed": m.can_embed} for m in state.models],
        "runs_dir": str(state.runs.root) if state.runs is not None else None,
        "batches": state.batches is not None,
    }


@router.get("/ui/api/runs")
def runs(request: Request) -> dict[str, Any]:
    """Every run and sweep under the runs dir, newest first."""
    return browser_of(request).runs()


@router.get("/ui/api/runs/{name:path}/summary")
def summary(request: Request, name: str) -> dict[str, Any]:
    """A run's manifest and files, or a sweep's."""
    return browser_of(request).summary(name)


@dataclass(frozen=True)
class LinesQuery:
    """Which lines of results.jsonl or errors.jsonl a request asks for: a page, or the matches of ``q``."""

    offset: int
    limit: int
    q: str


def lines_query(
    offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=MAX_LIMIT), q: str = Query("", max_length=500)
) -> LinesQuery:
    """The query parameters of the results and errors routes, checked once."""
    return LinesQuery(offset, limit, q)


@router.get("/ui/api/runs/{name:path}/results")
def results(request: Request, name: str, query: LinesQuery = Depends(lines_query)) -> dict[str, Any]:  # noqa: B008
    """A page of results.jsonl, or of the lines whose id or text contains ``q``."""
    return _lines(request, name, "results", query)


@router.get("/ui/api/runs/{name:path}/errors")
def errors(request: Request, name: str, query: LinesQuery = Depends(lines_query)) -> dict[str, Any]:  # noqa: B008
    """A page of errors.jsonl, searchable as results are."""
    return _lines(request, name, "errors", query)


@router.get("/ui/api/runs/{name:path}/report")
def report(request: Request, name: str) -> dict[str, Any]:
    """A sweep's report: its rows, its Markdown, whether it has a chart."""
    return browser_of(request).report(name)


@router.get("/ui/api/runs/{name:path}/report.png")
def chart(request: Request, name: str) -> Response:
    """A sweep's chart."""
    path = browser_of(request).file(name, "png")
    if path is None:
        raise ApiError(404, f"'{name}' has no report.png", code="not_found")
    return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/ui/api/batches")
def batches(request: Request) -> dict[str, Any]:
    """The Batch API's batches, newest first, each with its run's name when its run dir is under the runs dir."""
    state = state_of(request)
    if state.batches is None:
        return {"enabled": False, "data": []}
    out = []
    for doc in reversed(state.batches.in_order()):
        run = state.runs.run_name(state.batches.run_dir(doc["id"])) if state.runs is not None else None
        out.append({**public(doc), "run": run})
    return {"enabled": True, "data": out}


def _lines(request: Request, name: str, kind: str, query: LinesQuery) -> dict[str, Any]:
    offset, limit, q = query.offset, query.limit, query.q
    browser = browser_of(request)
    path = browser.file(name, kind)
    if path is None:
        return {"total": 0, "offset": offset, "next": None, "scanned_to": 0, "query": q, "lines": []}
    page: Page = browser.pages.search(path, q, offset, limit) if q else browser.pages.page(path, offset, limit)
    lines = [{"line": number, **decode(raw)} for number, raw in page.lines]
    if kind == "results":
        views = [view(line["record"]) if "record" in line else None for line in lines]
        _ask_the_input(state_of(request), name, [v for v in views if v is not None])
        for line, seen in zip(lines, views, strict=True):
            if seen is not None:
                line["view"] = seen
    return {
        "total": page.total,
        "offset": offset,
        "next": page.next,
        "scanned_to": page.scanned_to,
        "query": q,
        "lines": lines,
    }


def batch_input(state: ServerState, name: str) -> Any:
    """The input file of the Batch API batch whose run ``name`` is, from the server's own stores; None otherwise.

    No path written in a manifest is opened: the batch's id leads to its input_file_id, and the file store
    to the file."""
    if state.runs is None or state.batches is None or state.files is None:
        return None
    manifest = state.runs.file(name, "manifest")
    doc = read_json(manifest) if manifest is not None else None
    batch = doc.get("batch") if doc is not None else None
    batch_id = batch.get("id") if isinstance(batch, dict) else None
    found = state.batches.get(batch_id) if isinstance(batch_id, str) else None
    if found is None or state.runs.run_name(state.batches.run_dir(found["id"])) != name:
        return None
    return state.files.path(str(found.get("input_file_id")))


def _ask_the_input(state: ServerState, name: str, views: list[dict[str, Any]]) -> None:
    """Fill in what was asked for lines that do not keep it (a batch's): from the batch's input file, by custom_id."""
    missing = [v for v in views if v["asked"] is None and v["id"] is not None]
    if not missing or state.runs is None:
        return
    path = batch_input(state, name)
    if path is None:
        return
    requests = state.runs.pages.by_id(path, [str(v["id"]) for v in missing])
    for seen in missing:
        request = requests.get(str(seen["id"]))
        if request is not None:
            seen["asked"] = asked_of_request(request)


@router.get("/ui/api/compare")
def compare(
    request: Request,
    runs: list[str] = Query(..., min_length=2, max_length=MAX_COMPARED),  # noqa: B008
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
) -> dict[str, Any]:
    """The answers of two or more runs side by side, by id: a page of the first run's results, each id looked up
    in the others; ``differs`` marks the rows whose answers are not all the same."""
    browser = browser_of(request)
    paths = [browser.file(name, "results") for name in runs]
    first = paths[0]
    if first is None:
        return {"runs": runs, "total": 0, "offset": offset, "next": None, "rows": []}
    page = browser.pages.page(first, offset, limit)
    views = [view(decode(raw).get("record") or {}) for _, raw in page.lines]
    ids = [str(v["id"]) for v in views if v["id"] is not None]
    others = [browser.pages.by_id(path, ids) if path is not None else {} for path in paths[1:]]
    _ask_the_input(state_of(request), runs[0], views)
    rows = []
    for (number, _), seen in zip(page.lines, views, strict=True):
        key = str(seen["id"])
        found = [view(other[key]) if key in other else None for other in others]
        answers = [seen, *found]
        asked = next((a["asked"] for a in answers if a is not None and a["asked"] is not None), None)
        texts = [a["answer"] if a is not None else None for a in answers]
        rows.append({
            "line": number,
            "id": seen["id"],
            "asked": asked,
            "answers": [None if a is None else {"text": a["answer"], "html": a["answer_html"]} for a in answers],
            "differs": not all(t is not None and same_answer(t, texts[0]) for t in texts),
        })  # fmt: skip
    return {"runs": runs, "total": page.total, "offset": offset, "next": page.next, "rows": rows}
