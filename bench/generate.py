"""Generation with transformers: adam's batched job against a per-prompt generate() loop and a plain batch-32 loop.

All three feed the model the same token ids (adam's chat template and the domain's system prompt),
greedy, ``max_new_tokens=64``, the same model object and torch threads. Rates are generated tokens/s,
set next to the machine's bound for the model (matmul FLOP/s and memory bandwidth measured here).
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Section, Timing, compose, fresh_dir, interleave

MAX_TOKENS = 64
PLAIN_BATCH = 32
TOPICS = [
    "rivers",
    "prime numbers",
    "the moon",
    "bread",
    "trains",
    "volcanoes",
    "chess",
    "bees",
    "glass",
    "maps",
    "clocks",
    "salt",
]


def make_prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic prompts from a few words to a few paragraphs."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        r = rng.random()
        if r < 0.5:
            out.append(f"Tell me one fact about {topic}.")
        elif r < 0.8:
            repeats = f"Mention {topic} twice. " * rng.randint(2, 8)
            out.append(f"Write a short note about {topic} for a child. {repeats}")
        else:
            body = " ".join(f"Sentence {k} is about {rng.choice(TOPICS)}." for k in range(rng.randint(8, 20)))
            out.append(f"Summarise this text in one line: {body}")
        out[-1] = f"[{i}] {out[-1]}"
    return out


def tiny_qwen3(target: Path) -> Path:
    """The tests' tiny random Qwen3 (tests/tiny_model.py), built into ``target``."""
    spec = importlib.util.spec_from_file_location("adam_tiny_model", ROOT / "tests" / "tiny_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built: Path = module.build_tiny_qwen3(target)
    return built


def machine_bounds(parameters: int, weight_bytes: int) -> tuple[float, float, float, float]:
    """(matmul FLOP/s, memory bytes/s, batched-decode tokens/s bound, single-stream tokens/s bound)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0:
        a @ b
        n += 1
    flops = 2 * 1024**3 * n / (time.perf_counter() - start)
    src = torch.ones(64 * 2**20 // 4)  # 64 MiB, well past the caches
    dst = torch.empty_like(src)
    dst.copy_(src)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0:
        dst.copy_(src)
        n += 1
    bandwidth = 2 * src.numel() * 4 * n / (time.perf_counter() - start)  # read + write
    return flops, bandwidth, flops / (2 * parameters), bandwidth / weight_bytes


def _one_model(sec: Section, label: str, size_overrides: list[str], n: int, one_n: int, reps: int) -> None:
    import torch

    from adam.backends.loaded_models import loaded_models
    from adam.engine import Settings
    from adam.run.runner import build_backend
    from adam.run.runner import run as adam_run

    work = fresh_dir("generate")
    prompts = make_prompts(n)
    source = work / "prompts.jsonl"
    source.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    overrides = [
        *size_overrides,
        "hardware=cpu",
        f"job.input={source}",
        f"job.max_tokens={MAX_TOKENS}",
        "job.temperature=0",
        f"job.batch_size={PLAIN_BATCH}",
    ]
    cfg = compose(overrides, work / "probe")
    backend = build_backend(cfg)
    settings = Settings.from_config(cfg.job, cfg.domain)
    requests = [settings.request(prompt=p) for p in prompts]
    ids = [backend._prompt_ids(r) for r in requests]
    lm = backend._model()
    model, pad, eos = lm.model, lm.tokenizer.pad_token_id, lm.eos_ids
    kwargs: dict[str, Any] = dict(
        max_new_tokens=MAX_TOKENS, do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad
    )
    kwargs["eos_token_id"] = eos or None

    def own_tokens(row: list[int]) -> int:
        for k, t in enumerate(row):
            if t in eos:
                return k + 1
        return len(row)

    counted: dict[str, int] = {}

    def per_prompt() -> None:
        total = 0
        with torch.inference_mode():
            for p in ids[:one_n]:
                x = torch.tensor([p])
                out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kwargs)
                total += own_tokens(out[0, len(p) :].tolist())
        counted["per"] = total

    def plain_batched() -> None:
        total = row_steps = 0
        with torch.inference_mode():
            for start in range(0, n, PLAIN_BATCH):
                chunk = ids[start : start + PLAIN_BATCH]
                width = max(map(len, chunk))
                x = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
                mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
                out = model.generate(input_ids=x, attention_mask=mask, **kwargs)
                total += sum(own_tokens(row) for row in out[:, width:].tolist())
                row_steps += len(chunk) * (out.shape[1] - width)  # every row runs until the batch's longest ends
        counted["plain"], counted["row_steps"] = total, row_steps

    # composed up front: like the model load, composing the config (~0.2 s, see the start-up benchmark)
    # is not part of the batch work compared here, and on the tiny model it would be most of it
    configs = [compose(overrides, work / f"run{i}") for i in range(reps)]

    def adam_job() -> None:
        summary = adam_run(configs.pop(0))
        assert summary.stats.ok == n, summary
        counted["adam"] = summary.stats.tokens
        shutil.rmtree(summary.run_dir)

    with torch.inference_mode():  # warm-up: one short batched call
        x = torch.tensor([ids[0], ids[0]])
        model.generate(input_ids=x, attention_mask=torch.ones_like(x), **{**kwargs, "max_new_tokens": 4})
    times = interleave({"adam": adam_job, "plain": plain_batched, "per": per_prompt}, reps=reps, warmup=0)
    t_adam, t_plain, t_per = times["adam"], times["plain"], times["per"]
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    flops, bandwidth, bound_batched, bound_single = machine_bounds(params, weight_bytes)
    names = [f"{label}: adam job (batch {PLAIN_BATCH}, length-sorted)", f"{label}: plain batch-32 loop",
             f"{label}: per-prompt loop"]  # fmt: skip
    sec.timings += [
        Timing(names[0], t_adam, counted["adam"], "tok", note=f"{n} prompts, {counted['adam']} tokens"),
        Timing(names[1], t_plain, counted["plain"], "tok", note=f"{n} prompts, {counted['plain']} tokens"),
        Timing(names[2], t_per, counted["per"], "tok", note=f"first {one_n} prompts, {counted['per']} tokens"),
    ]
    sec.ratio(f"{label}: adam / per-prompt loop", names[0], names[2], 7.0)
    sec.ratio(f"{label}: adam / plain batch-32 loop", names[0], names[1], 1.0)
    adam_rate, per_rate = sec.get(names[0]).rate, sec.get(names[2]).rate
    sec.lines.append(
        f"- {label}: {params / 1e6:.1f}M parameters, {weight_bytes / 2**20:.0f} MiB fp32 weights. Measured "
        f"matmul {flops / 1e9:.0f} GFLOP/s and copy bandwidth {bandwidth / 1e9:.1f} GB/s, so batched decode is "
        f"bounded near {bound_batched:,.0f} tok/s (adam reaches {adam_rate / bound_batched:.0%}) and single-stream "
        f"decode near {bound_single:,.0f} tok/s (the per-prompt loop reaches {per_rate / bound_single:.0%}). "
        f"In a batch, rows that reach EOS are computed until the longest row ends: "
        f"{counted['plain'] / counted['row_steps']:.0%} of the plain loop's row-steps made a kept token."
    )
    backend.close()
    loaded_models.clear()
    shutil.rmtree(work, ignore_errors=True)


def run(*, quick: bool = False) -> Section:
    """Both models: the bundled demo (SmolLM2-135M) and the tests' tiny random Qwen3."""
    import torch

    sec = Section(
        f"Generation (transformers, fp32, greedy, max_tokens={MAX_TOKENS}, {torch.get_num_threads()} threads)",
        f"python -m bench generate{' --quick' if quick else ''}  (adam: run(cfg) for `python -m adam size=demo "
        f"hardware=cpu job.input=prompts.jsonl job.max_tokens={MAX_TOKENS} job.temperature=0 job.batch_size=32`)",
    )
    tiny_dir = tiny_qwen3(fresh_dir("tiny-qwen3"))
    _one_model(sec, "tiny Qwen3", ["size=local", f"size.path={tiny_dir}"], 64, 16, reps=3)
    _one_model(sec, "SmolLM2-135M (demo)", ["size=demo"], 32 if quick else 64, 4, reps=1 if quick else 2)
    shutil.rmtree(tiny_dir, ignore_errors=True)
    sec.lines.append(
        "- Per-prompt loops run on the first prompts only (the same length mix) and are compared by rate; "
        "tokens are those each run really generated up to EOS."
    )
    return sec
