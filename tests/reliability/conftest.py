"""Fixtures of the reliability tests that run real `reconcile` subprocesses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from leasekit import Proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """The subprocesses a test starts (append them); any still running at its end is
    resumed (SIGCONT) and killed."""
    made: list[Proc] = []
    yield made
    for proc in made:
        proc.kill_if_running()
