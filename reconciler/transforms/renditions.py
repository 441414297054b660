"""Make renditions and keep them: a content-addressed cache with a size bound.

A rendition lives in the cache folder (``state/renditions/`` next to the default state file)
as ``ID<suffix>`` (its bytes) and ``ID.json`` (its checksum, size, type and how it was
made). The JSON is written last, so a rendition without one was never finished and is not
used. A rendition whose media steps changed nothing and that is not encrypted is the master
itself: only its JSON is kept, and the master is uploaded.

A rendition is claimed before it is made (:mod:`.claims`): two jobs wanting the same one (two
platforms with the same rules), in one process or in workers on any hosts sharing the folder,
never both make it; the second waits and finds it made. The claim is a thread lock and an
exclusive ``flock`` on ``claims/ID.lock``, which the kernel drops when its holder dies; on NFS
(v4, or v3 with NLM) Linux maps it to byte-range locks that every host sees. A cached
rendition is hashed again before it is used, so a damaged cache file (or one another host
damaged) is made again rather than uploaded. When the folder holds more than its bound, the
least recently used renditions are removed, never those of the current run nor one claimed
now. Work files are removed only under their rendition's claim, never a live maker's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.atomic import write_atomically
from reconciler.observe.payload import Payload
from reconciler.observe.sources import sha256_file
from reconciler.transforms import TransformError
from reconciler.transforms.claims import Claims
from reconciler.transforms.crypto import encrypt_file, encrypt_stream, load_key
from reconciler.transforms.recipe import Recipe

DEFAULT_MAX_BYTES = 10 * 1024**3
STALE_WORK_SECONDS = 3600
_ID = re.compile(r"[0-9a-f]{64}")


@dataclass
class Rendition:
    id: str
    path: Path | None  # what is uploaded; None: the master itself
    sha256: str
    size: int
    mime: str
    cached: bool  # found made, not made now
    passthrough: bool  # the master itself
    seconds: float = 0.0  # spent making it
    details: dict[str, Any] | None = None  # what the media steps did
    key_created: Path | None = None  # an encryption key file generated for it


class RenditionCache:
    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(os.path.abspath(folder))  # media tools get absolute paths
        self.max_bytes = max_bytes
        self.claims = Claims(self.folder)

    def _claim(self, rid: str, wait: bool = True) -> AbstractContextManager[bool]:
        """The claim on ``rid`` (see :meth:`Claims.hold`), in the private cache folder."""
        self.private_folder()
        return self.claims.hold(rid, wait)

    # -- lookups --------------------------------------------------------------------------
    def cached_ids(self) -> set[str]:
        """The ids of every finished rendition, from one listing of the folder (for plans:
        a rendition damaged since is found out, and made again, when it is used)."""
        try:
            with os.scandir(self.folder) as entries:
                return {e.name[:-5] for e in entries if e.name.endswith(".json")}
        except OSError:
            return set()

    def _info(self, rid: str) -> dict[str, Any] | None:
        try:
            info = json.loads((self.folder / f"{rid}.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) and info.get("id") == rid else None

    def _data(self, rid: str, info: dict[str, Any]) -> Path:
        return self.folder / f"{rid}{info.get('suffix', '')}"

    def _cached(
        self, rid: str, master_sha256: str, recipe: Recipe, master_name: str
    ) -> Rendition | None:
        """A finished rendition made from verified bytes, re-hashed now; None when it is
        missing, damaged, was made before masters were verified, or its record contradicts
        its recipe (an encrypting recipe is never the master itself): it is made again."""
        info = self._info(rid)
        if info is None:
            return None
        master_suffix = os.path.splitext(master_name)[1]
        suffix = recipe.suffix(master_suffix)
        # only a recipe that neither encrypts nor changes the type can leave the master itself
        may_pass = recipe.encrypt is None and suffix == master_suffix
        consistent = (
            bool(info.get("passthrough")) and may_pass
            if info.get("passthrough")
            else info.get("suffix") == suffix
        )
        if (
            not info.get("master_verified")
            or info.get("master_sha256") != master_sha256
            or not consistent
        ):
            self._remove(rid)  # no proof of what it was made from, or not what it says
            return None
        if info.get("passthrough"):
            path, sha256 = None, master_sha256
        else:
            path = self._data(rid, info)
            try:
                sha256 = sha256_file(path)
            except OSError:
                sha256 = ""
            if sha256 != info.get("sha256"):  # gone or damaged: make it again
                self._remove(rid)
                return None
        os.utime(self.folder / f"{rid}.json")  # recently used
        return Rendition(
            rid,
            path,
            sha256,
            int(info.get("size", 0)),
            str(info.get("mime")),
            cached=True,
            passthrough=bool(info.get("passthrough")),
            details=info.get("details"),
        )

    def private_folder(self) -> Path:
        """The cache folder, readable by its owner only: what is derived from a master (a
        resized embargoed picture) is never more readable than a private master."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            if self.folder.stat().st_uid == os.getuid() and self.folder.stat().st_mode & 0o077:
                self.folder.chmod(0o700)
        except OSError:
            pass
        return self.folder

    def expected(self, rid: str) -> tuple[str, int] | None:
        """(sha256, size) of a finished rendition, from its record alone (no hashing): what a
        job about to upload it will send, recorded before its first byte."""
        info = self._info(rid)
        if info is None or not info.get("master_verified") or info.get("passthrough"):
            return None
        return str(info.get("sha256")), int(info.get("size", 0))

    def remove(self, rid: str) -> None:
        """Forget a rendition found damaged while it was sent."""
        with self._claim(rid):
            self._remove(rid)

    # -- making ---------------------------------------------------------------------------
    def make(
        self,
        recipe: Recipe,
        master: Payload,
        master_name: str,
        master_mime: str,
        media_root: Path,
        manifests_dir: Path,
        progress: Callable[[float], None] | None = None,
    ) -> Rendition:
        """The rendition of the master read through ``master`` (the job's one descriptor,
        whose ``expected`` is the planned checksum): from the cache, or made now.

        Made now, every byte is read once from the descriptor and hashed in the same pass
        (into a private snapshot the media tools work on, or straight into the encryption);
        if those bytes are not the planned ones, :class:`SourceChanged` is raised and nothing
        is stored, so a rendition's id always names the bytes it was made from."""
        rid = recipe.rendition_id(master.expected)
        with self._claim(rid):
            found = self._cached(rid, master.expected, recipe, master_name)
            if found is not None:
                return found
            started = time.monotonic()
            work = self.folder / "tmp" / f"{rid}-{uuid.uuid4().hex[:8]}"  # swept by its rid
            work.mkdir(parents=True, exist_ok=True)
            try:
                output, details, key_created = self._render(
                    recipe, master, master_name, master_mime, media_root, manifests_dir, work,
                    progress,
                )  # fmt: skip
                passthrough = output is None
                suffix = recipe.suffix(os.path.splitext(master_name)[1])
                if output is None:
                    sha256, size, path = master.expected, master.size, None
                else:
                    sha256, size = sha256_file(output), output.stat().st_size
                    path = self.folder / f"{rid}{suffix}"
                    os.replace(output, path)
                info = {
                    "id": rid,
                    "sha256": sha256,
                    "size": size,
                    "mime": recipe.mime(master_mime),
                    "suffix": "" if passthrough else suffix,
                    "passthrough": passthrough,
                    "master_sha256": master.expected,
                    "master_verified": True,
                    "recipe": recipe.describe(),
                    "details": details,
                    "seconds": round(time.monotonic() - started, 3),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                write_atomically(
                    self.folder / f"{rid}.json", json.dumps(info, indent=1, sort_keys=True) + "\n"
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
            return Rendition(
                rid,
                path,
                sha256,
                size,
                str(info["mime"]),
                cached=False,
                passthrough=passthrough,
                seconds=time.monotonic() - started,
                details=details,
                key_created=key_created,
            )

    def _render(
        self,
        recipe: Recipe,
        master: Payload,
        master_name: str,
        master_mime: str,
        media_root: Path,
        manifests_dir: Path,
        work: Path,
        progress: Callable[[float], None] | None,
    ) -> tuple[Path | None, dict[str, Any] | None, Path | None]:
        """(the rendition's file, or None when it is the master itself; what the media steps
        did; a key file created for it)."""
        output: Path | None = None
        details = None
        source: Path | None = None
        if recipe.steps:  # the media tools read a private copy, checked before they start
            source = work / "in" / master_name
            _snapshot(master, source)
        if recipe.steps and recipe.kind == "image":
            from reconciler.transforms.images import render_image

            assert source is not None
            target = work / f"media{os.path.splitext(master_name)[1]}"
            details = render_image(source, target, recipe.steps, media_root)
            output = None if details.get("unchanged") else target
        elif recipe.steps and recipe.kind == "video":
            from reconciler.transforms.video import render_video

            assert source is not None
            target = work / "media.mp4"
            details = render_video(source, target, recipe.steps, media_root, work, progress)
            output = None if details.get("unchanged") else target
        key_created = None
        if recipe.encrypt is not None:
            key, key_created = load_key(recipe.encrypt, manifests_dir)
            encrypted = work / "encrypted"
            try:
                if output is not None or source is not None:
                    encrypt_file(output or source, encrypted, key)  # type: ignore[arg-type]
                else:  # encryption only: hashed in the same pass that encrypts
                    reader = master.reader()
                    encrypt_stream(reader.read, encrypted, key)
                    reader.confirm()
            except OSError as exc:
                raise TransformError(f"cannot encrypt {master_name}: {exc.strerror}") from None
            output = encrypted
        return output, details, key_created

    # -- bounds ---------------------------------------------------------------------------
    def evict(self, keep: set[str]) -> list[str]:
        """Remove least recently used renditions until the folder is within its bound;
        never those in ``keep``. Returns the ids removed."""
        if not self.folder.is_dir():
            return []
        entries = []
        total = 0
        for meta in self.folder.glob("*.json"):
            rid = meta.stem
            info = self._info(rid)
            try:
                used = meta.stat().st_mtime
                size = (
                    0
                    if info is None or info.get("passthrough")
                    else self._data(rid, info).stat().st_size
                )
            except OSError:
                size, used = 0, 0.0
            total += size
            entries.append((used, rid, size))
        removed = []
        for _, rid, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if rid in keep:
                continue
            try:
                with self._claim(rid, wait=False) as free:
                    if not free:  # being made or checked now, here or by another worker
                        continue
                    self._remove(rid)
            except TransformError:
                continue  # its claim file is refused: left as it is
            removed.append(rid)
            total -= size
        self.sweep_work()
        return removed

    def _remove(self, rid: str) -> None:
        info = self._info(rid) or {}
        (self.folder / f"{rid}.json").unlink(missing_ok=True)
        if info.get("suffix") is not None:
            self._data(rid, info).unlink(missing_ok=True)
        for leftover in self.folder.glob(f"{rid}.*"):
            leftover.unlink(missing_ok=True)

    def sweep_work(self, older_than: float = STALE_WORK_SECONDS) -> None:
        """Remove work folders, private copies for sending and half-written records older
        than ``older_than`` seconds, left by a run that was killed, and the claim files of
        renditions not in the folder that nobody holds.

        A work folder (``tmp/ID-*``) or record (``.ID.json.*``) is removed only while its
        rendition's claim is held here: never one a live maker is using, in this process or
        another worker on any host, whatever ``older_than`` (a video made for hours is not
        swept). A private copy for sending (``tmp/.send-*``) has no claim: only its age says
        it is a dead run's. One another process still sends from is removed under it (its
        open descriptor reads on, on a local disk; not from another NFS host), so
        ``older_than=0`` (recovery, under the run lock) assumes no other process sends from
        this folder, and the default assumes no send from another host lasts an hour."""
        now = time.time()
        records = [(r, r.name[1:65]) for r in self.folder.glob(".*.json.*")]
        work = [(w, w.name[:64]) for w in (self.folder / "tmp").glob("*")]
        for leftover, rid in records + work:
            try:
                if now - leftover.lstat().st_mtime < older_than:
                    continue
                claimed = self._claim(rid, wait=False) if _ID.fullmatch(rid) else nullcontext(True)
                with claimed as free:
                    if not free:
                        continue  # a live maker's
                    if leftover.is_dir() and not leftover.is_symlink():
                        shutil.rmtree(leftover, ignore_errors=True)
                    else:  # a record, or a private copy for sending, left by a killed run
                        leftover.unlink(missing_ok=True)
            except (OSError, TransformError):
                pass
        self.claims.sweep(keep=self.cached_ids())


def _snapshot(master: Payload, dest: Path) -> None:
    """Copy the master's bytes from its descriptor into ``dest``, hashing them as they are
    copied; they must be the planned bytes, or :class:`SourceChanged`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    reader = master.reader()
    with open(dest, "xb") as out:
        while block := reader.read(1024 * 1024):
            out.write(block)
    reader.confirm()
