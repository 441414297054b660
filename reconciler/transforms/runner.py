"""The renditions side of an apply run: which rendition a job uploads, made or found in the
cache, and the cache's bound kept when the run ends. Events are recorded by
:mod:`reconciler.apply`, which owns the job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.models import ManifestSet
from reconciler.transforms import TransformError
from reconciler.transforms.recipe import Recipe, RecipeBook
from reconciler.transforms.renditions import DEFAULT_MAX_BYTES, Rendition, RenditionCache

if TYPE_CHECKING:
    from reconciler.plan import Action


def default_folder(state_path: Path) -> Path:
    """``renditions/`` next to the state file (``state/renditions/`` by default)."""
    return Path(state_path).parent / "renditions"


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
        recipe = self.recipes.recipe(action.rule, action.platform, action.mime_type or "")
        if (
            recipe is None
            or action.checksum is None
            or recipe.rendition_id(action.checksum) != action.rendition_id
        ):
            raise TransformError("the transform rules changed since this plan was made; plan again")
        return recipe

    def rendition(
        self, action: Action, recipe: Recipe, progress: Callable[[float], None] | None = None
    ) -> Rendition:
        assert action.path is not None and action.checksum is not None
        self.used.add(recipe.rendition_id(action.checksum))
        return self.cache.make(
            recipe,
            Path(action.path),
            action.checksum,
            action.mime_type or "application/octet-stream",
            Path(self.manifests.media_root),
            Path(self.manifests.manifests_dir),
            progress,
        )

    def finish(self) -> list[str]:
        """Keep the cache within its bound; the renditions of this run stay."""
        return self.cache.evict(self.used)
