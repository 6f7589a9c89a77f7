"""The check every embedding passes before it is written: finite values, and one width for the whole run.

The width is the model's (adam/engine/core.py: declared by the backend, or probed once), fixed
before the first vector is judged, so an outlier can never set it. A vector that fails becomes its
record's error line (code ``invalid_output``) instead of a NaN in results.jsonl or a Parquet file
whose rows have different widths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class VectorCheck:
    """Knows the run's vector width (recorded by an earlier attempt or a store, or the model's: ``fix``)."""

    def __init__(self, width: int | None = None, *, on_width: Callable[[int], None] | None = None) -> None:
        self.width = width
        self._on_width = on_width  # told the width once it is known, to record it (the manifest)
        if width is not None and on_width is not None:
            on_width(width)

    def fix(self, width: int) -> None:
        """Set the width every vector must have (before the first is judged) and record it."""
        self.width = int(width)
        if self._on_width is not None:
            self._on_width(self.width)

    def problem(self, vector: Any) -> str | None:
        """Why ``vector`` must not be written, in one line; None when it is fine."""
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # as Parquet stores it: a float64 too big becomes inf
                arr = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            return "the backend returned a vector that is not a list of numbers: check the backend and model"
        if arr.ndim != 1 or arr.size == 0:
            return f"the backend returned an array of shape {arr.shape}, not one vector: check the backend and model"
        finite = np.isfinite(arr)
        if not finite.all():
            index = int(np.argmin(finite))
            return (
                f"the backend returned a vector holding {arr[index]} (at index {index}), which JSON and Parquet "
                "cannot hold: check the model (a float16 model can overflow; try hardware.dtype=float32)"
            )
        if self.width is None:  # only a check nobody fixed (a lone probe): its first vector says
            self.fix(int(arr.size))
        elif arr.size != self.width:
            return (
                f"the backend returned a {arr.size}-wide vector, but this run's vectors are {self.width}-wide: "
                "check backend.dimensions and size.dimensions"
            )
        return None
