"""The documentation: README.md and docs/ hold together without building the site.

`mkdocs build --strict` checks more (anchors, the generated command reference), but needs the
`docs` extra; these checks need nothing beyond the test extra, so CI runs them every time.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from helpers import REPO

DOCS = REPO / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hook", DOCS / "hooks" / "modules.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def local_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [
        target.split("#", 1)[0]
        for target in LINK.findall(text)
        if not re.match(r"[a-z]+:", target) and not target.startswith("#")
    ]


def test_every_local_link_of_the_readme_and_the_docs_leads_to_a_file() -> None:
    for page in [REPO / "README.md", *DOCS.glob("*.md")]:
        for target in local_links(page):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_site_navigation_lists_every_page() -> None:
    nav = set(re.findall(r":\s*([\w-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M))
    assert nav == {page.name for page in DOCS.glob("*.md")}


def test_every_module_says_what_it_is_for() -> None:
    """The module list of docs/architecture.md is made from the docstrings at build time."""
    table = hook().module_table()
    for path in sorted((REPO / "reconciler").rglob("*.py")):
        name = path.relative_to(REPO).as_posix()
        assert f"| `{name}` |" in table
        if path.read_text().strip():
            assert f"| `{name}` | *(no docstring)* |" not in table, f"{name} has no docstring"


def test_the_generated_parts_have_their_markers() -> None:
    assert "<!-- modules -->" in (DOCS / "architecture.md").read_text()
    assert "<!-- contracts -->" in (DOCS / "architecture.md").read_text()
    assert "<!-- migrations -->" in (DOCS / "state.md").read_text()
    assert hook().contract_list().startswith("- **")  # the contracts, not "no contracts"
    assert "| 1 | `v001_seed_tables.sql` |" in hook().migration_table()
