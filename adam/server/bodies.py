"""What every request is checked for before a route uses it, whichever protocol it speaks.

Text that UTF-8 cannot carry (a lone surrogate, from a ``\\ud800`` escape with no pair) is refused here
with the protocol's 400, anywhere in a body (content, stop, model, metadata, an ignored field), before
the route runs. Nothing that passes can fail later when it is stored, echoed or streamed, so a stream
never breaks off midway and no stored batch becomes unreadable. Every JSON request model derives from
RequestBody (an upload's multipart headers are checked where they are parsed, in files.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from adam.io.record_parser import text_problem


class RequestBody(BaseModel):
    """Base of every JSON request body: fields a route does not use are ignored; text must be text."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _only_text(cls, data: Any) -> Any:
        problem = text_problem(data)
        if problem is not None:  # a 400 through the app's RequestValidationError handler, before the route runs
            raise PydanticCustomError("lone_surrogate", "{problem}", {"problem": problem})
        return data
