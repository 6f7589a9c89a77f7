"""Embeddings with a llama.cpp context: texts cut to the limit, packed into batches of sequences, unit vectors.

A text longer than the limit keeps its last token where the vocabulary adds one at the end (BERT's
SEP), as sentence-transformers truncates. Each batch holds at most ``n_seq`` whole texts, every token
an output, and is decoded under the backend's lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from adam.backends.types import Embedding
from adam.errors import BackendError

if TYPE_CHECKING:
    from adam.backends.llamacpp_native import Context


def embed_texts(
    native: Any, ctx: Context, texts: Sequence[str], limit: int, lock: AbstractContextManager[Any]
) -> list[Embedding]:
    """Unit-length embeddings of ``texts`` from ``ctx``, each of at most ``limit`` tokens."""
    import numpy as np

    model = ctx.model
    encoded = []
    for text in texts:
        ids = model.tokenize(text, add_special=True)
        if not ids:
            raise BackendError("an empty text has no tokens to embed")
        cut = ids[: limit - 1] + ids[-1:] if model.adds_end and len(ids) > limit else ids[:limit]  # keep SEP/EOS
        encoded.append((cut, len(ids)))
    width = int(native.llama_cpp.llama_model_n_embd_out(model.ptr))
    vectors: list[Any] = []
    batch = native.Batch(min(ctx.n_batch, ctx.n_seq * limit))  # the shared KV stream holds n_seq x limit
    with lock:
        start = 0
        while start < len(encoded):
            batch.clear()
            group = []
            while start < len(encoded) and len(group) < ctx.n_seq and len(encoded[start][0]) <= batch.room:
                for pos, token in enumerate(encoded[start][0]):
                    batch.add(token, pos, len(group), True)  # every token is an output when embedding
                group.append(start)
                start += 1
            if not group:  # cannot happen: the context's batch holds the longest text
                raise BackendError(f"a text of {len(encoded[start][0])} tokens does not fit one batch")
            try:
                ctx.decode(batch.raw)
                vectors += [ctx.embedding(seq, width) for seq in range(len(group))]
            finally:
                ctx.clear()
    out = []
    for vector, (ids, total) in zip(vectors, encoded, strict=True):
        norm = float(np.linalg.norm(vector))
        out.append(Embedding(vector / norm if norm > 0 else vector, tokens=len(ids), truncated=total > len(ids)))
    return out
