"""Shared prefixes in llama.cpp: does reading the system prompt once and copying its KV cells pay, and stay exact?

The bench prompts share their chat template's start and system prompt (about 20 of ~70 tokens). Three ways
to read N prompts and greedily generate from them on the demo GGUF as backend.weight_type=auto runs it:
- separate: each sequence reads its whole prompt in its own decode calls, in one KV stream per sequence
  (``kv_unified=false``), as backend=llamacpp does today; generation steps carry every sequence;
- shared: sequence 0 reads the common prefix, ``llama_memory_seq_cp`` copies it to the others (with one
  stream per sequence only whole streams can be copied: a partial range aborts), then each reads its rest;
- unified: one KV stream for all (``kv_unified=true``, where ranges can be shared), every prompt in one batch,
  compared with each prompt decoded alone in the same kind of context.
Reported: prompt-phase seconds (best of a few runs) and how many greedy continuations equal the separate ones.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.common import Section, compose, fresh_dir
from bench.generate import make_prompts

SYSTEM = "You are a helpful assistant. Answer clearly and concisely."
GENERATE = 16


def run(*, quick: bool = False) -> Section:
    """The three ways on the demo, timed and compared token for token."""
    threads = int(os.environ.get("ADAM_BENCH_THREADS") or os.cpu_count() or 1)
    n = 8 if quick else 32
    sec = Section(
        f"Shared prefixes (llama.cpp KV cells, demo, {n} prompts, {threads} threads)", "python -m bench prefix"
    )
    try:
        from adam.backends import llamacpp_native as native
    except Exception as err:
        sec.lines.append(f"- skipped: llama-cpp-python is not importable ({type(err).__name__}: {err})")
        return sec
    from adam.backends.base import GenerationRequest
    from adam.run.runner import build_backend

    backend = build_backend(compose(["backend=llamacpp", "size=demo", "hardware=cpu"], fresh_dir("prefix")))
    backend.load()
    system = {"role": "system", "content": SYSTEM}
    prompts = [
        backend._ids(backend.format_prompt(GenerationRequest(messages=(system, {"role": "user", "content": p}))))
        for p in make_prompts(n)
    ]
    shared = next(i for i in range(min(map(len, prompts))) if len({p[i] for p in prompts}) > 1)
    model = backend._gguf()
    window = max(len(p) for p in prompts) + GENERATE + 8

    def context(unified: bool, seqs: int) -> Any:
        ctx = native.Context(model, n_seq=seqs, n_ctx=window, n_batch=512, threads=threads)
        if unified:  # the backend's contexts keep one stream per sequence; this one shares one
            import llama_cpp

            params = llama_cpp.llama_context_default_params()
            params.n_ctx, params.n_seq_max, params.kv_unified = seqs * window, seqs, True
            params.n_batch = params.n_ubatch = 512
            params.n_threads = params.n_threads_batch = threads
            llama_cpp.llama_free(ctx.ptr)
            ctx.ptr = llama_cpp.llama_init_from_model(model.ptr, params)
            ctx.memory = llama_cpp.llama_get_memory(ctx.ptr)
        return ctx

    separate_ctx, unified_ctx = context(False, n), context(True, n)
    results: dict[str, tuple[float, list[list[int]]]] = {}
    results["separate"] = _best(lambda: _read(native, separate_ctx, prompts, 0))
    results["shared"] = _best(lambda: _read(native, separate_ctx, prompts, shared))
    results["unified, in one batch"] = _best(lambda: _read(native, unified_ctx, prompts, 0))
    # alone: each prompt by itself in the same context, read whole (as backend=llamacpp's test compares)
    alone_separate = [_read(native, separate_ctx, [p], 0)[1][0] for p in prompts]
    alone = {"separate": alone_separate, "shared": alone_separate}
    alone["unified, in one batch"] = [_read(native, unified_ctx, [p], 0)[1][0] for p in prompts]
    base = results["separate"][1]
    sec.lines += [
        f"- {shared} of the prompts' {sum(map(len, prompts)) / n:.0f} tokens on average are a common prefix; "
        f"{GENERATE} greedy tokens per prompt.",
        "",
        "| way | prompt phase s (best of 3) | continuations equal to separate | equal to the prompt alone |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, (secs, tokens) in results.items():
        same = sum(a == b for a, b in zip(tokens, base, strict=True))
        solo = sum(a == b for a, b in zip(tokens, alone[name], strict=True))
        sec.lines.append(f"| {name} | {secs:.3f} | {same}/{n} | {solo}/{n} |")
    backend.close()
    return sec


def _best(fn: Any, reps: int = 3) -> tuple[float, list[list[int]]]:
    runs = [fn() for _ in range(reps)]
    return min(r[0] for r in runs), runs[0][1]


def _read(native: Any, ctx: Any, prompts: list[list[int]], shared: int) -> tuple[float, list[list[int]]]:
    """(seconds to read every prompt, GENERATE greedy tokens per prompt); ``shared`` tokens read once and copied."""
    import llama_cpp
    import numpy as np

    ctx.clear()
    batch = native.Batch(512)
    started = time.perf_counter()
    first: dict[int, int] = {}
    if shared:
        _feed(ctx, batch, [(0, prompts[0][:shared], 0)], {})
        for seq in range(1, len(prompts)):
            llama_cpp.llama_memory_seq_cp(ctx.memory, 0, seq, -1, -1)
    _feed(ctx, batch, [(seq, p[shared:], shared) for seq, p in enumerate(prompts)], first)
    seconds = time.perf_counter() - started
    out: list[list[int]] = [[first[seq]] for seq in range(len(prompts))]
    for step in range(GENERATE - 1):
        batch.clear()
        rows = [batch.add(out[seq][-1], len(prompts[seq]) + step, seq, True) for seq in range(len(prompts))]
        ctx.decode(batch.raw)
        for seq, row in enumerate(rows):
            out[seq].append(int(np.argmax(ctx.logits(row))))
    return seconds, out


def _feed(ctx: Any, batch: Any, parts: list[tuple[int, list[int], int]], first: dict[int, int]) -> None:
    """Decode each (seq, tokens, first position) in its own llama_decode calls of up to 512 tokens, as
    backend=llamacpp reads prompts (mixing sequences in one call changes their numbers); each one's next token."""
    import numpy as np

    for seq, tokens, start in parts:
        for offset in range(0, len(tokens), batch.capacity):
            chunk = tokens[offset : offset + batch.capacity]
            batch.clear()
            for i, token in enumerate(chunk):
                row = batch.add(token, start + offset + i, seq, offset + i == len(tokens) - 1)
            ctx.decode(batch.raw)
        first[seq] = int(np.argmax(ctx.logits(row)))
