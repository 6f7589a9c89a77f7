"""Model sharing: HuggingFace weights written once as a GGUF into adam's shared store, registered with
an Ollama server, and then answered by that server under the shared name.

    python examples/model_sharing_example.py                        # Ollama at $OLLAMA_HOST, else 127.0.0.1:11434
    python examples/model_sharing_example.py --host http://gpu-box:11434
    python examples/model_sharing_example.py --no-register          # only write the GGUF into the store

Sharing the same weights again does no work (the store is keyed by a hash of the source files). The
same as a job, with shared_model.json in the run dir:

    python -m adam --config-dir jobs/examples --config-name model_sharing_example
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adam import ModelManager
from adam.errors import AdamError


def main(argv: list[str] | None = None) -> None:
    """Share the size's weights, then (when registered) ask the Ollama server a question with them."""
    parser = argparse.ArgumentParser(description="Share a HuggingFace model with Ollama.")
    parser.add_argument("--size", default="demo", help="a size from conf/size with HuggingFace weights")
    parser.add_argument("--host", default=None, help="the Ollama server; default $OLLAMA_HOST, then 127.0.0.1:11434")
    parser.add_argument("--name", default=None, help="the name in Ollama; default the size's ollama_tag")
    parser.add_argument("--no-register", dest="register", action="store_false", help="write the GGUF only")
    args = parser.parse_args(argv)

    overrides = [f"share.register={str(args.register).lower()}"]
    overrides += [f"share.ollama.host={args.host}"] if args.host else []
    overrides += [f"share.ollama_model={args.name}"] if args.name else []
    with ModelManager(
        model_type="huggingface", model_size=args.size, share_with_ollama=True, overrides=overrides
    ) as hf:
        shared = hf.shared or {}
        print(f"GGUF: {shared['gguf']}")
        print(f"sha256: {shared['sha256']}")
        if not args.register:
            return
        name = shared["ollama_model"]
        print(f"Ollama model: {name} on {shared['host']}")

    # The Ollama backend finds the model the share created; pull=never proves nothing is downloaded.
    ollama_overrides = [f"size.ollama_tag={name}", "backend.pull=never"]
    ollama_overrides += [f"backend.host={args.host}"] if args.host else []
    with ModelManager(model_type="ollama", model_size=args.size, overrides=ollama_overrides) as ollama:
        answer = ollama.generate_response("What is the capital of France?", max_tokens=20, temperature=0)
        print(f"Ollama says: {answer.strip()}")


if __name__ == "__main__":
    try:
        main()
    except AdamError as err:  # what is missing, in one line, instead of a traceback
        sys.exit(f"{Path(__file__).name}: {err} (start `ollama serve`, pass --host URL, or --no-register)")
