"""Routes whose body is a JSON object read it as JSON whatever the Content-Type says, as Ollama and OpenAI do.

``curl URL -d '{...}'`` sends ``application/x-www-form-urlencoded``, and some clients send no type at all;
FastAPI would hand such a body to the model as bytes and answer 400. What stops a web page on another
site from posting a form here is the Origin check (adam/server/security.py), not the content type.
Form routes (the Files API's multipart upload) are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.params import Form
from fastapi.routing import APIRoute

JSON = b"application/json"


class JsonBodyRoute(APIRoute):
    """An APIRoute that reads its body model as JSON whatever Content-Type the client sent."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given the request as if it said application/json."""
        handler = super().get_route_handler()
        if self.body_field is None or isinstance(self.body_field.field_info, Form):
            return handler

        async def as_json(request: Request) -> Response:
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            scope = {**request.scope, "headers": [*headers, (b"content-type", JSON)]}
            return await handler(Request(scope, request.receive, request._send))

        return as_json
