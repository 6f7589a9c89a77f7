"""The HuggingFace backend's own decode loop, run by adam.backends.scheduler: rows that stream and leave when done.

``RowDecoder`` is a Stepper. The requests admitted together are read in one left-padded forward pass, then
each step decodes one token of every row, and each row's new text is handed out as it is made. A row that
finishes (EOS, its max_tokens, a stop string) leaves the batch at once and its KV rows are dropped from the
cache, so the rest decode a smaller batch instead of carrying it to the longest row's end as generate() does.
Requests that arrive while a batch runs join it: their prompts are read in a pass of their own (the running
rows wait that one step, then decoding and joining take turns), and their KV rows are left-padded to the
batch's length and stacked onto it. bench/RESULTS.md measured this against starting them when the batch
empties. A cache that cannot be padded that way (sliding-window or linear-attention layers) takes new
requests only when the batch is empty.

Positions, padding and greedy choice follow transformers' generate() (attention-mask positions, the last
position's logits in float32, argmax), so a greedy row gives what it gives there and alone. Each row's token
is then chosen on its own, as llamacpp_native.BatchDecoder does: a constrained row's logits get -inf wherever
its RowConstraint (adam/backends/constraints.py) does not allow a token (nothing while a thinking model is
inside <think>), a row asking for log-probabilities gets its entry from those masked scores, a sampled row
draws through hf_tensors.row_sampler_class() over that row alone, from its own seeded generator, and the
chosen token is fed to the constraint. Constrained, sampled and plain rows thus share every decode step.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adam.backends import hf_tensors
from adam.backends.constraints import logprob_entry
from adam.backends.hf_model import LoadedModel, running
from adam.errors import BackendError, first_line

if TYPE_CHECKING:
    from adam.backends.constraints import RowConstraint

log = logging.getLogger(__name__)


@dataclass
class HfPrompt:
    """One request as the decoder sees it: token ids, limits, stop strings, sampling, constraint and logprobs."""

    ids: list[int]
    max_tokens: int
    stops: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    constraint: RowConstraint | None = None  # the row's own matcher (a fresh one per request)
    logprobs: int | None = None  # top alternatives per token's entry; None: no entries
    token_bytes: Callable[[int], bytes] | None = None  # a token's bytes, for the logprobs entries
    ignore_eos: bool = False  # the end-of-sequence tokens are masked out


@dataclass
class Step:
    """What one step produced for one request: new text; on its last step, why it ended and its token count."""

    index: int
    text: str
    tokens: int
    finish_reason: str | None = None
    logprob: dict[str, Any] | None = None  # this token's logprobs entry, where the prompt asked for them


@dataclass
class _Row:
    index: int
    prompt: HfPrompt
    sampler: Any  # a RowSampler over this row alone, or None for greedy
    generated: list[int] = field(default_factory=list)
    sent: str = ""  # text handed out so far


class RowDecoder:
    """Batched decoding on a loaded causal LM, one forward pass per ``step``."""

    def __init__(self, lm: LoadedModel, slots: int, *, join: bool = True) -> None:
        self.lm = lm
        self.slots = slots
        self.join = join  # False: new requests wait for the batch to empty (the benchmark's comparison)
        self._stackable = False  # whether the running batch's cache can take joining rows
        self._joined_last = False
        self._eos = set(lm.eos_ids)
        self._eos_ids = sorted(self._eos)
        params = inspect.signature(lm.model.forward).parameters
        self._cache_key = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
        self._keep_last = "logits_to_keep" in params
        self._pending: list[_Row] = []
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._mask: Any = None  # [rows, tokens] attention mask of the cache plus the next token
        self._position: Any = None  # [rows] position of each row's last token
        self._next: Any = None  # [rows, 1] each row's last token, read at the next step

    @property
    def free_slots(self) -> int:
        """Requests that could start now (none while a batch runs that new rows cannot join)."""
        if self._rows and not self._stackable:
            return 0
        return self.slots - len(self._rows) - len(self._pending)

    def admit(self, index: int, prompt: HfPrompt, *, urgent: bool = False) -> None:
        """Start a request with the next batch (``urgent`` changes nothing: admission is the scheduler's)."""
        if not prompt.ids:
            raise BackendError("the prompt is empty: the model has nothing to continue")
        if prompt.logprobs is not None and prompt.token_bytes is None:
            raise BackendError("a request asking for log-probabilities came without its vocabulary's token bytes")
        sampler = None
        if prompt.temperature > 0:
            try:
                sampler = hf_tensors.row_sampler_class()([(prompt.temperature, prompt.top_p, prompt.seed)])
            except ValueError as err:
                raise BackendError(f"generation failed: {first_line(err)}") from err
        self._pending.append(_Row(index, prompt, sampler))

    def cancel(self, index: int) -> None:
        """Stop a request now (nothing if it already finished)."""
        self._pending = [row for row in self._pending if row.index != index]
        keep = [i for i, row in enumerate(self._rows) if row.index != index]
        if len(keep) < len(self._rows):
            self._select(keep)

    def reset(self) -> None:
        """Forget every request."""
        self._pending.clear()
        self._rows.clear()
        self._cache = self._mask = self._position = self._next = None
        self._stackable = self._joined_last = False

    def step(self) -> list[Step]:
        """One forward pass (the admitted prompts, or the next token of every row); a finished row leaves."""
        if not self._rows and not self._pending:
            return []
        if self._rows and self._pending and not self._joined_last:
            self._joined_last = True
            return self._join()
        self._joined_last = False
        return self._step()

    def _join(self) -> list[Step]:
        """Read the waiting prompts as a batch of their own, then stack their rows onto the running ones."""
        import torch
        import torch.nn.functional as F

        running_rows = (self._rows, self._cache, self._mask, self._position, self._next)
        self._rows = []
        events = self._step()
        if not self._rows:  # every joining row finished at its first token
            self._rows, self._cache, self._mask, self._position, self._next = running_rows
            return events
        rows, cache, mask, position, next_tokens = running_rows
        width = max(mask.shape[1], self._mask.shape[1])
        with running(self.lm, "generation"):
            for layer, joining in zip(cache.layers, self._cache.layers, strict=True):
                for name in ("keys", "values"):
                    a, b = getattr(layer, name), getattr(joining, name)
                    a = F.pad(a, (0, 0, width - a.shape[-2], 0))
                    b = F.pad(b, (0, 0, width - b.shape[-2], 0))
                    setattr(layer, name, torch.cat([a, b]))
            pad = [F.pad(m, (width - m.shape[1], 0)) for m in (mask, self._mask)]
            self._mask = torch.cat(pad)
        self._cache, self._position = cache, torch.cat([position, self._position])
        self._next, self._rows = torch.cat([next_tokens, self._next]), rows + self._rows
        return events

    def _step(self) -> list[Step]:
        import torch

        with running(self.lm, "generation"):
            logits = self._read_prompts() if not self._rows else self._decode()
            events, keep = [], []
            for i, row in enumerate(self._rows):
                event = self._advance(row, logits[i : i + 1])
                events.append(event)
                if event.finish_reason is None:
                    keep.append(i)
            if len(keep) < len(self._rows):
                self._select(keep)
            if self._rows:
                next_tokens = torch.tensor([row.generated[-1] for row in self._rows], device=self.lm.device)
                self._next = next_tokens.unsqueeze(1)
        return events

    # ----------------------------------------------------------------- the forward passes
    def _forward(self, input_ids: Any, mask: Any, positions: Any) -> Any:
        kwargs = {self._cache_key: self._cache, "use_cache": True}
        if self._keep_last:
            kwargs["logits_to_keep"] = 1
        out = self.lm.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, **kwargs)
        return out.logits[:, -1, :].float()

    def _read_prompts(self) -> Any:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        self._rows, self._pending = self._pending, []
        ids, mask = hf_tensors.pad_rows([row.prompt.ids for row in self._rows], self.lm.tokenizer.pad_token_id, "left")
        ids, mask = ids.to(self.lm.device), mask.to(self.lm.device)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        self._cache = DynamicCache(config=self.lm.model.config)  # as generate() makes it
        logits = self._forward(ids, mask, positions)
        self._mask, self._position = mask, positions[:, -1]
        self._stackable = self.join and all(type(layer) is DynamicLayer for layer in self._cache.layers)
        return logits

    def _decode(self) -> Any:
        import torch

        self._mask = torch.cat([self._mask, self._mask.new_ones((self._mask.shape[0], 1))], dim=-1)
        self._position = self._position + 1
        return self._forward(self._next, self._mask, self._position.unsqueeze(1))

    def _select(self, keep: list[int]) -> None:
        """Only the rows at ``keep`` stay: their KV rows, mask and positions; the others' are dropped."""
        import torch

        self._rows = [self._rows[i] for i in keep]
        if not self._rows:
            self._cache = self._mask = self._position = self._next = None
            return
        index = torch.tensor(keep, device=self.lm.device)
        self._cache.batch_select_indices(index)
        self._mask, self._position = self._mask[index], self._position[index]
        if self._next is not None and self._next.shape[0] != len(keep):  # a cancel between steps
            self._next = self._next[index]

    # ----------------------------------------------------------------- one row's token
    def _advance(self, row: _Row, scores: Any) -> Step:
        """Choose the row's next token (masked by its constraint, then sampled or argmax), hand out the text it
        completes and its logprobs entry, and say whether the row is done."""
        import torch

        prompt, reason = row.prompt, None
        mask = prompt.constraint.allowed() if prompt.constraint is not None else None
        if mask is not None:
            scores = hf_tensors.masked(scores, mask)
        if prompt.ignore_eos:
            scores = scores.clone()
            scores[0, self._eos_ids] = float("-inf")  # the end never wins: the row runs to max_tokens or a stop
        kept = scores[0].cpu().numpy().copy() if prompt.logprobs is not None else None  # before the draw
        if row.sampler is not None:
            seen = torch.tensor([row.prompt.ids + row.generated], device=scores.device)
            scores = row.sampler(seen, scores)
        token = int(torch.argmax(scores[0]))
        row.generated.append(token)
        if prompt.constraint is not None:
            prompt.constraint.accept(token)
        logprob = None
        if kept is not None and prompt.token_bytes is not None:
            logprob = logprob_entry(kept, token, prompt.logprobs or 0, prompt.token_bytes)
        ended = token in self._eos
        own = row.generated[:-1] if ended else row.generated
        text = self.lm.tokenizer.decode(own, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if ended or (prompt.stops and any(stop in text for stop in prompt.stops)):
            reason = "stop"
        elif len(row.generated) >= prompt.max_tokens:
            reason = "length"
        if reason is None and (text.endswith("\ufffd") or not text.startswith(row.sent)):
            return Step(row.index, "", len(row.generated), None, logprob)  # incomplete UTF-8: wait for the rest
        if not text.startswith(row.sent):
            log.warning("a row's text changed under what was already streamed; the stream may differ")
            text = row.sent
        new, row.sent = text[len(row.sent) :], text
        return Step(row.index, new, len(row.generated), reason, logprob)
