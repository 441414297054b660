"""Transforms on real media the tests generate (Pillow images, test videos made through PyAV):
recipes and rendition ids, image and video renditions by both engines, encryption, the
rendition cache, and apply through the real local driver and the CLI, up to the shipped
example's "done when". The ffmpeg engine's variants run where its commands are installed;
the PyAV engine's everywhere, and on the shipped example with ffmpeg removed from PATH."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from media import ENGINES, first_frame, make_video, needs_ffmpeg, path_without_ffmpeg
from PIL import Image, ImageStat
from planning import World, action_of, apply_run

from reconciler.apply.run import ApplyOptions
from reconciler.observe.sources import sha256_file
from reconciler.transforms import TransformError
from reconciler.transforms.crypto import CHUNK, decrypt_file, encrypt_file, parse_key
from reconciler.transforms.images import render_image
from reconciler.transforms.recipe import recipe_for
from reconciler.transforms.renditions import RenditionCache
from reconciler.transforms.video import BACKENDS, backend, probe, render_video

from helpers import SHIPPED_MANIFESTS, payload_of

KEY_HEX = "11" * 32
BLUE = (0, 0, 255)


# -- media the tests make -----------------------------------------------------------------------
def jpeg(width: int, height: int, color: tuple[int, int, int] = BLUE, **save: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG", quality=95, **save)
    return out.getvalue()


def video(path: Path, width: int, height: int, source: str = "testsrc2", seconds: int = 1) -> Path:
    """A short H.264 test video from FFmpeg's generators through PyAV (``color``: plain blue)."""
    if source.startswith("color"):
        source = "color=c=blue"
    return make_video(path, width, height, source, seconds=seconds)


def frame(path: Path) -> Image.Image:
    """The first frame of a video, decoded through PyAV."""
    return first_frame(path)


def mean(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[float, float, float]:
    red, green, blue = ImageStat.Stat(image.crop(box)).mean[:3]
    return red, green, blue


def marked(image: Image.Image, corner: str = "bottom-right") -> bool:
    """Whether the corner of a blue picture carries the (light) watermark badge while the
    opposite corner is still plain blue."""
    w, h = image.size
    size = max(4, min(w, h) // 12)
    margin = max(2, min(w, h) // 40) + 1
    boxes = {
        "bottom-right": (w - margin - size, h - margin - size, w - margin, h - margin),
        "top-left": (margin, margin, margin + size, margin + size),
    }
    other = "top-left" if corner == "bottom-right" else "bottom-right"
    red_in, _, _ = mean(image, boxes[corner])
    red_out, _, blue_out = mean(image, boxes[other])
    return red_in > 100 and red_out < 30 and blue_out > 200


# -- recipes and rendition ids ------------------------------------------------------------------
RECIPES = [
    # (rules, mime, platform type, expected step names, encrypted)
    ({"resize_images": True, "max_dimension": 2000}, "image/jpeg", "cdn", ["fit", "encode"], False),
    ({"resize_images": True}, "video/mp4", "cdn", None, False),  # resizing is for images
    ({"quality": "1080p"}, "video/mp4", "video_platform", ["scale", "encode"], False),
    ({"quality": "720p"}, "image/png", "cdn", ["fit", "encode"], False),
    ({"quality": 80}, "image/jpeg", "cdn", ["encode"], False),
    ({"add_watermark": True, "quality": "1080p"}, "video/mp4", "video_platform",
     ["scale", "watermark", "encode"], False),
    ({"optimize_for_social": True}, "image/jpeg", "social", ["fit", "encode"], False),
    ({"optimize_for_social": True}, "video/mp4", "social", ["scale", "encode"], False),
    ({"encrypt": True, "encryption_key": {"secret_env": "K"}}, "video/mp4", "cloud_storage", [],
     True),
    ({"encrypt": True, "encryption_key": {"secret_env": "K"}}, "application/pdf", None, [], True),
    ({"quality": "1080p"}, "application/pdf", "cdn", None, False),
    ({"add_watermark": False}, "image/jpeg", "cdn", None, False),
]  # fmt: skip


@pytest.mark.parametrize(("rules", "mime", "ptype", "steps", "encrypted"), RECIPES)
def test_recipes_from_transform_rules(
    rules: dict, mime: str, ptype: str | None, steps: list[str] | None, encrypted: bool
) -> None:
    recipe = recipe_for(rules, mime, ptype)
    if steps is None:
        assert recipe is None  # nothing applies: the master itself goes up
        return
    assert recipe is not None
    assert [name for name, _ in recipe.steps] == steps
    assert (recipe.encrypt is not None) is encrypted
    assert recipe.describe()


def test_rendition_ids_are_content_addressed() -> None:
    rules = {"resize_images": True, "max_dimension": 2000}
    one = recipe_for(rules, "image/jpeg", "cdn")
    same = recipe_for(dict(reversed(list(rules.items()))), "image/jpeg", "cdn")
    assert one is not None and same is not None
    assert one.rendition_id("a" * 64) == same.rendition_id("a" * 64)  # key order is not identity
    assert one.rendition_id("a" * 64) != one.rendition_id("b" * 64)  # another master
    changed = recipe_for({**rules, "max_dimension": 1000}, "image/jpeg", "cdn")
    assert changed is not None and changed.rendition_id("a" * 64) != one.rendition_id("a" * 64)
    social = {"optimize_for_social": True}
    on_social = recipe_for(social, "image/jpeg", "social")
    on_cdn = recipe_for(social, "image/jpeg", "cdn")
    assert on_social is not None and on_cdn is not None
    assert on_social.digest != on_cdn.digest  # the preset depends on the platform type
    key_a = recipe_for({"encrypt": True, "encryption_key": {"secret_env": "A"}}, "image/png", None)
    key_b = recipe_for({"encrypt": True, "encryption_key": {"secret_env": "B"}}, "image/png", None)
    assert key_a is not None and key_b is not None and key_a.digest != key_b.digest
    assert "11" * 32 not in json.dumps(key_a.describe())  # a reference, never a key


def test_transform_version_is_part_of_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    import reconciler.transforms.recipe as recipe_module

    rules = {"quality": "720p"}
    before = recipe_for(rules, "video/mp4", "cdn")
    monkeypatch.setattr(recipe_module, "TRANSFORM_VERSION", recipe_module.TRANSFORM_VERSION + 1)
    after = recipe_for(rules, "video/mp4", "cdn")
    assert before is not None and after is not None and before.digest != after.digest


# -- images -------------------------------------------------------------------------------------
def image_steps(rules: dict, ptype: str = "cdn", logo: Path | None = None) -> tuple:
    mark = hashlib.sha256(logo.read_bytes()).hexdigest() if logo is not None else None
    recipe = recipe_for(rules, "image/jpeg", ptype, mark)
    assert recipe is not None
    return recipe.steps


@pytest.mark.parametrize(
    ("size", "limit", "expected"),
    [
        ((3000, 1500), 2000, (2000, 1000)),  # landscape: long side to the limit
        ((1200, 4000), 2000, (600, 2000)),  # portrait
        ((2000, 2000), 2000, None),  # exactly the limit: untouched
        ((800, 600), 2000, None),  # smaller: never upscaled, the master itself
    ],
)
def test_resize_keeps_the_aspect_ratio_and_never_upscales(
    tmp_path: Path, size: tuple[int, int], limit: int, expected: tuple[int, int] | None
) -> None:
    master = tmp_path / "m.jpg"
    master.write_bytes(jpeg(*size))
    out = tmp_path / "out.jpg"
    steps = image_steps({"resize_images": True, "max_dimension": limit})
    done = render_image(master, out, steps, tmp_path)
    if expected is None:
        assert done["unchanged"] is True and not out.exists()
        return
    with Image.open(out) as got:
        assert got.size == expected
        assert got.format == "JPEG"


def test_exif_orientation_is_applied_before_fitting(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90°: portrait
    master = tmp_path / "m.jpg"
    master.write_bytes(jpeg(3000, 1500, exif=exif.tobytes()))
    render_image(master, tmp_path / "o.jpg", image_steps({"resize_images": True}), tmp_path)
    with Image.open(tmp_path / "o.jpg") as got:
        assert got.size == (1000, 2000)
        assert got.getexif().get(0x0112, 1) == 1


@pytest.mark.parametrize("corner", ["bottom-right", "top-left"])
def test_text_watermark_in_the_chosen_corner(tmp_path: Path, corner: str) -> None:
    master = tmp_path / "m.jpg"
    master.write_bytes(jpeg(640, 480))
    steps = image_steps({"add_watermark": {"text": "ACME", "corner": corner, "opacity": 0.9}})
    render_image(master, tmp_path / "o.jpg", steps, tmp_path)
    with Image.open(tmp_path / "o.jpg") as got:
        assert got.size == (640, 480)
        assert marked(got.convert("RGB"), corner)
    with Image.open(master) as plain:
        assert not marked(plain.convert("RGB"), corner)


def test_image_watermark_from_the_media_root(tmp_path: Path) -> None:
    Image.new("RGBA", (100, 100), (255, 0, 0, 255)).save(tmp_path / "logo.png")
    master = tmp_path / "m.png"
    Image.new("RGB", (500, 500), BLUE).save(master)
    mark = {"image": "logo.png", "corner": "bottom-right", "opacity": 1.0}
    steps = image_steps({"add_watermark": mark}, logo=tmp_path / "logo.png")
    render_image(master, tmp_path / "o.png", steps, tmp_path)
    with Image.open(tmp_path / "o.png") as got:
        assert got.getpixel((500 - 30, 500 - 30)) == (255, 0, 0)  # the logo, opaque
        assert got.getpixel((10, 10)) == BLUE
    # a logo changed since the plan (whose rendition id names the old one) is refused
    Image.new("RGBA", (100, 100), (0, 255, 0, 255)).save(tmp_path / "logo.png")
    with pytest.raises(TransformError, match="changed since the plan was made"):
        render_image(master, tmp_path / "o2.png", steps, tmp_path)
    # and a logo swapped for a symlink out of the media root is never read
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    Image.new("RGBA", (100, 100), (255, 0, 0, 255)).save(outside)
    (tmp_path / "logo.png").unlink()
    (tmp_path / "logo.png").symlink_to(outside)
    with pytest.raises(TransformError, match="leads outside the media root"):
        render_image(master, tmp_path / "o3.png", steps, tmp_path)


def test_social_preset_fits_and_strips_metadata(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # camera maker
    master = tmp_path / "m.jpg"
    master.write_bytes(jpeg(3000, 2000, exif=exif.tobytes()))
    render_image(master, tmp_path / "o.jpg", image_steps({"optimize_for_social": True}, "social"),
                 tmp_path)  # fmt: skip
    with Image.open(tmp_path / "o.jpg") as got:
        assert got.size == (1080, 720)
        assert not got.getexif()


def test_an_unreadable_image_is_a_clear_transform_error(tmp_path: Path) -> None:
    master = tmp_path / "broken.jpg"
    master.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(TransformError, match=r"broken\.jpg"):
        render_image(master, tmp_path / "o.jpg", image_steps({"resize_images": True}), tmp_path)
    assert not (tmp_path / "o.jpg").exists()


# -- video --------------------------------------------------------------------------------------
def video_steps(rules: dict) -> tuple:
    recipe = recipe_for(rules, "video/mp4", "video_platform")
    assert recipe is not None
    return recipe.steps


@ENGINES
def test_video_is_scaled_down_with_progress_and_watermarked(tmp_path: Path, engine: str) -> None:
    master = video(tmp_path / "m.mp4", 640, 360, source="color", seconds=2)
    seen: list[float] = []
    out = tmp_path / "o.mp4"
    done = render_video(
        master,
        out,
        video_steps({"quality": "240p", "add_watermark": True}),
        tmp_path,
        tmp_path,
        seen.append,
        engine,
    )
    info = probe(out, engine)
    assert (info.width, info.height) == (426, 240)
    assert info.duration == pytest.approx(2.0, abs=0.15)
    assert done["height"] == 240
    assert seen and seen[-1] == pytest.approx(1.0)
    assert marked(frame(out))
    assert not marked(frame(master))


@ENGINES
def test_video_is_never_scaled_up(tmp_path: Path, engine: str) -> None:
    master = video(tmp_path / "m.mp4", 320, 180)
    out = tmp_path / "o.mp4"
    steps = video_steps({"quality": "1080p"})
    done = render_video(master, out, steps, tmp_path, tmp_path, None, engine)
    assert done.get("unchanged") is True and not out.exists()  # the master itself goes up
    marked_out = tmp_path / "w.mp4"
    steps = video_steps({"quality": "1080p", "add_watermark": True})
    render_video(master, marked_out, steps, tmp_path, tmp_path, None, engine)
    assert (probe(marked_out).width, probe(marked_out).height) == (320, 180)


@ENGINES
def test_a_file_ffmpeg_cannot_read_is_a_clear_transform_error(tmp_path: Path, engine: str) -> None:
    master = tmp_path / "corrupt.mp4"
    master.write_bytes(os.urandom(4096))
    with pytest.raises(TransformError, match=r"ffmpeg cannot read corrupt\.mp4"):
        steps = video_steps({"quality": "720p"})
        render_video(master, tmp_path / "o.mp4", steps, tmp_path, tmp_path, None, engine)
    assert not (tmp_path / "o.mp4").exists()


@needs_ffmpeg  # ffprobe is one of the two readers compared
@pytest.mark.parametrize("engine", BACKENDS)
def test_ffprobe_and_pyav_read_a_rendition_alike(tmp_path: Path, engine: str) -> None:
    master = video(tmp_path / "m.mp4", 640, 360, seconds=2)
    out = tmp_path / "o.mp4"
    steps = video_steps({"quality": "240p", "add_watermark": True})
    render_video(master, out, steps, tmp_path, tmp_path, None, engine)
    assert probe(out, "ffmpeg") == probe(out, "pyav")


def test_without_the_ffmpeg_commands_pyav_makes_the_renditions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = video(tmp_path / "m.mp4", 640, 360, source="color")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no ffmpeg, no ffprobe
    assert backend() == "pyav"
    done = render_video(
        master, tmp_path / "o.mp4", video_steps({"quality": "240p"}), tmp_path, tmp_path
    )
    assert done["engine"] == "pyav"
    monkeypatch.undo()
    assert (probe(tmp_path / "o.mp4").width, probe(tmp_path / "o.mp4").height) == (426, 240)


# -- encryption ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_encrypt_then_decrypt_gives_the_same_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "m").write_bytes(data)
    key = parse_key(KEY_HEX, "test")
    encrypt_file(tmp_path / "m", tmp_path / "m.enc", key)
    sealed = (tmp_path / "m.enc").read_bytes()
    assert data[:64] not in sealed or size < 8
    assert decrypt_file(tmp_path / "m.enc", tmp_path / "back", key) == size
    assert (tmp_path / "back").read_bytes() == data


@pytest.mark.parametrize(
    "damage",
    ["flip", "truncate", "drop-last-chunk", "wrong-key", "not-ours"],
)
def test_damaged_or_foreign_ciphertext_is_refused_and_nothing_written(
    tmp_path: Path, damage: str
) -> None:
    key = parse_key(KEY_HEX, "test")
    (tmp_path / "m").write_bytes(os.urandom(2 * CHUNK + 100))
    encrypt_file(tmp_path / "m", tmp_path / "m.enc", key)
    sealed = bytearray((tmp_path / "m.enc").read_bytes())
    if damage == "flip":
        sealed[CHUNK + 50] ^= 0x01
    elif damage == "truncate":
        del sealed[-5:]
    elif damage == "drop-last-chunk":
        del sealed[-(100 + 16) :]
    elif damage == "wrong-key":
        key = parse_key("22" * 32, "test")
    else:
        sealed[:8] = b"PK\x03\x04zip!"
    (tmp_path / "m.enc").write_bytes(bytes(sealed))
    with pytest.raises(TransformError):
        decrypt_file(tmp_path / "m.enc", tmp_path / "out", key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.enc"]


def test_keys_must_be_256_bits_and_are_never_echoed() -> None:
    with pytest.raises(TransformError, match="256-bit") as raised:
        parse_key("abc123-secret-value", "the environment variable K")
    assert "abc123-secret-value" not in str(raised.value)
    assert parse_key("  " + KEY_HEX + "\n", "f") == bytes.fromhex(KEY_HEX)


def test_reconcile_decrypt(run, tmp_path: Path) -> None:
    data = os.urandom(5000)
    (tmp_path / "m.jpg").write_bytes(data)
    (tmp_path / "k").write_text(KEY_HEX + "\n")
    encrypt_file(tmp_path / "m.jpg", tmp_path / "copy.jpg.enc", bytes.fromhex(KEY_HEX))
    done = run("decrypt", str(tmp_path / "copy.jpg.enc"), "--key-file", str(tmp_path / "k"))
    assert done.exit_code == 0, done.output
    assert (tmp_path / "copy.jpg").read_bytes() == data
    assert KEY_HEX not in done.output
    again = run("decrypt", str(tmp_path / "copy.jpg.enc"), "--key-file", str(tmp_path / "k"))
    assert again.exit_code != 0 and "--force" in again.stderr
    by_env = run(
        "decrypt", str(tmp_path / "copy.jpg.enc"), "--key-env", "MY_KEY", "-o",
        str(tmp_path / "viaenv"), env={"MY_KEY": KEY_HEX},
    )  # fmt: skip
    assert by_env.exit_code == 0 and (tmp_path / "viaenv").read_bytes() == data
    (tmp_path / "bad").write_text("33" * 32)
    wrong = run("decrypt", str(tmp_path / "copy.jpg.enc"), "--key-file", str(tmp_path / "bad"),
                "-o", str(tmp_path / "never"))  # fmt: skip
    assert wrong.exit_code == 1 and "does not decrypt with this key" in wrong.stderr
    assert not (tmp_path / "never").exists()
    neither = run("decrypt", str(tmp_path / "copy.jpg.enc"))
    assert neither.exit_code == 1 and "exactly one of --key-file or --key-env" in neither.stderr


# -- the rendition cache ------------------------------------------------------------------------
def test_the_cache_makes_once_repairs_damage_and_evicts_least_recently_used(
    tmp_path: Path,
) -> None:
    cache = RenditionCache(tmp_path / "cache", max_bytes=10**9)
    recipe = recipe_for({"resize_images": True, "max_dimension": 100}, "image/jpeg", "cdn")
    assert recipe is not None
    masters = []
    for i in range(3):
        master = tmp_path / f"m{i}.jpg"
        master.write_bytes(jpeg(400 + i, 300, (i * 40, 0, 255)))
        masters.append((master, sha256_file(master)))

    def make(i: int):
        path, digest = masters[i]
        payload = payload_of(path, digest)
        return cache.make(recipe, payload, path.name, "image/jpeg", tmp_path, tmp_path)

    first = make(0)
    assert not first.cached and first.path.parent == cache.folder
    again = make(0)
    assert again.cached and again.sha256 == first.sha256 and again.path == first.path
    first.path.write_bytes(b"damaged")  # a damaged cache file is made again, not uploaded
    repaired = make(0)
    assert not repaired.cached and sha256_file(repaired.path) == first.sha256
    ids = [repaired.id, make(1).id, make(2).id]
    assert cache.cached_ids() == set(ids)
    old = 1_000_000_000
    for age, rid in enumerate(ids):  # m0 least recently used, m2 most
        os.utime(cache.folder / f"{rid}.json", (old + age, old + age))
    each = first.size
    cache.max_bytes = 2 * each + each // 2
    assert cache.evict(keep=set()) == [ids[0]]
    cache.max_bytes = 0
    assert cache.evict(keep={ids[1]}) == [ids[2]]  # the run's own are kept over the bound
    assert cache.cached_ids() == {ids[1]}
    assert not list(cache.folder.glob(f"{ids[0]}*"))


# -- apply: renditions are what goes up ---------------------------------------------------------
FAST = ApplyOptions(parallel=2, backoff_base=0.001, backoff_max=0.01)
RESIZE = {"resize_images": True, "max_dimension": 2000}
ENCRYPT = {"encrypt": True, "encryption_key": {"secret_env": "TEST_BACKUP_KEY"}}


def apply(world: World, options: ApplyOptions = FAST):
    return apply_run(world, options)


def copy(world: World, platform: str, file: str) -> Path:
    return world.root / "out" / platform.lower() / file


def events(world: World, kind: str) -> list[tuple[str, str, dict]]:
    with world.store.reading() as con:
        rows = con.execute(
            "SELECT event_status, message, details FROM sync_events_log WHERE event_type = ? "
            "ORDER BY id",
            [kind],
        ).fetchall()
    return [(s, m, json.loads(d) if d else {}) for s, m, d in rows]


def recorded(world: World) -> dict[tuple[str, str], tuple]:
    with world.store.reading() as con:
        rows = con.execute(
            "SELECT sa.asset_code, sp.platform_code, pa.sync_status, pa.rendition_id, "
            "pa.local_checksum, pa.remote_checksum FROM platform_assets pa "
            "JOIN source_assets sa ON sa.id = pa.source_asset_id "
            "JOIN sync_platforms sp ON sp.id = pa.platform_id"
        ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


@pytest.fixture
def media_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("TEST_BACKUP_KEY", KEY_HEX)
    world = (
        World(tmp_path)
        .platform("CDN")
        .platform("CDN2")
        .platform("PLAIN")
        .platform("S3", platform_type="cloud_storage")
        .rule("R-CDN", "CDN", transform_rules=RESIZE)
        .rule("R-CDN2", "CDN2", transform_rules=RESIZE)
        .rule("R-PLAIN", "PLAIN")
        .rule("R-S3", "S3", transform_rules=ENCRYPT)
        .asset("IMG-BIG", jpeg(3000, 1500), file="big.jpg", asset_type="image",
               mime_type="image/jpeg")
        .asset("IMG-SMALL", jpeg(300, 200), file="small.jpg", asset_type="image",
               mime_type="image/jpeg")
    )  # fmt: skip
    return world


def test_renditions_are_uploaded_verified_and_recorded(media_world: World) -> None:
    world = media_world
    result = apply(world)
    assert result.counts() == {"completed": 8, "failed": 0, "deferred": 0}
    for platform in ("CDN", "CDN2"):
        with Image.open(copy(world, platform, "big.jpg")) as got:
            assert got.size == (2000, 1000)
    # small enough: the master itself goes up, byte for byte, and no copy of it is cached
    small = world.media / "small.jpg"
    assert copy(world, "CDN", "small.jpg").read_bytes() == small.read_bytes()
    # no transform rules: the master itself, and no rendition at all
    assert copy(world, "PLAIN", "big.jpg").read_bytes() == (world.media / "big.jpg").read_bytes()
    # encrypted: stored as .enc, decrypts to the master, the recorded checksum is the copy's
    sealed = copy(world, "S3", "big.jpg.enc")
    assert not copy(world, "S3", "big.jpg").exists()
    decrypt_file(sealed, world.root / "back.jpg", bytes.fromhex(KEY_HEX))
    assert (world.root / "back.jpg").read_bytes() == (world.media / "big.jpg").read_bytes()
    rows = recorded(world)
    status, rid, local, remote = rows[("IMG-BIG", "S3")]
    assert status == "synced" and rid and local == sha256_file(world.media / "big.jpg")
    assert remote == sha256_file(sealed) != local
    assert rows[("IMG-BIG", "PLAIN")][1] == ""  # the master itself
    assert rows[("IMG-BIG", "CDN")][1] == rows[("IMG-BIG", "CDN2")][1]  # shared rendition
    # two platforms with the same rules: one rendition made, the other found in the cache
    completed = [d for s, _, d in events(world, "transform_complete") if s == "success"]
    big_resized = [d for d in completed if d["rendition"] == rows[("IMG-BIG", "CDN")][1]]
    assert sorted(d["cached"] for d in big_resized) == [False, True]
    assert all("seconds" in d for d in completed)
    assert len(events(world, "transform_start")) == 6  # every transformed placement
    cache = world.root / "state" / "renditions"
    data_files = [p for p in cache.iterdir() if p.is_file() and p.suffix != ".json"]
    assert len(data_files) == 3  # big resized, big encrypted, small encrypted


def test_a_second_run_makes_no_rendition_and_a_rule_change_re_renders(
    media_world: World,
) -> None:
    world = media_world
    apply(world)
    started = len(events(world, "transform_start"))
    again = apply(world)
    assert again.counts() == {"completed": 0, "failed": 0, "deferred": 0}
    assert len(events(world, "transform_start")) == started
    world.rule("R-CDN", "CDN", transform_rules={"resize_images": True, "max_dimension": 1000})
    plan = world.plan()
    changed = action_of(plan, "IMG-BIG", "CDN")
    assert changed.action == "update" and "rendition" in changed.reason
    assert action_of(plan, "IMG-SMALL", "CDN").action == "update"  # a new id, same bytes
    assert action_of(plan, "IMG-BIG", "CDN2").action == "noop"
    result = apply(world)
    assert result.counts()["completed"] == 2 and result.counts()["failed"] == 0
    with Image.open(copy(world, "CDN", "big.jpg")) as got:
        assert got.size == (1000, 500)
    with Image.open(copy(world, "CDN2", "big.jpg")) as got:
        assert got.size == (2000, 1000)
    world.rule("R-CDN", "CDN")  # transform rules removed: the master itself goes up again
    assert action_of(world.plan(), "IMG-BIG", "CDN").action == "update"
    apply(world)
    assert copy(world, "CDN", "big.jpg").read_bytes() == (world.media / "big.jpg").read_bytes()


def test_a_corrupt_master_fails_its_transformed_jobs_only(media_world: World) -> None:
    world = media_world
    world.asset("IMG-BAD", b"\xff\xd8\xff\xe0 truncated jpeg", file="bad.jpg",
                asset_type="image", mime_type="image/jpeg")  # fmt: skip
    result = apply(world)
    assert result.counts() == {"completed": 10, "failed": 2, "deferred": 0}
    assert int(result.exit_code) != 0
    for platform in ("CDN", "CDN2"):
        assert not copy(world, platform, "bad.jpg").exists()  # no upload
        assert recorded(world)[("IMG-BAD", platform)][0] == "failed"
    # the placements without transforms still went through, and encryption needs no decoding
    assert copy(world, "PLAIN", "bad.jpg").exists()
    assert copy(world, "S3", "bad.jpg.enc").exists()
    with world.store.reading() as con:
        messages = con.execute(
            "SELECT j.error_message FROM sync_jobs j JOIN source_assets sa ON sa.id = j.asset_id "
            "WHERE sa.asset_code = 'IMG-BAD' AND j.status = 'failed'"
        ).fetchall()
    assert len(messages) == 2
    assert all("the transform failed" in m and "bad.jpg" in m for (m,) in messages)
    failed = [m for s, m, _ in events(world, "transform_complete") if s == "failed"]
    assert len(failed) == 2


def test_a_missing_key_fails_the_encrypted_jobs_and_says_which_variable(
    media_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_BACKUP_KEY")
    result = apply(media_world)
    assert result.counts() == {"completed": 6, "failed": 2, "deferred": 0}
    with media_world.store.reading() as con:
        messages = {
            m for (m,) in con.execute(
                "SELECT error_message FROM sync_jobs WHERE status = 'failed'"
            ).fetchall()
        }  # fmt: skip
    assert len(messages) == 1 and "TEST_BACKUP_KEY is not set" in messages.pop()
    assert not (media_world.root / "out" / "s3").exists()


def test_the_cache_bound_holds_after_a_run(media_world: World) -> None:
    world = media_world
    apply(world, ApplyOptions(parallel=1, renditions_max_bytes=1))
    cache = world.root / "state" / "renditions"
    # the run's own renditions stay even over the bound ...
    assert len([p for p in cache.glob("*.json")]) == 4
    world.rule("R-CDN", "CDN", transform_rules={"resize_images": True, "max_dimension": 500})
    world.rule("R-CDN2", "CDN2", transform_rules={"resize_images": True, "max_dimension": 500})
    apply(world, ApplyOptions(parallel=1, renditions_max_bytes=1))
    # ... the previous run's, no longer used, are evicted
    kept = {json.loads(p.read_text())["recipe"] for p in cache.glob("*.json")}
    assert kept == {"fit within 500 px, quality 90 if re-encoded"}


# -- the shipped example: the "done when" -----------------------------------------------
@ENGINES
def test_shipped_example_renditions(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    if engine == "pyav":  # what a machine without Debian's ffmpeg does (`pip install .` alone)
        monkeypatch.setenv("PATH", path_without_ffmpeg(tmp_path / "bin"))
    assert backend() == engine  # the product's own choice, not one forced on it
    folder = tmp_path / "repo"
    shutil.copytree(SHIPPED_MANIFESTS, folder / "manifests")
    state = folder / "state" / "reconciler.duckdb"
    args = ["--manifests", str(folder / "manifests"), "--state", str(state)]
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert "15 completed, 0 failed" in first.stdout
    out = folder / "state" / "platforms"
    masters = folder / "manifests"
    # CDN images: at most 2000 px on the long side (the hero master is 2400 px)
    for name in ("hero_product.jpg", "team_2024.jpg"):
        with Image.open(out / "cdn-primary" / "media" / "images" / name) as got:
            assert max(got.size) <= 2000
    with Image.open(out / "cdn-primary" / "media" / "images" / "hero_product.jpg") as hero:
        assert hero.size == (2000, 1125)
    # YouTube: watermarked, at most 1080p
    for name in ("launch_2024.mp4", "testimonial.mp4"):
        uploaded = out / "youtube" / "media" / "videos" / name
        assert probe(uploaded).height <= 1080
        master_frame, copy_frame = frame(masters / "media" / "videos" / name), frame(uploaded)
        w, h = copy_frame.size
        side, margin = max(4, min(w, h) // 12), max(2, min(w, h) // 40) + 1
        corner = (w - margin - side, h - margin - side, w - margin, h - margin)
        far = (margin, margin, margin + side, margin + side)

        def diff(box: tuple[int, int, int, int], a=master_frame, b=copy_frame) -> float:
            return sum(abs(x - y) for x, y in zip(mean(a, box), mean(b, box), strict=True))

        assert diff(corner) > 60 > 15 > diff(far)  # the badge is there, the rest as it was
    # S3 backup: decrypts to the masters byte for byte with the generated key
    key = folder / "state" / "keys" / "s3-backup.key"
    assert key.stat().st_mode & 0o777 == 0o600
    sealed = sorted((out / "s3-backup").rglob("*.enc"))
    assert len(sealed) == 5
    for enc in sealed:
        back = tmp_path / "back" / enc.name.removesuffix(".enc")
        done = run("decrypt", str(enc), "--key-file", str(key), "--out", str(back))
        assert done.exit_code == 0, done.output
        master = masters / enc.relative_to(out / "s3-backup").with_suffix("")
        assert back.read_bytes() == master.read_bytes()
    assert "s3-backup" not in first.output or key.read_text().strip() not in first.output
    # a second reconcile makes no rendition again
    cache = folder / "state" / "renditions"
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    second = run(*args, "--output", "jsonl")
    assert second.exit_code == 0, second.output
    kinds = [json.loads(line).get("event_type") for line in second.stdout.splitlines()]
    assert kinds and "summary" in json.loads(second.stdout.splitlines()[-1])
    assert "transform_start" not in kinds
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    videos = [json.loads(p.read_text())["details"] for p in cache.glob("*.json")]
    videos = [d for d in videos if d and "from" in d]  # the video renditions made
    assert videos and {d.get("engine", "ffmpeg") for d in videos} == {engine}
    explained = run("explain", "IMG-HERO-PROD", *args, "--platform", "S3-BACKUP")
    assert "cached" in explained.stdout and "not cached" not in explained.stdout
