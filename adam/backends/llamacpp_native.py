"""llama.cpp's C API through llama-cpp-python's ctypes bindings: a loaded GGUF, its contexts, batched decoding.

``BatchDecoder`` is continuous batching over the multi-sequence batch API, driven a decode call at a
time by adam.backends.scheduler. Each running request holds a sequence id (a slot). One ``llama_decode``
call carries either the next token of every sequence that is generating or the next chunk (up to
``n_batch`` tokens) of one waiting prompt; a finished sequence's KV cells are freed
(``llama_memory_seq_rm``) and the next request takes its slot. Contexts keep one KV stream per sequence
(``kv_unified=false``), so a sequence's numbers never depend on its neighbours: greedy output in a
batch equals the same prompt decoded alone.

Only adam.backends.llamacpp imports this module, inside its methods: ``llama_cpp`` loads at first use.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from adam.backends.constraints import logprob_entry
from adam.errors import BackendError, ConfigError

log = logging.getLogger(__name__)

POOLING = {
    "mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
    "cls": llama_cpp.LLAMA_POOLING_TYPE_CLS,
    "last": llama_cpp.LLAMA_POOLING_TYPE_LAST,
}
_PIECE_BYTES = 256  # longest token text; llama_token_to_piece says when it needs more
FLASH_ATTN_AUTO, FLASH_ATTN_ENABLED = -1, 1  # llama_flash_attn_type (llama.h)
_backend_ready = False


def _init_backend() -> None:
    """llama.cpp's global state, once; its own log lines only at ERROR unless someone asked for more."""
    global _backend_ready
    if not _backend_ready:
        chatter = logging.getLogger("llama-cpp-python")  # llama-cpp-python prints what this logger lets through
        if chatter.level == logging.NOTSET:
            chatter.setLevel(logging.ERROR)
        llama_cpp.llama_backend_init()
        _backend_ready = True


class GgufModel:
    """A GGUF loaded by llama.cpp (weights memory-mapped); freed when the last user lets go of it."""

    def __init__(self, path: Path, *, gpu_layers: int) -> None:
        _init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = gpu_layers
        self.path = path
        self.ptr = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.ptr:
            raise ConfigError(f"llama.cpp cannot load {path}: not a GGUF it knows (architecture or version)")
        self.vocab = llama_cpp.llama_model_get_vocab(self.ptr)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        # whether tokenizing with special tokens ends a text with one (EOS, or BERT's SEP), kept when truncating
        self.adds_end = bool(
            llama_cpp.llama_vocab_get_add_eos(self.vocab) or llama_cpp.llama_vocab_get_add_sep(self.vocab)
        )
        self.bos_text = self.token_text(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos_text = self.token_text(llama_cpp.llama_vocab_eos(self.vocab))
        self._pieces: dict[int, bytes] = {}  # token -> bytes, filled as tokens are generated
        self._ends: list[int] | None = None
        self._free = llama_cpp.llama_model_free  # kept: module globals may be gone when __del__ runs at exit

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self._free(self.ptr)
            self.ptr = None

    def meta(self, key: str) -> str | None:
        """A metadata value as text (``tokenizer.chat_template``, ``general.architecture``), or None."""
        size = 1 << 12
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1

    def token_text(self, token: int) -> str:
        """A special token's text (``<|im_end|>``), or "" for none."""
        if token < 0:
            return ""
        return (llama_cpp.llama_vocab_get_text(self.vocab, token) or b"").decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        """Token ids, special tokens written in the text parsed as such (as transformers' tokenizers do)."""
        data = text.encode("utf-8")
        room = len(data) + 8
        while True:
            out = (llama_cpp.llama_token * room)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), out, room, add_special, True)
            if n >= 0:
                return list(out[:n])
            room = -n

    def piece(self, token: int) -> bytes:
        """The bytes a generated token stands for; control tokens (EOS, <|im_end|>) give none."""
        known = self._pieces.get(token)
        if known is None:
            buf = ctypes.create_string_buffer(_PIECE_BYTES)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, _PIECE_BYTES, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
            known = self._pieces[token] = buf.raw[:n]
        return known

    def token_bytes(self, token: int) -> bytes:
        """A token's bytes for log-probabilities: its piece, or a control token's own text (``<|im_end|>``)."""
        return self.piece(token) or self.token_text(token).encode("utf-8")

    def end_tokens(self) -> list[int]:
        """Every token that ends generation (EOS, EOT, <|im_end|>...), found once by asking the vocabulary."""
        if self._ends is None:
            self._ends = [t for t in range(self.n_vocab) if self.is_end(t)]
        return self._ends

    def single_token(self, text: str) -> int | None:
        """The id of ``text`` where it is exactly one token of the vocabulary (``<think>``), else None."""
        ids = self.tokenize(text, add_special=False)
        return ids[0] if len(ids) == 1 else None

    def is_end(self, token: int) -> bool:
        """Whether a token ends generation (EOS, EOT, <|im_end|>...)."""
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))


class Context:
    """A llama.cpp context: ``n_seq`` sequences of up to ``n_ctx`` tokens each, one KV stream per sequence."""

    def __init__(
        self,
        model: GgufModel,
        *,
        n_seq: int,
        n_ctx: int,
        n_batch: int,
        threads: int,
        pooling: int | None = None,
    ) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_seq * n_ctx
        params.n_seq_max = n_seq
        # generation: one KV stream per sequence, so neighbours cannot change a sequence's numbers; embedding:
        # one shared stream, as llama.cpp's mean and cls pooling mix up sequences across separate streams
        params.kv_unified = pooling is not None
        params.n_batch = params.n_ubatch = n_batch
        params.n_threads = params.n_threads_batch = threads
        if pooling is not None:  # an embedding context
            params.embeddings = True
            params.pooling_type = pooling
        else:
            # flash attention on, not llama.cpp's "auto": with one KV stream per sequence, auto left decode steps
            # 1.26x slower at the default 2048-token window (32 sequences of the demo as Q8_0, bench/RESULTS.md)
            params.flash_attn_type = FLASH_ATTN_ENABLED
        self.model = model  # the model must outlive its context
        self.ptr = llama_cpp.llama_init_from_model(model.ptr, params)
        if not self.ptr and pooling is None:  # a device without flash attention for this model: llama.cpp's choice
            params.flash_attn_type = FLASH_ATTN_AUTO
            self.ptr = llama_cpp.llama_init_from_model(model.ptr, params)
        if not self.ptr:
            raise BackendError(f"llama.cpp could not create a context of {n_seq} x {n_ctx} tokens (out of memory?)")
        self.n_seq, self.n_batch = n_seq, n_batch
        self.n_ctx = int(llama_cpp.llama_n_ctx_seq(self.ptr))  # per sequence, after llama.cpp's rounding
        self.memory = llama_cpp.llama_get_memory(self.ptr)  # None for encoders such as BERT, which keep no cache
        self._free = llama_cpp.llama_free

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self._free(self.ptr)
            self.ptr = None

    def clear(self) -> None:
        """Forget every sequence."""
        if self.memory:
            llama_cpp.llama_memory_clear(self.memory, True)

    def drop(self, seq: int) -> None:
        """Free one sequence's KV cells so another request can use its slot."""
        if self.memory:
            llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def decode(self, batch: Any) -> None:
        """One llama_decode call; a failure is the batch's BackendError."""
        rc = llama_cpp.llama_decode(self.ptr, batch)
        if rc != 0:
            reason = {1: "no room in the KV cache", 2: "aborted"}.get(rc, "invalid batch" if rc < 0 else "error")
            raise BackendError(f"llama_decode failed ({reason}, code {rc})")

    def logits(self, row: int) -> np.ndarray:
        """The logits of one output row of the last decode (a view, valid until the next decode)."""
        ptr = llama_cpp.llama_get_logits_ith(self.ptr, row)
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,))

    def embedding(self, seq: int, width: int) -> np.ndarray:
        """The pooled embedding of one sequence of the last decode (a copy)."""
        ptr = llama_cpp.llama_get_embeddings_seq(self.ptr, seq)
        if not ptr:
            raise BackendError("llama.cpp returned no pooled embedding (the model has no pooling; set size.pooling)")
        return np.ctypeslib.as_array(ptr, shape=(width,)).copy()


class Batch:
    """A reusable llama_batch of up to ``capacity`` tokens, one sequence id each."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = llama_cpp.llama_batch_init(capacity, 0, 1)
        self._free = llama_cpp.llama_batch_free

    def __del__(self) -> None:
        if getattr(self, "raw", None) is not None:
            self._free(self.raw)
            self.raw = None

    def clear(self) -> None:
        """Empty the batch for the next decode."""
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq: int, output: bool) -> int:
        """Append one token; returns its row, where its logits (if ``output``) will be."""
        raw, k = self.raw, self.raw.n_tokens
        raw.token[k], raw.pos[k], raw.n_seq_id[k], raw.logits[k] = token, pos, 1, output
        raw.seq_id[k][0] = seq
        raw.n_tokens = k + 1
        return k

    @property
    def room(self) -> int:
        """Tokens that still fit."""
        return self.capacity - self.raw.n_tokens


@dataclass
class Prompt:
    """One request as the decoder sees it: token ids, limits, stop strings and sampling."""

    ids: list[int]
    max_tokens: int
    stops: tuple[str, ...]  # these four as the GenerationRequest asked: no defaults of their own
    temperature: float
    top_p: float
    seed: int | None
    constraint: Any = None  # a RowConstraint (adam/backends/constraints.py): masks each step; None: free
    logprobs: int | None = None  # each token's log-probability with this many alternatives; None: not asked
    ignore_eos: bool = False  # end-of-generation tokens are masked out, as llama.cpp's server does for ignore_eos


@dataclass
class Progress:
    """What one step produced for one request: new text, and when it is done, why and how many tokens."""

    index: int
    text: str
    tokens: int
    finish_reason: str | None = None  # stop | length, on the request's last event
    logprob: dict[str, Any] | None = None  # the token's logprobs entry, where the prompt asked for them


@dataclass
class _Running:
    """A request holding a slot."""

    index: int
    prompt: Prompt
    seq: int
    sampler: Any  # a llama_sampler chain, or None for greedy
    fed: int = 0  # prompt tokens already decoded
    tokens: int = 0  # generated tokens, the one that ended it included
    next_token: int | None = None  # sampled, not yet decoded
    row: int | None = None  # the output row of this sequence in the last decode
    tail: str = ""  # the end of the text, enough to see a stop string complete
    utf8: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    urgent: bool = False  # an interactive request: its prompt is read before batch work's


class BatchDecoder:
    """Continuous batching: many prompts at once, each in its own sequence (slot) of a shared context.

    Driven one decode call at a time (``admit``, ``step``, ``cancel``) by adam.backends.scheduler, whose
    requests join at any step and leave when done; ``run`` decodes a fixed list of prompts the same way.
    """

    def __init__(self, context: Context) -> None:
        self.ctx = context
        self.model = context.model
        self.batch = Batch(context.n_batch)
        self._prompt_turn = False  # whether the last batch was a prompt chunk
        self._free = list(range(context.n_seq))[::-1]  # sequence ids no request holds
        self._running: list[_Running] = []

    @property
    def free_slots(self) -> int:
        """Requests that could start now."""
        return len(self._free)

    def admit(self, index: int, prompt: Prompt, *, urgent: bool = False) -> None:
        """Start a request in a free slot, known by ``index`` in its events; an urgent one's prompt is read first."""
        if not prompt.ids:
            raise ValueError("every prompt needs at least one token")
        if not self._free:
            raise RuntimeError("no free slot: admit only while free_slots > 0")
        self._running.append(_Running(index, prompt, self._free.pop(), _sampler(prompt), urgent=urgent))

    def cancel(self, index: int) -> None:
        """Stop a request now and free its slot (nothing if it already finished)."""
        for job in self._running:
            if job.index == index:
                self._leave(job)
                return

    def reset(self) -> None:
        """Forget every request (after a failed decode, or when done)."""
        for job in self._running:
            _free_sampler(job.sampler)
        self._running.clear()
        self._free = list(range(self.ctx.n_seq))[::-1]
        self._prompt_turn = False
        self.ctx.clear()

    def step(self) -> list[Progress]:
        """One llama_decode call; what each request that got a token produced. A finished request leaves."""
        if not self._running:
            return []
        self._fill(self._running)
        self.ctx.decode(self.batch.raw)
        events, done = [], []
        for job in self._running:
            if job.row is None:
                continue  # still reading its prompt
            event = self._advance(job)
            events.append(event)
            if event.finish_reason is not None:
                done.append(job)
        for job in done:
            self._leave(job)
        return events

    def _leave(self, job: _Running) -> None:
        self._running.remove(job)
        _free_sampler(job.sampler)
        self.ctx.drop(job.seq)
        self._free.append(job.seq)

    def run(self, prompts: Sequence[Prompt]) -> Iterator[list[Progress]]:
        """Decode every prompt; after each llama_decode call yield what each running request produced.

        Requests start in order as slots free up. Closing the iterator early frees every slot.
        """
        if any(not p.ids for p in prompts):
            raise ValueError("every prompt needs at least one token")
        waiting = list(enumerate(prompts))[::-1]
        self.reset()
        try:
            while waiting or self._running:
                while waiting and self._free:
                    self.admit(*waiting.pop())
                if events := self.step():
                    yield events
        finally:
            self.reset()

    def _fill(self, running: list[_Running]) -> None:
        """The next batch: one new token of every generating sequence, or the next chunk of one waiting prompt.

        A prompt is never mixed with other sequences in a batch: llama.cpp splits a mixed batch into
        micro-batches by sequence, which would cut the prompt where decoding it alone does not, and the
        different kernel shapes change the last bits of its numbers (and so, now and then, a greedy token).
        Decode steps and prompt chunks take turns, so neither waits for the other to finish; an urgent
        prompt (an interactive request's) is read before the others, and before the next step when only
        batch work is generating, so a chat never waits behind a batch's steps.
        """
        batch = self.batch
        batch.clear()
        for job in running:
            job.row = None
        generating = [job for job in running if job.next_token is not None]
        readers = [job for job in running if job.fed < len(job.prompt.ids)]
        reading = next((job for job in readers if job.urgent), readers[0] if readers else None)
        jump = reading is not None and reading.urgent and not any(job.urgent for job in generating)
        self._prompt_turn = reading is not None and (not generating or jump or not self._prompt_turn)
        if self._prompt_turn and reading is not None:
            ids, start = reading.prompt.ids, reading.fed
            reading.fed = min(len(ids), start + batch.capacity)
            for pos in range(start, reading.fed):
                row = batch.add(ids[pos], pos, reading.seq, pos == len(ids) - 1)
            if reading.fed == len(ids):
                reading.row = row
            return
        for job in generating:
            pos = len(job.prompt.ids) + job.tokens - 1
            job.row = batch.add(job.next_token, pos, job.seq, True)

    def _advance(self, job: _Running) -> Progress:
        """Sample the sequence's next token and turn it into text; says when the sequence is done.

        A constrained sequence's disallowed logits are set to -inf in llama.cpp's own buffer first, so the
        sampler chain (or the argmax) only sees what its grammar allows. Log-probabilities are read after the
        mask: a constrained row's are over what its constraint allows (a label's confidence among the labels).
        """
        prompt = job.prompt
        logits = self.ctx.logits(job.row)
        mask = prompt.constraint.allowed() if prompt.constraint is not None else None
        if mask is not None:
            logits[~mask[: logits.shape[0]]] = -np.inf
        if prompt.ignore_eos:
            logits[self.model.end_tokens()] = -np.inf
        scores = logits.copy() if prompt.logprobs is not None else None  # before the sampler chain changes them
        if job.sampler is None:
            token = int(np.argmax(logits))
        else:
            token = int(llama_cpp.llama_sampler_sample(job.sampler, self.ctx.ptr, job.row))
        if prompt.constraint is not None:
            prompt.constraint.accept(token)
        logprob = None
        if scores is not None:
            logprob = logprob_entry(scores, token, prompt.logprobs or 0, self.model.token_bytes)
        job.tokens += 1
        reason = None
        if self.model.is_end(token):
            text, reason = job.utf8.decode(b"", final=True), "stop"
        else:
            text = job.utf8.decode(self.model.piece(token))
            job.tail = (job.tail + text)[-_tail_length(prompt.stops, text) :] if prompt.stops else ""
            if prompt.stops and any(stop in job.tail for stop in prompt.stops):
                reason = "stop"
            elif job.tokens >= prompt.max_tokens or len(prompt.ids) + job.tokens >= self.ctx.n_ctx:
                reason = "length"
            if reason is not None:
                text += job.utf8.decode(b"", final=True)
        job.next_token = token if reason is None else None
        return Progress(job.index, text, job.tokens, reason, logprob)


def _tail_length(stops: Sequence[str], text: str) -> int:
    """Characters of the text's end to keep so a stop string completed by ``text`` is seen whole."""
    return max(len(s) for s in stops) + len(text)


def _sampler(prompt: Prompt) -> Any:
    """A llama.cpp sampler chain for temperature > 0 (temperature, then top_p, then a seeded draw); None for greedy.

    Each request has its own chain and seed, so its draws do not depend on what else is in the batch.
    """
    if prompt.temperature <= 0:
        return None
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(prompt.temperature))
    if prompt.top_p < 1.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(prompt.top_p, 1))
    # LLAMA_DEFAULT_SEED (0xFFFFFFFF) asks for a random seed, so a given seed is folded below it
    seed = llama_cpp.LLAMA_DEFAULT_SEED if prompt.seed is None else prompt.seed % llama_cpp.LLAMA_DEFAULT_SEED
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain


def _free_sampler(sampler: Any) -> None:
    if sampler is not None:
        llama_cpp.llama_sampler_free(sampler)
