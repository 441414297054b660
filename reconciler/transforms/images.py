"""Image renditions with Pillow: fit within a size (never upscaled), watermark, re-encode.

The watermark badge is drawn here for videos too (:func:`badge`), so that an image and a
video under the same rule carry the same mark.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from reconciler.transforms import TransformError
from reconciler.transforms.recipe import DEFAULT_IMAGE_QUALITY

# Formats written back as they came; anything else Pillow can read becomes PNG.
KEEP_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "GIF": ".gif"}
# Pillow's bomb check, raised for large print masters (256 megapixels, about 1 GB to decode)
# and still bounded: a crafted image cannot make a run (on every run) exhaust memory
MAX_PIXELS = 16_000 * 16_000


def render_image(
    source: Path, dest: Path, steps: tuple[tuple[str, dict[str, Any]], ...], media_root: Path
) -> dict[str, Any]:
    """Write the rendition of ``source`` to ``dest`` (same format); returns what it did.

    When no step changes a pixel and no quality is asked, ``{"unchanged": True}`` is returned
    and nothing is written: the master itself is the rendition."""
    image, fmt = _open(source)
    with image:
        changed = _oriented(image)
        frame = ImageOps.exif_transpose(image)
        encode: dict[str, Any] = {}
        for name, params in steps:
            if name == "fit":
                fitted = _fit(frame, params.get("max_side"), params.get("max_height"))
                changed = changed or fitted is not frame
                frame = fitted
            elif name == "watermark":
                frame = _watermarked(frame, params, media_root)
                changed = True
            elif name == "encode":
                encode = params
        if not changed and not encode.get("strip_metadata") and encode.get("quality") is None:
            return {"unchanged": True, "width": frame.width, "height": frame.height}
        _save(frame, dest, fmt, encode, image)
        return {"width": frame.width, "height": frame.height, "format": fmt}


def _open(source: Path | io.BytesIO, name: str | None = None) -> tuple[Image.Image, str]:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    name = name or getattr(source, "name", "the image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TransformError(f"{name} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise TransformError(f"cannot read the image {name}: {exc}") from None
    return image, image.format or "PNG"


def _oriented(image: Image.Image) -> bool:
    return image.getexif().get(0x0112, 1) not in (None, 1)


def _fit(frame: Image.Image, max_side: int | None, max_height: int | None) -> Image.Image:
    width, height = frame.size
    scale = 1.0
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
    if max_height is not None and height * scale > max_height:
        scale = max_height / height
    if scale >= 1.0:
        return frame  # never upscaled
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return frame.resize(size, Image.Resampling.LANCZOS)


def badge(width: int, height: int, mark: dict[str, Any], media_root: Path) -> Image.Image:
    """The watermark for a frame of this size: an RGBA image the size of the frame, clear
    except in the chosen corner."""
    opacity = float(mark.get("opacity", 0.6))
    margin = max(2, min(width, height) // 40)
    if mark.get("image"):
        logo = _logo(mark, media_root).convert("RGBA")
        target = max(1, width // 5)
        logo = logo.resize((target, max(1, round(logo.height * target / logo.width))))
        alpha = logo.getchannel("A").point(lambda a: round(a * opacity))
        logo.putalpha(alpha)
        stamp = logo
    else:
        size = max(8, min(width, height) // 8)
        font = ImageFont.load_default(size=size)
        text = str(mark.get("text", "©"))
        left, top, right, bottom = (int(v) for v in font.getbbox(text))
        pad = max(2, size // 4)
        stamp = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad))
        draw = ImageDraw.Draw(stamp)
        draw.rectangle((0, 0, *stamp.size), fill=(255, 255, 255, round(255 * opacity)))
        draw.text((pad - left, pad - top), text, font=font, fill=(0, 0, 0, round(255 * opacity)))
    corner = str(mark.get("corner", "bottom-right"))
    x = margin if corner.endswith("left") else max(0, width - stamp.width - margin)
    y = margin if corner.startswith("top") else max(0, height - stamp.height - margin)
    layer = Image.new("RGBA", (width, height))
    fitting = stamp.crop((0, 0, min(stamp.width, width), min(stamp.height, height)))
    layer.alpha_composite(fitting, (x, y))
    return layer


def _logo(mark: dict[str, Any], media_root: Path) -> Image.Image:
    """The watermark image, read safely from the media root (never through a symlink out of
    it), and only if it is still the image the recipe, and so the rendition id, was made
    with."""
    from reconciler.observe.masters import UnsafeMaster, opened_master

    relative = str(mark["image"])
    try:
        with opened_master(str(media_root / relative), str(media_root)) as logo:
            payload = logo.payload(str(mark.get("image_sha256") or ""))
            data = payload.pread(logo.size + 1, 0)
    except UnsafeMaster as exc:
        raise TransformError(f"the watermark image {relative} {exc.reason}") from None
    except OSError as exc:
        raise TransformError(f"cannot read the watermark image {relative}: {exc}") from None
    if hashlib.sha256(data).hexdigest() != mark.get("image_sha256"):
        raise TransformError(
            f"the watermark image {relative} changed since the plan was made; plan again"
        )
    return _open(io.BytesIO(data), relative)[0]


def _watermarked(frame: Image.Image, mark: dict[str, Any], media_root: Path) -> Image.Image:
    mode = frame.mode
    layer = badge(frame.width, frame.height, mark, media_root)
    marked = Image.alpha_composite(frame.convert("RGBA"), layer)
    return marked if mode == "RGBA" else marked.convert("RGB" if mode != "LA" else "LA")


def _save(
    frame: Image.Image, dest: Path, fmt: str, encode: dict[str, Any], original: Image.Image
) -> None:
    fmt = fmt if fmt in KEEP_FORMATS else "PNG"
    options: dict[str, Any] = {}
    icc = original.info.get("icc_profile")
    if icc:
        options["icc_profile"] = icc
    if not encode.get("strip_metadata"):
        exif = original.getexif()
        if exif:
            exif[0x0112] = 1  # the pixels are upright now
            options["exif"] = exif.tobytes()
    if fmt == "JPEG":
        frame = frame.convert("RGB") if frame.mode not in ("RGB", "L", "CMYK") else frame
        options.update(quality=int(encode.get("quality") or DEFAULT_IMAGE_QUALITY), optimize=True)
    elif fmt == "WEBP":
        options["quality"] = int(encode.get("quality") or DEFAULT_IMAGE_QUALITY)
    elif fmt == "PNG":
        options["optimize"] = True
    try:
        frame.save(dest, format=fmt, **options)
    except (OSError, ValueError) as exc:
        raise TransformError(f"cannot write the {fmt} rendition: {exc}") from None
