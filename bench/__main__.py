"""python -m bench [NAME ...] [--quick] [--out FILE]: run the benchmarks and print their Markdown tables."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

BENCHES = {
    "startup": "`python -m adam --help` and `--cfg job`: time and imports",
    "runner": "backend=echo over 200,000 records, end to end",
    "ollama": "a local Ollama-protocol server with 50 ms per request: concurrency 8 vs 1, embed batching",
    "openai": "backend=openai on a local OpenAI-protocol server with 50 ms per request: concurrency 8 vs 1",
    "embed": "job=embed size=minilm vs sentence-transformers encode and a one-by-one loop",
    "onnx": "job=embed size=minilm backend.runtime=onnx, float32 and int8, vs a sentence-transformers script",
    "generate": "transformers generation: adam vs per-prompt and plain batch-32 loops",
    "llamacpp": "backend=llamacpp on the demo GGUF vs a llama-cpp-python loop and the HF backend",
    "weights": "backend.weight_type=auto vs the demo's Q4_1, llama-batched-bench, a 0.5B random Qwen3 on both backends",
    "prefix": "llama.cpp shared prefixes: system prompt KV cells copied (seq_cp) vs read per sequence; exactness",
    "shard": "2 shards on the joblib launcher (1 thread each) + job=merge vs 1 process with 2 threads: echo, MiniLM",
    "serve": "job=serve on the demo model: concurrent requests micro-batched vs one at a time",
    "scheduler": "32 streamed chats at once (TTFT, chunks), a chat beside a 2,000-line batch, job throughput",
    "structured": "a batch constrained to a JSON schema vs the same batch free, both in-process backends, demo",
}


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (all by default), print Markdown, optionally write it to --out."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="adam's benchmarks; results as Markdown (see bench/RESULTS.md).",
        epilog="\n".join(f"  {k:9} {v}" for k, v in BENCHES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", choices=[[], *BENCHES], metavar="NAME", help="benchmarks to run")
    parser.add_argument("--quick", action="store_true", help="fewer inputs and repetitions (a smoke run)")
    parser.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    from bench.common import machine, peak_rss_mb, setup_env

    setup_env()
    names = args.names or list(BENCHES)
    parts = ["# adam benchmarks", "", *machine(), ""]
    print("\n".join(parts), flush=True)
    for name in names:
        started = time.perf_counter()
        section = importlib.import_module(f"bench.{name}").run(quick=args.quick)
        text = section.markdown()
        text += f"\n_{name}: {time.perf_counter() - started:.0f} s; peak RSS of the bench process so far "
        text += f"{peak_rss_mb():.0f} MB._\n"
        parts.append(text)
        print(text, flush=True)
    if args.out:
        args.out.write_text("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
