"""The torch side of the HuggingFace backend: padding, pooling, token masks, sampling, oneDNN off for float32 on CPUs.

Everything here imports torch inside its functions, so importing the backend stays cheap.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from adam.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
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


def masked(scores: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """``scores`` ([1, width]) with -inf on every token ``mask`` does not allow (a token past its end included)."""
    import torch

    width = min(mask.shape[0], scores.shape[-1])
    allowed = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
    allowed[:width] = torch.from_numpy(mask[:width]).to(scores.device)
    return scores.masked_fill(~allowed, float("-inf"))


@functools.cache
def row_sampler_class() -> type:
    """A logits processor that draws one row's token from its own seeded generator, defined on first use (lazy
    transformers).

    For each row with settings it draws the token itself (temperature, then top-p, from the row's own
    torch.Generator) and leaves only that token possible, so an argmax afterwards picks it. A row's draws then
    depend on its own seed and nothing else: not on the other rows of its batch, nor on torch's global
    generator, as vLLM does with a per-request seed. Rows without settings (None) are left as they are.
    """
    import torch
    from transformers import LogitsProcessor

    class RowSampler(LogitsProcessor):
        def __init__(self, rows: Sequence[tuple[float, float, int | None] | None]) -> None:
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

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            out = scores
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

    def _draw(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
        probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
        if top_p < 1.0:
            ordered, index = probs.sort(descending=True)
            before = ordered.cumsum(0) - ordered  # the mass of the tokens ranked above each one
            ordered[before >= top_p] = 0.0  # the first token always stays
            return int(index[torch.multinomial(ordered, 1, generator=generator)])
        return int(torch.multinomial(probs, 1, generator=generator))

    return RowSampler
