"""The web page's JSON API without a browser: the runs list, pages of results, search, reports, the key, and the
runs dir as the only files it serves (``..``, absolute paths and symlinks out of it are refused)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import compose_cfg, read_jsonl
from run_dirs import big_record, big_run, echo_run, sweep
from serving import engine_for, serving

from adam.server.jsonl_pages import STRIDE, JsonlPages
from adam.server.listen import BackgroundServer

SECRET = "top-secret-outside-the-runs-dir"
PROMPTS = [
    {"id": "a", "prompt": "hello there"},
    {"id": "b", "prompt": 'say "hi" to Ünïcode'},
    {"id": "c", "prompt": ""},
]
BIG = 100_000


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs dir with an echo run, a two-job sweep, a 100,000-line run, and a secret beside it."""
    base = tmp_path_factory.mktemp("ui-api")
    root = base / "outputs"
    echo_run(root / "generate" / "2025-01-02_10-00-00.000000", PROMPTS)
    sweep(root / "multirun" / "2025-01-03_10-00-00.000000", [["domain=general"], ["domain=code"]], PROMPTS[:2])
    big_run(root / "generate" / "big", BIG)
    outside = base / "elsewhere"
    (outside / "run").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "run" / "manifest.json").write_text(json.dumps({"status": "ok", "job": SECRET}))
    (outside / "run" / "results.jsonl").write_text(json.dumps({"id": SECRET}) + "\n")
    (root / "escape").symlink_to(outside / "run")  # a run dir that is a symlink out of the runs dir
    leaky = root / "generate" / "leaky"  # a real run whose results are a symlink out
    leaky.mkdir()
    (leaky / "manifest.json").write_text(json.dumps({"status": "ok", "job": "generate"}))
    (leaky / "results.jsonl").symlink_to(outside / "secret.txt")
    (leaky / "errors.jsonl").symlink_to(outside / "secret.txt")
    (leaky / "report.png").symlink_to(outside / "secret.txt")
    (outside / "manifest.json").write_text(
        json.dumps({"status": "completed", "job": "generate", "error": SECRET, "counts": {"ok": 4242}})
    )
    linked = root / "generate" / "linked"  # a dir whose manifest is a symlink out: not a run
    linked.mkdir()
    (linked / "manifest.json").symlink_to(outside / "manifest.json")
    (linked / "results.jsonl").write_text(json.dumps({"id": "inside"}) + "\n")
    (outside / "report.csv").write_text(f"job,overrides\n0,{SECRET}\n")
    fake_sweep = root / "multirun" / "linked-report"  # a dir whose report is a symlink out: not a sweep
    fake_sweep.mkdir(parents=True)
    (fake_sweep / "report.csv").symlink_to(outside / "report.csv")
    (fake_sweep / "report.md").symlink_to(outside / "secret.txt")
    return root


@pytest.fixture(scope="module")
def server(runs_dir: Path) -> Iterator[BackgroundServer]:
    with serving(engine_for(), runs_dir=str(runs_dir), state_dir=str(runs_dir / "serve")) as running:
        yield running


def get(server: BackgroundServer, path: str, **params: object) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, timeout=60)


def lines(server: BackgroundServer, run: str, kind: str = "results", **params: object) -> dict:
    reply = get(server, f"/ui/api/runs/{run}/{kind}", **params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_runs_list_has_runs_with_their_manifest_facts_and_sweeps_with_their_jobs(server: BackgroundServer) -> None:
    listing = get(server, "/ui/api/runs").json()
    runs = {r["id"]: r for r in listing["runs"]}
    assert set(runs) == {
        "generate/2025-01-02_10-00-00.000000",
        "generate/big",
        "generate/leaky",
        "multirun/2025-01-03_10-00-00.000000/0",
        "multirun/2025-01-03_10-00-00.000000/1",
    }  # the symlink out of the runs dir is not walked
    echo = runs["generate/2025-01-02_10-00-00.000000"]
    assert (echo["job"], echo["status"], echo["model"], echo["backend"]) == ("generate", "partial", "echo/demo", "echo")
    assert (echo["counts"]["ok"], echo["counts"]["failed"], echo["sweep"]) == (2, 1, None)
    (swept,) = listing["sweeps"]
    assert swept["id"] == "multirun/2025-01-03_10-00-00.000000" and swept["report"]
    assert sorted(swept["runs"]) == [f"{swept['id']}/0", f"{swept['id']}/1"]
    assert {runs[r]["sweep"] for r in swept["runs"]} == {swept["id"]}


def test_a_runs_summary_has_its_manifest_and_files(server: BackgroundServer) -> None:
    run = "generate/2025-01-02_10-00-00.000000"
    summary = get(server, f"/ui/api/runs/{run}/summary").json()
    assert summary["kind"] == "run" and summary["manifest"]["status"] == "partial"
    assert set(summary["files"]) == {"results", "errors", "manifest"} and summary["sweep"] is None
    child = get(server, "/ui/api/runs/multirun/2025-01-03_10-00-00.000000/1/summary").json()
    assert child["sweep"] == "multirun/2025-01-03_10-00-00.000000"


def test_results_and_errors_come_back_as_records(server: BackgroundServer, runs_dir: Path) -> None:
    run = "generate/2025-01-02_10-00-00.000000"
    page = lines(server, run)
    on_disk = read_jsonl(runs_dir / run / "results.jsonl")
    assert [line["record"] for line in page["lines"]] == on_disk and page["total"] == 2 and page["next"] is None
    errors = lines(server, run, "errors")
    assert [line["record"]["id"] for line in errors["lines"]] == ["c"]
    assert "empty" in errors["lines"][0]["record"]["error"]["message"]


def test_pages_put_together_are_the_file(server: BackgroundServer, runs_dir: Path) -> None:
    on_disk = (runs_dir / "generate" / "big" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    wanted = [json.loads(line) for line in on_disk[:2_000]]
    got: list[dict] = []
    offset: int | None = 0
    while offset is not None and offset < 2_000:
        page = lines(server, "generate/big", offset=offset, limit=97)
        assert [line["line"] for line in page["lines"]] == list(range(offset, offset + len(page["lines"])))
        got += [line["record"] for line in page["lines"]]
        offset = page["next"]
    assert got[:2_000] == wanted
    last = lines(server, "generate/big", offset=BIG - 30, limit=50)
    assert last["total"] == BIG and last["next"] is None
    assert [line["record"] for line in last["lines"]] == [big_record(i) for i in range(BIG - 30, BIG)]


def test_a_page_deep_in_a_large_file_reads_a_bounded_stretch(runs_dir: Path) -> None:
    """The index is built once; after that a page reads at most STRIDE + limit lines, wherever it is."""
    path = runs_dir / "generate" / "big" / "results.jsonl"
    pages = JsonlPages()
    first = pages.page(path, 0, 50)
    built = pages.index(path).scanned
    assert built == path.stat().st_size and first.total == BIG
    longest = max(len(line) for line in path.read_bytes().splitlines()) + 1
    for offset in (99_950, 54_321, 255, 256, 70_000):
        page = pages.page(path, offset, 50)
        assert [n for n, _ in page.lines] == list(range(offset, min(offset + 50, BIG)))
        assert page.read_bytes <= (STRIDE + 50) * longest
        assert json.loads(page.lines[0][1]) == big_record(offset)
    assert pages.index(path).scanned == built  # not read again


def test_the_index_follows_a_file_that_grows(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b"".join(b'{"id":"%d"}\n' % i for i in range(600)) + b'{"id":"torn')  # a writer mid-line
    pages = JsonlPages()
    page = pages.page(path, 598, 10)
    assert page.total == 601 and [raw for _, raw in page.lines] == [b'{"id":"598"}', b'{"id":"599"}', b'{"id":"torn']
    before = pages.index(path).scanned
    with path.open("ab") as fh:
        fh.write(b'"}\n' + b"".join(b'{"id":"%d"}\n' % i for i in range(601, 900)))
    grown = path.stat().st_size
    page = pages.page(path, 895, 10)
    assert page.total == 900 and [raw for _, raw in page.lines][-1] == b'{"id":"899"}'
    assert pages.index(path).scanned - before < grown - 600 * 10  # only the new part was read
    assert pages.page(path, 600, 1).lines == [(600, b'{"id":"torn"}')]
    path.write_bytes(b'{"id":"new"}\n')  # replaced by a shorter file: indexed again
    assert pages.page(path, 0, 5).lines == [(0, b'{"id":"new"}')]


def test_search_finds_by_id_and_by_text_in_any_case(server: BackgroundServer) -> None:
    by_id = lines(server, "generate/big", q="rec-012345")
    assert [line["line"] for line in by_id["lines"]] == [12_345] and by_id["next"] is None
    first = lines(server, "generate/big", q="NEEDLE", limit=50)
    assert [line["line"] for line in first["lines"]] == [i for i in range(BIG) if i % 1000 == 7][:50]
    rest = lines(server, "generate/big", q="needle", limit=50, offset=first["next"])
    assert [line["line"] for line in rest["lines"]] == [i for i in range(BIG) if i % 1000 == 7][50:]
    run = "generate/2025-01-02_10-00-00.000000"
    assert [line["record"]["id"] for line in lines(server, run, q='"hi"')["lines"]] == ["b"]  # JSON-escaped chars
    assert [line["record"]["id"] for line in lines(server, run, q="ünï")["lines"]] == ["b"]
    assert lines(server, run, "errors", q="EMPTY")["lines"][0]["record"]["id"] == "c"
    assert lines(server, run, q="no such words")["lines"] == []


def test_a_search_hands_back_where_it_stopped_after_its_budget(runs_dir: Path) -> None:
    path = runs_dir / "generate" / "big" / "results.jsonl"
    pages, found, offset, steps = JsonlPages(), [], 0, 0
    while offset is not None:
        page = pages.search(path, "needle", offset, 1000, budget=200_000)
        assert page.read_bytes < 200_000 + 200  # one line past the budget at most
        found += [n for n, _ in page.lines]
        offset, steps = page.next, steps + 1
    assert found == [i for i in range(BIG) if i % 1000 == 7] and steps > 10


def test_a_sweep_report_comes_with_its_rows_and_chart(server: BackgroundServer) -> None:
    name = "multirun/2025-01-03_10-00-00.000000"
    report = get(server, f"/ui/api/runs/{name}/report").json()
    assert report["chart"] and report["markdown"].startswith("# Sweep report")
    assert [(r["job"], r["overrides"], r["run"]) for r in report["rows"]] == [
        ("0", "domain=general", f"{name}/0"),
        ("1", "domain=code", f"{name}/1"),
    ]
    png = get(server, f"/ui/api/runs/{name}/report.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert get(server, "/ui/api/runs/generate/big/report").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/ui/api/runs/%2e%2e/elsewhere/run/results",
        "/ui/api/runs/..%2Felsewhere%2Frun/summary",
        "/ui/api/runs/generate%2F..%2F..%2Felsewhere%2Frun/results",
        "/ui/api/runs/generate/%2e%2e/%2e%2e/elsewhere/run/summary",
        "/ui/api/runs//etc/summary",
        "/ui/api/runs/%2Fetc%2Fpasswd/results",
        "/ui/api/runs/%2Ftmp/summary",
        "/ui/api/runs/~root/summary",
        "/ui/api/runs/C:%5Cwindows/summary",
        "/ui/api/runs/generate%5C..%5C..%5Celsewhere/summary",
        "/ui/api/runs/escape/results",
        "/ui/api/runs/escape/summary",
        "/ui/api/runs/generate/leaky/results",
        "/ui/api/runs/generate/leaky/errors",
        "/ui/api/runs/generate/leaky/report.png",
        "/ui/api/runs/generate/big%00/summary",
        "/ui/static/..%2F..%2F..%2Fmanifest.py",
        "/ui/static/app.py",
        "/ui/api/runs/" + "a" * 300 + "/summary",  # longer than a file name: ENAMETOOLONG was a 500
        "/ui/api/runs/" + "/".join(["abcdefgh"] * 600) + "/results",  # longer than a path
        "/ui/api/compare?runs=generate/big&runs=" + "a" * 5000,
    ],
)
def test_nothing_outside_the_runs_dir_is_served(server: BackgroundServer, path: str) -> None:
    reply = httpx.get(f"{server.url}{path}")
    assert reply.status_code in (400, 404), reply.text
    assert SECRET not in reply.text and "import" not in reply.text


def test_a_manifest_or_report_symlinked_out_of_the_runs_dir_is_read_by_no_route(server: BackgroundServer) -> None:
    """One rule for every read under the runs dir: the runs list no more follows such a link than the summary."""
    listing = get(server, "/ui/api/runs")
    assert listing.status_code == 200 and SECRET not in listing.text and "4242" not in listing.text
    assert "generate/linked" not in {r["id"] for r in listing.json()["runs"]}
    assert "multirun/linked-report" not in {s["id"] for s in listing.json()["sweeps"]}
    for name in ("generate/linked", "multirun/linked-report"):
        for route in ("summary", "results", "errors", "report", "report.png"):
            reply = get(server, f"/ui/api/runs/{name}/{route}")
            assert reply.status_code == 404, (name, route, reply.text)
            assert SECRET not in reply.text and "4242" not in reply.text


@pytest.mark.parametrize(
    "path",
    [
        "/ui/api/runs/../elsewhere/run/results",
        "/ui/api/runs/generate/../../elsewhere/run/summary",
        "/ui/api/runs/generate/big/../../../elsewhere/run/results",
        "/ui/api/runs/./generate/big/summary",
    ],
)
def test_literal_dot_segments_are_refused(server: BackgroundServer, path: str) -> None:
    """Sent as they are (httpx would remove the dot segments before sending)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    conn.request("GET", path)
    reply = conn.getresponse()
    body = reply.read().decode()
    conn.close()
    assert reply.status in (400, 404) and SECRET not in body, body


def test_the_page_opens_without_the_key_and_its_api_needs_it(runs_dir: Path) -> None:
    with serving(engine_for(), runs_dir=str(runs_dir), api_key="sesame") as server:
        page = httpx.get(f"{server.url}/ui")
        assert page.status_code == 200 and "<title>adam</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for name in ("app.js", "app.css"):
            assert httpx.get(f"{server.url}/ui/static/{name}").status_code == 200
        for path in ("/ui/api/runs", "/ui/api/info", "/ui/api/runs/generate/big/results", "/ui/api/batches"):
            assert httpx.get(f"{server.url}{path}").status_code == 401
        sneaky = httpx.get(f"{server.url}/ui/static/..%2F..%2Fui%2Fapi%2Fruns")
        assert sneaky.status_code == 401  # only a plain file name under /ui/static/ is open
        listed = httpx.get(f"{server.url}/ui/api/runs", headers={"Authorization": "Bearer sesame"})
        assert listed.status_code == 200 and listed.json()["runs"]


def test_job_serve_browses_outputs_by_default_and_without_a_runs_dir_says_so() -> None:
    assert compose_cfg("job=serve").job.runs_dir == "outputs"
    with serving(engine_for()) as server:
        reply = httpx.get(f"{server.url}/ui/api/runs")
        assert reply.status_code == 404 and "job.runs_dir" in reply.json()["error"]
        assert httpx.get(f"{server.url}/ui/api/info").json()["runs_dir"] is None


def test_batches_are_listed_with_their_progress_and_run(tmp_path: Path) -> None:
    runs = tmp_path / "outputs"
    requests = "".join(
        json.dumps(
            {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "demo", "messages": [{"role": "user", "content": f"q {i}"}]},
            }
        )
        + "\n"
        for i in range(5)
    )
    with serving(engine_for(), runs_dir=str(runs), state_dir=str(runs / "serve")) as server:
        assert httpx.get(f"{server.url}/ui/api/batches").json() == {"enabled": True, "data": []}
        upload = httpx.post(f"{server.url}/v1/files", files={"file": ("r.jsonl", requests)}, data={"purpose": "batch"})
        body = {"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        batch = httpx.post(f"{server.url}/v1/batches", json=body).json()
        for _ in range(400):
            (listed,) = httpx.get(f"{server.url}/ui/api/batches").json()["data"]
            if listed["status"] == "completed":
                break
            time.sleep(0.05)
        assert listed["id"] == batch["id"] and listed["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
        assert listed["run"] == f"serve/batches/{batch['id']}/run"
        page = httpx.get(f"{server.url}/ui/api/runs/{listed['run']}/results").json()
        assert sorted(line["record"]["custom_id"] for line in page["lines"]) == [f"req-{i}" for i in range(5)]
    with serving(engine_for(), runs_dir=str(runs)) as server:
        assert httpx.get(f"{server.url}/ui/api/batches").json() == {"enabled": False, "data": []}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 501}, "limit"), ({"limit": 0}, "limit"), ({"offset": -1}, "offset"), ({"q": "x" * 501}, "q")],
)
def test_a_page_out_of_bounds_is_refused_naming_the_parameter(
    server: BackgroundServer, params: dict, field: str
) -> None:
    for kind in ("results", "errors"):
        reply = get(server, f"/ui/api/runs/generate/2025-01-02_10-00-00.000000/{kind}", **params)
        assert reply.status_code == 400, reply.text
        assert field in reply.json()["error"]


def test_a_results_line_comes_with_what_was_asked_and_its_answer_as_clean_html(server: BackgroundServer) -> None:
    page = lines(server, "generate/2025-01-02_10-00-00.000000")
    views = {line["view"]["id"]: line["view"] for line in page["lines"]}
    assert views["a"]["asked"] == "hello there" and views["a"]["answer"] == "hello there"  # job.keep_input's prompt
    assert views["a"]["answer_html"] == "<p>hello there</p>\n"


@pytest.mark.parametrize(
    ("markdown", "kept", "gone"),
    [
        ("**bold** <script>alert(1)</script>", ["<strong>bold</strong>", "&lt;script&gt;"], ["<script"]),
        ('<img src=x onerror="alert(1)">', ["&lt;img"], ["<img"]),
        ("![pixel](https://example.com/p.png) [x](javascript:alert(1))", [], ["<img", 'href="javascript']),
        ("[site](https://example.com)", ['href="https://example.com"', 'rel="noopener noreferrer nofollow"'], []),
        ("| a |\n|---|\n| b |", ["<table>", "<td>b</td>"], []),
    ],
)
def test_markdown_is_rendered_without_raw_html_and_sanitised(markdown: str, kept: list[str], gone: list[str]) -> None:
    from adam.server.answers import markdown_html

    html = markdown_html(markdown)
    assert html is not None
    assert all(piece in html for piece in kept), html
    assert not any(piece in html for piece in gone), html


def test_two_runs_compare_by_id_with_the_differing_rows_marked(server: BackgroundServer, runs_dir: Path) -> None:
    other = runs_dir / "generate" / "2025-01-02_11-00-00.000000"
    echo_run(other, [{"id": "b", "prompt": 'say "hi" to Ünïcode'}, {"id": "a", "prompt": "hello over there"}])
    first = "generate/2025-01-02_10-00-00.000000"
    reply = get(server, "/ui/api/compare", runs=[first, "generate/2025-01-02_11-00-00.000000"])
    assert reply.status_code == 200, reply.text
    rows = {row["id"]: row for row in reply.json()["rows"]}
    assert set(rows) == {"a", "b"} and reply.json()["total"] == 2
    assert rows["a"]["differs"] and not rows["b"]["differs"]
    assert [answer["text"] for answer in rows["a"]["answers"]] == ["hello there", "hello over there"]
    assert rows["a"]["asked"] == "hello there"
    missing = get(server, "/ui/api/compare", runs=[first, "generate/big"]).json()["rows"]
    assert all(row["answers"][1] is None and row["differs"] for row in missing)  # no such ids in the other run
    assert get(server, "/ui/api/compare", runs=[first]).status_code in (400, 422)  # two runs at least
    assert get(server, "/ui/api/compare", runs=[first, "../elsewhere"]).status_code == 400
