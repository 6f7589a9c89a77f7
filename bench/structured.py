"""Structured output: a constrained batch against the same batch unconstrained, on the demo, both in-process backends.

Each backend generates for the same prompts (the example tickets, repeated) twice: constrained to
jobs/examples/ticket.schema.json with llguidance masks, then free with each row's max_tokens set to its
constrained twin's length, so both runs decode the same rows for the same number of steps (a constrained
answer stops when its object closes; a free one would otherwise run on in a fuller batch). The rate is generated
tokens per second; the target is at least 0.75x the free rate (the cost of the masks). Also reported: the
time to compile the schema (llguidance, once per model), and how many rows reused the compiled grammar.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.common import Section, Timing, compose, fresh_dir

MAX_TOKENS = 64
BACKENDS = (
    ("llamacpp", ["backend=llamacpp", "hardware=cpu"]),
    ("huggingface", ["backend=huggingface", "hardware=cpu"]),
)


def run(*, quick: bool = False) -> Section:
    """Both backends, free then constrained, a few repetitions each."""
    from adam.backends.base import GenerationRequest
    from adam.run.runner import build_backend

    examples = Path(__file__).resolve().parent.parent / "jobs" / "examples"
    schema = json.loads((examples / "ticket.schema.json").read_text(encoding="utf-8"))
    tickets = [json.loads(line)["prompt"] for line in (examples / "tickets.jsonl").read_text().splitlines()]
    n, reps = (6, 1) if quick else (24, 2)
    prompts = [f"{tickets[i % len(tickets)]} (copy {i})" for i in range(n)]
    rf = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": schema}}
    sec = Section(f"Structured output (demo, {n} tickets, max_tokens={MAX_TOKENS})", "python -m bench structured")
    for name, overrides in BACKENDS:
        try:
            backend = build_backend(compose([*overrides, "size=demo"], fresh_dir(f"structured-{name}")))
            backend.load()
        except Exception as err:  # llama-cpp-python missing, no demo model
            sec.lines.append(f"- {name}: skipped ({type(err).__name__}: {err})")
            continue
        started = time.perf_counter()
        guide = backend.token_guide()  # type: ignore[attr-defined]
        built = time.perf_counter() - started
        lengths = [MAX_TOKENS] * n  # each constrained row's length, then the free row's max_tokens: equal work
        for label, extra in (("constrained", {"response_format": rf}), ("free", {})):
            requests = [
                GenerationRequest(messages=({"role": "user", "content": p},), max_tokens=length, **extra)
                for p, length in zip(prompts, lengths, strict=True)
            ]
            seconds, tokens, valid = [], 0, 0
            for _ in range(reps):
                t0 = time.perf_counter()
                out = backend.generate(requests)
                seconds.append(time.perf_counter() - t0)
                tokens = sum(getattr(g, "completion_tokens", 0) for g in out)
                valid = sum(1 for g in out if getattr(g, "finish_reason", "") == "stop")
            if extra:
                lengths = [max(1, getattr(g, "completion_tokens", 0) or 1) for g in out]
                note = f"{tokens} tokens; {valid}/{n} finished (all valid JSON by the mask)"
            else:
                note = f"{tokens} tokens; each row stopped at its constrained twin's length ({valid}/{n} ended sooner)"
            sec.timings.append(Timing(f"{name} {label}", seconds, tokens, "tok", note=note))
        sec.ratio(f"{name}: constrained / free tokens/s", f"{name} constrained", f"{name} free", 0.75)
        stats = guide.stats
        sec.lines.append(
            f"- {name}: vocabulary guide built in {built * 1000:.0f} ms; the ticket schema compiled "
            f"{stats.compiled} time(s) in {stats.compile_s * 1000:.1f} ms in all; {stats.reused} rows reused it"
        )
        backend.close()
    return sec
