"""Errors as each protocol writes them: OpenAI's ``{"error": {...}}`` under /v1, else Ollama's ``{"error": "..."}``.

One table says what status an adam error means for a client (a prompt too long is the client's 400,
a backend that is down is the server's 503), so every route and middleware answers alike and no
request ever gets a traceback.
"""

from __future__ import annotations

from typing import Any

from adam.errors import (
    AdamError,
    BackendError,
    ConfigError,
    ContextOverflowError,
    ModelNotFoundError,
    RunStopped,
    UnsupportedError,
    UnsupportedRequestError,
)

# OpenAI's error types by status; Ollama's body has only the message
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    """A request the server refuses: its status, message and OpenAI error code."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def model_not_found(name: str, served: list[str]) -> ApiError:
    """404 for a model this server does not serve."""
    listed = ", ".join(served)
    return ApiError(
        404, f"model '{name}' not found: this server serves {listed}", code="model_not_found", param="model"
    )


def from_adam_error(err: AdamError) -> ApiError:
    """The status an adam error means to a client."""
    message = str(err) or type(err).__name__
    if isinstance(err, ContextOverflowError):
        return ApiError(400, message, code="context_length_exceeded")
    if isinstance(err, ModelNotFoundError):
        return ApiError(404, message, code="model_not_found")
    if isinstance(err, UnsupportedError | ConfigError | UnsupportedRequestError):
        return ApiError(400, message, code="unsupported", param=getattr(err, "param", None))
    if isinstance(err, RunStopped):  # BackendUnavailable: the model or its server is down
        return ApiError(503, message, code="unavailable")
    if isinstance(err, BackendError):
        return ApiError(500, message, code=err.code)
    return ApiError(500, message, code="server_error")


def is_openai(path: str) -> bool:
    """Whether a path speaks the OpenAI protocol (else Ollama's error shape)."""
    return path == "/v1" or path.startswith("/v1/")


def error_body(path: str, status: int, message: str, code: str | None = None, param: str | None = None) -> Any:
    """The JSON error body for ``path``'s protocol."""
    if is_openai(path):
        kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return {"error": message}
