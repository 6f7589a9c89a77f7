"""What a job gets from the runner: its settings, the backend, and where to write."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adam.backends.base import ModelBackend
from adam.io.readers import RecordReader
from adam.io.writers import RunWriter
from adam.jobs.batching import Progress


@dataclass
class JobContext:
    """A job's inputs; a job never knows which backend it drives."""

    job: Any  # the job config node
    domain: Any  # the domain config node
    share: Any  # the share config node (model sharing settings)
    backend: ModelBackend
    run_dir: Path
    writer: RunWriter
    reader: RecordReader | None = None
    info: dict[str, Any] = field(default_factory=dict)  # backend.info(), taken once

    @property
    def model_name(self) -> str:
        """The model name written into results."""
        return str(self.info.get("model") or self.backend.size.name)

    def records(self, kind: Literal["generate", "embed"]) -> RecordReader:
        """The reader over job.input; kept so the manifest can record the input's hash."""
        self.reader = RecordReader(self.job.input, kind, id_field=self.job.id_field, text_field=self.job.text_field)
        return self.reader

    def progress(self, desc: str) -> Progress:
        """A progress bar sized to the input where that is cheap to know."""
        total = self.reader.count_hint() if self.reader is not None else None
        return Progress(total, enabled=bool(self.job.progress), desc=desc)
