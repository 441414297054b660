"""Shared test helpers: where the repository's example files are, and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import cli

Run = Callable[..., Result]


@pytest.fixture
def run() -> Run:
    """Invoke the `reconcile` CLI in-process; stdout and stderr are kept apart."""

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def manifests(tmp_path: Path) -> Callable[..., Path]:
    """Write manifest files into a fresh folder: manifests({"a.yaml": "..."})."""

    def write(files: dict[str, str | bytes], folder: str = "manifests") -> Path:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return root

    return write
