"""The files of a transformers model directory as the GGUF writer reads them: JSON objects and safetensors shards.

Every problem is one SharedStoreError that names the file, so job=share says what is missing or broken.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adam.sharing import SharedStoreError


def read_json(path: Path, *, what: str) -> dict[str, Any]:
    """A JSON object from disk, or one clear error naming the file."""
    if not path.is_file():
        raise SharedStoreError(f"{path.parent} is not {what}: {path.name} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SharedStoreError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise SharedStoreError(f"{path} does not hold a JSON object")
    return data


def weight_files(hf_dir: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (sharded or not)."""
    from safetensors import safe_open

    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index, what="a sharded safetensors checkpoint").get("weight_map") or {}
        return {name: hf_dir / file for name, file in weight_map.items()}
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise SharedStoreError(f"no safetensors weights in {hf_dir} (adam does not convert pytorch_model.bin)")
    found: dict[str, Path] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            found.update(dict.fromkeys(f.keys(), path))
    return found
