"""What the attack tests share: a fast apply, a real `python -m reconciler` run in a World, the
folder a local platform writes to, and a small tmpfs for a full disk.

Used by tests/reliability/test_attacks.py, test_attacks2.py and tests/test_state_disk.py."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from planning import World

from reconciler.apply.run import ApplyOptions

FAST = ApplyOptions(parallel=2, backoff_base=0.001, backoff_max=0.01)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reconcile(
    world: World, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m reconciler ARGS` in the world's folder; it never shows a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=world.root,
        env={**os.environ, **(env or {})},
    )
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def out(world: World, platform: str) -> Path:
    """The folder a local platform of the world writes to."""
    return world.root / "out" / platform.lower()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (a disk that fills up). Mounting needs the
    privilege to mount: without it the test is skipped, saying so."""
    path.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
