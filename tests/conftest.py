"""Session fixtures: a private adam cache, the tiny random Qwen3 built once, and a clean model registry."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_ollama import FakeOllama
from pytest_httpserver import HTTPServer

from adam.backends.loaded_models import loaded_models


@pytest.fixture(scope="session", autouse=True)
def adam_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """$ADAM_CACHE_DIR points at a fresh directory, so tests never touch the user's cache."""
    path = tmp_path_factory.mktemp("adam-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADAM_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session", autouse=True)
def adam_share_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """$ADAM_SHARE_DIR points at a fresh shared-model store, never the user's."""
    path = tmp_path_factory.mktemp("adam-shared")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADAM_SHARE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3 saved as a Hugging Face model directory (built once per session)."""
    from tiny_model import build_tiny_qwen3

    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture
def fresh_models() -> Iterator[None]:
    """No models loaded in this process before or after the test."""
    loaded_models.clear()
    yield
    loaded_models.clear()


@pytest.fixture(scope="session")
def ollama_httpserver() -> Iterator[HTTPServer]:
    """One threaded HTTP server for the session (threaded so concurrent requests really overlap)."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def fake_ollama(ollama_httpserver: HTTPServer) -> Iterator[FakeOllama]:
    """A fresh fake Ollama holding qwen3:0.6b; fails the test if one of its handlers raised."""
    ollama_httpserver.clear_all_handlers()
    ollama_httpserver.clear()
    fake = FakeOllama(ollama_httpserver)
    yield fake
    ollama_httpserver.check_handler_errors()


@pytest.fixture
def closed_port_url() -> str:
    """A URL where nothing listens: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
