"""Safe by default: loopback without a key, the key everywhere but /health, Host checked, other sites' pages refused,
bodies capped, no CORS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from helpers import compose_cfg
from serving import CHAT_ID, OLLAMA_NAME, engine_for, serving

from adam.errors import ConfigError
from adam.run.runner import run
from adam.server.listen import BackgroundServer
from adam.server.security import allowed_hosts, check_bind, host_name, same_origin

KEY = "s3cret-test-key"


def test_every_interface_without_a_key_is_refused_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADAM_API_KEY", raising=False)
    cfg = compose_cfg("backend=echo", "job=serve", "job.host=0.0.0.0", run_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"ADAM_API_KEY.*insecure=true"):
        run(cfg)
    assert not (tmp_path / "manifest.json").exists()


def test_the_bind_check() -> None:
    check_bind("127.0.0.1", key=None, insecure=False, key_env="K")
    check_bind("::1", key=None, insecure=False, key_env="K")
    check_bind("0.0.0.0", key="k", insecure=False, key_env="K")
    check_bind("0.0.0.0", key=None, insecure=True, key_env="K")
    for host in ("0.0.0.0", "::", "192.168.1.20"):
        with pytest.raises(ConfigError):
            check_bind(host, key=None, insecure=False, key_env="K")


def test_host_names() -> None:
    assert host_name("127.0.0.1:8000") == "127.0.0.1"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("Example.COM") == "example.com"
    assert allowed_hosts("0.0.0.0") is None
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("10.0.0.5", ["api.example.com"]) == {"10.0.0.5", "api.example.com"}


@pytest.fixture(scope="module")
def keyed() -> Iterator[str]:
    with serving(engine_for(), api_key=KEY, max_body_mb=0.01) as server:
        yield server.url


def test_a_key_is_needed_everywhere_but_health(keyed: str) -> None:
    assert httpx.get(f"{keyed}/health").status_code == 200
    for path in ("/v1/models", "/api/tags", "/metrics", "/"):
        assert httpx.get(f"{keyed}{path}").status_code == 401, path
    wrong = httpx.get(f"{keyed}/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{keyed}/api/tags").json() == {"error": wrong.json()["error"]["message"]}
    good = openai.OpenAI(base_url=f"{keyed}/v1", api_key=KEY, max_retries=0)
    assert good.models.list().data[0].id == CHAT_ID
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed}/v1", api_key="guess", max_retries=0).models.list()
    metrics = httpx.get(f"{keyed}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'adam_requests_total{path="/v1/models",status="401"}' in metrics  # refusals are counted too


def test_a_foreign_host_header_is_refused(keyed: str) -> None:
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1."""
    auth = {"Authorization": f"Bearer {KEY}"}
    refused = httpx.get(f"{keyed}/v1/models", headers={**auth, "Host": "evil.example:8000"})
    assert refused.status_code == 400 and "Host" in refused.json()["error"]["message"]
    assert httpx.get(f"{keyed}/v1/models", headers={**auth, "Host": "localhost"}).status_code == 200


def test_big_bodies_get_413(keyed: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    big = b'{"model": "x", "input": "' + b"a" * 20_000 + b'"}'
    said = httpx.post(f"{keyed}/v1/embeddings", content=big, headers=auth)
    assert said.status_code == 413 and "job.max_body_mb" in said.json()["error"]["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model": "x", "input": "'
        for _ in range(20):
            yield b"a" * 1000
        yield b'"}'

    counted = httpx.post(f"{keyed}/api/embed", content=chunked(), headers=auth)
    assert counted.status_code == 413 and "job.max_body_mb" in counted.json()["error"]


def test_no_cors_headers_for_other_origins(keyed: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Origin": "https://evil.example"}
    reply = httpx.get(f"{keyed}/v1/models", headers=headers)
    assert not any(k.lower().startswith("access-control-") for k in reply.headers)
    preflight = httpx.options(
        f"{keyed}/v1/chat/completions", headers={**headers, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """No key, as a server on a laptop runs: only the Origin check keeps other sites' pages out."""
    with serving(engine_for(), state_dir=str(tmp_path_factory.mktemp("state"))) as server:
        yield server


BATCH_LINE = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}}\n'


def test_a_form_posted_from_another_site_is_refused_and_stores_nothing(keyless: BackgroundServer) -> None:
    """A page anywhere can make a browser POST a form (no preflight) to 127.0.0.1: its Origin gives it away."""
    url, port = keyless.url, keyless.port
    upload = {"files": {"file": ("x.jsonl", BATCH_LINE)}, "data": {"purpose": "batch"}}
    foreign = ["https://evil.example", "null", f"http://localhost:{port}", f"https://127.0.0.1:{port}",
               f"http://127.0.0.1:{port + 1}", f"http://127.0.0.1.evil.example:{port}", "http://127.0.0.1"]  # fmt: skip
    for origin in foreign:
        refused = httpx.post(f"{url}/v1/files", headers={"Origin": origin}, **upload)  # type: ignore[arg-type]
        assert refused.status_code == 403, (origin, refused.text)
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("permission_error", "cross_origin") and origin in error["message"]
    assert httpx.get(f"{url}/v1/files").json()["data"] == []  # nothing was stored
    chat = json.dumps({"model": OLLAMA_NAME, "messages": [{"role": "user", "content": "hi"}], "stream": False})
    ollama = httpx.post(f"{url}/api/chat", content=chat, headers={"Origin": "null", "content-type": "text/plain"})
    assert ollama.status_code == 403 and "cross-origin" in ollama.json()["error"]  # Ollama's error shape
    deleted = httpx.delete(f"{url}/v1/files/file-x", headers={"Origin": "https://evil.example"})
    assert deleted.status_code == 403
    # its own page (same scheme, host and port) and clients that send no Origin are served; so are reads
    same = httpx.post(f"{url}/v1/files", headers={"Origin": url}, **upload)  # type: ignore[arg-type]
    plain = httpx.post(f"{url}/v1/files", **upload)  # type: ignore[arg-type]
    assert (same.status_code, plain.status_code) == (200, 200), (same.text, plain.text)
    listed = httpx.get(f"{url}/v1/files", headers={"Origin": "https://evil.example"})
    assert sorted(f["id"] for f in listed.json()["data"]) == sorted([same.json()["id"], plain.json()["id"]])


def test_the_origin_rule() -> None:
    assert same_origin("http://127.0.0.1:8000", "http", "127.0.0.1:8000")
    assert same_origin("http://LOCALHOST:8000", "http", "localhost:8000")
    assert same_origin("http://[::1]:8000", "http", "[::1]:8000")
    assert same_origin("https://api.example.com", "https", "api.example.com:443")  # default ports
    assert same_origin("http://example.com:80", "http", "example.com")
    for origin in ("null", "", "http://127.0.0.1:8001", "https://127.0.0.1:8000", "http://127.0.0.1",
                   "http://127.0.0.1:x", "file://", "http://127.0.0.1:8000.evil.example"):  # fmt: skip
        assert not same_origin(origin, "http", "127.0.0.1:8000"), origin
    assert not same_origin("http://127.0.0.1:8000", "http", "")  # no Host: nothing to match
    # behind a reverse proxy (job.allowed_hosts), the page's origin is the proxy's: its scheme and port differ
    assert same_origin("https://api.example.com", "http", "127.0.0.1:8000", ["api.example.com"])
    assert not same_origin("https://evil.example", "http", "127.0.0.1:8000", ["api.example.com"])
    assert not same_origin("null", "http", "127.0.0.1:8000", ["null"])


def test_curl_d_without_a_content_type_works_on_json_routes(keyless: BackgroundServer) -> None:
    """curl -d sends application/x-www-form-urlencoded; the README's own examples use it, as Ollama's do."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    chat = {"model": OLLAMA_NAME, "messages": [{"role": "user", "content": "Hi there"}], "stream": False}
    ollama = httpx.post(f"{keyless.url}/api/chat", content=json.dumps(chat), headers=form)
    assert ollama.status_code == 200, ollama.text
    assert ollama.json()["message"]["content"] == "Hi there"
    openai_chat = {"model": CHAT_ID, "messages": [{"role": "user", "content": "Hi you"}]}
    for headers in (form, {"content-type": "text/plain"}, {}):  # {}: no content type at all
        reply = httpx.post(f"{keyless.url}/v1/chat/completions", content=json.dumps(openai_chat), headers=headers)
        assert reply.status_code == 200, (headers, reply.text)
        assert reply.json()["choices"][0]["message"]["content"] == "Hi you"
    broken = httpx.post(f"{keyless.url}/v1/chat/completions", content=b"model=x&messages=y", headers=form)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
