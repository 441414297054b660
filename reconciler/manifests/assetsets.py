"""Expansion of an AssetSet: the files its globs match under the media root, and their codes.

Called by :mod:`reconciler.manifests.generate` (:func:`expand`), :mod:`.crossrefs`
(:func:`template_error`) and :mod:`.declared` (:data:`CODE_RE`). Globs use wcmatch's syntax
(``**`` for any number of folders, ``{a,b}`` alternatives); hidden files and folders are never
matched, symlinked folders are not followed, and a symlinked file that resolves outside the
media root is an error rather than a silent escape.

An entry that cannot be a master is skipped with a reason (a warning), so that one bad entry in
a library of 100,000 files does not stop the others from syncing: a symlink loop, a symlink to
nothing, a FIFO, socket or device (never opened: opening a FIFO blocks), and a folder that
cannot be listed.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wcmatch import glob as wcglob

from reconciler.manifests.files import inside, kind_of
from reconciler.manifests.quoting import printable, quote
from reconciler.model import AssetSet

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
            shown = (
                f"the unknown placeholder {{{name}}}"
                if len(name) <= 16 and name.isprintable()
                else "an unknown placeholder"
            )
            return f"uses {shown}; the placeholders are {known}"
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
    real: str  # the file's real path (symlinks resolved)


@dataclass(slots=True)
class Expansion:
    files: list[Generated] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    more_errors: int = 0  # errors beyond the first few, counted but not listed
    warnings: list[str] = field(default_factory=list)  # entries skipped, and why
    more_warnings: int = 0

    def error(self, message: str, limit: int = 5) -> None:
        if len(self.errors) < limit:
            self.errors.append(message)
        else:
            self.more_errors += 1

    def warn(self, message: str, limit: int = 5) -> None:
        if len(self.warnings) < limit:
            self.warnings.append(message)
        else:
            self.more_warnings += 1


def expand(asset_set: AssetSet, media_root: Path, private: tuple[str, ...] = ()) -> Expansion:
    """Match the set's globs under ``media_root`` and generate a code and title per file.
    Files at or below a ``private`` path (the tool's own state and renditions) are never
    matched."""
    result = Expansion()
    seen: dict[str, str] = {}
    title_template = asset_set.title_template
    private_paths = frozenset(private)
    below_private = tuple(p + os.sep for p in private)
    for rel, path, problem, real in match_files(media_root, asset_set.include, asset_set.exclude):
        if private and (path in private_paths or path.startswith(below_private)):
            continue
        if problem == ESCAPES:
            result.error(f"{printable(rel)} is a symlink that leads outside the media root")
            continue
        if problem is not None:
            result.warn(f"{printable(rel)} {problem}; skipped")
            continue
        if not rel.isascii() and not _utf8(rel):
            shown = printable(os.fsencode(rel).decode("utf-8", "backslashreplace"))
            result.warn(
                f"{shown} has a name that is not valid UTF-8 (codes, keys and the state are "
                "UTF-8 text); rename it; skipped"
            )
            continue
        values = placeholders(rel)
        code = make_code(asset_set, rel, values)
        if not CODE_RE.match(code):
            result.error(
                f"{printable(rel)} gives the code {quote(code, noun='code')}, which is not 1 to 50 "
                "letters, digits, '.', '_' or '-' starting with a letter or digit; change "
                "code_template"
            )
            continue
        if code in seen:
            result.error(
                f"{printable(rel)} and {printable(seen[code])} both give the code '{code}'; add "
                "{dir} or {path} to code_template"
            )
            continue
        seen[code] = rel
        title = fill(title_template, rel, values)[:300]
        result.files.append(Generated(rel, path, code, title, real))
    return result


def _utf8(name: str) -> bool:
    """Whether a file name read from the file system is valid UTF-8 (Python keeps the bytes
    of one that is not as lone surrogates, which no UTF-8 text can hold)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


ESCAPES = "leads outside the media root"  # a matched symlink that escapes: an error


def match_files(
    media_root: Path, include: tuple[str, ...], exclude: tuple[str, ...]
) -> Iterator[tuple[str, str, str | None, str]]:
    """Yield (relative path, absolute path, problem, real path) for every matching entry,
    sorted.

    The problem is None for a usable file, :data:`ESCAPES` for a symlink that leads outside
    the media root, or why the entry is skipped ("is a symlink loop", ...); a folder that
    cannot be listed is yielded with its reason whatever the globs say, as files in it may
    have matched. The real path of an entry that is not a symlink is its folder's real path
    and its name (the walk never follows a symlinked folder), which costs no system call;
    only a symlink is resolved.
    """
    inc, exc = wcglob.translate(list(include), flags=GLOB_FLAGS, exclude=list(exclude) or None)
    inc_rx = [re.compile(p) for p in inc]
    exc_rx = [re.compile(p) for p in exc]
    root_real = os.path.realpath(media_root)
    found: dict[str, tuple[str, str | None, str]] = {}
    one_include = inc_rx[0].match if len(inc_rx) == 1 else None
    for start in _walk_roots(include):
        # a literal folder of the glob may itself be a symlink that leads elsewhere
        start_real = os.path.realpath(os.path.join(media_root, start)) if start else root_real
        start_escapes = not inside(start_real, root_real)
        cut = len(start) + 1 if start else 0
        real_base = start_real.rstrip(os.sep) + os.sep
        for rel, entry, unlisted in _walk(media_root, start):
            if rel in found:
                continue
            if unlisted is not None:
                path = os.path.join(media_root, rel)
                found[rel] = (path, unlisted, path)
                continue
            if one_include is not None:
                if not one_include(rel):
                    continue
            elif not any(rx.match(rel) for rx in inc_rx):
                continue
            if any(rx.match(rel) for rx in exc_rx):
                continue
            assert entry is not None
            problem = ESCAPES if start_escapes else _problem(entry, root_real)
            if problem != "":  # "" is a symlinked folder: not followed, not reported
                real = os.path.realpath(entry.path) if entry.is_symlink() else real_base + rel[cut:]
                found[rel] = (entry.path, problem, real)
    for rel in sorted(found):
        path, problem, real = found[rel]
        yield rel, path, problem, real


def _problem(entry: os.DirEntry[str], root_real: str) -> str | None:
    """Why a matched entry cannot be a master (None: it can; "": a symlinked folder)."""
    if entry.is_file(follow_symlinks=False):  # the common case costs no system call
        return None
    try:
        if not entry.is_symlink():
            kind = kind_of(entry.stat(follow_symlinks=False).st_mode)
            return f"is not a regular file: it is {kind}"
        mode = os.stat(entry.path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop (it leads back to itself)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "is a symlink to a file that does not exist"
        return f"cannot be read ({exc.strerror})"
    if not inside(os.path.realpath(entry.path), root_real):
        return ESCAPES
    if stat.S_ISDIR(mode):
        return ""
    if not stat.S_ISREG(mode):
        return f"is a symlink to {kind_of(mode)}, not to a regular file"
    return None


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


def _walk(
    media_root: Path, start: str
) -> Iterator[tuple[str, os.DirEntry[str] | None, str | None]]:
    """Entries under media_root/start that are not folders, as (path relative to media_root,
    entry, None); no hidden ones. A folder that cannot be listed is (its path, None, why)."""
    stack = [start]
    while stack:
        rel_dir = stack.pop()
        folder = os.path.join(media_root, rel_dir) if rel_dir else str(media_root)
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except (FileNotFoundError, NotADirectoryError):
            continue  # a glob's literal folder that is not there: the set matches nothing
        except OSError as exc:
            why = "a symlink loop" if exc.errno == errno.ELOOP else exc.strerror
            yield rel_dir or ".", None, f"is a folder that cannot be listed ({why})"
            continue
        prefix = rel_dir + "/" if rel_dir else ""
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(prefix + entry.name)
            else:
                yield prefix + entry.name, entry, None
