"""Hugging Face datasets as inputs: a directory saved with ``save_to_disk``, or ``hf://datasets/<name>``.

The ``datasets`` library is imported only here and only when such an input is read (the `datasets`
extra). A dataset is memory-mapped Arrow, handed to the reader batch by batch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from adam.errors import InputError, install_hint

HUB_PREFIX = "hf://datasets/"
_SAVED_DATASET = ("dataset_info.json", "state.json")  # what save_to_disk writes for one Dataset
_SAVED_DICT = "dataset_dict.json"  # ... and for a DatasetDict, beside one folder per split
_TRUE = frozenset({"1", "true", "yes", "on"})


def is_hub_source(source: str) -> bool:
    """Whether job.input names a dataset on the Hugging Face hub."""
    return source.startswith(HUB_PREFIX)


def is_saved_dataset(path: Path) -> bool:
    """Whether a directory is a dataset written by ``save_to_disk`` (one Dataset or a DatasetDict)."""
    return (path / _SAVED_DICT).is_file() or all((path / name).is_file() for name in _SAVED_DATASET)


def load_saved(path: Path, split: str | None) -> Any:
    """The dataset saved at ``path`` (the ``split`` of a DatasetDict)."""
    datasets = _datasets(str(path))
    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the saved dataset {path}: {_first_line(err)}") from err
    return _one_split(loaded, split, str(path))


def load_hub(source: str, split: str | None, subset: str | None) -> Any:
    """``hf://datasets/<name>`` through datasets.load_dataset (its cache; offline, only the cache)."""
    name = source[len(HUB_PREFIX) :].strip("/")
    if not name:
        raise InputError(f"{source} names no dataset: write hf://datasets/<owner>/<name>")
    datasets = _datasets(source)
    try:
        loaded = datasets.load_dataset(name, subset, split=split)
    except Exception as err:  # datasets raises many kinds (ConnectionError, DatasetNotFoundError, ValueError, ...)
        if hub_offline():
            raise InputError(
                f"{source} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: load it once where there is "
                "network, or give a directory written by save_to_disk"
            ) from err
        raise InputError(f"cannot load {source}: {_first_line(err)}") from err
    return _one_split(loaded, split, source)


def hub_sha256(source: str, split: str | None, subset: str | None, dataset: Any) -> str:
    """A hash naming exactly what a hub dataset input holds: its name, subset, split and content fingerprint."""
    fingerprint = str(getattr(dataset, "_fingerprint", "") or "")
    return hashlib.sha256(f"{source}\0{subset or ''}\0{split or ''}\0{fingerprint}".encode()).hexdigest()


def arrow_batches(dataset: Any, *, batch_rows: int) -> Any:
    """The dataset's rows as Arrow tables of at most ``batch_rows`` rows."""
    return dataset.with_format("arrow").iter(batch_size=batch_rows)


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) forbids going to the hub."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _one_split(loaded: Any, split: str | None, where: str) -> Any:
    """A Dataset from what datasets returned: one split of a DatasetDict (job.split, or its only one)."""
    if not hasattr(loaded, "keys"):  # already one Dataset
        return loaded
    names = list(loaded.keys())
    if split is None:
        if len(names) == 1:
            return loaded[names[0]]
        raise InputError(f"{where} has the splits {', '.join(names)}: pick one with job.split=")
    if split not in loaded:
        raise InputError(f"{where} has no split {split!r}: it has {', '.join(names)}")
    return loaded[split]


def _datasets(where: str) -> Any:
    try:
        import datasets
    except ImportError as err:
        raise InputError(
            f"{where} is a Hugging Face dataset, which needs the datasets library: {install_hint('datasets')}"
        ) from err
    return datasets


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
