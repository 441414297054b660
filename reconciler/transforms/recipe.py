"""Transform rules -> the recipe of one rendition, and the rendition's identity.

A SyncRule's ``transform_rules`` say what a platform should receive; what that means for one
asset depends on the asset's kind (an image is resized, a video scaled) and, for
``optimize_for_social``, on the platform's type. :func:`recipe_for` resolves all of that into
a :class:`Recipe`: the ordered steps with every parameter filled in. Its canonical JSON,
hashed with the master's checksum and :data:`TRANSFORM_VERSION`, is the rendition's id, so
two platforms with the same rules share one rendition and a changed rule or changed
transform code gives a new one.

:func:`recipe_for` is pure; :class:`RecipeBook` resolves the recipes of a whole plan,
once per (rule, platform, kind), and reads the checksum of each watermark image (safely, as a
master is read). Neither reads a master or a secret.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from reconciler.mime import media_kind
from reconciler.model import ManifestSet

# Bump when a change to the transform code changes what a recipe produces: every rendition
# gets a new id, so every transformed placement is re-rendered and re-uploaded.
TRANSFORM_VERSION = 1

DEFAULT_MAX_DIMENSION = 2000
DEFAULT_IMAGE_QUALITY = 90
DEFAULT_VIDEO_CRF = 23
DEFAULT_WATERMARK = {"text": "©", "corner": "bottom-right", "opacity": 0.6}


@dataclass(frozen=True)
class Preset:
    """What optimize_for_social means on one type of platform."""

    image_max: int  # longest side, px
    image_quality: int
    video_height: int
    video_crf: int
    audio_kbps: int


SOCIAL_PRESETS = {
    "social": Preset(1080, 85, 1080, 23, 128),
    "video_platform": Preset(1920, 90, 1080, 20, 192),
    "cdn": Preset(2048, 85, 1080, 23, 128),
    "cloud_storage": Preset(2048, 90, 1080, 20, 192),
}
FALLBACK_PRESET = SOCIAL_PRESETS["social"]


@dataclass(frozen=True)
class KeyRef:
    """Where an encryption key is; never the key."""

    env: str | None = None
    file: str | None = None  # relative paths are relative to the manifests folder
    create: bool = False

    def __str__(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"


@dataclass(frozen=True)
class Recipe:
    """Every step that turns a master of one kind into the rendition one platform gets."""

    kind: str  # image, video or other
    steps: tuple[tuple[str, dict[str, Any]], ...]  # media steps, in order
    encrypt: KeyRef | None
    digest: str  # of the canonical JSON of kind, steps, encryption and TRANSFORM_VERSION

    def rendition_id(self, master_sha256: str) -> str:
        return hashlib.sha256(f"{master_sha256}:{self.digest}".encode()).hexdigest()

    def suffix(self, master_suffix: str) -> str:
        """The file suffix of the rendition for a master with this suffix."""
        suffix = ".mp4" if self.kind == "video" and self.steps else master_suffix
        return suffix + ".enc" if self.encrypt is not None else suffix

    def mime(self, master_mime: str) -> str:
        if self.encrypt is not None:
            return "application/octet-stream"
        return "video/mp4" if self.kind == "video" and self.steps else master_mime

    @cached_property
    def description(self) -> str:
        """:meth:`describe`, worked out once (a plan names it for every placement)."""
        return self.describe()

    def describe(self) -> str:
        """A short human description, for plans and explain."""
        parts = [_describe_step(name, params) for name, params in self.steps]
        if self.encrypt is not None:
            parts.append(f"encrypt AES-256-GCM ({self.encrypt})")
        return ", ".join(p for p in parts if p)


def kind_of(mime: str, asset_type: str | None = None) -> str:
    """What the media steps treat a master as: by its MIME type, else (a type the MIME map
    does not know) by the asset's declared type, so that a video rule is never silently
    skipped for a video."""
    kind = media_kind(mime)
    if kind == "other" and asset_type in ("video", "image"):
        return str(asset_type)
    return kind


Step = tuple[str, dict[str, Any]]  # (operation, its parameters), as the recipe id hashes it


def recipe_for(
    rules: dict[str, Any],
    mime: str,
    platform_type: str | None,
    watermark_sha256: str | None = None,
    kind: str | None = None,
) -> Recipe | None:
    """The recipe for a master of ``mime`` (treated as ``kind``, by default its MIME type's)
    under ``rules`` on a platform of ``platform_type``; None when nothing applies (the master
    itself is uploaded)."""
    kind = kind or media_kind(mime)
    social = (
        SOCIAL_PRESETS.get(platform_type or "", FALLBACK_PRESET)
        if rules.get("optimize_for_social")
        else None
    )
    mark = _watermark(rules.get("add_watermark"), watermark_sha256)
    quality = rules.get("quality")
    steps: list[Step] = []
    if kind == "image":
        steps = _image_steps(rules, quality, social, mark)
    elif kind == "video":
        steps = _video_steps(quality, social, mark)
    key = _key_ref(rules) if rules.get("encrypt") else None
    if not steps and key is None:
        return None
    canonical = {
        "version": TRANSFORM_VERSION,
        "kind": kind,
        "steps": steps,
        "encrypt": None if key is None else {"algorithm": "AES-256-GCM", "key": str(key)},
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Recipe(kind, tuple(steps), key, hashlib.sha256(text.encode()).hexdigest())


class RecipeBook:
    """The recipes of one set of manifests, each resolved once."""

    def __init__(self, manifests: ManifestSet) -> None:
        self.manifests = manifests
        self._recipes: dict[tuple[str, str, str], Recipe | None] = {}
        self._watermarks: dict[str, str | None] = {}

    def recipe(
        self, rule_code: str | None, platform_code: str, mime: str, asset_type: str | None = None
    ) -> Recipe | None:
        rule = self.manifests.rules.get(rule_code or "")
        if rule is None or not rule.transform_rules:
            return None
        kind = kind_of(mime, asset_type)
        key = (rule.code, platform_code, kind)
        if key not in self._recipes:
            rules = dict(rule.transform_rules)
            platform = self.manifests.platforms.get(platform_code)
            self._recipes[key] = recipe_for(
                rules,
                mime,
                platform.platform_type if platform is not None else None,
                self._watermark_sha256(rules.get("add_watermark")),
                kind,
            )
        return self._recipes[key]

    def _watermark_sha256(self, mark: Any) -> str | None:
        image = mark.get("image") if isinstance(mark, dict) else None
        if not isinstance(image, str):
            return None
        if image not in self._watermarks:
            from reconciler.observe.masters import UnsafeMaster, opened_master

            root = str(self.manifests.media_root)
            try:  # read the one safe way: never through a symlink out of the media root
                with opened_master(str(Path(root) / image), root) as logo:
                    data = logo.payload("").pread(logo.size + 1, 0)
                self._watermarks[image] = hashlib.sha256(data).hexdigest()
            except (UnsafeMaster, OSError):  # the render reports why it cannot be read
                self._watermarks[image] = None
        return self._watermarks[image]


def _height(quality: str) -> int:
    return int(quality.rstrip("p"))


def _watermark(value: Any, image_sha256: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    mark: dict[str, Any] = dict(DEFAULT_WATERMARK)
    if isinstance(value, dict):
        if "image" in value and "text" not in value:
            del mark["text"]
        mark.update(value)
        if "image" in value:
            mark["image_sha256"] = image_sha256  # a new logo is a new rendition
    return mark


def _key_ref(rules: dict[str, Any]) -> KeyRef:
    ref = rules.get("encryption_key") or {}
    return KeyRef(ref.get("secret_env"), ref.get("secret_file"), bool(ref.get("create")))


def _describe_step(name: str, params: dict[str, Any]) -> str:
    if name == "fit":
        if "max_side" in params:
            return f"fit within {params['max_side']} px"
        return f"at most {params['max_height']} px high"
    if name == "scale":
        return f"scale to at most {params['max_height']}p"
    if name == "watermark":
        what = f"image {params['image']}" if params.get("image") else f"'{params.get('text')}'"
        return f"watermark {what} {params['corner']}"
    if name == "encode":
        if "codec" in params:
            return f"H.264 crf {params['crf']}"
        stripped = ", no metadata" if params["strip_metadata"] else ""
        quality = params["quality"] or f"{DEFAULT_IMAGE_QUALITY} if re-encoded"
        return f"quality {quality}{stripped}"
    return name


def _image_steps(
    rules: dict[str, Any], quality: Any, social: Preset | None, mark: dict[str, Any] | None
) -> list[Step]:
    """An image's steps: fit within the limits asked for, watermark, encode."""
    steps: list[Step] = []
    limits = []
    if rules.get("resize_images"):
        limits.append(int(rules.get("max_dimension", DEFAULT_MAX_DIMENSION)))
    if social is not None:
        limits.append(social.image_max)
    if limits:
        steps.append(("fit", {"max_side": min(limits)}))
    if isinstance(quality, str):  # a video height: at most that many rows
        steps.append(("fit", {"max_height": _height(quality)}))
    if mark is not None:
        steps.append(("watermark", mark))
    if steps or isinstance(quality, int):
        image_quality = quality if isinstance(quality, int) else None
        if image_quality is None and social is not None:
            image_quality = social.image_quality
        # quality None: re-encode at DEFAULT_IMAGE_QUALITY only if a pixel changed
        steps.append(("encode", {"quality": image_quality, "strip_metadata": social is not None}))
    return steps


def _video_steps(quality: Any, social: Preset | None, mark: dict[str, Any] | None) -> list[Step]:
    """A video's steps: scale down to the height asked for, watermark, encode in H.264."""
    steps: list[Step] = []
    heights = [_height(quality)] if isinstance(quality, str) else []
    if social is not None:
        heights.append(social.video_height)
    if heights:
        steps.append(("scale", {"max_height": min(heights)}))
    if mark is not None:
        steps.append(("watermark", mark))
    if steps:
        encode = {
            "codec": "h264",
            "crf": social.video_crf if social is not None else DEFAULT_VIDEO_CRF,
            "audio_kbps": social.audio_kbps if social is not None else 128,
            "faststart": True,
            "always": social is not None,  # social presets re-encode even a small enough video
        }
        steps.append(("encode", encode))
    return steps
