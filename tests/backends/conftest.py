"""Fixtures for backend tests: a fake Ollama server on a threaded pytest-httpserver."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fake_ollama import FakeOllama
from pytest_httpserver import HTTPServer


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
