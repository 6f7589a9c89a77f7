"""The runs under a runs dir, for the web page: run dirs and sweep dirs found by walking it, and their files.

A run is named by its path under the runs dir ("generate/2025-01-01_10-00-00.000000",
"multirun/<time>/0"). Every name is checked before it touches the disk: no absolute paths, no
``..``. One rule then covers every read under the runs dir, by every route (the runs list, a summary,
results, errors, a report): the path, symlinks resolved, must stay inside it (``RunsBrowser.inside``).
A dir whose manifest.json leads out is not a run, a report that leads out is not there. Only the
files a run writes are served, by their fixed names, never a name taken from the request.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adam.io.writers import ERRORS_NAME, RESULTS_NAME
from adam.run.manifest import MANIFEST_NAME
from adam.server.errors import ApiError
from adam.server.jsonl_pages import JsonlPages

MAX_DEPTH = 6  # outputs/serve/batches/<id>/run is 4 deep
MAX_DIRS = 20_000  # the walk stops here: a runs dir pointed at / must not hang the page
REPORT_FILES = {"csv": "report.csv", "md": "report.md", "png": "report.png"}
SWEEP_MARKERS = ("report.csv", "report.md", "multirun.yaml")
RUN_FILES = {"results": RESULTS_NAME, "errors": ERRORS_NAME, "manifest": MANIFEST_NAME, **REPORT_FILES}


@dataclass
class Found:
    """What a walk of the runs dir found: run dirs (with their manifest) and sweep dirs."""

    runs: dict[Path, Path]
    sweeps: list[Path]
    truncated: bool


class RunsBrowser:
    """Reads the run dirs and sweep dirs under ``root``; never writes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.real_root = self.root.resolve()  # symlinks resolved: every path served must lie under it
        self.pages = JsonlPages()  # the line indexes of the results and errors files opened so far

    def inside(self, path: Path) -> Path | None:
        """``path`` with symlinks resolved, if it stays inside the runs dir; None if it leads out (or loops).

        The one rule for every read under the runs dir: nothing is opened, listed or tested for
        existence there but through it.
        """
        try:
            real = os.path.realpath(path)  # os.path, not pathlib: a walk of the runs dir asks this of every dir
        except (OSError, ValueError):
            return None
        root = str(self.real_root)
        return Path(real) if real == root or real.startswith(root.rstrip(os.sep) + os.sep) else None

    def run_file(self, run_dir: Path, file_name: str) -> Path | None:
        """A file of a run or sweep dir, if it is a file inside the runs dir."""
        path = self.inside(run_dir / file_name)
        return path if path is not None and path.is_file() else None

    def is_run(self, path: Path) -> bool:
        """Whether ``path`` is a run dir: it has a manifest, inside the runs dir."""
        return self.run_file(path, MANIFEST_NAME) is not None

    def is_sweep(self, path: Path) -> bool:
        """Whether ``path`` is a multirun's sweep dir: a report, or Hydra's multirun.yaml, inside the runs dir."""
        return any(self.run_file(path, marker) is not None for marker in SWEEP_MARKERS)

    def run_name(self, path: Path) -> str | None:
        """The name of the run dir at ``path`` (followed through symlinks), if it is one inside the runs dir."""
        real = self.inside(path)
        return self.name_of(real) if real is not None and real != self.real_root and self.is_run(real) else None

    def runs(self) -> dict[str, Any]:
        """Every run and sweep under the runs dir, newest first."""
        root = self.real_root
        found = self.walk(root)
        sweeps = {self.name_of(p): self.sweep_summary(p) for p in found.sweeps}
        runs = []
        for path, manifest in found.runs.items():
            name = self.name_of(path)
            parent = self.name_of(path.parent) if path.parent != root else None
            summary = self.run_summary(path, manifest)
            runs.append({"id": name, "sweep": parent if parent in sweeps else None, **summary})
        for name, sweep in sweeps.items():
            children = [r for r in runs if r["sweep"] == name]
            sweep.update(id=name, runs=[r["id"] for r in children])
            starts = [r["started"] for r in children if r.get("started")]
            if starts:  # the dir's own time is when its report was written
                sweep["started"] = min(starts)
        runs.sort(key=lambda r: (r.get("started") or "", r["id"]), reverse=True)
        listed = sorted(sweeps.values(), key=lambda s: (s.get("started") or "", s["id"]), reverse=True)
        return {"root": str(self.root), "runs": runs, "sweeps": listed, "truncated": found.truncated}

    def name_of(self, path: Path) -> str:
        """A path under the runs dir as the page names it."""
        return path.relative_to(self.real_root).as_posix()

    def resolve(self, name: str) -> Path:
        """The run or sweep dir called ``name``; 400 for a malformed name, 404 for one not under the runs dir."""
        check_name(name)
        path = self.inside(self.real_root / name)
        if path is None or path == self.real_root or not path.is_dir():
            raise ApiError(404, f"no run '{name}' under the runs dir", code="not_found")
        if not self.is_run(path) and not self.is_sweep(path):
            raise ApiError(404, f"'{name}' is not a run dir (no {MANIFEST_NAME}) or a sweep dir", code="not_found")
        return path

    def file(self, name: str, kind: str) -> Path | None:
        """One of the run's own files (``kind`` a key of RUN_FILES): None when it has none, 404 when it leads out."""
        run = self.resolve(name)
        path = self.inside(run / RUN_FILES[kind])
        if path is None:
            raise ApiError(404, f"the run's {RUN_FILES[kind]} is outside the runs dir", code="not_found")
        return path if path.is_file() else None

    def summary(self, name: str) -> dict[str, Any]:
        """The run's manifest, in full and summed up, and which of its files exist."""
        path = self.resolve(name)
        manifest = self.file(name, "manifest")
        doc = read_json(manifest) if manifest is not None else None
        files = {kind: self._size(path, kind) for kind in RUN_FILES}
        sweep = path.parent if path.parent != self.real_root and self.is_sweep(path.parent) else None
        return {
            "id": name,
            "sweep": self.name_of(sweep) if sweep is not None else None,
            "kind": "run" if self.is_run(path) else "sweep",
            **(self.run_summary(path) if self.is_run(path) else self.sweep_summary(path)),
            "files": {kind: size for kind, size in files.items() if size is not None},
            "manifest": doc,
        }

    def report(self, name: str) -> dict[str, Any]:
        """A sweep's report: report.csv's rows, report.md's text, whether report.png exists, the jobs' run names."""
        path = self.resolve(name)
        csv_path, md_path, png = (self.file(name, kind) for kind in ("csv", "md", "png"))
        if csv_path is None and md_path is None and png is None:
            raise ApiError(404, f"'{name}' has no sweep report (report.csv, report.md, report.png)", code="not_found")
        rows: list[dict[str, Any]] = []
        if csv_path is not None:
            with csv_path.open(newline="", encoding="utf-8", errors="replace") as fh:
                rows = list(csv.DictReader(fh))
        for row in rows:
            job = path / str(row.get("job") or "")
            row["run"] = self.run_name(job) if row.get("job") and job.parent == path else None
        return {
            "id": name,
            "rows": rows,
            "markdown": md_path.read_text("utf-8", errors="replace") if md_path is not None else None,
            "chart": png is not None,
        }

    def run_summary(self, path: Path, manifest: Path | None = None) -> dict[str, Any]:
        """What the runs list shows of a run: job, status, model, times and counts, from its manifest (found
        already by the one rule, or looked up through it)."""
        manifest = manifest or self.run_file(path, MANIFEST_NAME)
        doc = (read_json(manifest) if manifest is not None else None) or {
            "status": "unknown",
            "error": f"unreadable {MANIFEST_NAME}",
        }
        size = _dict(_dict(doc.get("config")).get("size"))
        backend = _dict(doc.get("backend"))
        return {
            "kind": "run",
            "job": doc.get("job"),
            "status": doc.get("status"),
            "model": backend.get("model") or size.get("hf_id") or size.get("name"),
            "backend": backend.get("backend"),
            "started": doc.get("started"),
            "finished": doc.get("finished"),
            "wall_time_s": doc.get("wall_time_s"),
            "counts": _dict(doc.get("counts")),
            "error": doc.get("error"),
        }

    def sweep_summary(self, path: Path) -> dict[str, Any]:
        """What the runs list shows of a sweep: when it ran (its dir's time) and whether it has a report."""
        started = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
        report = any(self.run_file(path, f) is not None for f in REPORT_FILES.values())
        return {"kind": "sweep", "started": started, "report": report}

    def walk(self, root: Path) -> Found:
        """Run dirs and sweep dirs under ``root``, without following symlinks or entering hidden dirs."""
        found = Found({}, [], truncated=False)
        stack: list[tuple[Path, int]] = [(root, 0)]
        seen = 0
        while stack:
            path, depth = stack.pop()
            seen += 1
            if seen > MAX_DIRS:
                found.truncated = True
                break
            manifest = self.run_file(path, MANIFEST_NAME) if path != root else None
            if manifest is not None:
                found.runs[path] = manifest
                continue  # a run dir's subdirs (.hydra) are its own
            if path != root and self.is_sweep(path):
                found.sweeps.append(path)
            if depth >= MAX_DEPTH:
                continue
            try:
                with os.scandir(path) as entries:
                    subdirs = [
                        e.path for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
                    ]
            except OSError:
                continue
            stack.extend((Path(p), depth + 1) for p in sorted(subdirs, reverse=True))
        return found

    def _size(self, run_dir: Path, kind: str) -> int | None:
        path = self.run_file(run_dir, RUN_FILES[kind])
        return path.stat().st_size if path is not None else None


MAX_NAME = 1024  # characters in a run name; a segment longer than a file name can be (255 bytes) is no run either


def check_name(name: str) -> None:
    """Refuse a run name that is absolute, climbs with ``..``, is not plain path segments, or is too long to be a
    path (the file system's ENAMETOOLONG would otherwise be a 500)."""
    bad = (
        not name
        or len(name) > MAX_NAME
        or any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in name.split("/"))
        or name.startswith(("/", "~"))
        or "\\" in name
        or "\x00" in name
        or ":" in name.split("/", 1)[0]  # C:, a URL scheme
        or any(part in ("", ".", "..") for part in name.split("/"))
    )
    if bad:
        raise ApiError(
            400, f"invalid run name '{name[:200]}': a relative path under the runs dir, without '..', of short names"
        )


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file; None when it is unreadable or not an object (a manifest being rewritten)."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
