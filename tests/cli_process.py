"""`python -m reconciler` in a real subprocess, for tests where a defect shows on the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def reconcile(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `reconcile ARGS` in a subprocess (it inherits PYTHONPATH and the environment); a
    hang raises TimeoutExpired."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def reconcile_json(*args: str) -> Any:
    """Run a command with ``--output json`` that must succeed; its parsed output."""
    result = reconcile(*args, "--output", "json")
    assert result.returncode in (0, 2), (result.stdout, result.stderr)
    return json.loads(result.stdout)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exit 1 and one `error: ...` line, no traceback; that line."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
