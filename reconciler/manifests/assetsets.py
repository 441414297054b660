"""Expansion of an AssetSet: the files its globs match under the media root, and their codes.

Called by :mod:`reconciler.manifests.validate`. Globs use wcmatch's syntax (``**`` for any number
of folders, ``{a,b}`` alternatives); hidden files and folders are never matched, symlinked
folders are not followed, and a symlinked file that resolves outside the media root is an error
rather than a silent escape.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wcmatch import glob as wcglob

from reconciler.models import AssetSet

PLACEHOLDERS = ("stem", "name", "ext", "dir", "path")
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")
GLOB_FLAGS = wcglob.GLOBSTAR | wcglob.BRACE
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def template_error(template: str) -> str | None:
    """Why a code or title template is unusable, or None when it is fine."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"is not a valid template ({exc}); write placeholders as {{stem}}"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            return f"uses the unknown placeholder {{{name}}}; the placeholders are {known}"
    return None


def placeholders(rel: str) -> dict[str, str]:
    """The values of the template placeholders for the file at ``rel`` ('/'-separated)."""
    folder, _, name = rel.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    base = rel[: -(len(ext) + 1)] if ext else rel
    return {
        "stem": stem,
        "name": name,
        "ext": ext,
        "dir": folder.replace("/", "-"),
        "path": base.replace("/", "-"),
    }


def fill(template: str, rel: str, values: dict[str, str] | None = None) -> str:
    """Fill a template for the file at ``rel``."""
    if "{" not in template:
        return template
    return template.format_map(values if values is not None else placeholders(rel))


def make_code(asset_set: AssetSet, rel: str, values: dict[str, str] | None = None) -> str:
    code = _UNSAFE.sub("-", fill(asset_set.code_template, rel, values))
    if asset_set.code_case == "upper":
        return code.upper()
    if asset_set.code_case == "lower":
        return code.lower()
    return code


@dataclass(slots=True)  # not frozen: frozen __init__ is 8x slower per object
class Generated:
    """One file matched by an AssetSet."""

    rel: str
    path: str  # absolute
    code: str
    title: str


@dataclass(slots=True)
class Expansion:
    files: list[Generated] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    more_errors: int = 0  # errors beyond the first few, counted but not listed

    def error(self, message: str, limit: int = 5) -> None:
        if len(self.errors) < limit:
            self.errors.append(message)
        else:
            self.more_errors += 1


def expand(asset_set: AssetSet, media_root: Path) -> Expansion:
    """Match the set's globs under ``media_root`` and generate a code and title per file."""
    result = Expansion()
    seen: dict[str, str] = {}
    title_template = asset_set.title_template
    for rel, path, escaped in match_files(media_root, asset_set.include, asset_set.exclude):
        if escaped:
            result.error(f"{rel} is a symlink that leads outside the media root")
            continue
        values = placeholders(rel)
        code = make_code(asset_set, rel, values)
        if not CODE_RE.match(code):
            result.error(
                f"{rel} gives the code '{code}', which is not 1 to 50 letters, digits, '.', '_' "
                "or '-' starting with a letter or digit; change code_template"
            )
            continue
        if code in seen:
            result.error(
                f"{rel} and {seen[code]} both give the code '{code}'; add {{dir}} or {{path}} "
                "to code_template"
            )
            continue
        seen[code] = rel
        result.files.append(Generated(rel, path, code, fill(title_template, rel, values)[:300]))
    return result


def match_files(
    media_root: Path, include: tuple[str, ...], exclude: tuple[str, ...]
) -> Iterator[tuple[str, str, bool]]:
    """Yield (relative path, absolute path, escapes the root) for every matching file, sorted."""
    inc, exc = wcglob.translate(list(include), flags=GLOB_FLAGS, exclude=list(exclude) or None)
    inc_rx = [re.compile(p) for p in inc]
    exc_rx = [re.compile(p) for p in exc]
    root_real = os.path.realpath(media_root)
    found: dict[str, tuple[str, bool]] = {}
    one_include = inc_rx[0].match if len(inc_rx) == 1 else None
    for start in _walk_roots(include):
        # a literal folder of the glob may itself be a symlink that leads elsewhere
        start_escapes = not _inside(os.path.realpath(os.path.join(media_root, start)), root_real)
        for rel, entry in _walk(media_root, start):
            if rel in found:
                continue
            if one_include is not None:
                if not one_include(rel):
                    continue
            elif not any(rx.match(rel) for rx in inc_rx):
                continue
            if any(rx.match(rel) for rx in exc_rx):
                continue
            escaped = start_escapes or (
                entry.is_symlink() and not _inside(os.path.realpath(entry.path), root_real)
            )
            found[rel] = (entry.path, escaped)
    for rel in sorted(found):
        path, escaped = found[rel]
        yield rel, path, escaped


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _walk_roots(include: tuple[str, ...]) -> list[str]:
    """The literal folder prefix of each glob, so that only those folders are walked."""
    roots: set[str] = set()
    for pattern in include:
        parts = pattern.split("/")
        literal: list[str] = []
        for part in parts[:-1]:
            if wcglob.is_magic(part, flags=GLOB_FLAGS):
                break
            literal.append(part)
        roots.add("/".join(literal))
    ordered = sorted(roots, key=len)
    kept: list[str] = []
    for root in ordered:  # drop roots inside another root
        if not any(root == k or k == "" or root.startswith(k + "/") for k in kept):
            kept.append(root)
    return kept


def _walk(media_root: Path, start: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Files under media_root/start, as (path relative to media_root, entry); no hidden ones."""
    stack = [start]
    while stack:
        rel_dir = stack.pop()
        folder = os.path.join(media_root, rel_dir) if rel_dir else str(media_root)
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        prefix = rel_dir + "/" if rel_dir else ""
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(prefix + entry.name)
            elif entry.is_file(follow_symlinks=True):
                yield prefix + entry.name, entry
