"""Hydra's composition errors (a misspelt key, a wrong type, an unknown option) as one line of adam's.

Hydra reports them itself, in six lines that suggest ``+key=value``, from inside ``hydra.main``: its
``run_and_report`` prints and exits before the caller sees the exception. ``one_line_config_errors``
swaps that function for one that says what to fix in one line and exits 1 (the README's promise).
A run dir Hydra cannot write (read-only, full) is said in one line too; anything else, or
``HYDRA_FULL_ERROR=1``, still goes to Hydra's own report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from adam.errors import ExitCode, first_line
from adam.settings import catalog

_UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


def explain(err: BaseException) -> str | None:
    """One line saying what is wrong with the command line, or None for errors that are not about it."""
    cause = err.__cause__
    if isinstance(err, OSError) and err.errno in _UNWRITABLE and err.filename is not None:  # Hydra making its dirs
        return f"cannot write {err.filename}: {err.strerror}; set hydra.run.dir= (hydra.sweep.dir=) to a writable dir"
    if isinstance(err, MissingConfigException):
        return _unknown_option(err)
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override {err.override!r}: {first_line(err.message)}"
    if not isinstance(err, ConfigCompositionException):
        return None
    if isinstance(cause, ConfigKeyError | ConfigAttributeError):
        return _unknown_key(cause)
    if isinstance(cause, ValidationError):
        key = getattr(cause, "full_key", None) or "?"
        return f"invalid value for {key}: {first_line(getattr(cause, 'msg', None) or str(cause))}"
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())  # e.g. +key for a key that exists


def _unknown_key(cause: Exception) -> str:
    key = str(getattr(cause, "full_key", "") or "")
    parent, _, name = key.rpartition(".")
    schema = getattr(cause, "object_type", None)
    known = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
    hint = difflib.get_close_matches(name, known, n=1)
    did_you_mean = f" (did you mean {parent + '.' if parent else ''}{hint[0]}?)" if hint else ""
    return f"unknown config key {key}{did_you_mean}"


def _unknown_option(err: MissingConfigException) -> str:
    missing = str(err.missing_cfg_file or "")
    group, _, option = missing.rpartition("/")
    if not group or err.options is None:
        return first_line(str(err))
    options = catalog.options(group) if group in catalog.GROUPS else list(err.options)  # not the schemas
    hint = difflib.get_close_matches(option, options, n=1)
    if hint:
        return f"unknown {group}={option} (did you mean {group}={hint[0]}?)"
    return f"unknown {group}={option}; {group} options: {', '.join(options)}"


@contextlib.contextmanager
def one_line_config_errors() -> Iterator[None]:
    """While hydra.main runs: composition errors exit 1 with one line on stderr instead of Hydra's report."""
    from hydra._internal import utils as hydra_utils  # pinned hydra-core 1.3: _run_hydra calls this by name

    original: Callable[[Any], Any] = hydra_utils.run_and_report

    def run_and_report(func: Any) -> Any:
        try:
            return func()
        except Exception as err:
            line = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else explain(err)
            if line is None:
                return original(_raiser(err))
            sys.stderr.write(line + "\n")
            sys.exit(int(ExitCode.CONFIG))

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def _raiser(err: Exception) -> Callable[[], Any]:
    def again() -> Any:
        raise err

    return again
