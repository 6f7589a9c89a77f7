"""llama.cpp in-process: adam's llamacpp backend against a llama-cpp-python loop and adam's HF backend.

The same chat prompts (bench.generate's, with a short system prompt), 64 new tokens each, greedy, on the
bundled demo GGUF (SmolLM2-135M, shipped as Q4_1, run as backend.weight_type=auto makes it: Q4_0 on a CPU with
repacked kernels). Contenders:
- adam, backend=llamacpp: the whole job through run(cfg), ``n_seq`` sequences decoded together;
- a llama-cpp-python loop: ``Llama.create_chat_completion`` one prompt at a time, the same file and threads;
- adam, backend=huggingface: the whole job, batch 32, on the float32 copy transformers makes of the same file.
Then embeddings: all-MiniLM-L6-v2 written as a BERT GGUF (tests/bert_gguf.py), job=embed with
backend=llamacpp against backend=huggingface on the same weights (no target; the issue asks for the
comparison). The answers are compared too: llama.cpp computes with the quantized weights, transformers with their
dequantized float32 values, so greedy answers can differ; the differences are reported, not hidden.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from bench.common import ROOT, Section, Timing, compose, fresh_dir, interleave
from bench.embed import _min_cosine, make_texts, write_input
from bench.generate import machine_bounds, make_prompts

MAX_TOKENS = 64
N_SEQ = 32
HF_BATCH = 32
SYSTEM = "You are a helpful assistant. Answer clearly and concisely."
CAPITAL = "What is the capital of France?"


def run(*, quick: bool = False) -> Section:
    """The three contenders on the demo model, interleaved, then the answers side by side."""
    # llama.cpp's threads spin at every barrier: on a shared, busy CPU fewer threads than cores measure cleaner
    threads = int(os.environ.get("ADAM_BENCH_THREADS") or os.cpu_count() or 1)
    n, reps = (16, 1) if quick else (64, 2)
    sec = Section(
        f"llama.cpp in-process (demo GGUF, weight_type=auto, greedy, max_tokens={MAX_TOKENS}, {threads} threads)",
        f"python -m bench llamacpp{' --quick' if quick else ''}  (adam: run(cfg) for `python -m adam backend=llamacpp "
        f"size=demo hardware=cpu backend.n_seq={N_SEQ} job.batch_size={n} job.max_tokens={MAX_TOKENS} "
        f"job.temperature=0 domain.system_prompt='{SYSTEM}'`)",
    )
    try:
        import llama_cpp
    except Exception as err:  # not installed, or its shared library will not load
        sec.lines.append(f"- skipped: llama-cpp-python is not importable ({type(err).__name__}: {err})")
        return sec
    from adam.backends.hf_loading import _from_package
    from adam.backends.llamacpp_probe import llama_cpp_problem

    work = fresh_dir("llamacpp")
    demo = _from_package(compose(["size=demo"], work / "probe").size, download=False)
    problem = llama_cpp_problem(demo.path) if demo is not None else "the demo model is not installed"
    if problem is not None:  # a wheel built for another CPU would take the whole benchmark down with SIGILL
        sec.lines.append(f"- skipped: {problem}")
        shutil.rmtree(work, ignore_errors=True)
        return sec
    try:
        _measure(sec, llama_cpp, work, n, reps, threads)
        _embeddings(sec, work, 500 if quick else 2000, threads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sec


def _measure(sec: Section, llama_cpp: Any, work: Path, n: int, reps: int, threads: int) -> None:
    from adam.backends.loaded_models import loaded_models
    from adam.engine import Settings
    from adam.run.runner import build_backend
    from adam.run.runner import run as adam_run

    source = work / "prompts.jsonl"
    source.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(make_prompts(n))))
    common = ["size=demo", "hardware=cpu", f"hardware.threads={threads}", f"job.input={source}"]
    common += [f"job.max_tokens={MAX_TOKENS}", "job.temperature=0", f"domain.system_prompt={SYSTEM}"]
    variants = {
        "llamacpp": ["backend=llamacpp", f"backend.n_seq={N_SEQ}", "backend.n_ctx=512", f"job.batch_size={n}"],
        "huggingface": ["backend=huggingface", f"job.batch_size={HF_BATCH}"],
    }
    configs = {k: [compose([*common, *v], work / f"{k}{i}") for i in range(reps)] for k, v in variants.items()}
    backends = {k: build_backend(compose([*common, *v], work / f"probe-{k}")) for k, v in variants.items()}
    for backend in backends.values():
        backend.load()  # loads (and for transformers converts) once, outside the timing; runs reuse the model
    settings = Settings.from_config(configs["llamacpp"][0].job, configs["llamacpp"][0].domain)
    requests = [settings.request(prompt=p) for p in make_prompts(n)]
    gguf = backends["llamacpp"].weight_plan().path  # the file the backend runs (auto: the Q4_0 copy)
    # flash attention on, as llama.cpp's "auto" (the backend's setting) picks on a CPU
    llama = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=512, n_threads=threads, n_threads_batch=threads, flash_attn=True, verbose=False
    )
    loop_n = n // 4  # one prompt at a time on the first quarter (the same length mix), compared by rate
    answers: dict[str, list[str]] = {}
    tokens: dict[str, int] = {}

    def adam_job(kind: str) -> None:
        summary = adam_run(configs[kind].pop(0))
        assert summary.stats.ok == n, summary
        rows = [json.loads(line) for line in (summary.run_dir / "results.jsonl").read_text().splitlines()]
        by_id = {r["id"]: r["text"] for r in rows}
        answers[kind] = [by_id[f"p{i}"] for i in range(n)]
        tokens[kind] = summary.stats.tokens
        shutil.rmtree(summary.run_dir)

    def loop() -> None:
        texts, total = [], 0
        for request in requests[:loop_n]:
            out = llama.create_chat_completion(
                messages=[dict(m) for m in request.messages], max_tokens=MAX_TOKENS, temperature=0.0
            )
            texts.append(out["choices"][0]["message"]["content"] or "")
            total += out["usage"]["completion_tokens"]
        answers["loop"], tokens["loop"] = texts, total

    llama.create_chat_completion(messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0.0)
    times = interleave(
        {"llamacpp": lambda: adam_job("llamacpp"), "loop": loop, "huggingface": lambda: adam_job("huggingface")},
        reps=reps,
        warmup=0,
    )
    names = {
        "llamacpp": f"adam backend=llamacpp (n_seq {N_SEQ})",
        "loop": "llama-cpp-python loop, one prompt at a time",
        "huggingface": f"adam backend=huggingface (batch {HF_BATCH}, float32)",
    }
    for key, name in names.items():
        prompts = loop_n if key == "loop" else n
        sec.timings.append(
            Timing(name, times[key], tokens[key], "tok", note=f"{prompts} prompts, {tokens[key]} tokens")
        )
    sec.ratio("llamacpp / llama-cpp-python loop (by rate)", names["llamacpp"], names["loop"], 3.0)
    sec.ratio("llamacpp / huggingface backend", names["llamacpp"], names["huggingface"], 1.5)

    sec.lines.append(_phases(backends["llamacpp"], requests, threads))
    model = backends["llamacpp"]._gguf()
    params = int(llama_cpp.llama_model_n_params(model.ptr))
    weight_bytes = int(llama_cpp.llama_model_size(model.ptr))
    flops, bandwidth, bound_batched, bound_single = machine_bounds(params, weight_bytes)
    rate = sec.get(names["llamacpp"]).rate
    sec.lines.append(
        f"- Bound: {params / 1e6:.1f}M parameters in {weight_bytes / 2**20:.0f} MiB of "
        f"{backends['llamacpp'].weight_plan().weight_type} weights. Measured copy "
        f"bandwidth {bandwidth / 1e9:.1f} GB/s, so one sequence at a time is bounded near {bound_single:,.0f} tok/s "
        f"(weight bytes over bandwidth; the loop reaches {sec.get(names['loop']).rate / bound_single:.0%}); "
        f"measured float32 matmul {flops / 1e9:.0f} GFLOP/s bounds batched decode near {bound_batched:,.0f} tok/s "
        f"(2 FLOPs per parameter per token; llama.cpp reaches {rate / bound_batched:.0%}, with int8 dot products "
        "that are not float32 matmuls, so this bound is approximate)."
    )
    same = sum(a == b for a, b in zip(answers["llamacpp"], answers["loop"], strict=False))
    fresh = []
    for request in requests[:8]:  # untimed: each prompt from an empty cache, as the backend decodes it
        llama.reset()
        out = llama.create_chat_completion(
            messages=[dict(m) for m in request.messages], max_tokens=MAX_TOKENS, temperature=0.0
        )
        fresh.append(out["choices"][0]["message"]["content"] or "")
    exact = sum(a == b for a, b in zip(answers["llamacpp"], fresh, strict=False))
    sec.lines.append(
        f"- Answers: backend=llamacpp and the llama-cpp-python loop agree on {same} of {loop_n}. The loop reuses "
        "the KV cache of the previous prompt's common start (the system prompt), so it reads the rest of a prompt "
        "in other micro-batches than a fresh decode does, which moves the last bits of the numbers. With "
        f"`Llama.reset()` before each prompt they agree on {exact} of {len(fresh)}."
    )
    same = sum(a == b for a, b in zip(answers["llamacpp"], answers["huggingface"], strict=True))
    sec.lines.append(
        f"- Answers: llama.cpp (weight_type=auto) and transformers (the shipped Q4_1 dequantized to float32) agree on "
        f"{same} of {n} greedy answers."
    )
    for label, system in (("the template's default system prompt", None), (f'"{SYSTEM}"', SYSTEM)):
        messages = ({"role": "user", "content": CAPITAL},) if system is None else None
        asked = Settings(max_tokens=24).request(messages=messages, prompt=CAPITAL, system_prompt=system or "")
        said = {k: b.generate_one(asked).text.strip().replace("\n", " ") for k, b in backends.items()}
        sec.lines.append(
            f'- "{CAPITAL}" with {label}: llama.cpp answers "{said["llamacpp"]}"; '
            f'transformers answers "{said["huggingface"]}".'
        )
    for backend in backends.values():
        backend.close()
    llama.close()
    loaded_models.clear()


def _phases(backend: Any, requests: list[Any], threads: int) -> str:
    """Where backend=llamacpp's time goes (untimed runs): reading prompts, decoding many sequences, decoding one."""
    import time

    decoder = backend._batch_decoder()
    calls: list[tuple[bool, int, float]] = []  # (a prompt chunk, tokens, seconds) per llama_decode call

    def timed(batch: Any) -> None:
        start = time.perf_counter()
        type(decoder.ctx).decode(decoder.ctx, batch)
        calls.append((decoder._prompt_turn, batch.n_tokens, time.perf_counter() - start))

    decoder.ctx.decode = timed  # on this instance only
    try:
        backend.generate(requests)
        together = list(calls)
        calls.clear()
        for request in requests[:4]:
            backend.generate_one(request)
        alone = [c for c in calls if not c[0]]
    finally:
        del decoder.ctx.decode

    def rate(rows: list[tuple[bool, int, float]]) -> float:
        return sum(n for _, n, _ in rows) / sum(t for _, _, t in rows)

    prompts = [c for c in together if c[0]]
    steps = [c for c in together if not c[0]]
    seconds = sum(t for _, _, t in together)
    return (
        f"- Where backend=llamacpp's time goes ({threads} threads, one untimed run, each llama_decode call timed): "
        f"reading prompts {rate(prompts):,.0f} tok/s ({sum(t for _, _, t in prompts) / seconds:.0%} of the time), "
        f"decode steps {rate(steps):,.0f} tok/s with {sum(n for _, n, _ in steps) / len(steps):.1f} sequences a "
        f"step on average, one sequence alone {rate(alone):,.0f} tok/s (first 4 prompts): batching multiplies "
        f"decode by {rate(steps) / rate(alone):.2f}x."
    )


def _embeddings(sec: Section, work: Path, n: int, threads: int) -> None:
    """job=embed on MiniLM: backend=llamacpp on its BERT GGUF against backend=huggingface, interleaved."""
    from adam.backends.hf_loading import resolve_source
    from adam.backends.loaded_models import loaded_models
    from adam.run.runner import run as adam_run
    from adam.settings.config import SizeSpec, to_spec

    spec = importlib.util.spec_from_file_location("adam_bert_gguf", ROOT / "tests" / "bert_gguf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = resolve_source(to_spec(SizeSpec, compose(["size=minilm"], work / "probe-minilm").size), download=False)
    gguf = module.write_bert_gguf(folder.path, work / "minilm.gguf")
    source = write_input(make_texts(n), work / "texts.jsonl")
    common = ["job=embed", "size=minilm", "hardware=cpu", f"hardware.threads={threads}", f"job.input={source}"]
    variants = {
        "llamacpp": [*common, "backend=llamacpp", f"size.path={gguf}", "size.package=null", "backend.n_seq=32",
                     "backend.n_batch=2048", "job.batch_size=32"],
        "huggingface": [*common, "backend=huggingface", "job.batch_size=32"],
    }  # fmt: skip

    def job(kind: str) -> None:
        run_dir = work / f"{kind}-embed"
        shutil.rmtree(run_dir, ignore_errors=True)
        summary = adam_run(compose(variants[kind], run_dir))
        assert summary.stats.ok == n, summary

    times = interleave({k: (lambda k=k: job(k)) for k in variants}, reps=2, warmup=1)
    names = {
        "llamacpp": "job=embed, backend=llamacpp (MiniLM as a float32 BERT GGUF, n_seq 32)",
        "huggingface": "job=embed, backend=huggingface (MiniLM, float32, batch 32)",
    }
    for key, name in names.items():
        sec.timings.append(Timing(name, times[key], n, "texts", note=f"{n} mixed-length texts"))
    sec.ratio("embeddings: llamacpp / huggingface", names["llamacpp"], names["huggingface"], None)
    cosine = _min_cosine(
        work / "llamacpp-embed" / "embeddings.parquet", work / "huggingface-embed" / "embeddings.parquet"
    )
    sec.lines.append(f"- Embeddings: the lowest cosine between the two backends' vectors for a text is {cosine:.6f}.")
    loaded_models.clear()
