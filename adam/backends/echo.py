"""A backend with no model: deterministic echoes and hash embeddings, for dry runs and fast tests.

It goes through exactly the same runner path as the real backends. Its embeddings are built from
hashed word and character-trigram counts, so texts that share words really do score higher.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

from adam.backends.base import Embedding, Generation, GenerationRequest, ModelBackend, StreamChunk, finish_generation
from adam.backends.schema_instance import UnsupportedSchema, instance
from adam.errors import BackendError, BackendUnavailable
from adam.protocol.structured import output_schema


def _fraction(text: str) -> float:
    """A stable number in [0, 1) for a text (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class EchoBackend(ModelBackend):
    """Answers with the last user message, word by word; embeds by feature hashing."""

    name = "echo"
    supports_embeddings = True
    supports_json_schema = True  # answers with an instance of the schema (adam/backends/schema_instance.py)
    supports_choice = True  # answers with one of the labels, picked by the prompt's hash

    def __init__(
        self,
        size: Any,
        hardware: Any = None,
        dimensions: int = 32,
        delay: float = 0.0,
        failure_rate: float = 0.0,
        unavailable: bool = False,
    ) -> None:
        super().__init__(size, hardware)
        if dimensions < 1:
            raise ValueError("dimensions must be at least 1")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        self.dimensions = dimensions
        self.delay = delay
        self.failure_rate = failure_rate
        self.unavailable = unavailable

    def declared_width(self) -> int | None:
        """Every vector is backend.dimensions wide."""
        return self.dimensions

    def check_available(self) -> None:
        """Fail like a backend that is down when configured to."""
        if self.unavailable:
            raise BackendUnavailable("echo backend configured as unavailable (backend.unavailable=true)")

    def count_tokens(self, text: str) -> int:
        """Whitespace-separated words."""
        return len(text.split())

    def info(self) -> dict[str, Any]:
        """What is being run."""
        return {
            "backend": self.name,
            "model": f"echo/{self.size.name}",
            "kind": self.size.kind.value,
            "context_length": self.context_window(),
            "embedding_dim": self.dimensions,
        }

    def _before_call(self, texts: Sequence[str]) -> None:
        self.check_available()
        if self.delay:
            time.sleep(self.delay)
        for text in texts:
            if self.failure_rate and _fraction(text) < self.failure_rate:
                raise BackendError(f"echo backend failed on purpose (failure_rate={self.failure_rate})")

    def schema_problem(self, schema: dict[str, Any]) -> str | None:
        """Why no instance of ``schema`` can be built (a keyword the builder lacks, no finite value), in one line."""
        try:
            instance(schema)  # bounded (schema_instance.MAX_NODES), so trying is the one sure check
        except UnsupportedSchema as err:
            return str(err)
        return None

    def _answer(self, request: GenerationRequest) -> tuple[str, int, str]:
        """(raw text, completion tokens, finish reason) for one request: the last user message, or for a
        constrained request a valid answer (cut to max_tokens words like any other)."""
        if request.prompt is not None:
            source = request.prompt
        else:
            users = [m.get("content") or "" for m in request.messages if m.get("role") == "user"]
            source = users[-1] if users else ""
        if request.choice:
            source = request.choice[int(_fraction(source) * len(request.choice))]
        elif request.response_format:
            try:
                source = json.dumps(instance(output_schema(request.response_format) or {}), ensure_ascii=False)
            except UnsupportedSchema as err:
                raise BackendError(str(err)) from err
        words = source.split(" ") if request.constrained else source.split()
        kept = words[: request.max_tokens]
        reason = "length" if len(words) > request.max_tokens else "stop"
        return " ".join(kept), len(kept), reason

    def _generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self._before_call([r.text for r in requests])
        results = []
        for request in requests:
            raw, tokens, reason = self._answer(request)
            prompt_tokens = self.count_tokens(self.format_prompt(request))
            results.append(
                finish_generation(
                    raw, request, finish_reason=reason, prompt_tokens=prompt_tokens, completion_tokens=tokens
                )
            )
        return results

    def _stream_raw(self, request: GenerationRequest) -> Iterator[StreamChunk]:
        self._before_call([request.text])
        raw, tokens, reason = self._answer(request)
        words = raw.split(" ")
        for i, word in enumerate(words):
            yield StreamChunk(word if i == 0 else " " + word)
        prompt_tokens = self.count_tokens(self.format_prompt(request))
        yield StreamChunk("", "", reason, prompt_tokens, tokens)

    def _embed_batch(self, texts: Sequence[str]) -> list[Embedding]:
        import numpy as np

        self._before_call(texts)
        out = []
        for text in texts:
            vector = np.zeros(self.dimensions, dtype=np.float32)
            lowered = text.lower()
            features = lowered.split() + [lowered[i : i + 3] for i in range(max(len(lowered) - 2, 0))]
            for feature in features:
                h = _fraction(feature)
                vector[int(h * self.dimensions)] += 1.0 if int(h * 2**20) % 2 else -1.0
            norm = float(np.linalg.norm(vector))
            if norm == 0.0 or math.isnan(norm):
                vector[0], norm = 1.0, 1.0
            out.append(Embedding(vector / norm, tokens=self.count_tokens(text)))
        return out
