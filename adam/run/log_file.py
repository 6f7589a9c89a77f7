"""The run's log file (<run dir>/adam.log): a file handler that a full disk or a read-only run dir cannot
turn into tracebacks.

logging's own FileHandler prints a traceback for every record it fails to write (``handleError``).
Every record also goes to stderr, so a line the file misses is not lost: this handler drops it,
closes the file, and opens it again for the next record, which lands once space is back. It opens
the file on its first record (``delay``), so a run dir that cannot be written is reported by the
run in one line instead of by the logging setup in a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sys

# Faults the run reports in its own line (disk full, read-only run dir); anything else is said once, here.
_REPORTED_BY_THE_RUN = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT})


class RunLogHandler(logging.FileHandler):
    """A FileHandler, opened on the first record, that drops the records it cannot write without a traceback."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, errors: str | None = None) -> None:
        super().__init__(filename, mode, encoding, delay=True, errors=errors)
        self._said = False

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record, opening the file first when it is not open (FileHandler would raise on that)."""
        if self.stream is None:
            try:
                self.stream = self._open()
            except OSError:
                self.handleError(record)
                return
        logging.StreamHandler.emit(self, record)

    def close(self) -> None:
        """Close the file; what it cannot write any more is dropped."""
        with contextlib.suppress(OSError):
            super().close()

    def handleError(self, record: logging.LogRecord) -> None:
        """A write that failed: drop the record and the open file; say so once unless the run says why itself."""
        err = sys.exc_info()[1]
        if not isinstance(err, OSError):  # a formatting bug: logging's own report, traceback and all
            super().handleError(record)
            return
        if self.stream is not None:
            with contextlib.suppress(OSError, ValueError):
                self.stream.close()  # what it still buffers cannot be written either
            self.stream = None  # type: ignore[assignment]
        if not self._said and err.errno not in _REPORTED_BY_THE_RUN:
            self._said = True
            sys.stderr.write(f"cannot write the log {self.baseFilename} ({err.strerror}); it goes to stderr only\n")
