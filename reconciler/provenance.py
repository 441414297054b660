"""Provenance: which git commit of the manifests a run came from, and whether it was dirty.

Called once per run (or watch cycle); apply stamps the answer on every job and event. Outside a
git work tree, or without git installed, there is no provenance and nothing is recorded.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Provenance:
    commit: str | None = None
    dirty: bool | None = None


def of(folder: Path) -> Provenance:
    """The HEAD commit of the work tree holding ``folder``, and whether ``folder`` has
    uncommitted changes (modified, staged or untracked files)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if head.returncode != 0:
            return Provenance()
        status = subprocess.run(
            [
                "git",
                "-C",
                str(folder),
                "status",
                "--porcelain",
                "--untracked-files=normal",
                "--",
                ".",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return Provenance()
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return Provenance(head.stdout.strip(), dirty)
