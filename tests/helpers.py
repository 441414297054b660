"""Paths of the repository's example files, for tests (importable as `helpers`)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHIPPED_MANIFESTS = REPO / "manifests"
EXAMPLES = TESTS / "examples"
MEDIA = EXAMPLES / "media"
