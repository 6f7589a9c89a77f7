"""The few errors adam raises on purpose, and the exit status each one means."""

from __future__ import annotations

import errno
from enum import IntEnum
from typing import Any

DISK_FULL = frozenset(
    {errno.ENOSPC, errno.EDQUOT}
)  # the errnos of a full disk (or quota): wait for space, lose nothing


# The distribution's name (pyproject.toml [project].name; a test keeps the two the same). `adam` on PyPI is another
# project, so the distribution has a name of its own; the import package stays `adam`.
DISTRIBUTION = "adam-batch"
# Extras with a make target of their own in the Makefile (a build step pip alone does not take)
MAKE_TARGETS = {"llamacpp": "make llamacpp"}


def install_hint(extra: str) -> str:
    """How to install an optional extra, advice that works in a clone of adam (nothing is published yet)."""
    pip = f"pip install -e '.[{extra}]'"
    make = MAKE_TARGETS.get(extra)
    return f"`{make}` (or `{pip}`) in adam's folder" if make else f"`{pip}` in adam's folder"


class ExitCode(IntEnum):
    """Process exit statuses, documented in docs/exit-statuses.md."""

    OK = 0  # every record succeeded
    CONFIG = 1  # config or usage error (Hydra's own errors exit 1 too)
    PARTIAL = 3  # the run finished but some records failed
    STOPPED = 4  # the run stopped early and can be resumed
    NO_SUCCESS = 5  # no record succeeded: every record failed, or the input holds none


# From best to worst, for the status of a sweep (its worst job's). Explicit, not numeric: a config error (the
# job could not run at all) is worse than any job that ran, and no record succeeding worse than a stop.
SEVERITY = (ExitCode.OK, ExitCode.PARTIAL, ExitCode.STOPPED, ExitCode.NO_SUCCESS, ExitCode.CONFIG)


def worst(*codes: int) -> int:
    """The worst of exit statuses by SEVERITY (one it does not know ranks worst of all); 0 for none."""
    rank = {int(code): i for i, code in enumerate(SEVERITY)}
    return int(max(codes, key=lambda code: rank.get(int(code), len(SEVERITY)), default=ExitCode.OK))


class AdamError(Exception):
    """Base of every error adam raises on purpose; its message is one line a person can act on."""

    exit_code: ExitCode = ExitCode.CONFIG


class ConfigError(AdamError):
    """The composed config or the command line asks for something that cannot work."""


class ModelNotFoundError(ConfigError):
    """The configured model is not on disk and cannot be fetched."""


class InputError(AdamError):
    """The input as a whole cannot be read (missing file, unreadable directory)."""


class NoRecords(InputError):
    """The input holds no records (an empty file or directory) and job.allow_empty is not set."""

    exit_code = ExitCode.NO_SUCCESS


class BackendError(AdamError):
    """One request failed at the backend; the runner records it against that record and goes on."""

    exit_code = ExitCode.PARTIAL
    code = "backend_error"  # the code of the record's error line


class ContextOverflowError(BackendError):
    """The prompt is longer than the context window (a record's problem, not the backend's)."""

    code = "context_overflow"


class InvalidOutputError(BackendError):
    """The backend answered with something adam will not write (a NaN in a vector, another width)."""

    code = "invalid_output"


class UnsupportedRequestError(BackendError):
    """The backend cannot honour what a request asks (a JSON schema, choices, log-probabilities): the record's own
    refusal, said in one line, never a silent drop."""

    code = "unsupported"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param  # the request field it cannot honour (response_format, choice, logprobs)


class SchemaMismatchError(BackendError):
    """A constrained answer that does not parse or validate (cut short by max_tokens, most often); it keeps the
    generation, so the error line can carry the raw text and finish_reason."""

    code = "schema_mismatch"

    def __init__(self, message: str, generation: Any = None) -> None:
        super().__init__(message)
        self.generation = generation


class RunStopped(AdamError):
    """An operational fault (disk full, a locked store, a dead backend): the run stops cleanly, resumable."""

    exit_code = ExitCode.STOPPED


class BackendUnavailable(RunStopped):
    """The backend cannot serve any request (server down, out of memory); the run stops, resumable."""


class StoreBusy(RunStopped):
    """The embedding store stayed locked by another process for longer than its busy timeout."""


class RunDirLocked(ConfigError):
    """Another process holds the run dir; this one refuses without writing anything."""


class UnsupportedError(ConfigError):
    """The backend or model cannot do what the job asks (e.g. embeddings from a generation-only backend)."""


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk (or the quota) is full: an operational fault, resumable once space returns.

    An error raised ``from`` a full disk (a RunStopped naming the file it could not write) says so too.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            return True
        seen.add(id(err))
        err = err.__cause__  # type: ignore[assignment]
    return False


def first_line(message: object) -> str:
    """The first non-blank line of an error or message (a bare exception: its class name), for one-line errors."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if lines:
        return lines[0]
    return type(message).__name__ if isinstance(message, BaseException) else ""


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed, so a server's whole error fits a one-line message."""
    return " ".join(str(text).split())
