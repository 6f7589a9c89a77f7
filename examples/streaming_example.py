"""Streaming: the answer printed piece by piece as the model writes it, with ModelManager.generate_stream.

    python examples/streaming_example.py                       # the bundled demo model, offline
    python examples/streaming_example.py --size qwen3_small --max-tokens 200

The joined pieces are exactly what generate_response would return. The batch twin of this example
(no streaming there: each batch's results are appended to results.jsonl as it finishes):

    python -m adam --config-dir jobs/examples --config-name streaming_example
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adam import ModelManager
from adam.errors import AdamError

INPUT = Path(__file__).resolve().parents[1] / "jobs" / "examples" / "streaming_example.jsonl"


def main(argv: list[str] | None = None) -> None:
    """Stream one answer per prompt to stdout."""
    parser = argparse.ArgumentParser(description="Stream answers with ModelManager.generate_stream.")
    parser.add_argument("--backend", default="huggingface", help="huggingface | ollama | echo")
    parser.add_argument("--size", default="demo", help="a size from conf/size")
    parser.add_argument("--input", type=Path, default=INPUT, help="JSONL with id and prompt")
    parser.add_argument("--max-tokens", type=int, default=60)
    args = parser.parse_args(argv)

    with ModelManager(model_type=args.backend, model_size=args.size) as manager:
        for line in args.input.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            print(f"[{record['id']}] ", end="", flush=True)
            pieces = 0
            for piece in manager.generate_stream(record["prompt"], max_tokens=args.max_tokens, temperature=0):
                sys.stdout.write(piece)
                sys.stdout.flush()
                pieces += 1
            print(f"\n  ({pieces} pieces)")


if __name__ == "__main__":
    try:
        main()
    except AdamError as err:  # what is missing, in one line, instead of a traceback
        sys.exit(f"{Path(__file__).name}: {err} (`make run` installs the bundled demo model)")
