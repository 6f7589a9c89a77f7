"""Embeddings: embed a few documents with the bundled MiniLM model and rank them against queries.

    python examples/embedding_example.py                                   # all-MiniLM-L6-v2, offline
    python examples/embedding_example.py "how do plants make food?"        # your own query
    python examples/embedding_example.py --size qwen3_embedding_0_6b       # queries get Qwen3's instruction

Vectors are L2-normalised, so a dot product is the cosine similarity. The same documents as a batch
job, with results.jsonl and embeddings.parquet in outputs/ (add job.store=docs.db to embed only what
changed on the next run, then job=search to query the store):

    python -m adam --config-dir jobs/examples --config-name embedding_example
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adam import ModelManager
from adam.errors import AdamError

INPUT = Path(__file__).resolve().parents[1] / "jobs" / "examples" / "embedding_example.jsonl"
QUERIES = ("Which animal sleeps in the sun?", "What happened to interest rates?")
TASK = "Given a question, find the passages that answer it"  # used by sizes with a query instruction


def main(argv: list[str] | None = None) -> None:
    """Embed the documents once, then print the best matches of each query."""
    parser = argparse.ArgumentParser(description="Rank documents by embedding similarity.")
    parser.add_argument("queries", nargs="*", default=list(QUERIES))
    parser.add_argument("--backend", default="huggingface", help="huggingface | ollama | echo")
    parser.add_argument("--size", default="minilm", help="an embedding size from conf/size")
    parser.add_argument("--input", type=Path, default=INPUT, help="JSONL with id and text")
    parser.add_argument("--top", type=int, default=2)
    args = parser.parse_args(argv)

    docs = [json.loads(line) for line in args.input.read_text(encoding="utf-8").splitlines()]
    with ModelManager(model_type=args.backend, model_size=args.size) as manager:
        vectors = manager.batch_embed([d["text"] for d in docs])
        print(f"{len(vectors)} documents, {len(vectors[0])} dimensions")
        for query in args.queries:
            q = manager.embed(query, query_task=TASK if manager.config.size.query_instruction else None)
            scores = [(sum(a * b for a, b in zip(q, v, strict=True)), d) for v, d in zip(vectors, docs, strict=True)]
            scores.sort(key=lambda s: -s[0])
            print(f"query: {query}")
            for score, doc in scores[: args.top]:
                print(f"  {score:.3f}  [{doc['id']}] {doc['text']}")


if __name__ == "__main__":
    try:
        main()
    except AdamError as err:  # what is missing, in one line, instead of a traceback
        sys.exit(f"{Path(__file__).name}: {err} (`make run` installs the bundled MiniLM)")
