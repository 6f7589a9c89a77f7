"""Qwen3: thinking on and off, the thinking kept apart from the answer, token counts and context length.

    python examples/qwen3_example.py                                  # Qwen/Qwen3-0.6B (downloaded on first use)
    python examples/qwen3_example.py --size qwen3_4b_thinking_2507    # a Qwen3 that always thinks
    python examples/qwen3_example.py --path ~/models/Qwen3-0.6B       # a local copy (any Qwen3 directory)

A size says how it thinks (size.thinking): switch (the original Qwen3: job.thinking turns it on),
always (the Thinking-2507 models) or none (the Instruct-2507 models). The batch twin, with the
thinking text in its own "thinking" field of results.jsonl:

    python -m adam --config-dir jobs/examples --config-name qwen3_example
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adam import ModelManager
from adam.errors import AdamError

INPUT = Path(__file__).resolve().parents[1] / "jobs" / "examples" / "qwen3_example.jsonl"


def main(argv: list[str] | None = None) -> None:
    """Answer each prompt in every thinking mode the size has."""
    parser = argparse.ArgumentParser(description="Qwen3 thinking modes with ModelManager.")
    parser.add_argument("--size", default="qwen3_small", help="a Qwen3 size from conf/size")
    parser.add_argument("--path", default=None, help="a local Qwen3 model directory instead of --size")
    parser.add_argument("--backend", default="huggingface", help="huggingface | ollama")
    parser.add_argument("--input", type=Path, default=INPUT, help="JSONL with id and prompt")
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args(argv)

    size, overrides = args.size, []
    if args.path:  # size=local knows nothing about the model: say it is a hybrid Qwen3
        size, overrides = "local", [f"size.path={args.path}", "size.thinking=switch"]
    with ModelManager(model_type=args.backend, model_size=size, overrides=overrides) as manager:
        spec = manager.config.size
        modes = {"switch": (False, True), "always": (True,), "none": (False,)}[str(spec.thinking)]
        long = f", {spec.long_context_length:,} with size.long_context=true" if spec.long_context_length else ""
        print(f"{spec.name}: thinking={spec.thinking}, context {spec.context_length:,} tokens{long}")
        for line in args.input.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            print(f"[{record['id']}] {record['prompt']} ({manager.count_tokens(record['prompt'])} tokens)")
            for thinking in modes:
                gen = manager.generate(record["prompt"], thinking=thinking, max_tokens=args.max_tokens, temperature=0)
                print(f"  thinking={thinking}: {gen.completion_tokens} tokens, finish {gen.finish_reason}")
                if gen.thinking:
                    print(f"    thought: {gen.thinking.strip()[:200]}")
                print(f"    answer: {gen.text.strip()[:200]}")


if __name__ == "__main__":
    try:
        main()
    except AdamError as err:  # what is missing, in one line, instead of a traceback
        sys.exit(f"{Path(__file__).name}: {err} (or pass --path DIR: a local Qwen3)")
