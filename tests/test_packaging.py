"""A plain (non-editable) install ships conf/ as adam.conf and every schema the code reads."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import REPO


def test_wheel_ships_the_config_tree_and_schemas(tmp_path: Path) -> None:
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*build, str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("adam-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert conf and {f"adam/{p}" for p in conf} <= names
    assert "adam/conf/__init__.py" in names
    schemas = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "adam").rglob("*.json"))
    assert schemas and set(schemas) <= names
    assert "adam/py.typed" in names
