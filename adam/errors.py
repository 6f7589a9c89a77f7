"""The few errors adam raises on purpose, and the exit status each one means."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit statuses, documented in the README."""

    OK = 0  # every record succeeded
    CONFIG = 1  # config or usage error (Hydra's own errors exit 1 too)
    PARTIAL = 3  # the run finished but some records failed
    STOPPED = 4  # the run stopped early and can be resumed


class AdamError(Exception):
    """Base of every error adam raises on purpose; its message is one line a person can act on."""

    exit_code: ExitCode = ExitCode.CONFIG


class ConfigError(AdamError):
    """The composed config or the command line asks for something that cannot work."""


class ModelNotFoundError(ConfigError):
    """The configured model is not on disk and cannot be fetched."""


class InputError(AdamError):
    """The input as a whole cannot be read (missing file, unreadable directory)."""


class BackendError(AdamError):
    """One request failed at the backend; the runner records it against that record and goes on."""

    exit_code = ExitCode.PARTIAL


class BackendUnavailable(AdamError):
    """The backend cannot serve any request (server down, out of memory); the run stops, resumable."""

    exit_code = ExitCode.STOPPED


class UnsupportedError(ConfigError):
    """The backend or model cannot do what the job asks (e.g. embeddings from a generation-only backend)."""
