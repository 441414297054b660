"""The renditions side of an apply run: which rendition a job uploads, made or found in the
cache, and the cache's bound kept when the run ends. Events are recorded by
:mod:`reconciler.apply.run`, which owns the job."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from reconciler.model import ManifestSet
from reconciler.observe.masters import Opened, open_master
from reconciler.observe.payload import Payload
from reconciler.transforms import TransformError
from reconciler.transforms.recipe import Recipe, RecipeBook
from reconciler.transforms.renditions import DEFAULT_MAX_BYTES, Rendition, RenditionCache

if TYPE_CHECKING:
    from reconciler.plan.actions import Action

ProgressFn = Callable[[float], None]


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
