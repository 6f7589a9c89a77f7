"""Safe by default: loopback without a key, the key everywhere but /health, Host checked, bodies capped, no CORS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from helpers import compose_cfg
from serving import CHAT_ID, engine_for, serving

from adam.errors import ConfigError
from adam.runner import run
from adam.server.security import allowed_hosts, check_bind, host_name

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
