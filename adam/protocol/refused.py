"""Refused: a request body adam will not answer as asked, worded and named the same at every door."""

from __future__ import annotations


class Refused(ValueError):
    """A request body adam refuses: the request's own 400, worded and named (``param``) the same at every door."""

    status = 400

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
