"""The renditions side of an apply run: which rendition a job uploads, made or found in the
cache (:func:`rendition_for`, called by :mod:`.transfer` with the job's open master), and the
cache's bound kept when the run ends (:meth:`Transformer.finish`, called by
:mod:`reconciler.apply.run`). The CLI and watch use :func:`default_folder` and
:func:`tool_files`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from reconciler.apply.job import CHANGED, Job
from reconciler.drivers.base import PermanentError
from reconciler.model import EventStatus, EventType, ManifestSet
from reconciler.observe.masters import Opened, open_master
from reconciler.observe.payload import Payload, SourceChanged
from reconciler.store.records import EventRow
from reconciler.transforms import TransformError
from reconciler.transforms.recipe import Recipe, RecipeBook
from reconciler.transforms.renditions import DEFAULT_MAX_BYTES, Rendition, RenditionCache

if TYPE_CHECKING:
    from reconciler.plan.actions import Action

ProgressFn = Callable[[float], None]
Report = Callable[[EventRow], None]  # where a job's events go as they happen


def default_folder(state_path: Path) -> Path:
    """``renditions/`` next to the state file (``state/renditions/`` by default)."""
    return Path(state_path).parent / "renditions"


def tool_files(state: Path, renditions: Path | None = None) -> list[Path]:
    """This tool's own files, never masters even inside the media root: the state file with
    its lock, journal and temporary siblings, and the rendition cache."""
    state = Path(state)
    return [
        *(state.with_name(state.name + suffix) for suffix in ("", ".wal", ".lock", ".tmp")),
        renditions or default_folder(state),
    ]


class Transformer:
    """The run's recipes and rendition cache; remembers the renditions the run used."""

    def __init__(
        self, manifests: ManifestSet, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.manifests = manifests
        self.recipes = RecipeBook(manifests)
        self.cache = RenditionCache(folder, max_bytes)
        self.used: set[str] = set()

    def recipe(self, action: Action) -> Recipe:
        """The recipe behind the action's rendition id, checked against the manifests now."""
        declared = self.manifests.assets.get(action.asset)
        recipe = self.recipes.recipe(
            action.rule,
            action.platform,
            action.mime_type or "",
            declared.asset_type if declared is not None else None,
        )
        if (
            recipe is None
            or action.checksum is None
            or recipe.rendition_id(action.checksum) != action.rendition_id
        ):
            raise TransformError("the transform rules changed since this plan was made; plan again")
        return recipe

    def rendition(
        self, action: Action, recipe: Recipe, master: Payload, progress: ProgressFn | None = None
    ) -> Rendition:
        """The action's rendition, made from the job's open master (``master.expected`` is
        the planned checksum) or found in the cache."""
        assert action.file is not None
        self.used.add(recipe.rendition_id(master.expected))
        return self.cache.make(
            recipe,
            master,
            PurePosixPath(action.file).name,
            action.mime_type or "application/octet-stream",
            Path(self.manifests.media_root),
            Path(self.manifests.manifests_dir),
            progress,
        )

    def open(self, rendition: Rendition) -> Opened:
        """The rendition's file, opened once for its upload (inside the cache folder, never
        through a symlink)."""
        assert rendition.path is not None
        return open_master(str(rendition.path), str(os.path.realpath(self.cache.folder)))

    def finish(self) -> list[str]:
        """Keep the cache within its bound; the renditions of this run stay."""
        return self.cache.evict(self.used)


def rendition_for(transformer: Transformer, job: Job, master: Payload, report: Report) -> Rendition:
    """Make (or find) the job's rendition from the open master, with its transform
    events. A transform that fails fails the job: nothing is uploaded."""
    action = job.action
    try:
        recipe = transformer.recipe(action)
    except TransformError as exc:
        raise PermanentError(str(exc)) from None
    report(job.event(
        EventType.TRANSFORM_START, EventStatus.SUCCESS,
        f"making the rendition for {action.platform}: {recipe.describe()}",
        {"rendition": action.rendition_id},
    ))  # fmt: skip
    started = time.monotonic()
    try:
        rendition = transformer.rendition(action, recipe, master)
    except (TransformError, SourceChanged) as exc:
        seconds = round(time.monotonic() - started, 3)
        changed = isinstance(exc, SourceChanged)
        message = CHANGED if changed else str(exc)
        report(job.event(
            EventType.TRANSFORM_COMPLETE, EventStatus.FAILED, message, {"seconds": seconds}
        ))  # fmt: skip
        raise PermanentError(message if changed else f"the transform failed: {exc}") from None
    if rendition.key_created is not None:
        report(job.event(
            EventType.KEY_CREATED, EventStatus.SUCCESS,
            f"generated a new encryption key in {rendition.key_created}; back it up: "
            "the encrypted copies cannot be decrypted without it",
        ))  # fmt: skip
    done = "found in the cache" if rendition.cached else f"made in {rendition.seconds:.2f} s"
    what = "the master itself" if rendition.passthrough else f"{rendition.size:,} bytes"
    report(job.event(
        EventType.TRANSFORM_COMPLETE, EventStatus.SUCCESS,
        f"rendition {rendition.id[:12]} {done}: {what}",
        {
            "rendition": rendition.id, "cached": rendition.cached,
            "seconds": round(rendition.seconds, 3), "bytes": rendition.size,
            "sha256": rendition.sha256, "passthrough": rendition.passthrough,
        },
    ))  # fmt: skip
    return rendition
