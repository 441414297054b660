"""Exceptions and exit codes shared by every part of the reconciler.

Every error the core raises derives from :class:`ReconcilerError`; its message says what went
wrong and what to do about it, and its ``exit_code`` is what the CLI exits with. The CLI is the
only place that turns these into process exit codes (see :data:`ExitCode`).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, as documented in the README."""

    OK = 0  # success; for --dry-run --detailed-exitcode: no changes
    ERROR = 1  # invalid manifests, unusable state, lock timeout, bad arguments
    CHANGES_PENDING = 2  # --dry-run --detailed-exitcode: changes pending
    PARTIAL = 3  # apply ran, but some jobs failed or were deferred, or conflicts are open


class ReconcilerError(Exception):
    """Root of every error the reconciler reports to a person."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(ReconcilerError):
    """A command was given options or paths it cannot work with."""


class ManifestError(ReconcilerError):
    """The manifests are invalid; ``problems`` lists every problem found."""

    def __init__(self, message: str, problems: list | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class StateError(ReconcilerError):
    """The state file cannot be used as it is: unreadable, newer than this code, or busy."""


class LockTimeout(StateError):
    """Another process kept the state file longer than --lock-timeout."""
