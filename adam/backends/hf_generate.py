"""Generation on a loaded transformers model: batched generate() calls and streaming from a generation thread.

Requests with the same stop strings share one generate() call, greedy, sampled and constrained rows
together: each sampled row draws from its own seeded generator and each constrained row is masked by its
own matcher (hf_tensors.row_sampler_class), so its answer does not depend on its neighbours. Each row is
then cut to its own max_tokens and first EOS. Streaming runs generate() in a thread and hands decoded text
on as whole UTF-8 characters. The backend supplies the prompt token ids, whether a prompt opens <think>, and
its token guide (llguidance over its vocabulary) for constrained rows.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from adam.backends import hf_tensors
from adam.backends.base import Generation, GenerationRequest, StreamChunk, finish_generation
from adam.backends.constraints import TokenGuide
from adam.backends.hf_model import LoadedModel, running
from adam.errors import BackendError

log = logging.getLogger(__name__)

_END = object()  # end of a streamed generation


def check_max_tokens(request: GenerationRequest) -> None:
    """Refuse a request that asks for no tokens at all."""
    if request.max_tokens < 1:
        raise BackendError(f"max_tokens must be at least 1, not {request.max_tokens}")


Guide = Callable[[], TokenGuide]  # the backend's TokenGuide, built on first use


def generate_batch(
    lm: LoadedModel,
    requests: Sequence[GenerationRequest],
    prompt_ids: Callable[[GenerationRequest], list[int]],
    opens_thinking: Callable[[GenerationRequest], bool],
    guide: Guide | None = None,
) -> list[Generation]:
    """Generations for ``requests`` in order, one generate() call per group of equal stop strings (constrained,
    sampled and plain rows together: each row has its own mask and generator)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(_sampling_key(request), []).append(i)
    results: list[Generation | None] = [None] * len(requests)
    for indices in groups.values():
        group = [requests[i] for i in indices]
        for i, generation in zip(indices, _generate_group(lm, group, prompt_ids, opens_thinking, guide), strict=True):
            results[i] = generation
    return [r for r in results if r is not None]


def _sampling_key(request: GenerationRequest) -> tuple[Any, ...]:
    """Requests with equal keys can share one generate() call: stop strings apply to a whole call."""
    return (request.stop,)


def _generate_group(
    lm: LoadedModel,
    requests: list[GenerationRequest],
    prompt_ids: Callable[[GenerationRequest], list[int]],
    opens_thinking: Callable[[GenerationRequest], bool],
    guide: Guide | None = None,
) -> list[Generation]:
    """One generate() call for requests that share stop strings; each row is cut to its max_tokens."""
    prompts = [prompt_ids(r) for r in requests]
    input_ids, attention_mask = hf_tensors.pad_rows(
        prompts, lm.tokenizer.pad_token_id, "left"
    )  # decoders continue on the right
    input_ids, attention_mask = input_ids.to(lm.device), attention_mask.to(lm.device)
    opened = [opens_thinking(r) for r in requests]
    with running(lm, "generation"):  # turns a bad setting (top_p <= 0) into this group's BackendError
        kwargs = _generate_kwargs(lm, requests, max(r.max_tokens for r in requests), guide, opened)
        output = lm.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    rows = output[:, input_ids.shape[1] :].tolist()
    entries = _logprobs(kwargs, rows)
    return [
        _finish(lm, r, len(p), row, o, lp)
        for r, p, row, o, lp in zip(requests, prompts, rows, opened, entries, strict=True)
    ]


def _logprobs(kwargs: dict[str, Any], rows: list[list[int]]) -> list[list[dict[str, Any]] | None]:
    """Each row's logprob entries (None where not asked), read from the row processor after generate()."""
    processors = kwargs.get("logits_processor") or []
    sampler = processors[0] if processors else None
    if sampler is None:
        return [None] * len(rows)
    sampler.close(rows)
    return [e if asked is not None else None for e, asked in zip(sampler.entries, sampler.asked, strict=True)]


def _generate_kwargs(
    lm: LoadedModel,
    requests: Sequence[GenerationRequest],
    max_new_tokens: int,
    guide: Guide | None = None,
    opened: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """generate()'s arguments for rows that share stop strings: greedy search, each sampled row drawn by its own
    generator (the model's generation_config sampling defaults, top_k among them, do not apply), each constrained
    row masked by its own matcher."""
    from transformers import LogitsProcessorList

    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "pad_token_id": lm.tokenizer.pad_token_id,
        "eos_token_id": lm.eos_ids or None,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }
    rows = [(r.temperature, r.top_p, r.seed) if r.temperature > 0 else None for r in requests]
    guided = any(r.constrained or r.logprobs is not None for r in requests)
    if any(rows) or guided:
        extra: dict[str, Any] = {}
        if guided:
            if guide is None:
                raise BackendError("this backend was given no token guide for constrained decoding")
            token_guide = guide()
            opened = opened or [False] * len(requests)
            constraints = [token_guide.row(r, thinking_open=o) for r, o in zip(requests, opened, strict=True)]
            extra = {"constraints": constraints, "logprobs": [r.logprobs for r in requests],
                     "token_bytes": token_guide.token_bytes, "eos": lm.eos_ids}  # fmt: skip
        kwargs["logits_processor"] = LogitsProcessorList([hf_tensors.row_sampler_class()(rows, **extra)])
    if requests[0].stop:
        kwargs.update(stop_strings=list(requests[0].stop), tokenizer=lm.tokenizer)
    return kwargs


def _completion(lm: LoadedModel, request: GenerationRequest, row: list[int]) -> tuple[list[int], bool]:
    """(the row's own tokens, up to and including EOS; whether EOS ended it)."""
    row = row[: request.max_tokens]
    eos = set(lm.eos_ids)
    for n, token in enumerate(row):
        if token in eos:
            return row[: n + 1], True
    pad = lm.tokenizer.pad_token_id
    end = len(row)
    while end and row[end - 1] == pad:  # a row stopped early (stop string) is padded to the longest
        end -= 1
    return row[:end], False


def _decode(lm: LoadedModel, tokens: list[int]) -> str:
    return lm.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def _finish(
    lm: LoadedModel,
    request: GenerationRequest,
    prompt_tokens: int,
    row: list[int],
    thinking_open: bool,
    logprobs: list[dict[str, Any]] | None = None,
) -> Generation:
    tokens, hit_eos = _completion(lm, request, row)
    reason = "length" if len(tokens) >= request.max_tokens and not hit_eos else "stop"
    raw = _decode(lm, tokens)
    return finish_generation(
        raw,
        request,
        finish_reason=reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=len(tokens),
        thinking_open=thinking_open,
        logprobs=None if logprobs is None else logprobs[: len(tokens)],
    )


def stream(
    lm: LoadedModel, request: GenerationRequest, prompt: list[int], guide: Guide | None = None, opened: bool = False
) -> Iterator[StreamChunk]:
    """Raw text deltas from a generation thread; every chunk carries the token counts so far."""
    import torch
    from transformers import StoppingCriteriaList

    tokens: queue.Queue[Any] = queue.Queue()
    cancelled = threading.Event()
    streamer_cls, cancel_cls = hf_tensors.stream_classes()

    def work() -> None:
        try:
            with running(lm, "generation"):
                kwargs = _generate_kwargs(lm, [request], request.max_tokens, guide, [opened])
                kwargs.update(
                    streamer=streamer_cls(tokens), stopping_criteria=StoppingCriteriaList([cancel_cls(cancelled)])
                )
                ids = torch.tensor([prompt], device=lm.device)
                lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        except Exception as err:  # handed to the consumer, which raises it in its own thread
            tokens.put(err)
        finally:
            tokens.put(_END)

    thread = threading.Thread(target=work, name="adam-hf-stream", daemon=True)
    thread.start()
    try:
        generated: list[int] = []
        sent = ""
        while (item := tokens.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            generated.extend(item)
            own, _ = _completion(lm, request, generated)
            text = _decode(lm, own)
            if text.endswith("\ufffd") or not text.startswith(sent) or len(text) == len(sent):
                continue  # an incomplete UTF-8 sequence: wait for the bytes that finish it
            yield StreamChunk(text[len(sent) :], prompt_tokens=len(prompt), completion_tokens=len(own))
            sent = text
        own, hit_eos = _completion(lm, request, generated)
        text = _decode(lm, own)
        if not text.startswith(sent):
            log.warning("streamed text diverged from the final decode; the stream may differ from generate()")
        reason = "length" if len(own) >= request.max_tokens and not hit_eos else "stop"
        rest = text[len(sent) :] if text.startswith(sent) else ""
        yield StreamChunk(rest, "", reason, len(prompt), len(own))
    finally:
        cancelled.set()
        thread.join()
