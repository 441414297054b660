"""An unchanged world answers from the last plan.

A dry run of a 100,000-asset library where nothing changed used to redo everything: expand
the AssetSets, build 100,000 assets, stat and look up every master, load the desired tables,
diff them and build 100,000 "in sync" actions. When nothing a plan depends on has changed
since the last plan made for the same paths and options, that plan's diff is the answer.

What a diff depends on, and how each is seen without doing the diff's work:

* the manifests and the masters: every entry under the manifests folder and the media root
  (the tool's own files aside; a cache folder inside them counts), by path and ``lstat``
  (device, inode, size, mtime_ns, ctime_ns, mode), a symlink also by its target, its real
  path and the ``stat`` of what it leads to: the
  signature the hash cache already trusts for a master's bytes. A folder that cannot be
  listed counts with its error.
* the recorded state: the ``stat`` of the state file and of its write-ahead log (every
  write changes one of them);
* this program: its version and the ``stat`` of its own source and schema files, the
  interpreter's version and the installed files of the libraries that parse and diff;
* the option that changes the diff (``--prune``); the roles of the folders and the paths as
  given (a plan names them so), what ``~`` means (``$HOME``) and who reads (user, groups);
* what the manifests reference outside both folders, kept with the plan and checked when it
  is recalled: the credential files (never masters, found through symlinks) and the local
  target folders (never inside the media root), by real path and ``stat``.

All of it goes into one sha256, taken *before* the manifests are read, so that a change made
while a plan is being made is a change for the next one. A plan is not kept when anything
seen was modified less than :data:`RACY_SECONDS` ago (a change within the same tick of the
file system clock could leave every signature as it was: git's "racily clean" rule), nor when
the manifests had warnings (those are printed by validation, which a reused plan skips).

What is done again every time: the schedules (they depend on the clock), the pruning guards,
--rule and --platform narrowing, and which renditions are cached. The hash observation is not
kept: a reused plan serves dry runs; an apply always plans from the masters.

Entries live in the user cache (:mod:`reconciler.cache`), as plain data; ``--no-cache`` uses
none. A missing, corrupt or foreign entry is a miss.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from stat import S_ISDIR, S_ISLNK
from typing import Any

import reconciler
from reconciler.cache import Cache
from reconciler.manifests import build
from reconciler.manifests.schema import schemas_dir
from reconciler.model import ActionKind, ManifestSet, Platform
from reconciler.observe.sources import Observed
from reconciler.plan.actions import REASONS, Action, Refresh, StateDescription
from reconciler.plan.schedule import RuleTiming

FORMAT = 3  # 2: notes, and the actions of import, moved and adopt; 3: the state described
RACY_SECONDS = 2.0
LIBRARIES = ("yaml", "duckdb", "wcmatch", "jsonschema_rs", "croniter")
_ACTION_FIELDS = tuple(f.name for f in fields(Action))
_REASON_CODE = _ACTION_FIELDS.index("reason_code")
_TRANSFORM_RULES = _ACTION_FIELDS.index("transform_rules")
_SHARED = tuple(
    _ACTION_FIELDS.index(name)
    for name in ("rule", "platform", "reason", "mime_type", "priority", "transform_hash",
                 "transform_rules", "waiting", "transforms", "blocked_by", "metadata_hash")
)  # fmt: skip
_KINDS = {kind.value: kind for kind in ActionKind}


@dataclass
class Diffed:
    """A diff of the desired against the recorded state, before the clock and the options
    are applied, with what the state says of schedules and asked re-syncs. Plain data but
    ``observed`` (None when reused)."""

    actions: list[Action]
    state_exists: bool
    state_fingerprint: str
    last_runs: dict[str, datetime | None]
    requested: frozenset[int]
    observed: Observed | None = None
    notes: list[str] = field(default_factory=list)  # warnings of the diff, for the plan
    against: StateDescription | None = None  # the recorded state, described
    refresh: Refresh = Refresh.MASTERS  # only a diff of observed masters is ever kept
    observed_at: str | None = None  # with Refresh.NONE: the oldest recorded observation


@dataclass(frozen=True)
class Setting:
    """What a plan says it was made from, besides the diff."""

    state_path: str
    manifests_dir: str
    media_root: str
    destinations: Mapping[str, str] = field(default_factory=dict)


def destination(platform: Platform) -> str:
    """A fingerprint of where a platform sends bytes and how it authenticates: its driver,
    target, endpoint, credential reference and driver settings."""
    settings = {
        "driver": platform.driver,
        "target": str(platform.target) if platform.target is not None else None,
        "api_endpoint": platform.api_endpoint,
        "auth_type": platform.auth_type,
        "auth": [platform.auth.env, platform.auth.file] if platform.auth else None,
        "settings": dict(platform.driver_config),
    }
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def setting(manifests: ManifestSet, state_path: str) -> Setting:
    return Setting(
        state_path,
        str(manifests.manifests_dir),
        str(manifests.media_root),
        {code: destination(p) for code, p in manifests.platforms.items()},
    )


@dataclass(frozen=True)
class World:
    """The inputs of a plan as seen now: which plan it could be (``key``: the paths and the
    options) and what those paths hold (``signature``)."""

    key: str
    signature: str
    settled: bool  # nothing seen was modified within RACY_SECONDS


def look(
    manifests_dir: Path,
    media_root: Path | None,
    state: Path,
    private: Iterable[Path],
    prune: bool,
) -> World:
    """The signature of everything a plan of these paths depends on (see the module)."""
    manifests_real = os.path.realpath(manifests_dir)
    media_real = os.path.realpath(media_root or manifests_dir)
    roots = sorted({manifests_real, media_real})
    state_real = os.path.realpath(state)
    # the roles, and the paths as given (a plan names them so); what ``~`` means; who reads
    given = [str(manifests_dir), str(media_root) if media_root else None, str(state)]
    reader = [os.geteuid(), os.getegid(), sorted(os.getgroups())]
    home = os.path.expanduser("~")
    key = json.dumps(
        [FORMAT, manifests_real, media_real, state_real, given, home, reader, bool(prune)]
    )
    skip = frozenset(os.path.realpath(p) for p in private)
    rows: list[Any] = [reconciler.__version__]
    newest = 0
    for root in roots:
        if not any(root.startswith(other + os.sep) for other in roots if other != root):
            newest = max(newest, _walk(root, skip, rows))
    code: list[Any] = []
    _walk(os.path.dirname(reconciler.__file__), frozenset(), code, code=True)
    _walk(str(schemas_dir()), frozenset(), code, code=True)
    code.append((sys.version, _libraries()))
    rows.append(code)
    for path in (state_real, state_real + ".wal"):
        rows.append(_entry(path))
        newest = max(newest, _newest(rows[-1]))
    digest = hashlib.sha256(marshal.dumps(rows)).hexdigest()
    settled = time.time_ns() - newest >= RACY_SECONDS * 1e9
    return World(hashlib.sha256(key.encode()).hexdigest(), digest, settled)


def _walk(root: str, skip: frozenset[str], rows: list[Any], code: bool = False) -> int:
    """Add a row per entry under ``root`` (symlinked folders are not entered); return the
    newest mtime or ctime seen, in ns. ``code``: the program's own folder, where compiled
    files (``__pycache__``) come and go with the interpreter that runs it."""
    newest = 0
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            rows.append((folder, "unlisted", exc.errno))
            continue
        add = rows.append
        for entry in entries:
            path = entry.path
            if path in skip or (code and entry.name == "__pycache__"):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                add((path, "gone", exc.errno))
                continue
            mode, mtime, ctime = st.st_mode, st.st_mtime_ns, st.st_ctime_ns
            if S_ISDIR(mode):
                stack.append(path)
                add((path, mode, st.st_dev, st.st_ino))
                continue
            if mtime > newest or ctime > newest:
                newest = max(mtime, ctime)
            row = (path, mode, st.st_dev, st.st_ino, st.st_size, mtime, ctime)
            if S_ISLNK(mode):
                link = _link(path)
                add((*row, link))
                newest = max(newest, _newest(link[2]) if len(link) == 3 else 0)
            else:
                add(row)
    return newest


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_mode, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _link(path: str) -> tuple[Any, ...]:
    """Where a symlink leads: its target, the real path at the end of every hop (a hop
    outside the root may be retargeted to another name of the same file) and that file."""
    try:
        return (os.readlink(path), os.path.realpath(path), _signature(os.stat(path)))
    except OSError as exc:
        return ("broken", exc.errno)


def _libraries() -> list[tuple[Any, ...]]:
    """The installed files of the libraries that parse, validate, match and diff: another
    version (a pip upgrade, another virtualenv running the same source) is another program."""
    found: list[tuple[Any, ...]] = []
    for name in LIBRARIES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
        found.append((name, origin, _entry(origin) if origin else None))
    return found


def references(manifests: ManifestSet) -> list[str]:
    """The paths outside the manifests a plan of them depends on: the credential files
    (never masters, under any name; found through symlinks) and the local target folders
    (never inside the media root)."""
    found = build.secret_files(manifests.platforms, manifests.rules, manifests.manifests_dir)
    found.update(str(p.target) for p in manifests.platforms.values() if p.target is not None)
    return sorted(found)


def _referenced(paths: Iterable[str]) -> list[tuple[Any, ...]]:
    return [(path, os.path.realpath(path), _entry(path)) for path in paths]


def _entry(path: str) -> tuple[Any, ...]:
    try:
        return _signature(os.stat(path))
    except OSError as exc:
        return ("absent", exc.errno)


def _newest(row: tuple[Any, ...]) -> int:
    return max(row[4], row[5]) if len(row) == 6 else 0


# -- keeping and finding the last plan ---------------------------------------------------------


def remember(
    cache: Cache, world: World, diffed: Diffed, manifests: ManifestSet, where: Setting
) -> None:
    """Keep ``diffed`` as the answer for ``world`` (unless the world is not settled, or the
    diff is of the masters as recorded, not as they are: never the answer of a fresh plan)."""
    if not world.settled or diffed.refresh != Refresh.MASTERS:
        return
    entry = {
        "format": FORMAT,
        "key": world.key,  # the file is named by a part of it; the options are in it alone
        "signature": world.signature,
        "actions": _plain(diffed.actions),
        "state_exists": diffed.state_exists,
        "state_fingerprint": diffed.state_fingerprint,
        "last_runs": [(k, v.isoformat() if v else None) for k, v in diffed.last_runs.items()],
        "requested": sorted(diffed.requested),
        "notes": diffed.notes,
        "against": diffed.against.to_dict() if diffed.against is not None else None,
        "rules": [(r.code, r.auto_sync, r.schedule_cron) for r in manifests.rules.values()],
        "platforms": sorted(manifests.platforms),
        "setting": [where.state_path, where.manifests_dir, where.media_root,
                    dict(where.destinations)],
        "referenced": _referenced(references(manifests)),
    }  # fmt: skip
    cache.save_plan(world.key, entry)


@dataclass(frozen=True)
class Recalled:
    """A kept plan, as :func:`reconciler.plan.planner.finish` takes it."""

    diffed: Diffed
    rules: dict[str, RuleTiming]
    platforms: frozenset[str]
    setting: Setting


def recall(cache: Cache, world: World) -> Recalled | None:
    """The plan kept for ``world`` when it holds what it held then; None otherwise."""
    entry = cache.plan(world.key)
    try:
        if (entry["format"], entry["key"], entry["signature"]) != (
            FORMAT,
            world.key,
            world.signature,
        ):
            return None
        referenced = entry["referenced"]
        if _referenced(path for path, _, _ in referenced) != referenced:
            return None  # a secret file or a target folder now leads elsewhere
        actions = _actions(entry["actions"])
        state_path, manifests_dir, media_root, destinations = entry["setting"]
        return Recalled(
            Diffed(
                actions,
                bool(entry["state_exists"]),
                str(entry["state_fingerprint"]),
                {k: datetime.fromisoformat(v) if v else None for k, v in entry["last_runs"]},
                frozenset(int(i) for i in entry["requested"]),
                None,
                [str(note) for note in entry["notes"]],
                StateDescription.from_dict(entry["against"]),
            ),
            {code: RuleTiming(code, bool(auto), cron) for code, auto, cron in entry["rules"]},
            frozenset(entry["platforms"]),
            Setting(state_path, manifests_dir, media_root, dict(destinations)),
        )
    except (KeyError, TypeError, ValueError):  # a missing or foreign entry: plan again
        return None


def _plain(actions: list[Action]) -> list[list[Any]]:
    """Actions as one list of plain values per field (kinds and codes as their strings).
    Values that repeat (rules, platforms, reasons, hashes of rules, transform settings) are
    made one object each, which marshal then writes once. (Column-wise, in C where it can be:
    this runs after every full plan.)"""
    columns = [list(map(attrgetter(name), actions)) for name in _ACTION_FIELDS]
    columns[0] = list(map(str, columns[0]))
    columns[_REASON_CODE] = [str(code) if code else None for code in columns[_REASON_CODE]]
    for i in _SHARED:
        if i == _TRANSFORM_RULES:  # dicts: one per rule, shared by identity
            seen: dict[int, Any] = {}
            by_text: dict[str, Any] = {}
            for value in columns[i]:
                if id(value) not in seen:
                    seen[id(value)] = by_text.setdefault(json.dumps(value, sort_keys=True), value)
            columns[i] = [seen[id(value)] for value in columns[i]]
        else:
            shared: dict[Any, Any] = {}
            columns[i] = list(map(shared.setdefault, columns[i], columns[i]))
    return columns


def _actions(columns: list[Any]) -> list[Action]:
    """The actions of :func:`_plain`'s columns (every column as long as the first)."""
    if len(columns) != len(_ACTION_FIELDS) or len({len(c) for c in columns}) > 1:
        raise ValueError("not the columns of this program's actions")
    columns = list(columns)
    columns[0] = [_KINDS[kind] for kind in columns[0]]
    columns[_REASON_CODE] = [REASONS.get(c) if c else None for c in columns[_REASON_CODE]]
    return list(map(Action, *columns))
