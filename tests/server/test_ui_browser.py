"""The web page in a real headless Chromium: the key, runs to a run, results paged and searched, a sweep report,
batches, a streamed chat, record text that stays text, and a screenshot that is not blank.

One browser and one server for the module; the tests run in order, as a user would click.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import browser, chromium, not_blank  # noqa: F401  (fixtures)
from run_dirs import HOSTILE, big_run, echo_run, sweep
from serving import CHAT_ID, engine_for, serving

from adam.server.listen import BackgroundServer

KEY = "sesame"
ECHO_RUN = "generate/2025-02-01_09-00-00.000000"
OTHER_RUN = "generate/2025-02-01_10-00-00.000000"  # the same ids, one answer changed
MARKDOWN = (  # the echo backend answers with the prompt's words: Markdown that needs no line breaks
    "Some **bold** words, *leaning* ones and `code`, [a link](https://example.com/x) "
    "[bad](javascript:alert(1)) <img src=x onerror=alert(1)>"
)
SWEEP = "multirun/2025-02-02_09-00-00.000000"
BIG = "generate/big"
WAIT_S = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """The server with a key over a runs dir: an echo run with hostile prompts, a sweep, a large run, a batch."""
    root = tmp_path_factory.mktemp("ui-browser") / "outputs"
    prompts = [
        {"id": "calm", "prompt": "a quiet answer"},
        {"id": "hostile", "prompt": HOSTILE},
        {"id": "<b>bad-id</b>", "prompt": ""},  # an error line whose id is markup
    ]
    echo_run(root / ECHO_RUN, [*prompts, {"id": "md", "prompt": MARKDOWN}])
    other = [{"id": "calm", "prompt": "a quiet and loud answer"}, {"id": "md", "prompt": MARKDOWN}]
    echo_run(root / OTHER_RUN, other, "job.keep_input=false")  # what was asked comes from the first run
    sweep(root / SWEEP, [["domain=general"], ["domain=code"]], prompts[:1])
    big_run(root / BIG, 20_000)
    big_run(root / "generate" / ("a_long_run_name_without_any_break_" * 6), 2)  # must not push the runs table wider
    engine, embedder = engine_for(), engine_for("size=minilm")  # a chat model, and an embedder beside it
    with serving(engine, embedder, runs_dir=str(root), state_dir=str(root / "serve"), api_key=KEY) as running:
        _batch(running.url)
        yield running


def _create_batch(url: str, lines: int) -> str:
    """A Batch API batch of ``lines`` chat requests; its id."""
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "demo", "messages": [{"role": "user", "content": "batch question"}]}
    data = "".join(
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n"
        for i in range(lines)
    )
    upload = httpx.post(f"{url}/v1/files", headers=auth, files={"file": ("b.jsonl", data)}, data={"purpose": "batch"})
    created = httpx.post(
        f"{url}/v1/batches",
        headers=auth,
        json={"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    ).json()
    return str(created["id"])


def _batch(url: str) -> None:
    """A finished Batch API batch of three requests."""
    auth = {"Authorization": f"Bearer {KEY}"}
    created = {"id": _create_batch(url, 3)}
    deadline = time.monotonic() + WAIT_S
    while httpx.get(f"{url}/v1/batches/{created['id']}", headers=auth).json()["status"] != "completed":
        assert time.monotonic() < deadline, "the batch did not complete"
        time.sleep(0.05)


@pytest.fixture
def page(browser: Any, server: BackgroundServer, request: pytest.FixtureRequest) -> Any:  # noqa: F811
    """The browser, with helpers to wait for things on the page; the key is already in the tab, as a person's
    first visit leaves it, except for the test of that first visit (so each test also runs alone)."""
    page = Page(browser, server.url)
    page.keep_key(None if request.node.name == "test_the_key_is_asked_for_once_and_kept_for_the_tab" else KEY)
    return page


class Page:
    """Thin waits over the Selenium driver."""

    def __init__(self, driver: Any, url: str) -> None:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.url, self.by = driver, url, By
        # a view redraws while it loads: an element found a moment ago may be gone, so look again
        self.wait = WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))

    def keep_key(self, key: str | None) -> None:
        """Leave ``key`` in the tab's session storage for this server's origin, as the page does (None: no key)."""
        self.driver.get(f"{self.url}/ui/static/favicon.svg")  # the page's origin, without running the page
        if key is None:
            self.js("sessionStorage.clear()")
        else:
            self.js("sessionStorage.setItem('adam.apiKey', arguments[0])", key)

    def open(self, fragment: str = "") -> None:
        """Load the page afresh (the tab's session storage stays): no element of the last view is left to go stale."""
        self.driver.get("about:blank")
        self.driver.get(f"{self.url}/ui{fragment}")

    def cells(self, row: Any) -> list[str]:
        """The text of a table row's cells, as the DOM holds it."""
        return self.js("return [...arguments[0].cells].map((c) => c.textContent)", row)  # type: ignore[no-any-return]

    def go(self, fragment: str) -> None:
        self.driver.execute_script("location.hash = arguments[0]", fragment)

    def find(self, css: str) -> Any:
        return self.wait.until(lambda d: _visible(d.find_elements(self.by.CSS_SELECTOR, css)))

    def all(self, css: str) -> list[Any]:
        return self.driver.find_elements(self.by.CSS_SELECTOR, css)

    def until_text(self, css: str, text: str) -> Any:
        """The first element matching ``css`` whose text holds ``text``, looked for in one step in the page."""
        script = "return [...document.querySelectorAll(arguments[0])].find((e) => e.innerText.includes(arguments[1]))"
        return self.wait.until(lambda _: self.js(script, css, text))

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)


def _visible(elements: list[Any]) -> Any:
    return next((e for e in elements if e.is_displayed()), None)


def test_the_key_is_asked_for_once_and_kept_for_the_tab(page: Page) -> None:
    page.open("#/runs")
    page.find("#key-dialog #key-input").send_keys("wrong")
    page.find("#key-submit").click()
    page.until_text("#key-message", "refused")  # asked again, saying why
    field = page.find("#key-input")
    field.clear()
    field.send_keys(KEY)
    page.find("#key-submit").click()
    page.find("table#runs")
    assert page.js("return sessionStorage.getItem('adam.apiKey')") == KEY
    page.driver.refresh()  # a reload in the same tab: no question
    page.find("table#runs")
    assert not page.js("return document.getElementById('key-dialog').open")


def test_from_the_runs_list_to_a_run_and_through_its_results(page: Page) -> None:
    page.open("#/runs")
    page.find("#runs-filter").send_keys("big")
    assert [e.text for e in page.all("#runs a.run-link") if e.is_displayed()] == [BIG]
    page.find(f'a.run-link[data-run="{BIG}"]').click()
    page.until_text("h1", BIG)
    page.until_text(".facts", "echo/demo")
    page.until_text("#lines-status", "Lines 1–50 of 20,000")
    assert page.cells(page.all("tr.line")[0]) == ["1", "rec-000000", "answer number 0", "stop", "3"]
    page.find("#next").click()
    page.until_text("#lines-status", "Lines 51–100 of 20,000")
    page.find("#prev").click()
    page.until_text("#lines-status", "Lines 1–50")
    page.find("#jump").send_keys("19990")
    page.js("document.querySelector('#jump').nextElementSibling.click()")
    page.until_text("#lines-status", "Lines 19,990–20,000 of 20,000")
    assert page.find("#next").get_attribute("disabled") is not None
    search = page.find("#search")
    search.send_keys("rec-012345")
    page.find("#search-go").click()
    page.until_text("#lines-status", "1 matching")
    assert [e.get_attribute("data-line") for e in page.all("tr.line")] == ["12345"]
    search.clear()
    search.send_keys("NEEDLE")
    page.find("#search-go").click()
    page.until_text("#lines-status", "20 matching")
    assert page.cells(page.all("tr.line")[1])[:3] == ["1008", "rec-001007", "answer number 1007 with a Needle in it"]
    page.all("tr.line")[0].click()  # a row opens to the whole record
    assert '"id": "rec-000007"' in page.find("tr.detail pre").text


def test_record_text_is_shown_as_text_never_as_markup(page: Page) -> None:
    page.open(f"#/run/{ECHO_RUN}")
    row = page.until_text("table#results tr.line", "hostile")
    assert page.cells(row)[1:3] == ["hostile", HOSTILE]
    assert page.js("return document.querySelectorAll('#panel script, #panel img').length") == 0
    page.find("#tab-errors").click()
    row = page.until_text("table#errors tr.line", "bad-id")
    assert page.cells(row)[1] == "<b>bad-id</b>" and page.js("return document.querySelectorAll('#panel b').length") == 0
    page.find("#tab-manifest").click()
    page.until_text("#manifest", '"status": "partial"')
    assert page.js("return window.__pwned === undefined")
    assert not [e for e in page.driver.get_log("browser") if "Content Security Policy" in e["message"]]


def test_a_sweep_report_with_its_chart_and_jobs(page: Page) -> None:
    page.open("#/runs")
    page.find(f'a.sweep-link[data-sweep="{SWEEP}"]').click()
    page.until_text("h1", SWEEP)
    image = page.find("#chart-img")
    page.wait.until(lambda _: page.js("return arguments[0].complete && arguments[0].naturalWidth", image) > 100)
    assert len(page.all("table#report tbody tr")) == 2 and len(page.all("#bars .bar-row")) == 2
    assert "domain=code" in page.find("table#report").text
    page.find(f'table#report a.run-link[data-run="{SWEEP}/1"]').click()
    page.until_text("h1", f"{SWEEP}/1")
    page.find("a.parent-sweep")


def test_batches_with_their_progress(page: Page) -> None:
    page.open("#/runs")
    page.find("#nav-batches").click()
    row = page.until_text("table#batches tbody tr", "completed")
    assert "3 / 0 / 3" in row.text
    bar = row.find_element(page.by.TAG_NAME, "progress")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("3", "3")
    row.find_element(page.by.CSS_SELECTOR, "a.run-link").click()
    page.until_text("#lines-status", "Lines 1–3 of 3")
    assert sorted(page.cells(r)[1] for r in page.all("tr.line")) == ["r0", "r1", "r2"]  # custom_id, not batch_req_
    page.all("tr.line")[0].click()
    assert page.find("tr.detail .qa .asked").text.splitlines() == ["ASKED", "USER", "batch question"]  # from its input


def test_a_batch_uploaded_created_cancelled_and_downloaded_from_the_page(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    """A slow server of its own: a batch made from the page moves on it without a reload, is cancelled from it,
    and its output and error files come down through its buttons."""
    root = tmp_path / "outputs"
    slow = engine_for("backend.delay=0.1")  # per call of max_batch=2 lines: 150 lines take about 8 s
    body = {"model": "demo", "messages": [{"role": "user", "content": "batch question"}]}
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body} for i in range(150)]
    lines.append({**lines[0], "custom_id": "bad", "body": {**body, "temperature": 9}})  # its own 400: an error line
    upload = tmp_path / "requests.jsonl"
    upload.write_text("".join(json.dumps(line) + "\n" for line in lines))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with serving(slow, runs_dir=str(root), state_dir=str(root / "serve"), api_key=KEY, max_batch=2) as running:
        page = Page(browser, running.url)
        page.keep_key(KEY)  # this server's origin has its own session storage
        page.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        page.open("#/batches")
        page.find("#batch-file").send_keys(str(upload))
        page.find("#batch-create").click()
        batch_id = page.until_text("#batch-status", "Created batch_").text.split()[1].rstrip(".")

        def done() -> int:
            bar = page.find(f'tr[data-batch="{batch_id}"] progress')
            return int(bar.get_attribute("value"))

        first = page.wait.until(lambda _: (value := done()) > 0 and value)
        assert first < 151, "the batch ended before the page saw it run"
        page.until_text("p.muted", "Refreshing while batches run")
        later = page.wait.until(lambda _: (value := done()) > first and value)  # no reload: the page redrew itself
        assert first < later <= 151
        page.find(f'tr[data-batch="{batch_id}"] button.batch-cancel').click()
        row = page.until_text(f'tr[data-batch="{batch_id}"]', "cancelled")
        assert "Refreshing" not in page.find("p.muted").text and row is not None
        page.find(f'tr[data-batch="{batch_id}"] button.batch-output').click()
        page.find(f'tr[data-batch="{batch_id}"] button.batch-errors').click()
        names = {f"{batch_id}_output.jsonl", f"{batch_id}_errors.jsonl"}
        page.wait.until(lambda _: {p.name for p in downloads.iterdir()} >= names)
        auth = {"Authorization": f"Bearer {KEY}"}
        batch = httpx.get(f"{running.url}/v1/batches/{batch_id}", headers=auth).json()
        assert batch["status"] == "cancelled"
        for key, name in (("output_file_id", "output"), ("error_file_id", "errors")):
            served = httpx.get(f"{running.url}/v1/files/{batch[key]}/content", headers=auth).content
            assert (downloads / f"{batch_id}_{name}.jsonl").read_bytes() == served
        output = [json.loads(line) for line in (downloads / f"{batch_id}_output.jsonl").read_text().splitlines()]
        assert 0 < len(output) < 150 and all(line["custom_id"].startswith("r") for line in output)
        errors = (downloads / f"{batch_id}_errors.jsonl").read_text().splitlines()
        assert [json.loads(line)["custom_id"] for line in errors] == ["bad"]


def test_an_opened_result_shows_the_question_beside_its_answer_as_safe_markdown(page: Page) -> None:
    page.open(f"#/run/{ECHO_RUN}")
    row = page.until_text("table#results tr.line", "Some **bold**")
    row.click()
    detail = page.find("tr.detail .qa")
    assert detail.find_element(page.by.CSS_SELECTOR, ".asked .text-full").text == MARKDOWN  # asked, as text
    answer = detail.find_element(page.by.CSS_SELECTOR, ".answer .markdown")
    assert [e.text for e in answer.find_elements(page.by.CSS_SELECTOR, "strong, em, code")] == [
        "bold",
        "leaning",
        "code",
    ]
    links = answer.find_elements(page.by.CSS_SELECTOR, "a")
    assert [(a.text, a.get_attribute("href"), a.get_attribute("target")) for a in links] == [
        ("a link", "https://example.com/x", "_blank")
    ]  # the javascript: link is not a link
    assert "<img src=x onerror=alert(1)>" in answer.text  # HTML in the answer stays text
    page.until_text("table#results tr.line", "hostile").click()
    assert page.js("return document.querySelectorAll('#panel script, #panel img, #panel [onerror]').length") == 0
    hostile = page.js("return [...document.querySelectorAll('tr.detail')].find((d) => !d.hidden && "
                      "d.innerText.includes('window.__pwned')).querySelector('.answer').innerText")  # fmt: skip
    assert HOSTILE in hostile
    assert page.js("return window.__pwned === undefined")


def test_two_runs_compared_by_id_with_the_differences_marked(page: Page) -> None:
    page.open("#/runs")
    for run in (ECHO_RUN, OTHER_RUN):
        page.find(f'#runs input.pick[value="{run}"]').click()
    page.find("#compare-go").click()
    page.until_text("#compare-status", "of 3 in the first run")  # hostile, calm and md have results; the rest failed
    calm = page.find('table#compare tr.pair[data-id="calm"]')
    assert "differs" in calm.get_attribute("class")
    assert [e.text for e in calm.find_elements(page.by.CSS_SELECTOR, "ins.diff-add")] == ["and loud"]
    assert "a quiet answer" in calm.find_element(page.by.CSS_SELECTOR, ".asked").text  # the first run kept it
    md = page.find('table#compare tr.pair[data-id="md"]')
    assert "differs" not in md.get_attribute("class")
    assert "no result for this id" in page.find('tr.pair[data-id="hostile"]').text  # the other run has no such id
    page.find("#only-differs").click()
    assert not md.is_displayed() and calm.is_displayed()


def test_a_chat_streams_from_the_served_model(page: Page) -> None:
    page.open("#/chat")
    said = "stream <b>these</b> words back to me please"
    page.find("#chat-input").send_keys(said)
    page.find("#chat-send").click()
    answer = page.find(".msg.assistant.done .content")
    assert answer.text == said  # the echo backend answers with the prompt
    pieces = page.js(
        "return [...document.querySelector('.msg.assistant .content').childNodes].filter((n) => n.data).length"
    )
    assert pieces == len(said.split())  # one text node per streamed piece
    assert page.js("return document.querySelectorAll('#chat-log b').length") == 0
    page.until_text("#chat-status", f"Done: {len(said.split())} tokens")
    assert [o.get_attribute("value") for o in page.all("#chat-model option")] == [CHAT_ID]  # not the embedder
    assert "all-MiniLM" in page.find("#served").text  # which the server does serve
    page.find("#chat-max-tokens").send_keys("2")
    page.find("#chat-seed").send_keys("7")
    page.find("#chat-top-p").send_keys("0.5")
    page.find("#chat-input").send_keys("one two three four")
    page.find("#chat-send").click()
    page.until_text("#chat-status", "Done: 2 tokens")  # max_tokens reached the server
    assert page.all(".msg.assistant .content")[-1].text == "one two"
    page.find("#chat-json").click()  # JSON mode: the echo backend answers with a JSON object
    page.find("#chat-input").send_keys("five six")
    page.find("#chat-send").click()
    page.wait.until(lambda _: len(page.all("#chat-log .msg.assistant.done")) == 3)
    assert isinstance(json.loads(page.all(".msg.assistant .content")[-1].text), dict)
    page.open("#/chat")  # a reload: the conversation and the settings are kept in the tab
    page.wait.until(lambda _: len(page.all("#chat-log .msg")) == 6)
    texts = [e.text for e in page.all("#chat-log .msg .content")]
    assert texts[:5] == [said, said, "one two three four", "one two", "five six"]
    assert [page.find(f"#chat-{k}").get_attribute("value") for k in ("max-tokens", "seed", "top-p")] == [
        "2",
        "7",
        "0.5",
    ]
    assert page.find("#chat-json").is_selected()
    page.find("#chat-clear").click()
    assert page.js("return JSON.parse(sessionStorage.getItem('adam.chat')).messages.length") == 0


def test_a_screenshot_is_not_blank(page: Page, tmp_path: Path) -> None:
    page.open("#/runs")
    page.find("table#runs")
    assert page.driver.get_window_size()["width"] == 1280
    assert page.js("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")  # no overflow
    png = page.driver.get_screenshot_as_png()
    (tmp_path / "runs.png").write_bytes(png)
    colours, spread = not_blank(png)
    assert colours > 20 and spread > 10, (colours, spread)
