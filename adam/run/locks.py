"""Advisory file locks: one process owns a run dir, one server a state dir, and a store is never pruned while
another run uses it.

``flock`` locks belong to an open file and vanish with the process, so a killed run never leaves a
stale lock behind. They hold across processes on one machine and on shared filesystems that
support them (NFSv4, Lustre with ``flock``); several machines need such a filesystem.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType

from adam.errors import ConfigError, RunDirLocked

RUN_LOCK_NAME = ".adam.lock"


def _holder() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _describe(fd: int) -> str:
    """'host H, pid P' from a lock file's content, or a plain phrase when it holds none yet."""
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads(os.pread(fd, 4096, 0) or b"{}")
        if isinstance(doc, dict) and doc.get("pid"):
            return f"host {doc.get('host')}, pid {doc.get('pid')}"
    return "another process"


class RunDirLock:
    """Exclusive ownership of a run dir for the whole run, taken before anything is written there."""

    lock_name = RUN_LOCK_NAME

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / self.lock_name
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        """Take the lock or raise RunDirLocked naming the process that holds it."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's name stays
        except OSError as err:
            raise ConfigError(self.unwritable(err)) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _describe(fd)
            os.close(fd)
            raise RunDirLocked(self.held(who)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        self._fd = fd
        return self

    def unwritable(self, err: OSError) -> str:
        """The one-line error for a dir the lock cannot be created in."""
        return f"cannot write to the output dir {self.run_dir}: {err.strerror}; set hydra.run.dir="

    def held(self, who: str) -> str:
        """The one-line error when ``who`` ('host H, pid P') holds the lock."""
        return f"{self.run_dir} is in use by {who}: wait for that run to end, or pick another run dir"

    def release(self) -> None:
        """Give the lock up (closing the file releases it); releasing twice is fine."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class StateDirLock(RunDirLock):
    """One server per state dir (job.state_dir), for the server's whole life: a second one refuses to start.

    Two servers on one state dir would each keep their own batch objects in memory: counts would go stale
    and each one's batches would be unknown to the other.
    """

    lock_name = ".adam-serve.lock"

    def unwritable(self, err: OSError) -> str:
        return f"cannot write to job.state_dir={self.run_dir}: {err.strerror}; set job.state_dir= to a writable dir"

    def held(self, who: str) -> str:
        return (
            f"job.state_dir={self.run_dir} is in use by another server ({who}): stop that server, "
            "or give this one another job.state_dir"
        )


class StoreLock:
    """Runs share a store (a shared lock); pruning needs it alone (an exclusive lock, never waited for)."""

    def __init__(self, store: str | Path) -> None:
        path = Path(store)
        self.path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def share(self) -> StoreLock:
        """Hold the store as one of its users for the run; waits only while another run prunes it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        return self

    def try_exclusive(self) -> bool:
        """Become the store's only user, if no other run holds it now."""
        assert self._fd is not None, "share() first"
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        """Let the store go."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
