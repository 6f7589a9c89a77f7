"""Run dirs made before the package layout changed (tests/data/run_before_house) still resume and merge.

The data was written by adam's own code before the modules at adam/'s root moved into packages: a generate
run stopped after 2 backend failures in a row (5 results, 4 errors, 3 records left), and a multirun of two
shards. Absolute paths in it read @RUNS@ (the folder holding them) and @REPO@; the test puts them back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import compose_cfg, read_jsonl
from hydra.utils import get_class
from omegaconf import OmegaConf

from adam.errors import ExitCode

OLD = Path(__file__).parent / "data" / "run_before_house"
ECHO = ("backend=echo", "job.progress=false")


@pytest.fixture
def old_runs(tmp_path: Path) -> Path:
    """A copy of the old run dirs, their recorded paths pointing at the copy."""
    root = tmp_path / "runs"
    shutil.copytree(OLD, root)
    for path in root.rglob("*"):
        if path.suffix in {".json", ".yaml", ".jsonl"}:
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace("@RUNS@", str(root)).replace("@REPO@", str(Path.cwd())), encoding="utf-8")
    return root


def test_a_stopped_run_made_before_the_move_resumes_losing_and_duplicating_nothing(old_runs: Path) -> None:
    from adam.runner import run

    stopped = old_runs / "stopped"
    before = read_jsonl(stopped / "results.jsonl")
    assert json.loads((stopped / "manifest.json").read_text())["status"] == "stopped" and len(before) == 5
    cfg = compose_cfg(
        *ECHO,
        f"job.input={old_runs / 'in.jsonl'}",
        "backend.failure_rate=0.5",  # as it was made: the same records fail again (a hash of the text picks them)
        "job.batch_size=1",
        f"job.resume={stopped}",
        run_dir=old_runs / "unused",
    )
    summary = run(cfg)
    assert summary.run_dir == stopped and summary.exit_code in (ExitCode.OK, ExitCode.PARTIAL)
    results, errors = read_jsonl(stopped / "results.jsonl"), read_jsonl(stopped / "errors.jsonl")
    assert results[: len(before)] == before  # the old lines are kept as they were
    ids = [r["id"] for r in results] + [e["id"] for e in errors]
    assert sorted(ids) == sorted(f"r{i}" for i in range(12))  # every record once: none lost, none twice
    assert all(r["text"] == f"prompt number {r['id'][1:]}" for r in results)
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["resumes"] == 1 and manifest["resumed_from_status"] == "stopped"


def test_shards_made_before_the_move_merge(old_runs: Path) -> None:
    from adam.runner import run

    summary = run(compose_cfg("job=merge", f"job.runs={old_runs / 'shards'}", run_dir=old_runs / "merged"))
    assert summary.exit_code == ExitCode.OK
    merged = read_jsonl(old_runs / "merged" / "results.jsonl")
    assert sorted(r["id"] for r in merged) == sorted(f"r{i}" for i in range(12))
    assert all(r["text"] == f"prompt number {r['id'][1:]}" for r in merged)


def test_the_class_paths_old_run_dirs_recorded_still_import(old_runs: Path) -> None:
    """Hydra's recorded config (callbacks, log handler) names modules by their old paths; they still resolve."""
    recorded = OmegaConf.load(old_runs / "shards" / "multirun.yaml")
    targets = [c["_target_"] for c in recorded.hydra.callbacks.values()]
    targets.append(recorded.hydra.job_logging.handlers.file["class"])
    assert targets == ["adam.sweep.SweepReport", "adam.sweep.SweepStatus", "adam.log_file.RunLogHandler"]
    moved = [get_class(target) for target in targets]
    assert [f"{cls.__module__}.{cls.__name__}" for cls in moved] == [
        "adam.run.sweep.SweepReport",
        "adam.run.sweep.SweepStatus",
        "adam.run.log_file.RunLogHandler",
    ]  # the same classes, not copies: the old name imports the moved module


def test_every_moved_module_imports_by_its_old_name_as_the_same_module() -> None:
    import importlib

    from adam.moved_modules import MOVED

    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
        assert not (Path(__file__).parents[1] / (old.replace(".", "/") + ".py")).exists()  # only the alias is left
