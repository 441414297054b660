"""The drivers' side of adoption (issue 21): finding an object by the platform's id, listing a
platform's objects for discovery, and moving an object on the platform itself; against a real
folder, moto's S3 server on loopback and the loopback fake platforms (tests/apiservers.py)."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pytest
from apiservers import FakePlatforms
from botocore.exceptions import ClientError

from reconciler.drivers import driver_for, local_adopt, s3_adopt
from reconciler.drivers.base import Driver, Found, PermanentError
from reconciler.drivers.local import LocalDriver
from reconciler.drivers.s3 import S3Driver
from reconciler.drivers.state import Session
from reconciler.model import Platform, SecretRef

from helpers import payload_of

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MemoryRecords:
    """What drivers persist, kept in memory (a SessionRecords without a state file)."""

    lock_timeout = 1.0

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict[str, Any]]] = {}
        self.units = 0  # API quota units spent

    def load_sessions(self, platform: str) -> list[dict[str, Any]]:
        return [{"remote_key": k, **v} for k, v in self.rows.get(platform, {}).items()]

    def recorded_copy(self, platform: str, key: str) -> None:
        return None

    def load_quota(self, platform: str, day: date) -> tuple[int, bool]:
        return 0, False

    def take_quota(self, platform: str, day: date, units: int, limit: int) -> None:
        return None  # never asked now: the driver keeps its own count, as beside a busy file

    def write(
        self,
        platform: str,
        sessions: Mapping[str, Mapping[str, Any] | None],
        spent: Mapping[date, tuple[int, bool]],
        patience: float | None,
    ) -> None:
        self.units += sum(units for units, _ in spent.values())
        rows = self.rows.setdefault(platform, {})
        for key, fields in sessions.items():
            if fields is None:
                rows.pop(key, None)
            else:
                rows[key] = dict(fields)


def within(seconds: float, work: Callable[[], Any]) -> Any:
    """``work()``'s answer, which must come within ``seconds`` (a FIFO must never block)."""
    answer: list[Any] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            answer.append(work())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked"
    if failed:
        raise failed[0]
    return answer[0]


# -- local -------------------------------------------------------------------------------------
@pytest.fixture
def target(tmp_path: Path) -> Path:
    folder = tmp_path / "target"
    folder.mkdir()
    return folder


@pytest.fixture
def nas(target: Path) -> LocalDriver:
    platform = Platform(
        code="NAS", platform_name="NAS", platform_type="other", driver="local", target=target
    )
    driver = driver_for(platform)
    assert isinstance(driver, LocalDriver) and driver.keys_are_paths
    return driver


def put(root: Path, key: str, data: bytes) -> Path:
    path = root.joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_local_find_reports_a_file_by_its_key_and_none_for_a_missing_one(
    nas: LocalDriver, target: Path
) -> None:
    path = put(target, "shows/ep 1.mp4", b"episode one")
    assert nas.find("shows/ep 1.mp4") == Found(
        "shows/ep 1.mp4", "shows/ep 1.mp4", sha(b"episode one"), 11, path.as_uri()
    )
    assert nas.find("shows/ep 2.mp4") is None
    assert nas.find("films/ep 1.mp4") is None  # a folder that is not there either


def test_local_find_refuses_hostile_keys_without_blocking(
    nas: LocalDriver, target: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"not the target's")
    (target / "via").symlink_to(outside)
    (target / "clip.mp4").symlink_to(outside / "secret.mp4")
    os.mkfifo(target / "pipe.mp4")
    (target / "folder.mp4").mkdir()
    for key in ("../outside/secret.mp4", "/etc/passwd", "a//b.mp4", "./clip.mp4", ""):
        with pytest.raises(PermanentError, match="would leave the target"):
            nas.find(key)
    with pytest.raises(PermanentError, match="symlink"):
        nas.find("via/secret.mp4")
    for key in ("clip.mp4", "pipe.mp4", "folder.mp4"):
        with pytest.raises(PermanentError, match="is not a regular file"):
            within(5, lambda key=key: nas.find(key))


def test_local_discover_lists_regular_files_only_in_key_order(
    nas: LocalDriver, target: Path, tmp_path: Path
) -> None:
    files = {"b.mp4": b"bee", "a/z.mp4": b"zed", "a.mp4": b"ay", "a/deep/x y.mp4": b"deep"}
    for key, data in files.items():
        put(target, key, data)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.mp4").write_bytes(b"outside")
    (target / "a" / "linked").symlink_to(outside)  # a folder elsewhere: not entered
    (target / "l.mp4").symlink_to(outside / "o.mp4")  # a file elsewhere: not listed
    os.mkfifo(target / "a" / "pipe.mp4")  # never opened for reading
    put(target, "a/.reconcile-0123456789ab.part", b"half an upload")  # the driver's own
    (target / "empty").mkdir()
    found = within(10, lambda: list(nas.discover()))
    assert [f.key for f in found] == sorted(files)
    for item in found:
        assert item.remote_id == item.key
        assert (item.checksum, item.size) == (sha(files[item.key]), len(files[item.key]))
        assert item.url == target.joinpath(*item.key.split("/")).as_uri()


def test_local_discover_of_a_missing_target_is_empty(tmp_path: Path) -> None:
    platform = Platform("NAS", "NAS", "other", "local", target=tmp_path / "never-made")
    assert list(driver_for(platform).discover()) == []


def test_local_move_renames_the_file_itself(nas: LocalDriver, target: Path) -> None:
    data = os.urandom(3 * MiB)
    old = put(target, "old/deeper/clip.mp4", data)
    put(target, "old/keep.mp4", b"stays")
    inode = old.stat().st_ino
    nas.move("old/deeper/clip.mp4", "new/place/clip.mp4")
    moved = target / "new" / "place" / "clip.mp4"
    assert moved.read_bytes() == data and moved.stat().st_ino == inode  # not a copy
    assert moved.stat().st_nlink == 1
    assert not old.exists() and not (target / "old" / "deeper").exists()  # left empty: gone
    assert (target / "old" / "keep.mp4").read_bytes() == b"stays"
    assert nas.find("new/place/clip.mp4") == Found(
        "new/place/clip.mp4", "new/place/clip.mp4", sha(data), len(data), moved.as_uri()
    )


def test_local_move_never_replaces_and_refuses_a_missing_object(
    nas: LocalDriver, target: Path
) -> None:
    put(target, "a.mp4", b"first")
    put(target, "b.mp4", b"second")
    with pytest.raises(PermanentError, match="already holds an object"):
        nas.move("a.mp4", "b.mp4")
    assert (target / "a.mp4").read_bytes() == b"first"
    assert (target / "b.mp4").read_bytes() == b"second"
    with pytest.raises(PermanentError, match="nothing to move"):
        nas.move("gone.mp4", "c.mp4")
    with pytest.raises(PermanentError, match="nothing to move"):
        nas.move("no/such/folder.mp4", "c.mp4")
    assert not (target / "c.mp4").exists()
    with pytest.raises(PermanentError, match="would leave the target"):
        nas.move("a.mp4", "../escaped.mp4")
    assert (target / "a.mp4").exists() and not (target.parent / "escaped.mp4").exists()


def test_local_move_without_hard_links_renames_but_never_over_an_object(
    nas: LocalDriver, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: Any, **kw: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(local_adopt.os, "link", refused)  # a file system without hard links
    put(target, "a.mp4", b"first")
    put(target, "b.mp4", b"second")
    with pytest.raises(PermanentError, match="already holds an object"):
        nas.move("a.mp4", "b.mp4")
    assert (target / "b.mp4").read_bytes() == b"second"
    nas.move("a.mp4", "sub/c.mp4")
    assert (target / "sub" / "c.mp4").read_bytes() == b"first"
    assert not (target / "a.mp4").exists()


def test_local_move_of_a_symlink_is_refused(nas: LocalDriver, target: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.mp4").write_bytes(b"elsewhere")
    (target / "l.mp4").symlink_to(tmp_path / "elsewhere.mp4")
    with pytest.raises(PermanentError, match="is not a regular file"):
        nas.move("l.mp4", "m.mp4")
    assert not (target / "m.mp4").exists() and (target / "l.mp4").is_symlink()


# -- s3 ----------------------------------------------------------------------------------------
@pytest.fixture
def s3(s3_endpoint: str, bucket: str) -> S3Driver:
    platform = Platform(
        code="BACKUP",
        platform_name="Backup",
        platform_type="cloud_storage",
        driver="s3",
        driver_config={
            "bucket": bucket,
            "prefix": "masters/",
            "region": "us-east-1",
            "endpoint_url": s3_endpoint,
        },
    )
    driver = driver_for(platform, MemoryRecords())
    assert isinstance(driver, S3Driver) and driver.keys_are_paths
    return driver


def counted(driver: S3Driver, *operations: str) -> dict[str, int]:
    """How many calls of each S3 operation the driver's client makes from now on."""
    calls = dict.fromkeys(operations, 0)

    def count(name: str) -> Callable[..., None]:
        def seen(**kw: Any) -> None:
            calls[name] += 1

        return seen

    for name in operations:
        driver.client.meta.events.register(f"before-call.s3.{name}", count(name))
    return calls


def body(driver: S3Driver, full: str) -> bytes:
    return bytes(driver.client.get_object(Bucket=driver.bucket, Key=full)["Body"].read())


def keys(driver: S3Driver) -> list[str]:
    listed = driver.client.list_objects_v2(Bucket=driver.bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_s3_find_by_key_or_by_recorded_id(s3: S3Driver, bucket: str) -> None:
    s3.client.put_object(Bucket=bucket, Key="masters/a/b.mp4", Body=b"someone else's")
    found = Found("a/b.mp4", "a/b.mp4", sha(b"someone else's"), 14, s3.url("a/b.mp4"))
    assert s3.find("a/b.mp4") == found  # no checksum of S3's own: read and hashed
    assert s3.find(f"s3://{bucket}/masters/a/b.mp4") == found  # what an upload records
    assert s3.find("a/c.mp4") is None
    assert s3.find(f"s3://{bucket}/masters/a/c.mp4") is None
    for other in ("s3://other-bucket/masters/a/b.mp4", f"s3://{bucket}/elsewhere/a/b.mp4"):
        with pytest.raises(PermanentError, match="is not under"):
            s3.find(other)
    with pytest.raises(PermanentError, match="names no object"):
        s3.find("a/")


def test_s3_discover_lists_exactly_the_objects_under_the_prefix(
    s3: S3Driver, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(S3Driver, "LIST_PAGE", 7)  # several pages
    mine = {f"clips/{i:02d}.mp4": f"clip {i}".encode() for i in range(20)}
    for key, data in mine.items():
        s3.client.put_object(Bucket=bucket, Key=f"masters/{key}", Body=data)
    others = ["other/a.mp4", "masters-old/b.mp4", "mastersx.mp4", "top.mp4", "m/masters/c.mp4"]
    for full in others:
        s3.client.put_object(Bucket=bucket, Key=full, Body=b"not under the prefix")
    s3.client.put_object(Bucket=bucket, Key="masters/clips/", Body=b"")  # a folder marker
    found = list(s3.discover())
    assert [f.key for f in found] == sorted(mine)
    for item in found:
        assert item.remote_id == item.key
        assert (item.checksum, item.size) == (sha(mine[item.key]), len(mine[item.key]))
        assert item.url == s3.url(item.key)


def test_s3_move_copies_on_the_server_and_never_replaces(
    s3: S3Driver, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    (tmp_path / "a.mp4").write_bytes(data)
    s3.upload(payload_of(tmp_path / "a.mp4"), "a.mp4", {"code": "VID-A"})
    s3.client.put_object(Bucket=bucket, Key="masters/taken.mp4", Body=b"someone else's")
    calls = counted(s3, "PutObject", "UploadPart", "CreateMultipartUpload")
    with pytest.raises(PermanentError, match="already holds an object"):
        s3.move("a.mp4", "taken.mp4")
    assert body(s3, "masters/taken.mp4") == b"someone else's"
    assert body(s3, "masters/a.mp4") == data
    with pytest.raises(PermanentError, match="nothing to move"):
        s3.move("missing.mp4", "b.mp4")
    s3.move("a.mp4", "renamed/b.mp4")
    assert body(s3, "masters/renamed/b.mp4") == data
    assert keys(s3) == ["masters/renamed/b.mp4", "masters/taken.mp4"]
    assert calls == {"PutObject": 0, "UploadPart": 0, "CreateMultipartUpload": 0}
    assert s3.stat("renamed/b.mp4").checksum == sha(data)
    assert s3.kept("a.mp4") is None


@pytest.mark.parametrize("how", ["copy", "multipart copy"])
def test_s3_move_of_a_multipart_object_keeps_a_verifiable_checksum(
    s3: S3Driver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "multipart copy":
        monkeypatch.setattr(s3_adopt, "COPY_LIMIT", 5 * MiB)  # as objects over 5 GiB go
    data = os.urandom(9 * MiB)  # two parts
    (tmp_path / "big.mp4").write_bytes(data)
    s3.upload(payload_of(tmp_path / "big.mp4"), "big.mp4", {"code": "VID-BIG"})
    head = s3.client.head_object(Bucket=s3.bucket, Key="masters/big.mp4", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-2")  # a composite checksum, not the content's
    calls = counted(s3, "PutObject", "UploadPart", "GetObject", "CopyObject", "UploadPartCopy")
    s3.move("big.mp4", "moved/big.mp4")
    copies = {"CopyObject": 0, "UploadPartCopy": 2} if how == "multipart copy" else {
        "CopyObject": 1, "UploadPartCopy": 0}  # fmt: skip
    assert calls == {"PutObject": 0, "UploadPart": 0, "GetObject": 0, **copies}
    landed = s3.stat("moved/big.mp4")
    assert landed is not None and landed.checksum == sha(data) and landed.size == len(data)
    assert calls["GetObject"] == 0  # recognised without reading it back
    assert body(s3, "masters/moved/big.mp4") == data
    assert keys(s3) == ["masters/moved/big.mp4"]


def test_local_move_refuses_an_object_made_at_the_new_key_meanwhile(
    nas: LocalDriver, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = os.link

    def raced(src: str, dst: str, **kw: Any) -> None:
        put(target, "b.mp4", b"made a moment before")  # by another writer, just then
        link(src, dst, **kw)

    monkeypatch.setattr(local_adopt.os, "link", raced)
    put(target, "a.mp4", b"first")
    with pytest.raises(PermanentError, match="already holds an object"):
        nas.move("a.mp4", "b.mp4")
    assert (target / "b.mp4").read_bytes() == b"made a moment before"
    assert (target / "a.mp4").read_bytes() == b"first"


def test_s3_multipart_move_refuses_an_object_made_at_the_new_key_meanwhile(
    s3: S3Driver, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_adopt, "COPY_LIMIT", 5 * MiB)
    data = os.urandom(9 * MiB)
    (tmp_path / "big.mp4").write_bytes(data)
    s3.upload(payload_of(tmp_path / "big.mp4"), "big.mp4", {"code": "VID-BIG"})
    other = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")

    def race(**kw: Any) -> None:  # another writer, between the part copies and completion
        other.put_object(Bucket=bucket, Key="masters/new.mp4", Body=b"made a moment before")

    s3.client.meta.events.register("before-call.s3.CompleteMultipartUpload", race)
    with pytest.raises(PermanentError, match="already holds an object"):
        s3.move("big.mp4", "new.mp4")
    assert body(s3, "masters/new.mp4") == b"made a moment before"
    assert body(s3, "masters/big.mp4") == data
    assert s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -- the API platforms -------------------------------------------------------------------------
def api_driver(fake: FakePlatforms, kind: str, records: MemoryRecords | None = None) -> Driver:
    """The http, youtube or vimeo driver, pointed at the fake servers."""
    specs = {
        "http": (f"{fake.url}/cdn", "api_key", "TEST_CDN_KEY", {}),
        "youtube": (
            f"{fake.url}/youtube/v3", "oauth2", "TEST_YT_REFRESH",
            {"token_url": f"{fake.url}/token", "poll_interval": 0},
        ),
        "vimeo": (f"{fake.url}/vimeo", "oauth2", "TEST_VIMEO_TOKEN", {"poll_interval": 0}),
    }  # fmt: skip
    endpoint, auth_type, secret, config = specs[kind]
    platform = Platform(
        code=kind.upper(), platform_name=kind, platform_type="video_platform", driver=kind,
        api_endpoint=endpoint, auth_type=auth_type, auth=SecretRef(env=secret),
        driver_config=config,
    )  # fmt: skip
    driver = driver_for(platform, records if records is not None else MemoryRecords())
    assert not driver.keys_are_paths
    return driver


def test_http_find_by_the_platforms_id(fake: FakePlatforms, tmp_path: Path) -> None:
    cdn = api_driver(fake, "http")
    (tmp_path / "a.mp4").write_bytes(b"on the CDN already")
    uploaded = cdn.upload(payload_of(tmp_path / "a.mp4"), "a.mp4", {"code": "VID-A"})
    found = cdn.find(uploaded.platform_asset_id)
    # (the fake's GET names no url: the object's own URL stands in)
    link = f"{fake.url}/cdn/assets/{uploaded.platform_asset_id}"
    assert found == Found(uploaded.platform_asset_id, None, sha(b"on the CDN already"), 18, link)
    assert cdn.find("obj-999") is None
    for hostile in ("..", ".", ""):
        with pytest.raises(PermanentError, match="is not an object id"):
            cdn.find(hostile)
    with pytest.raises(PermanentError, match="cannot list"):
        next(iter(cdn.discover()))


def test_youtube_find_by_video_id_spends_a_list_call(fake: FakePlatforms) -> None:
    records = MemoryRecords()
    youtube = api_driver(fake, "youtube", records)
    video = fake.add_video(b"x" * 12_345, "Launch day")
    found = youtube.find(video)
    assert found == Found(
        video, None, None, 12_345, f"https://www.youtube.com/watch?v={video}", "Launch day"
    )
    assert records.units == 1  # one videos.list
    assert youtube.find("v-missing") is None
    for hostile in ("a,b", "", "../videos", "id with spaces"):
        with pytest.raises(PermanentError, match="is not a YouTube video id"):
            youtube.find(hostile)
    assert records.units == 2  # a refused id costs nothing
    with pytest.raises(PermanentError, match="cannot list"):
        next(iter(youtube.discover()))
    with pytest.raises(PermanentError, match="cannot move"):
        youtube.move("a.mp4", "b.mp4")


def test_vimeo_find_by_number_uri_or_link(fake: FakePlatforms) -> None:
    vimeo = api_driver(fake, "vimeo")
    uri = fake.add_vimeo_video(b"v" * 4321, "Behind the scenes")
    number = uri.rsplit("/", 1)[1]
    expected = Found(uri, None, None, 4321, f"https://vimeo.com/{number}", "Behind the scenes")
    for given in (uri, number, f"https://vimeo.com/{number}"):
        assert vimeo.find(given) == expected
    assert vimeo.find("/videos/987654") is None
    for hostile in ("/videos/../me", "/users/1", "12a", ""):
        with pytest.raises(PermanentError, match="is not a Vimeo video"):
            vimeo.find(hostile)


def test_vimeo_find_answers_the_id_an_upload_records(fake: FakePlatforms, tmp_path: Path) -> None:
    vimeo = api_driver(fake, "vimeo")
    (tmp_path / "a.mp4").write_bytes(b"sent by this tool" * 100)
    uploaded = vimeo.upload(payload_of(tmp_path / "a.mp4"), "a.mp4", {"title": "Sent"})
    found = vimeo.find(uploaded.platform_asset_id)
    assert found is not None and found.remote_id == uploaded.platform_asset_id
    assert (found.title, found.size) == ("Sent", 1700)


def test_vimeo_discover_lists_every_video_page_by_page(
    fake: FakePlatforms, monkeypatch: pytest.MonkeyPatch
) -> None:
    vimeo = api_driver(fake, "vimeo")
    uris = [fake.add_vimeo_video(bytes(n + 1), f"clip {n}") for n in range(7)]
    gone = fake.add_vimeo_video(b"deleted", "deleted")
    fake.uploads[gone.rsplit("/", 1)[1]].video = "deleted"
    monkeypatch.setattr(vimeo, "LIST_PAGE", 3)
    found = list(vimeo.discover())
    assert [f.remote_id for f in found] == uris
    assert [(f.title, f.size) for f in found] == [(f"clip {n}", n + 1) for n in range(7)]
    pages = [p for m, p in fake.requests if (m, p) == ("GET", "/vimeo/me/videos")]
    assert len(pages) == 3


def test_vimeo_discover_never_follows_a_next_page_elsewhere(
    fake: FakePlatforms, monkeypatch: pytest.MonkeyPatch
) -> None:
    vimeo = api_driver(fake, "vimeo")
    fake.add_vimeo_video(b"one", "one")
    fake.fail_once(
        "GET", "/vimeo/me/videos", 200,
        body={"data": [], "paging": {"next": "https://elsewhere.example/me/videos?page=2"}},
    )  # fmt: skip
    with pytest.raises(PermanentError, match="not followed"):
        list(vimeo.discover())


def test_s3_move_on_a_store_without_conditional_copies(
    s3: S3Driver, bucket: str, tmp_path: Path
) -> None:
    """A store that does not implement If-None-Match on a copy: the key looked at before
    stands for it, and the move goes on."""

    def unimplemented(params: dict[str, Any], **kw: Any) -> None:
        if "If-None-Match" in params.get("headers", {}):
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no"}}, "CopyObject")

    s3.client.put_object(Bucket=bucket, Key="masters/a.mp4", Body=b"plain")
    s3.client.meta.events.register("before-call.s3.CopyObject", unimplemented)
    s3.move("a.mp4", "b.mp4")
    assert keys(s3) == ["masters/b.mp4"] and body(s3, "masters/b.mp4") == b"plain"


def test_s3_multipart_move_that_fails_leaves_nothing_behind(
    s3: S3Driver, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_adopt, "COPY_LIMIT", 5 * MiB)
    data = os.urandom(9 * MiB)
    (tmp_path / "big.mp4").write_bytes(data)
    s3.upload(payload_of(tmp_path / "big.mp4"), "big.mp4", {"code": "VID-BIG"})
    recorded: list[Any] = []

    def second_part_fails(params: dict[str, Any], **kw: Any) -> None:
        recorded.append(s3.kept("new.mp4"))
        if len(recorded) == 2:
            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "no"}}, "UploadPartCopy"
            )

    s3.client.meta.events.register("before-call.s3.UploadPartCopy", second_part_fails)
    with pytest.raises(PermanentError, match="AccessDenied"):
        s3.move("big.mp4", "new.mp4")
    assert recorded[0] is not None and recorded[0].state == "uploading"  # before any part
    assert s3.kept("new.mp4") is None and s3.kept("big.mp4") is not None
    assert keys(s3) == ["masters/big.mp4"] and body(s3, "masters/big.mp4") == data
    assert s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_s3_move_onto_an_unfinished_upload_of_ours_is_refused(s3: S3Driver, bucket: str) -> None:
    s3.client.put_object(Bucket=bucket, Key="masters/a.mp4", Body=b"plain")
    s3.keep(Session("b.mp4", "s3", "uploading", "0" * 64, 10, "upload-id"))
    with pytest.raises(PermanentError, match="unfinished"):
        s3.move("a.mp4", "b.mp4")
    assert keys(s3) == ["masters/a.mp4"] and s3.kept("b.mp4") is not None
