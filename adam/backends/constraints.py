"""Constrained decoding for the in-process backends: llguidance token masks, one matcher per row, and logprobs.

llguidance (the library llama.cpp and vLLM use) compiles a JSON schema, a json_object request or a list of
choices into a matcher over the model's own vocabulary; before each token the matcher gives the tokens that
keep the answer valid, and the backend sets every other logit to -inf in that row only, so constrained and
plain rows share one batch. A ``TokenGuide`` wraps one model's vocabulary (built from a transformers tokenizer
or a llama.cpp vocab in well under a second, once per backend); each compiled grammar is kept, so a job whose
records share a schema compiles it once and every row starts from a copy.

A thinking model (Qwen3 with job.thinking=true) thinks freely: the row is held unconstrained from ``<think>``
to ``</think>``, and the constraint starts after it. Log-probabilities are read after the mask (vLLM's
``processed_logprobs``): a constrained row's are over the tokens it may take, so a label's logprob is the
model's confidence among the labels.

llguidance is imported on first use, inside these functions, so importing a backend stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from adam.errors import BackendError
from adam.protocol.structured import output_schema

if TYPE_CHECKING:
    import numpy as np

    from adam.backends.types import GenerationRequest

log = logging.getLogger(__name__)

COMPILED_KEPT = 256  # compiled grammars a guide keeps (a job usually has one schema; a server sees many)
# compact JSON (no free whitespace between tokens): a model cannot pad an answer with blanks until max_tokens
_JSON_OPTIONS = {"whitespace_flexible": False}


def grammar_of(request: GenerationRequest) -> str | None:
    """The llguidance grammar of a request's constraint (None: unconstrained)."""
    import llguidance

    if request.choice:
        return str(llguidance.grammar_from("choice", json.dumps(list(request.choice))))
    schema = output_schema(request.response_format)
    if schema is None:
        return None
    return str(llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=_JSON_OPTIONS))  # type: ignore[arg-type]


@lru_cache(maxsize=1024)
def _grammar_problem(schema_json: str) -> str | None:
    import llguidance

    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_json, overrides=_JSON_OPTIONS)  # type: ignore[arg-type]
        problem = llguidance.LLMatcher.validate_grammar(grammar, None)
    except ValueError as err:  # llguidance's own refusals ("recursion limit exceeded")
        problem = str(err)
    return one_line(problem) or None


def one_line(text: str) -> str:
    """llguidance's message on one line: a regex error spans three, a panic carries its backtrace."""
    text = text.split("<backtrace>", 1)[0]
    return " ".join(text.split())


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why llguidance cannot decode to ``schema`` (a keyword it does not implement), in one line; None: it can."""
    try:
        text = json.dumps(schema, sort_keys=True)
    except (ValueError, RecursionError):
        return "the schema cannot be used for constrained decoding: it nests too deeply"
    problem = _grammar_problem(text)
    return None if problem is None else f"the schema cannot be used for constrained decoding: {problem}"


@dataclass
class GuideStats:
    """How often a guide compiled a grammar and how often a row reused a compiled one (the bench reports them)."""

    compiled: int = 0
    reused: int = 0
    compile_s: float = 0.0


class TokenGuide:
    """llguidance over one model's vocabulary: compiled grammars kept by their hash, a RowConstraint per request."""

    def __init__(
        self, tokenizer: Any, width: int, *, think: tuple[int, int] | None = None, eos: Sequence[int] = ()
    ) -> None:
        self.tokenizer = tokenizer  # an llguidance.LLTokenizer
        self.width = width  # the logits' width (a model may have more rows than its tokenizer has tokens)
        self.think = think  # (<think>, </think>) token ids, where each is one token
        self.eos = frozenset(eos)
        self.stats = GuideStats()
        self._compiled: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def for_hf(cls, tokenizer: Any, eos: Sequence[int], width: int) -> TokenGuide:
        """A guide over a transformers fast tokenizer (the HF backend)."""
        import llguidance.hf

        lltok = llguidance.hf.from_tokenizer(tokenizer, n_vocab=width, eos_token=list(eos) or None)
        think = _single_ids([tokenizer.convert_tokens_to_ids(t) for t in ("<think>", "</think>")], tokenizer)
        return cls(lltok, width, think=think, eos=eos)

    @classmethod
    def for_llamacpp(cls, vocab: Any, eos: Sequence[int], width: int, think: tuple[int, int] | None) -> TokenGuide:
        """A guide over a llama.cpp vocab (the llamacpp backend)."""
        import llguidance.llamacpp

        lltok = llguidance.llamacpp.lltokenizer_from_vocab(vocab, n_vocab=width, eos_token=list(eos) or None)
        return cls(lltok, width, think=think, eos=eos)

    def token_bytes(self, token: int) -> bytes:
        """The bytes a token stands for (a special token: its text)."""
        return bytes(self.tokenizer.decode_bytes([token]))

    def row(self, request: GenerationRequest, *, thinking_open: bool = False) -> RowConstraint | None:
        """A fresh constraint for one request's row (None when it asks for none); BackendError when its grammar
        cannot be compiled. ``thinking_open``: the prompt already opens a <think> block."""
        grammar = grammar_of(request)
        if grammar is None:
            return None
        matcher = self._matcher(grammar)
        think = self.think if request.thinking else None
        if request.thinking and think is None:
            log.debug("no single <think>/</think> tokens in this vocabulary: constraining from the first token")
        state = _THINKING if think is not None and thinking_open else _MAYBE_THINK if think is not None else _ANSWER
        return RowConstraint(self, matcher, think, state)

    def _matcher(self, grammar: str) -> Any:
        import time

        import llguidance

        key = hashlib.sha256(grammar.encode()).hexdigest()
        with self._lock:
            template = self._compiled.get(key)
            if template is not None:
                self._compiled.move_to_end(key)
                self.stats.reused += 1
                return template.deep_copy()
        started = time.perf_counter()
        template = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if template.is_error():
            raise BackendError(f"the constraint cannot be compiled: {one_line(template.get_error())}")
        with self._lock:
            self.stats.compiled += 1
            self.stats.compile_s += time.perf_counter() - started
            self._compiled[key] = template
            while len(self._compiled) > COMPILED_KEPT:
                self._compiled.popitem(last=False)
        return template.deep_copy()


_MAYBE_THINK, _THINKING, _ANSWER, _DONE = "maybe_think", "thinking", "answer", "done"


class RowConstraint:
    """One row's matcher: the tokens allowed next (``allowed``), fed each token chosen (``accept``)."""

    def __init__(self, guide: TokenGuide, matcher: Any, think: tuple[int, int] | None, state: str) -> None:
        self.guide = guide
        self.matcher = matcher
        self.think = think
        self.state = state

    def allowed(self) -> np.ndarray | None:
        """A boolean mask over the logits' width (True: allowed), or None while the row is free (thinking, done)."""
        import numpy as np

        if self.state in (_THINKING, _DONE):
            return None
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        mask = np.unpackbits(bits, bitorder="little")[: self.guide.width].astype(bool)
        if mask.shape[0] < self.guide.width:
            mask = np.concatenate([mask, np.zeros(self.guide.width - mask.shape[0], dtype=bool)])
        if self.state == _MAYBE_THINK and self.think is not None:
            mask[self.think[0]] = True  # a thinking model may open its <think> block first
        return mask

    def accept(self, token: int) -> None:
        """Move past the token the row chose (masked or not)."""
        if self.state == _DONE:
            return
        if self.think is not None and self.state == _MAYBE_THINK and token == self.think[0]:
            self.state = _THINKING
            return
        if self.state == _THINKING:
            if self.think is not None and token == self.think[1]:
                self.state = _ANSWER
            return
        self.state = _ANSWER
        if token in self.guide.eos or not self.matcher.consume_token(token):
            # the row ended, or took a token the mask did not offer (a finished row padded by the batch)
            self.state = _DONE


def apply_masks(logits: np.ndarray, rows: Sequence[RowConstraint | None]) -> None:
    """Set every disallowed logit to -inf in place, row by row (a None row is left as it is)."""
    for i, row in enumerate(rows):
        if row is None:
            continue
        mask = row.allowed()
        if mask is not None:
            width = min(mask.shape[0], logits.shape[-1])
            logits[i, :width][~mask[:width]] = float("-inf")
            logits[i, width:] = float("-inf")


def logprob_entry(logits: np.ndarray, token: int, top: int, token_bytes: Callable[[int], bytes]) -> dict[str, Any]:
    """OpenAI's logprobs.content entry for the chosen ``token`` from one row of logits (-inf where masked)."""
    import numpy as np

    values = logits.astype(np.float64, copy=False)
    finite = values[np.isfinite(values)]
    peak = float(finite.max()) if finite.size else 0.0
    logz = peak + float(np.log(np.exp(values - peak).sum()))

    def item(tok: int) -> dict[str, Any]:
        raw = token_bytes(tok)
        return {"token": raw.decode("utf-8", "replace"), "logprob": float(values[tok] - logz), "bytes": list(raw)}

    entry = item(token)
    if top > 0:
        best = np.argpartition(-values, min(top, values.shape[0] - 1))[:top]
        best = best[np.argsort(-values[best], kind="stable")]
        entry["top_logprobs"] = [item(int(t)) for t in best if np.isfinite(values[t])]  # never a masked token
    else:
        entry["top_logprobs"] = []
    return entry


def _single_ids(ids: Sequence[Any], tokenizer: Any) -> tuple[int, int] | None:
    """(open, close) where both thinking markers are known single tokens; None otherwise."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if any(not isinstance(i, int) or i < 0 or i == unk for i in ids):
        return None
    return int(ids[0]), int(ids[1])
