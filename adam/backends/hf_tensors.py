"""The torch side of the HuggingFace backend: padding, pooling, streaming hooks, and oneDNN off for float32 CPU passes.

Everything here imports torch inside its functions, so importing the backend stays cheap.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from adam.errors import ConfigError

if TYPE_CHECKING:
    import torch

_onednn_lock = threading.Lock()
_onednn_users = 0
_onednn_was_enabled = True


@contextmanager
def without_onednn() -> Iterator[None]:
    """oneDNN off for float32 on the CPU, where torch would run only elementwise ops (GELU, SiLU)
    through it: each new tensor shape JIT-compiles and caches a kernel (up to 1024 of them), so
    a long run of variously padded batches grows memory with its input. torch's own kernels are
    as fast here (bench/RESULTS.md). Counted, so overlapping callers restore the flag once."""
    import torch

    global _onednn_users, _onednn_was_enabled
    with _onednn_lock:
        if _onednn_users == 0:
            _onednn_was_enabled = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False
        _onednn_users += 1
    try:
        yield
    finally:
        with _onednn_lock:
            _onednn_users -= 1
            if _onednn_users == 0:
                torch.backends.mkldnn.enabled = _onednn_was_enabled


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows padded to the longest on ``side``: (input_ids, attention_mask), both int64."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """One vector per row of ``hidden`` (batch, tokens, dim): mean, first (cls) or last real token."""
    import torch

    if how == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if how == "cls":
        index = mask.int().argmax(dim=1)  # first real token, whichever side is padded
    elif how == "last":
        index = mask.shape[1] - 1 - mask.int().flip(dims=[1]).argmax(dim=1)  # last real token
    else:
        raise ConfigError(f"unknown pooling {how!r}; use mean, cls or last")
    return hidden[rows, index]


@functools.cache
def stream_classes() -> tuple[type, type]:
    """(streamer, stopping criterion) for streaming, defined on first use so transformers loads lazily."""
    import torch
    from transformers import StoppingCriteria
    from transformers.generation.streamers import BaseStreamer

    class QueueStreamer(BaseStreamer):
        """Hands each step's new token ids to a queue; generate() passes the prompt first, which is skipped."""

        def __init__(self, out: queue.Queue[Any]) -> None:
            self._out = out
            self._prompt_seen = False

        def put(self, value: torch.Tensor) -> None:
            if not self._prompt_seen:
                self._prompt_seen = True
                return
            self._out.put([int(t) for t in value.reshape(-1).tolist()])

        def end(self) -> None:
            """The worker thread signals the end itself, after generate() returns or raises."""

    class Cancelled(StoppingCriteria):
        """Stops generation once the consumer has gone away."""

        def __init__(self, event: threading.Event) -> None:
            self._event = event

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            stop = self._event.is_set()
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return QueueStreamer, Cancelled


@functools.cache
def row_sampler_class() -> type:
    """A logits processor that treats each row on its own, defined on first use (lazy transformers).

    generate() runs greedy; the processor does, per row and in this order:

    - the constraint: a row with a RowConstraint (adam/backends/constraints.py) gets -inf on every token
      its grammar does not allow now, and is fed the token it chose;
    - log-probabilities: the row's scores (masked, before sampling) are kept, and each chosen token's entry
      (with its top alternatives) is read from them one step later (``close`` reads the last token's);
    - sampling: a sampled row draws the token itself (temperature, then top-p, from the row's own
      torch.Generator) and leaves only that token possible. A row's draws then depend on its own seed and
      nothing else: not on the other rows of its batch, nor on torch's global generator, as vLLM does with
      a per-request seed. Greedy rows keep their (masked) scores for generate()'s argmax.

    Constrained, sampled and plain rows thus share one generate() call.
    """
    import torch
    from transformers import LogitsProcessor

    from adam.backends.constraints import logprob_entry

    class RowSampler(LogitsProcessor):
        def __init__(
            self,
            rows: Sequence[tuple[float, float, int | None] | None],
            constraints: Sequence[Any] | None = None,
            logprobs: Sequence[int | None] | None = None,
            token_bytes: Any = None,
            eos: Sequence[int] = (),
        ) -> None:
            self._rows: list[tuple[float, float, torch.Generator] | None] = []
            for row in rows:
                if row is None:
                    self._rows.append(None)
                    continue
                temperature, top_p, seed = row
                if not 0.0 < top_p <= 1.0:
                    raise ValueError(f"top_p must be greater than 0 and at most 1, not {top_p}")
                generator = torch.Generator(device="cpu")
                if seed is None:
                    generator.seed()  # a fresh nondeterministic seed, as an unseeded request expects
                else:
                    generator.manual_seed(seed)
                self._rows.append((temperature, top_p, generator))
            n = len(self._rows)
            self._constraints = list(constraints) if constraints is not None else [None] * n
            self._logprobs = list(logprobs) if logprobs is not None else [None] * n
            self._token_bytes = token_bytes
            self._eos = frozenset(eos)
            self.asked = self._logprobs  # per row: top alternatives asked, or None
            self.entries: list[list[dict[str, Any]]] = [[] for _ in range(n)]
            self._pending: list[Any] = [None] * n  # a logprob row's raw scores of the last step
            self._ended = [False] * n  # the row chose an end token: later steps are the batch's padding
            self._steps = 0

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if self._steps:
                self._chosen([int(t) for t in input_ids[:, -1].tolist()])
            self._steps += 1
            out = scores
            if any(c is not None for c in self._constraints):
                out = self._masked(scores)
            for i, top in enumerate(self._logprobs):
                if top is not None and not self._ended[i]:
                    self._pending[i] = out[i].float().cpu().numpy().copy()
            for i, row in enumerate(self._rows):
                if row is None:
                    continue
                temperature, top_p, generator = row
                token = _draw(out[i], temperature, top_p, generator)
                if out is scores:
                    out = scores.clone()
                out[i] = float("-inf")
                out[i, token] = 0.0
            return out

        def _masked(self, scores: torch.Tensor) -> torch.Tensor:
            out = scores.clone()
            for i, constraint in enumerate(self._constraints):
                mask = None if constraint is None or self._ended[i] else constraint.allowed()
                if mask is None:
                    continue
                width = min(mask.shape[0], out.shape[1])
                allowed = torch.zeros(out.shape[1], dtype=torch.bool, device=out.device)
                allowed[:width] = torch.from_numpy(mask[:width]).to(out.device)
                out[i].masked_fill_(~allowed, float("-inf"))
            return out

        def _chosen(self, tokens: Sequence[int]) -> None:
            """Feed each row the token generate() chose for it at the last step."""
            for i, token in enumerate(tokens):
                if self._ended[i]:
                    continue
                if self._pending[i] is not None:
                    top = self._logprobs[i] or 0
                    self.entries[i].append(logprob_entry(self._pending[i], token, top, self._token_bytes))
                    self._pending[i] = None
                if self._constraints[i] is not None:
                    self._constraints[i].accept(token)
                self._ended[i] = token in self._eos

        def close(self, rows: Sequence[Sequence[int]]) -> None:
            """Read the last chosen token of each row (generate() asks no more scores after it)."""
            for i, row in enumerate(rows):
                if self._pending[i] is not None and len(self.entries[i]) < len(row):
                    top = self._logprobs[i] or 0
                    token = row[len(self.entries[i])]
                    self.entries[i].append(logprob_entry(self._pending[i], token, top, self._token_bytes))
                    self._pending[i] = None

    def _draw(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
        probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
        if top_p < 1.0:
            ordered, index = probs.sort(descending=True)
            before = ordered.cumsum(0) - ordered  # the mass of the tokens ranked above each one
            ordered[before >= top_p] = 0.0  # the first token always stays
            return int(index[torch.multinomial(ordered, 1, generator=generator)])
        return int(torch.multinomial(probs, 1, generator=generator))

    return RowSampler
