"""Basic usage: a ModelManager answers the prompts of jobs/examples/basic_usage.jsonl, one at a time.

    python examples/basic_usage.py                       # the bundled demo model (SmolLM2-135M), offline
    python examples/basic_usage.py --size qwen3_small    # any size in conf/size (downloaded on first use)
    python examples/basic_usage.py --backend ollama --size qwen3_small

The same prompts as a batch job, with results.jsonl, errors.jsonl and manifest.json in outputs/:

    python -m adam --config-dir jobs/examples --config-name basic_usage
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adam import ModelManager
from adam.errors import AdamError

INPUT = Path(__file__).resolve().parents[1] / "jobs" / "examples" / "basic_usage.jsonl"


def main(argv: list[str] | None = None) -> None:
    """Load the model once, then answer each prompt greedily."""
    parser = argparse.ArgumentParser(description="Answer a few prompts with ModelManager.")
    parser.add_argument("--backend", default="huggingface", help="huggingface | ollama | echo")
    parser.add_argument("--size", default="demo", help="a size from conf/size")
    parser.add_argument("--input", type=Path, default=INPUT, help="JSONL with id and prompt")
    args = parser.parse_args(argv)

    with ModelManager(model_type=args.backend, model_size=args.size, domain="general") as manager:
        print(f"model: {manager.get_model_info()['model']} ({args.backend})")
        for line in args.input.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            answer = manager.generate_response(record["prompt"], max_tokens=record.get("max_tokens", 40), temperature=0)
            print(f"[{record['id']}] {record['prompt']}\n  -> {answer.strip()}")


if __name__ == "__main__":
    try:
        main()
    except AdamError as err:  # what is missing, in one line, instead of a traceback
        sys.exit(f"{Path(__file__).name}: {err} (`make run` installs the bundled demo model)")
