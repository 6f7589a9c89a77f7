"""A real full disk for tests: a small tmpfs mounted for the test (root only), and a file that fills it."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(path: Path, size: str = "3m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path``, unmounted on exit; the test is skipped where it cannot mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        # lazy: a file a server thread still holds open never keeps the mount (or the next test) hanging
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill(path: Path, leave: int = 0) -> Path:
    """A file under ``path`` that takes its disk's free space (all but about ``leave`` bytes); delete it to free it."""
    filler = path / "filler.bin"
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize - leave
    block = b"\0" * 65536
    with open(filler, "ab", buffering=0) as fh:
        try:
            while free > 0:
                free -= fh.write(block[: max(1, min(len(block), free))])
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
    return filler


def free_bytes(path: Path) -> int:
    """Bytes left on ``path``'s disk."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize
