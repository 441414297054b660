"""Validation of whole manifest folders: the shipped example, valid examples, cross checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.errors import UsageError
from reconciler.manifests.validate import validate_tree

from helpers import EXAMPLES, MEDIA, REPO, SHIPPED_MANIFESTS

# The seed's Steps 8-10, as declared (observed columns such as health_status are not).
SEED_PLATFORMS = {
    # code: (name, type, endpoint, auth_type, formats, max MB, rate/hour)
    "CDN-PRIMARY": (
        "Primary CDN",
        "cdn",
        "https://cdn.example.com/api/v1",
        "api_key",
        ("image/jpeg", "image/png", "video/mp4"),
        5000,
        1000,
    ),
    "YOUTUBE": (
        "YouTube Channel",
        "video_platform",
        "https://www.googleapis.com/youtube/v3",
        "oauth2",
        ("video/mp4", "video/mov"),
        128000,
        50,
    ),
    "VIMEO": (
        "Vimeo Account",
        "video_platform",
        "https://api.vimeo.com",
        "oauth2",
        ("video/mp4", "video/mov", "video/avi"),
        25000,
        100,
    ),
    "S3-BACKUP": (
        "AWS S3 Backup",
        "cloud_storage",
        "https://s3.amazonaws.com",
        "aws_signature",
        None,
        50000,
        5000,
    ),
    "SOCIAL-MEDIA": (
        "Social Media Hub",
        "social",
        "https://api.socialhub.com/v2",
        "oauth2",
        ("image/jpeg", "image/png", "video/mp4"),
        500,
        200,
    ),
    "DAM-EXTERNAL": (
        "External DAM",
        "dam",
        "https://dam.partner.com/api",
        "api_key",
        None,
        10000,
        500,
    ),
}
SEED_ASSETS = {
    # code: (title, description, type, category, file)
    "VID-LAUNCH-2024": (
        "Product Launch 2024",
        "Annual product launch keynote video",
        "video",
        "corporate",
        "media/videos/launch_2024.mp4",
    ),
    "VID-TUTORIAL-01": (
        "Getting Started Tutorial",
        "Platform onboarding tutorial",
        "video",
        "education",
        "media/videos/tutorial_01.mp4",
    ),
    "IMG-HERO-PROD": (
        "Product Hero Image",
        "Main product marketing image",
        "image",
        "marketing",
        "media/images/hero_product.jpg",
    ),
    "VID-TESTIMONIAL": (
        "Customer Testimonial",
        "Customer success story video",
        "video",
        "marketing",
        "media/videos/testimonial.mp4",
    ),
    "IMG-TEAM-2024": (
        "Team Photo 2024",
        "Annual company team photo",
        "image",
        "corporate",
        "media/images/team_2024.jpg",
    ),
}
SEED_RULES = {
    # code: (name, categories, types, platform, mode, transform, cron, auto, priority, active)
    "SYNC-CDN-ALL": (
        "CDN Full Sync",
        None,
        ("image", "video"),
        "CDN-PRIMARY",
        "full",
        {"resize_images": True, "max_dimension": 2000},
        "0 */6 * * *",
        True,
        10,
        True,
    ),
    "SYNC-YT-VIDEO": (
        "YouTube Video Sync",
        ("corporate", "marketing"),
        ("video",),
        "YOUTUBE",
        "selective",
        {"add_watermark": True, "quality": "1080p"},
        "0 9 * * 1",
        True,
        8,
        True,
    ),
    "SYNC-VIMEO-EDU": (
        "Vimeo Education",
        ("education",),
        ("video",),
        "VIMEO",
        "selective",
        {"quality": "1080p"},
        "0 10 * * *",
        True,
        7,
        True,
    ),
    "SYNC-S3-BACKUP": (
        "S3 Backup All",
        None,
        None,
        "S3-BACKUP",
        "full",
        {"encrypt": True},
        "0 2 * * *",
        True,
        5,
        True,
    ),
    "SYNC-SOCIAL": (
        "Social Media Sync",
        ("marketing",),
        ("image", "video"),
        "SOCIAL-MEDIA",
        "selective",
        {"optimize_for_social": True},
        "0 8 * * *",
        True,
        6,
        True,
    ),
}


@pytest.fixture(scope="module")
def shipped():
    result = validate_tree(SHIPPED_MANIFESTS)
    assert result.ok, [p.format() for p in result.problems]
    assert result.manifest_set is not None
    return result.manifest_set


def test_shipped_manifests_reproduce_the_seed_platforms(shipped) -> None:
    got = {
        code: (
            p.platform_name,
            p.platform_type,
            p.api_endpoint,
            p.auth_type,
            p.supported_formats,
            p.max_file_size_mb,
            p.rate_limit_per_hour,
        )
        for code, p in shipped.platforms.items()
    }
    assert got == SEED_PLATFORMS
    for platform in shipped.platforms.values():
        assert platform.sync_enabled
        assert platform.driver == "local"
        # the example writes under state/, resolved against the manifests folder
        assert platform.target == REPO / "state" / "platforms" / platform.code.lower()


def test_shipped_manifests_reproduce_the_seed_assets(shipped) -> None:
    got = {
        code: (a.title, a.description, a.asset_type, a.category, a.file)
        for code, a in shipped.assets.items()
    }
    assert got == SEED_ASSETS
    for asset in shipped.assets.values():
        assert asset.path == str(SHIPPED_MANIFESTS / asset.file)
        assert asset.status == "active"


def test_shipped_media_are_real_jpeg_and_mp4_files(shipped) -> None:
    for asset in shipped.assets.values():
        head = Path(asset.path).read_bytes()[:12]
        if asset.asset_type == "image":
            assert asset.mime_type == "image/jpeg"
            assert head.startswith(b"\xff\xd8\xff")
        else:
            assert asset.mime_type == "video/mp4"
            assert head[4:8] == b"ftyp"
        assert Path(asset.path).stat().st_size < 64 * 1024


def test_shipped_manifests_reproduce_the_seed_rules(shipped) -> None:
    got = {
        code: (
            r.config_name,
            r.source_category,
            r.asset_types,
            r.platform,
            r.sync_mode,
            # the seed's rules, plus where the S3 backup's key is (the seed names none)
            {k: v for k, v in r.transform_rules.items() if k != "encryption_key"},
            r.schedule_cron,
            r.auto_sync,
            r.priority,
            r.is_active,
        )
        for code, r in shipped.rules.items()
    }
    assert got == SEED_RULES
    key = shipped.rules["SYNC-S3-BACKUP"].transform_rules["encryption_key"]
    assert set(key) == {"secret_file", "create"}  # a reference to a file, never the key


def test_shipped_platforms_reference_secrets_and_never_hold_them(shipped) -> None:
    for platform in shipped.platforms.values():
        if platform.auth is not None:
            assert platform.auth.env and platform.auth.env.isupper()


@pytest.mark.parametrize(
    ("folder", "counts"),
    [
        ("assetsets", {"platforms": 1, "assets": 5, "generated_assets": 5, "sync_rules": 1}),
        ("anchors", {"platforms": 2, "assets": 2, "generated_assets": 0, "sync_rules": 1}),
        ("s3-and-selective", {"platforms": 2, "assets": 1, "sync_rules": 2}),
        ("bom", {"platforms": 1, "assets": 0}),
    ],
)
def test_valid_examples(folder: str, counts: dict) -> None:
    result = validate_tree(EXAMPLES / "valid" / folder, MEDIA)
    assert result.problems == []
    assert {k: result.counts[k] for k in counts} == counts


def test_asset_sets_generate_codes_titles_and_skip_hidden_and_excluded_files() -> None:
    result = validate_tree(EXAMPLES / "valid" / "assetsets", MEDIA)
    assert result.manifest_set is not None
    assets = result.manifest_set.assets
    assert sorted(assets) == [
        "IMG-banner-jpg",
        "IMG-logo-png",
        "IMG-team-jpg",
        "VID-VIDEOS-INTRO",
        "VID-VIDEOS-SUB-KEYNOTE",
    ]
    keynote = assets["VID-VIDEOS-SUB-KEYNOTE"]
    assert keynote.title == "Video keynote"
    assert keynote.file == "videos/sub/keynote.mp4"
    assert keynote.path == str(MEDIA / "videos" / "sub" / "keynote.mp4")
    assert keynote.asset_set == "ALL-VIDEOS"
    assert assets["IMG-logo-png"].mime_type == "image/png"
    assert assets["IMG-logo-png"].metadata == {"campaign": "spring"}


def test_asset_set_does_not_follow_symlinked_folders(manifests, tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "real").mkdir(parents=True)
    (media / "real" / "a.mp4").write_bytes(b"x")
    (media / "link").symlink_to(media / "real")
    root = manifests({"set.yaml": asset_set_doc('"**/*.mp4"')})
    result = validate_tree(root, media)
    assert result.ok
    assert [a.file for a in result.manifest_set.assets.values()] == ["real/a.mp4"]


def test_asset_set_matching_nothing_is_a_warning_not_an_error(manifests, tmp_path) -> None:
    root = manifests({"set.yaml": asset_set_doc('"nothing/**/*.mov"')})
    result = validate_tree(root, MEDIA)
    assert result.ok
    (warning,) = result.warnings
    assert "matches no files" in warning.message


def asset_set_doc(include: str) -> str:
    return (
        "apiVersion: mediasync/v1\nkind: AssetSet\nmetadata: {code: S}\nspec:\n"
        f"  include: {include}\n  asset_type: video\n  category: c\n"
        "  code_template: 'V-{path}'\n"
    )


PLATFORM = """apiVersion: mediasync/v1
kind: Platform
metadata: {{code: {code}}}
spec: {{platform_name: P, platform_type: cdn, driver: local, target: "{target}"}}
"""


def test_a_local_target_inside_the_media_root_is_refused(manifests, tmp_path: Path) -> None:
    root = manifests({"p.yaml": PLATFORM.format(code="P", target="media/out")})
    (root / "media").mkdir()
    result = validate_tree(root)  # media root defaults to the manifests folder
    (problem,) = result.errors
    assert problem.field == "spec.target"
    assert "inside the media root" in problem.message


def test_paths_resolve_against_fixed_roots_never_the_current_folder(
    manifests, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = manifests(
        {
            "p.yaml": PLATFORM.format(code="P", target="../out"),
            "a.yaml": "apiVersion: mediasync/v1\nkind: Asset\nmetadata: {code: A}\n"
            "spec: {title: T, asset_type: image, category: c, file: images/team.jpg}\n",
        }
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = validate_tree(root, MEDIA)
    assert result.ok, [p.format() for p in result.problems]
    assert result.manifest_set.platforms["P"].target == tmp_path / "out"
    assert result.manifest_set.assets["A"].path == str(MEDIA / "images" / "team.jpg")


def test_every_problem_in_every_file_is_reported_in_one_run(manifests) -> None:
    root = manifests(
        {
            "a.yaml": PLATFORM.format(code="P", target="../x").replace("cdn", "cdnn"),
            "sub/b.yaml": PLATFORM.format(code="Q", target="../y") + "---\nkind: Nope\n",
            "c.yml": "a: [\n",
        }
    )
    result = validate_tree(root, display_root="m")
    got = sorted((p.file, p.error) for p in result.errors)
    assert got == [
        ("m/a.yaml", "schema"),
        ("m/c.yml", "yaml-syntax"),
        ("m/sub/b.yaml", "api-version"),
        ("m/sub/b.yaml", "kind"),
    ]
    assert result.manifest_set is None


def test_duplicate_codes_across_files_point_at_both(manifests) -> None:
    root = manifests(
        {
            "a.yaml": PLATFORM.format(code="P", target="../x"),
            "b.yaml": "# another\n" + PLATFORM.format(code="P", target="../y"),
        }
    )
    (problem,) = validate_tree(root, display_root="m").errors
    assert (problem.file, problem.line, problem.field) == ("m/b.yaml", 4, "metadata.code")
    assert "already defined at m/a.yaml:3" in problem.message


def test_a_rule_referring_to_a_broken_platform_is_not_told_it_is_missing(manifests) -> None:
    root = manifests(
        {
            "p.yaml": PLATFORM.format(code="P", target="../x").replace("cdn", "bad"),
            "r.yaml": "apiVersion: mediasync/v1\nkind: SyncRule\nmetadata: {code: R}\n"
            "spec: {platform: P, source_category: all, asset_types: all, "
            "sync_mode: full}\n",
        }
    )
    errors = validate_tree(root).errors
    assert [p.field for p in errors] == ["spec.platform_type"]


def test_missing_folders_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="manifests folder"):
        validate_tree(tmp_path / "nope")
    with pytest.raises(UsageError, match="media root"):
        validate_tree(tmp_path, tmp_path / "nope")
    with pytest.raises(UsageError, match="no manifest files"):
        validate_tree(tmp_path)


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        for dirpath, _, filenames in os.walk(root):
            for name in filenames:
                st = os.lstat(os.path.join(dirpath, name))
                out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def test_validation_writes_nothing(
    manifests, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = manifests(
        {
            "p.yaml": PLATFORM.format(code="P", target="../platform-out"),
            "bad.yaml": "x: [\n",
        }
    )
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    validate_tree(root)
    validate_tree(SHIPPED_MANIFESTS)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "platform-out").exists()
    assert not (tmp_path / "state").exists()
