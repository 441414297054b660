"""Exceptions and exit codes shared by every part of the reconciler.

Every error the core raises derives from :class:`ReconcilerError`; its message says what went
wrong and what to do about it, and its ``exit_code`` is what the CLI exits with. The CLI is the
only place that turns these into process exit codes (see :data:`ExitCode`).
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum

from reconciler.redact import redact


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
    """The manifests are invalid. The problems themselves are data of the validation result
    (:class:`reconciler.manifests.validate.ValidationResult`), which the caller reports."""


class StateError(ReconcilerError):
    """The state file cannot be used as it is: unreadable, newer than this code, or busy."""


class LockTimeout(StateError):
    """Another process kept the state file longer than --lock-timeout."""


# -- Failures of a transfer, raised by drivers and by reading a master (see drivers.base).


class DriverError(Exception):
    """Root of driver failures. Its message is redacted as it is made: a platform that echoes
    a rejected credential in its answer cannot carry it into an event, a job row or a
    terminal (see :mod:`reconciler.redact`)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(redact(message))


class TemporaryError(DriverError):
    """A failure worth retrying, perhaps after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DriverError):
    """A failure that retrying cannot fix."""


class Deferred(DriverError):
    """The platform accepts no more work before ``until`` (UTC); not worth retrying now."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class Cancelled(Exception):
    """Raised by a progress callback to stop a transfer; drivers must let it through."""
