"""Adoption on the video platforms and REST APIs, against the loopback fake servers: an
existing YouTube or Vimeo video taken over by its id without an upload, a video of another
size recorded as outdated, a rename that changes only the record, and Vimeo discovery by
title and size."""

from __future__ import annotations

import json
from pathlib import Path

from apiservers import FakePlatforms
from planning import kinds, rows
from test_api_drivers import apply, world_for

from reconciler.model import ActionKind

from helpers import created

MASTER = b"\x00\x00\x00\x18ftypisom" + b"launch keynote " * 200


def imported(world, code: str, asset: str, platform: str, remote_id: str) -> None:
    world._doc("Import", code, {"asset": asset, "platform": platform, "id": remote_id})


def test_an_existing_youtube_video_is_imported_without_an_upload(
    tmp_path: Path, state_at: str, fake: FakePlatforms
) -> None:
    world = world_for(tmp_path, fake, "YOUTUBE", state_at)
    world.asset("VID-LAUNCH", MASTER)
    video = fake.add_video(MASTER, "Launch keynote")
    imported(world, "IMP-YT", "VID-LAUNCH", "YOUTUBE", video)
    assert kinds(world.plan())[("VID-LAUNCH", "YOUTUBE")] == ActionKind.IMPORT
    (job,) = apply(world).jobs
    assert (job.job_type, job.status) == ("import", "completed"), job.error
    assert fake.bytes_received() == 0 and not fake.uploads
    assert rows(world, "SELECT sync_status, platform_asset_id, managed FROM platform_assets") == [
        ("synced", video, False)
    ]
    assert not world.plan().changes
    # the imported video is the copy the driver knows now: a metadata change goes to it
    world.asset("VID-LAUNCH", MASTER, title="Launch keynote 2024")
    (job,) = apply(world).jobs
    assert (job.job_type, job.status) == ("metadata", "completed"), job.error
    assert fake.videos[video].metadata["snippet"]["title"].startswith("Launch keynote 2024")
    assert fake.bytes_received() == 0


def test_a_youtube_video_of_another_size_is_recorded_outdated(
    tmp_path: Path, state_at: str, fake: FakePlatforms
) -> None:
    world = world_for(tmp_path, fake, "YOUTUBE", state_at)
    world.asset("VID-LAUNCH", MASTER)
    video = fake.add_video(MASTER[:-10], "An older cut")
    imported(world, "IMP-YT", "VID-LAUNCH", "YOUTUBE", video)
    (job,) = apply(world).jobs
    assert job.status == "failed" and "holds other bytes" in (job.error or "")
    assert rows(world, "SELECT sync_status, platform_asset_id FROM platform_assets") == [
        ("outdated", video)
    ]
    assert kinds(world.plan())[("VID-LAUNCH", "YOUTUBE")] == ActionKind.UPDATE


def test_a_missing_youtube_video_fails_the_import(
    tmp_path: Path, state_at: str, fake: FakePlatforms
) -> None:
    world = world_for(tmp_path, fake, "YOUTUBE", state_at)
    world.asset("VID-LAUNCH", MASTER)
    imported(world, "IMP-YT", "VID-LAUNCH", "YOUTUBE", "no-such-video")
    (job,) = apply(world).jobs
    assert job.status == "failed" and "not on YOUTUBE" in (job.error or "")
    assert not fake.uploads


def test_a_vimeo_video_is_imported_by_its_number(
    tmp_path: Path, state_at: str, fake: FakePlatforms
) -> None:
    world = world_for(tmp_path, fake, "VIMEO", state_at)
    world.asset("VID-EDU", MASTER)
    uri = fake.add_vimeo_video(MASTER, "Tutorial")
    imported(world, "IMP-VIMEO", "VID-EDU", "VIMEO", uri.rsplit("/", 1)[1])
    (job,) = apply(world).jobs
    assert (job.job_type, job.status) == ("import", "completed"), job.error
    assert rows(world, "SELECT sync_status, platform_asset_id FROM platform_assets") == [
        ("synced", uri)
    ]
    assert not world.plan().changes


def test_a_rename_on_youtube_changes_only_the_record(
    tmp_path: Path, state_at: str, fake: FakePlatforms
) -> None:
    world = world_for(tmp_path, fake, "YOUTUBE", state_at)
    world.asset("VID-LAUNCH", MASTER)
    (job,) = apply(world).jobs
    assert job.status == "completed", job.error
    sent, videos = fake.bytes_received(), set(fake.videos)
    spec = world.docs.pop(("Asset", "VID-LAUNCH"))["spec"]
    (world.media / "vid-launch.mp4").rename(world.media / "keynote.mp4")
    world._doc("Asset", "VID-KEYNOTE", {**spec, "file": "keynote.mp4", "moved_from": "VID-LAUNCH"})
    plan = world.plan()
    assert kinds(plan) == {("VID-KEYNOTE", "YOUTUBE"): ActionKind.MOVED}
    (job,) = apply(world).jobs
    assert (job.job_type, job.status) == ("move", "completed"), job.error
    assert fake.bytes_received() == sent and set(fake.videos) == videos
    assert rows(world, "SELECT remote_key FROM platform_assets") == [("keynote.mp4",)]
    assert not world.plan().changes


def test_vimeo_discovery_matches_by_title_and_size(
    tmp_path: Path, state_at: str, fake: FakePlatforms, run
) -> None:
    world = world_for(tmp_path, fake, "VIMEO", state_at)
    world.asset("VID-EDU", MASTER, title="Tutorial")
    world.asset("VID-OTHER", b"other master", title="Other")
    fake.add_vimeo_video(MASTER, "Tutorial")
    fake.add_vimeo_video(b"unrelated", "Holiday party")
    world.manifests()
    found = run("import", "--discover", "VIMEO", *world.cli_args(), "-o", "json")
    assert found.exit_code == 0, found.output
    listed = json.loads(found.stdout)
    matched = {o["title"]: (o["asset"], o["matched_by"]) for o in listed["objects"]}
    assert matched == {"Tutorial": ("VID-EDU", "title and size"), "Holiday party": (None, None)}
    assert not created(world.state)  # read-only: not even a state file


def test_an_outdated_youtube_import_is_replaced_by_the_master(
    tmp_path: Path, state_at: str, fake: FakePlatforms
) -> None:
    """YouTube never replaces a video's bytes: the update uploads the master as a new video
    and removes the imported one, so the channel holds one video of the asset, the right one."""
    world = world_for(tmp_path, fake, "YOUTUBE", state_at)
    world.asset("VID-LAUNCH", MASTER)
    old = fake.add_video(MASTER[:-10], "An older cut")
    imported(world, "IMP-YT", "VID-LAUNCH", "YOUTUBE", old)
    apply(world)
    (job,) = apply(world).jobs
    assert (job.job_type, job.status) == ("update", "completed"), job.error
    assert old not in fake.videos
    (video,) = fake.videos.values()
    assert video.data == MASTER
    assert not world.plan().changes
