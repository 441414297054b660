"""MkDocs hook: the parts of the documentation that are generated from the code at build time.

Registered under ``hooks:`` in ``mkdocs.yml``; MkDocs calls :func:`on_config` once and
:func:`on_page_markdown` for every page. It replaces markers in the pages' Markdown:

- ``<!-- modules -->`` (architecture.md): one line per module of ``reconciler/``, from the
  first sentence of its docstring, so the list stays true while modules are renamed or split;
- ``<!-- contracts -->`` (architecture.md): the import-linter contracts of ``pyproject.toml``;
- ``<!-- migrations -->`` (state.md): one line per schema migration, from the first comment
  line of each ``vNNN_*.sql`` file.

A module that has code but no docstring is a warning, which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import ast
import logging
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.modules")

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "reconciler"
MIGRATIONS = PACKAGE / "store" / "migrations"

_DOUBLE_BACKTICKS = re.compile(r"``(.+?)``")
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
_SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z`(])")


def on_config(config: Any, **_: Any) -> Any:
    """Put this checkout first on sys.path, so that mkdocs-click imports its own ``reconciler``
    (not another copy installed in the environment)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Fill in the markers a page holds; pages without markers are returned unchanged."""
    if "<!-- modules -->" in markdown:
        markdown = markdown.replace("<!-- modules -->", module_table())
    if "<!-- contracts -->" in markdown:
        markdown = markdown.replace("<!-- contracts -->", contract_list())
    if "<!-- migrations -->" in markdown:
        markdown = markdown.replace("<!-- migrations -->", migration_table())
    return markdown


def plain(text: str) -> str:
    """reStructuredText of a docstring as Markdown: ``x`` -> `x`, :mod:`a.b` -> `a.b`,
    :class:`~a.B` -> `B`."""
    text = _DOUBLE_BACKTICKS.sub(r"`\1`", text)
    return _ROLE.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", text)


def summary(docstring: str) -> str:
    """The docstring's first sentence (which may run over several lines)."""
    paragraph = " ".join(docstring.strip().split("\n\n", 1)[0].split())
    first = _SENTENCE_END.split(paragraph, 1)[0]
    return plain(first).replace("|", "\\|")


def describe(path: Path) -> str:
    """What a module is for, in one line."""
    source = path.read_text("utf-8")
    if not source.strip():
        return "*(empty: nothing here yet)*"
    docstring = ast.get_docstring(ast.parse(source, str(path)))
    if not docstring:
        log.warning("%s has no module docstring", path.relative_to(ROOT))
        return "*(no docstring)*"
    return summary(docstring)


def module_table() -> str:
    """One row per module of the package, in path order."""
    rows = ["| module | what it is for |", "|---|---|"]
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rows.append(f"| `{path.relative_to(ROOT).as_posix()}` | {describe(path)} |")
    return "\n".join(rows)


def contract_list() -> str:
    """The import-linter contracts, as CI checks them with ``lint-imports``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    contracts = config.get("tool", {}).get("importlinter", {}).get("contracts", [])
    lines = []
    for contract in contracts:
        lines.append(f"- **{contract['name']}** ({contract['type']})")
        if contract["type"] == "layers":
            layers = " → ".join(f"`{layer}`" for layer in contract["layers"])
            lines.append(f"    - from the top down: {layers}")
        else:
            sources = ", ".join(f"`{m}`" for m in contract.get("source_modules", []))
            forbidden = ", ".join(f"`{m}`" for m in contract.get("forbidden_modules", []))
            lines.append(f"    - {sources} may not import {forbidden}")
    return "\n".join(lines) if lines else "*(no contracts declared in pyproject.toml)*"


def migration_table() -> str:
    """One row per migration: its version, file and the first paragraph of its header comment."""
    rows = ["| version | file | what it adds |", "|---|---|---|"]
    for path in sorted(MIGRATIONS.glob("v[0-9][0-9][0-9]_*.sql")):
        rows.append(f"| {int(path.name[1:4])} | `{path.name}` | {migration_summary(path)} |")
    return "\n".join(rows)


def migration_summary(path: Path) -> str:
    """The header comment's first paragraph, without its ``vN:`` prefix."""
    words = []
    for line in path.read_text("utf-8").splitlines():
        text = line.removeprefix("--").strip()
        if not line.startswith("--") or not text:
            break
        words.append(text)
    if not words:
        log.warning("%s has no header comment", path.relative_to(ROOT))
    head = re.sub(r"^v\d+:\s*", "", " ".join(words))
    return plain(head).replace("|", "\\|")
