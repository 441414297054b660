"""Second round of attacks on "trust the bytes, not the plan", crash safety, resource use and
the strictness added by the first round: each test is what an attacker, a careless colleague,
a platform that follows its protocol to the letter or a kill -9 does, and what must still
hold. Real files, real subprocesses of `python -m reconciler` where the defect shows on the
CLI, loopback platforms speaking HTTP, and the loopback S3 server.

Each docstring tells the attack, what the product did before it was fixed, and what must hold."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from attack_kit import FAST, out, reconcile, sha, tmpfs
from media import make_video
from planning import World, rows


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# == a REST platform that honours Idempotency-Key as the standard says ==========================
class Idempotent(BaseHTTPRequestHandler):
    """A REST upload API that honours ``Idempotency-Key`` the way Stripe and the IETF draft
    (draft-ietf-httpapi-idempotency-key-header) describe it: the first response to a key is
    kept for the key's retention window (24 h) and a request repeating the key gets that very
    response again, without being executed a second time, whatever happened to the resource
    since. Objects live in ``objects`` (id -> bytes)."""

    protocol_version = "HTTP/1.1"
    objects: ClassVar[dict[str, bytes]] = {}
    replies: ClassVar[dict[str, dict[str, Any]]] = {}
    counter: ClassVar[list[int]] = [0]
    redirect_slash: ClassVar[bool] = False
    posts: ClassVar[int] = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _any(self) -> None:
        path = self.path.split("?")[0]
        if path.endswith("/health"):
            return self._answer(200, {"ok": True})
        if path.endswith("/assets") and self.command == "POST":
            if Idempotent.redirect_slash:  # as FastAPI/Starlette's redirect_slashes does
                self._body()
                return self._answer(307, {}, {"Location": path + "/"})
            return self._post()
        if path.endswith("/assets/") and self.command == "POST":
            return self._post()
        oid = path.rsplit("/", 1)[1]
        self._body()
        if oid not in Idempotent.objects:
            return self._answer(404, {"message": "not found"})
        if self.command == "GET":
            data = Idempotent.objects[oid]
            return self._answer(200, {"id": oid, "sha256": sha(data), "size": len(data)})
        if self.command == "DELETE":
            del Idempotent.objects[oid]
            return self._answer(204)
        if self.command == "PATCH":
            return self._answer(200, {"id": oid})
        return self._answer(405, {"message": "no"})

    def _post(self) -> None:
        data = self._body()
        Idempotent.posts += 1
        key = self.headers.get("Idempotency-Key")
        if key and key in Idempotent.replies:  # a repeat: the first answer, not executed again
            return self._answer(201, Idempotent.replies[key])
        Idempotent.counter[0] += 1
        oid = f"obj-{Idempotent.counter[0]}"
        Idempotent.objects[oid] = data
        reply = {"id": oid, "url": f"http://cdn.test/{oid}", "sha256": sha(data),
                 "size": len(data)}  # fmt: skip
        if key:
            Idempotent.replies[key] = reply
        return self._answer(201, reply)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any


@pytest.fixture
def idempotent() -> Iterator[str]:
    Idempotent.objects, Idempotent.replies, Idempotent.counter = {}, {}, [0]
    Idempotent.redirect_slash, Idempotent.posts = False, 0
    server, url = serve(Idempotent)
    yield url
    server.shutdown()
    server.server_close()


def cdn(world: World, url: str, **spec: Any) -> World:
    return world.platform(
        "CDN", driver="http", api_endpoint=url, auth_type="api_key",
        auth={"secret_env": "ATTACK2_CDN_KEY"}, target=None, **spec,
    )  # fmt: skip


CDN_ENV = {"ATTACK2_CDN_KEY": "attack2-cdn-key-0123456789"}


def test_a_master_reverted_to_an_earlier_version_is_not_lost_on_an_idempotent_platform(
    tmp_path: Path, idempotent: str
) -> None:
    """A colleague reverts a master to the version the platform held before (`git revert`,
    a restore from backup): A, then B, then A again. The http driver's Idempotency-Key is
    derived from (platform, key, sha256) only, so the third upload repeats the first upload's
    key. A platform that honours the header as specified answers with the first response
    (the id of the object that the B update deleted) without storing anything; the driver
    takes that id as a new object and deletes the previous one (B). The platform then holds
    nothing for the asset while the state says synced, and `verify` finds it gone. What must
    hold: after A, B, A the platform holds exactly the A bytes under the id the state records
    (an idempotency key names one intended upload: reuse it for a retry or a resume after a
    kill, never for a new upload of the same bytes)."""
    first, second = b"A" * 5000, b"B" * 5000
    world = cdn(World(tmp_path), idempotent).rule("R", "CDN").asset("VID-A", first)
    world.manifests()
    for content in (first, second, first):
        world.write_file("vid-a.mp4", content)
        done = reconcile(world, *world.cli_args(), env=CDN_ENV)
        assert done.returncode == 0, done.stdout + done.stderr
    ((recorded, status),) = rows(world, "SELECT platform_asset_id, sync_status FROM "
                                 "platform_assets")  # fmt: skip
    assert status == "synced"
    held = {oid: sha(data) for oid, data in Idempotent.objects.items()}
    assert held.get(recorded) == sha(first), (
        f"recorded synced as {recorded}, but the platform holds {held}"
    )
    verify = reconcile(world, "verify", *world.cli_args(), env=CDN_ENV)
    assert verify.returncode == 0, verify.stdout


def test_a_copy_deleted_on_an_idempotent_platform_is_really_sent_again(
    tmp_path: Path, idempotent: str
) -> None:
    """Someone deletes the copy on the platform; `verify` records a `remote_deleted`
    conflict, and a person resolves it with `--use source` so that the next `reconcile`
    sends the master again. That upload repeats the Idempotency-Key of the first one (same
    platform, key and bytes), so a platform that honours the header answers with the first
    response and stores nothing: the copy is recorded synced again, the platform still holds
    nothing, and the next verify finds it gone again, for ever. What must hold: a re-sync that
    a person asked for really stores the bytes on the platform."""
    world = cdn(World(tmp_path), idempotent).rule("R", "CDN").asset("VID-A", b"a" * 5000)
    world.manifests()
    assert reconcile(world, *world.cli_args(), env=CDN_ENV).returncode == 0
    Idempotent.objects.clear()  # deleted on the platform by someone
    assert reconcile(world, "verify", *world.cli_args(), env=CDN_ENV).returncode == 3
    ((conflict,),) = rows(world, "SELECT id FROM sync_conflicts WHERE resolution = 'pending'")
    resolved = reconcile(world, "conflicts", "--state", str(world.store.path), "resolve",
                         str(conflict), "--use", "source", "--by", "alice")  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr
    done = reconcile(world, *world.cli_args(), env=CDN_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [sha(d) for d in Idempotent.objects.values()] == [sha(b"a" * 5000)], (
        "recorded synced again, but nothing was stored on the platform"
    )


def test_an_upload_answered_with_a_307_to_the_same_origin_is_followed(
    tmp_path: Path, idempotent: str
) -> None:
    """A REST API built with FastAPI/Starlette (whose `redirect_slashes` is on by default)
    answers `POST /assets` with `307 Temporary Redirect` to `/assets/`, as it does for every
    route declared with a trailing slash; 307 and 308 mean "repeat the request, body and
    all, there". requests repeats it with the same body object, the streaming body refuses
    to be read twice, and every upload fails permanently with "an upload body was read
    twice; this is a bug". What must hold: a 307/308 to the same origin is followed (the
    body is sent again from the verified private copy, hashed again) and the copy is synced;
    at the very least the failure is not reported as a bug of the tool."""
    Idempotent.redirect_slash = True
    world = cdn(World(tmp_path), idempotent).rule("R", "CDN").asset("VID-A", b"a" * 5000)
    world.manifests()
    done = reconcile(world, *world.cli_args(), env=CDN_ENV)
    assert "this is a bug" not in done.stdout + done.stderr, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert [sha(d) for d in Idempotent.objects.values()] == [sha(b"a" * 5000)]


# == resources a killed run leaves behind ========================================================
@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from apiservers import API_KEY, REFRESH_TOKEN, VIMEO_TOKEN, FakePlatforms

    monkeypatch.setenv("ATTACK2_CDN_KEY", API_KEY)
    monkeypatch.setenv("ATTACK2_YT_REFRESH", REFRESH_TOKEN)
    monkeypatch.setenv("ATTACK2_VIMEO_TOKEN", VIMEO_TOKEN)
    server = FakePlatforms().start()
    yield server
    server.stop()


def video_platform(fake: Any, kind: str) -> dict[str, Any]:
    if kind == "youtube":
        return {"driver": "youtube", "platform_type": "video_platform",
                "api_endpoint": f"{fake.url}/youtube/v3", "token_url": f"{fake.url}/token",
                "auth_type": "oauth2", "auth": {"secret_env": "ATTACK2_YT_REFRESH"},
                "chunk_size_kib": 256, "poll_interval": 0, "target": None}  # fmt: skip
    return {"driver": "vimeo", "platform_type": "video_platform",
            "api_endpoint": f"{fake.url}/vimeo", "auth_type": "oauth2",
            "auth": {"secret_env": "ATTACK2_VIMEO_TOKEN"}, "chunk_size_kib": 256,
            "poll_interval": 0, "target": None}  # fmt: skip


def scratch_files(world: World) -> list[str]:
    tmp = world.store.path.parent / "renditions" / "tmp"
    return sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*")) if tmp.exists() else []


@pytest.mark.parametrize("kind", ["vimeo", "youtube"])
def test_a_kill_during_an_api_upload_leaves_no_private_copy_behind(
    tmp_path: Path, fake: Any, kind: str
) -> None:
    """Every upload to an API platform is sent from a private copy of the master in
    `state/renditions/tmp/.send-*` (as big as the master: a 4 GiB video makes a 4 GiB copy).
    `reconcile` is killed (SIGKILL, an OOM kill, a reboot) in the middle of the upload, and a
    plain `reconcile` then resumes and finishes it from a new private copy. The killed run's
    copy is only swept once it is an hour old, by a run that happens after that hour: every
    kill leaves a full copy of each master in flight on the state's disk, and a crash-looping
    `watch` service fills it. What must hold: once the next run (which holds the run lock, so
    no other run can be using them) has recovered, no private copy of a dead run is left."""
    world = World(tmp_path).platform("VIDS", **video_platform(fake, kind)).rule("R", "VIDS")
    world.asset("VID-A", os.urandom(3 * 1024 * 1024))
    world.manifests()
    fake.stall_fraction = 0.5
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *world.cli_args()], cwd=world.root,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert fake.stalled.wait(60), "the upload never reached the stall"
    finally:
        process.kill()
        process.wait(30)
    fake.release.set()
    done = reconcile(world, *world.cli_args())
    assert done.returncode == 0, done.stdout + done.stderr
    assert scratch_files(world) == [], "a dead run's private copies are left on the disk"


def test_an_api_upload_needs_no_free_space_the_size_of_the_master_beside_the_state(
    tmp_path: Path, fake: Any
) -> None:
    """The state file lives on a small disk (a root partition, a container's writable
    layer) while the masters live on a big NAS, as the README's `--media-root` and
    `--state` allow; no rule has transforms, so no rendition is made. Since the private copy
    for API platforms, every upload to Vimeo, YouTube or a REST API first copies the whole
    master beside the state file (`renditions/tmp/.send-*`, times `--parallel`): a master
    bigger than the free space there fails with "unexpected OSError: [Errno 28] No space left
    on device", where the upload worked before (and a 50 GiB master needs 50 GiB free on the
    state's disk). What must hold: a master without transforms reaches an API platform
    whatever the free space beside the state (verify while sending, or keep the private copy
    where the master's bytes are); at the very least the failure says what to do."""
    master = os.urandom(12 * 1024 * 1024)
    world = World(tmp_path).platform("VIDS", **video_platform(fake, "vimeo")).rule("R", "VIDS")
    world.asset("VID-A", master)
    world.manifests()
    with tmpfs(tmp_path / "small", "8m") as small:
        state = small / "reconciler.duckdb"
        done = reconcile(world, *world.cli_args()[:4], "--state", str(state))
        assert "unexpected OSError" not in done.stdout, done.stdout
        assert done.returncode == 0, done.stdout + done.stderr
    assert [sha(bytes(u.data)) for u in fake.uploads.values()] == [sha(master)]


# == S3 through a proxy that can hold one request =================================================
class Stall(BaseHTTPRequestHandler):
    """A pass-through proxy in front of the loopback S3 server that holds the first request
    matching ``stall`` (method, part of the path) until ``released``, so that the client can
    be killed exactly there."""

    protocol_version = "HTTP/1.1"
    upstream = ""
    strip: ClassVar[bool] = False  # drop the x-amz-checksum-* headers (a store without them)
    stall: ClassVar[tuple[str, str] | None] = None
    refuse: ClassVar[tuple[str, str] | None] = None  # answered 503 (a store having a bad minute)
    skip: ClassVar[int] = 0  # matching requests let through before the one that is held
    stalled = threading.Event()
    released = threading.Event()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:

        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if Stall.refuse and self.command == Stall.refuse[0] and Stall.refuse[1] in self.path:
            body = b"<Error><Code>ServiceUnavailable</Code><Message>busy</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if Stall.stall and self.command == Stall.stall[0] and Stall.stall[1] in self.path:
            if Stall.skip > 0:  # let this many matching requests through first
                Stall.skip -= 1
                return self._pass(body)
            Stall.stall = None
            Stall.stalled.set()
            Stall.released.wait(60)
            self.close_connection = True
            return
        self._pass(body)

    def _pass(self, body: bytes | None) -> None:
        import http.client
        from urllib.parse import urlsplit

        target = urlsplit(Stall.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        headers["Host"] = target.netloc
        connection.request(self.command, self.path, body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            lower = name.lower()
            if Stall.strip and lower.startswith("x-amz-checksum"):
                continue
            if lower not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", answer.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


@pytest.fixture
def stall_proxy(s3_endpoint: str, aws_env: None) -> Iterator[str]:
    Stall.upstream, Stall.stall, Stall.strip, Stall.refuse = s3_endpoint, None, False, None
    Stall.skip = 0
    Stall.stalled, Stall.released = threading.Event(), threading.Event()
    server, url = serve(Stall)
    yield url
    Stall.released.set()
    server.shutdown()
    server.server_close()


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def killed_at(world: World, *args: str) -> None:
    """Run `reconcile` until the proxy holds its request, then SIGKILL it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *world.cli_args(), *args], cwd=world.root,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert Stall.stalled.wait(120), "the run never reached the request to hold"
    finally:
        process.kill()
        process.wait(30)
        Stall.released.set()


def test_a_kill_before_an_adoption_never_makes_the_foreign_object_ours(
    tmp_path: Path, s3_endpoint: str, stall_proxy: str
) -> None:
    """A colleague already put the very bytes of a new master at its key in the bucket. The
    create's look at the key (which would adopt the object: recorded as not made by this
    tool, never pruned) is where the run is killed (SIGKILL). Recovery finds the job's
    expected checksum at the key and records the job as having uploaded it: the
    colleague's object becomes a copy this tool made (managed), and when the asset is later
    dropped, `reconcile --prune` deletes it from the bucket. What must hold: an object found
    at the key of a create that never sent a byte is adopted (or left to the next run to
    adopt), never recorded as made by this tool; a prune never deletes it."""
    client = s3_client(s3_endpoint)
    bucket = "adopt-kill"
    client.create_bucket(Bucket=bucket)
    master = b"the colleague has the very same bytes " * 100
    client.put_object(Bucket=bucket, Key="vid-a.mp4", Body=master)  # not ours
    world = World(tmp_path).platform(
        "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
        region="us-east-1", endpoint_url=stall_proxy,
    ).rule("R", "BACKUP").asset("VID-A", master).asset("VID-B", b"b" * 100)  # fmt: skip
    world.manifests()
    Stall.stall = ("HEAD", "/vid-a.mp4")
    killed_at(world)
    done = reconcile(world, *world.cli_args())
    assert done.returncode == 0, done.stdout + done.stderr
    world.remove("Asset", "VID-A").manifests()
    reconcile(world, *world.cli_args(), "--prune", "--force")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "vid-a.mp4" in keys, "a prune deleted an object this tool never made"
    assert client.get_object(Bucket=bucket, Key="vid-a.mp4")["Body"].read() == master


# == credentials are never masters ===============================================================
KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


@pytest.mark.parametrize("how", ["symlinked-folder", "symlinked-file", "hard-link"])
def test_a_credential_file_is_not_a_master_under_another_name(tmp_path: Path, how: str) -> None:
    """The encryption key of the backup rule lives inside the media root
    (`media/keys/backup.key`, referenced as a `secret_file`). The README: "An Asset naming it
    is an error". A pull request adds an Asset whose `file` reaches the same file by another
    name inside the media root: through a symlinked folder (`alias -> keys`, committed with
    the PR), a symlink to the key, or a hard link. The check compares the Asset's path as
    written (`alias/backup.key`) with the key's path, so the key is published in clear on
    the CDN. What must hold: a credential file is never a master, whatever name inside the
    media root leads to it (compare real paths, or the file's device and inode)."""
    world = World(tmp_path).platform("CDN").platform("BACKUP", platform_type="cloud_storage")
    keys = world.media / "keys"
    keys.mkdir()
    (keys / "backup.key").write_text(KEY_HEX + "\n")
    world.rule("R-CDN", "CDN", source_category=["docs"])
    world.rule("R-BACKUP", "BACKUP", source_category=["video"], transform_rules={
        "encrypt": True, "encryption_key": {"secret_file": str(keys / "backup.key")}})  # fmt: skip
    world.asset("VID-A", b"a" * 100, category="video")
    if how == "symlinked-folder":
        (world.media / "alias").symlink_to("keys")
        file = "alias/backup.key"
    elif how == "symlinked-file":
        (world.media / "notes.txt").symlink_to("keys/backup.key")
        file = "notes.txt"
    else:
        os.link(keys / "backup.key", world.media / "notes.txt")
        file = "notes.txt"
    world._doc("Asset", "DOC-NOTES", {"title": "notes", "asset_type": "document",
                                      "category": "docs", "file": file})  # fmt: skip
    (world.manifests_dir / "all.yaml").write_text(
        __import__("yaml").safe_dump_all(list(world.docs.values()))
    )
    reconcile(world, *world.cli_args())
    leaked = [p for p in out(world, "CDN").rglob("*") if p.is_file() and KEY_HEX.encode() in
              p.read_bytes()]  # fmt: skip
    assert leaked == [], f"the encryption key was published in clear as {leaked}"


# == saved plans ================================================================================
def saved_plan(world: World, name: str = "p.json") -> tuple[Path, dict[str, Any]]:
    plan_file = world.root / name
    done = reconcile(world, "--dry-run", *world.cli_args(), "--out", str(plan_file))
    assert done.returncode == 0, done.stderr
    return plan_file, json.loads(plan_file.read_text())


def test_a_saved_plan_is_refused_when_its_platform_now_sends_the_bytes_elsewhere(
    tmp_path: Path,
) -> None:
    """The reviewed plan says `+ create VID-A on NAS` (the NAS folder of the manifests it was
    made from). Before it is applied, a later commit changes where NAS sends its bytes (its
    `target` here; its `bucket`, `endpoint_url` or `api_endpoint` alike). Apply compares each
    action's kind, rule, file, checksum, size and rendition, none of which changed, and
    publishes the reviewed change to a destination nobody reviewed. What must hold: a saved
    plan applies what was reviewed or nothing; a platform whose destination (driver and its
    settings) changed since the plan refuses it, as a changed master does."""
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.manifests()
    plan_file, _ = saved_plan(world)
    world.platform("NAS", target="../public-www").manifests()
    done = reconcile(world, "apply", str(plan_file), *world.cli_args())
    published = [p for p in (tmp_path / "public-www").rglob("*") if p.is_file()]
    assert published == [], f"applied to a destination the plan was not made for: {published}"
    assert done.returncode == 1, done.stdout


def test_a_saved_plan_applies_from_another_checkout_of_the_same_manifests(tmp_path: Path) -> None:
    """A CI pipeline plans in one job and applies the reviewed plan artifact in a later job,
    as Terraform pipelines do. The two jobs run in different checkouts of the same commit
    (GitLab runners use `/builds/<runner>/<concurrency slot>/...`, so two jobs rarely get the
    same folder), against the shared state file and media library (absolute paths). The
    manifests are byte for byte the same, so the fresh plan matches every action; yet the
    apply refuses "this plan was made for --manifests /builds/a/manifests, and this apply
    works on /builds/b/manifests". What must hold: a saved plan made from the same manifests,
    media root and state applies, whatever folder the checkout sits in (the fresh plan
    already proves that every action is the same change)."""
    media, state = tmp_path / "library", tmp_path / "shared" / "reconciler.duckdb"
    first = World(tmp_path / "builds" / "0").platform("NAS", target=str(tmp_path / "nas"))
    first.rule("R", "NAS")
    first.media = media
    first.asset("VID-A", b"a" * 100)
    first.manifests()
    args = ["--media-root", str(media), "--state", str(state)]
    plan = tmp_path / "plan.json"
    made = reconcile(first, "--dry-run", "--manifests", "manifests", *args, "--out", str(plan))
    assert made.returncode == 0, made.stderr
    second = tmp_path / "builds" / "1"
    (second / "manifests").mkdir(parents=True)
    (second / "manifests" / "all.yaml").write_bytes((first.manifests_dir / "all.yaml").read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "apply", str(plan), "--manifests", "manifests",
         *args], cwd=second, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "nas" / "vid-a.mp4").read_bytes() == b"a" * 100


# == video masters in the containers media teams keep ============================================
@pytest.mark.parametrize(
    ("name", "mime", "args"),
    [("master.mpg", "video/mpeg", ("mpeg2video", "mpeg")),
     ("master.wmv", "video/x-ms-wmv", ("wmv2", "asf")),
     ("master.ogv", "video/ogg", ("libvpx", "ogg"))],  # VP8: PyAV's wheel has no Theora encoder
    ids=["mpeg-ps", "asf", "ogg"],
)  # fmt: skip
def test_a_self_contained_broadcast_master_still_renders(
    tmp_path: Path, name: str, mime: str, args: tuple[str, str]
) -> None:
    """A media team's masters are often MPEG program streams (.mpg, DVD and broadcast
    archives), Windows Media (.wmv, corporate archives) or Ogg. Each is one self-contained
    file whose FFmpeg demuxer opens nothing else. The new container whitelist admits only
    MP4/MOV, Matroska, AVI, MPEG-TS and FLV, so a YouTube rule with `quality: 1080p` that
    rendered these masters now fails every one of them ("only MP4/MOV ... are accepted"):
    a regression for legitimate masters, not an attack. What must hold: self-contained
    containers render (whitelist the demuxers that open no other file, such as mpeg, asf,
    ogg and mxf), while manifests, playlists and concat lists stay refused."""
    world = World(tmp_path).platform("YT", platform_type="video_platform")
    world.rule("R", "YT", transform_rules={"quality": "240p", "add_watermark": True})
    codec, container = args
    make_video(world.media / name, 320, 240, rate=25, codec=codec, container=container)
    world._doc("Asset", "VID-MASTER", {"title": "master", "asset_type": "video",
                                       "category": "marketing", "file": name,
                                       "mime_type": mime})  # fmt: skip
    world.manifests()
    done = reconcile(world, *world.cli_args())
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(world, "SELECT sync_status FROM platform_assets") == [("synced",)]


def test_a_video_rule_is_never_silently_skipped_for_a_video_whose_mime_is_not_video(
    tmp_path: Path,
) -> None:
    """An Asset with `asset_type: video` whose file is an MXF master (the broadcast and
    post-production master format; its registered MIME type, which the extension gives, is
    `application/mxf`). The YouTube rule says `add_watermark: true, quality: 240p`. The recipe
    is chosen by the MIME type's prefix (`video/` or `image/`) only, so this video gets no
    steps at all: the plan shows no rendition, and the unwatermarked, unscaled master is
    published and recorded synced as if the rule had been applied. What must hold: a rule's
    transforms are applied to every video asset (decide the kind by asset_type, or what ffprobe
    finds), or the placement is blocked with a reason; they are never silently dropped."""
    world = World(tmp_path).platform("YT", platform_type="video_platform")
    world.rule("R", "YT", transform_rules={"quality": "240p", "add_watermark": True})
    master = make_video(world.media / "master.mxf", 640, 480, rate=25, codec="mpeg2video",
                        container="mxf")  # fmt: skip
    world._doc("Asset", "VID-MASTER", {"title": "master", "asset_type": "video",
                                       "category": "marketing", "file": "master.mxf"})  # fmt: skip
    world.manifests()
    reconcile(world, *world.cli_args())
    published = [p.read_bytes() for p in out(world, "YT").rglob("*") if p.is_file()]
    assert master.read_bytes() not in published, (
        "the master went to YouTube unwatermarked and unscaled, recorded synced"
    )


# == S3-compatible stores without checksums: the ETag is an MD5 ===================================
# Two different 128-byte blocks with the same MD5 (Wang and Yu, 2004); any common suffix keeps
# the collision, as MD5 hashes block by block.
COLLIDING = (
    bytes.fromhex(
        "d131dd02c5e6eec4693d9a0698aff95c2fcab58712467eab4004583eb8fb7f8955ad340609f4b302"
        "83e488832571415a085125e8f7cdc99fd91dbdf280373c5bd8823e3156348f5bae6dacd436c919c6"
        "dd53e2b487da03fd02396306d248cda0e99f33420f577ee8ce54b67080a80d1ec69821bcb6a88393"
        "96f9652b6ff72a70"
    ),
    bytes.fromhex(
        "d131dd02c5e6eec4693d9a0698aff95c2fcab50712467eab4004583eb8fb7f8955ad340609f4b302"
        "83e4888325f1415a085125e8f7cdc99fd91dbd7280373c5bd8823e3156348f5bae6dacd436c919c6"
        "dd53e23487da03fd02396306d248cda0e99f33420f577ee8ce54b67080280d1ec69821bcb6a88393"
        "96f965ab6ff72a70"
    ),
)


def test_an_object_replaced_by_an_md5_twin_is_not_a_match_on_a_store_without_checksums(
    tmp_path: Path, s3_endpoint: str, stall_proxy: str
) -> None:
    """On an S3-compatible store that reports no additional checksums, the driver reads an
    upload back once and from then on vouches for the copy by the ETag and size recorded
    then; a single PUT's ETag is the MD5 of its bytes. MD5 collisions take seconds to make:
    a contributor commits a master that begins with one block of a colliding pair, and once
    it is synced, replaces the object in the bucket with its twin (other bytes, same size,
    same MD5, so the same ETag). `reconcile verify` says "match" and the plan "no changes"
    for ever, although the bucket holds bytes whose sha256 is not the recorded one. What must
    hold: a copy is vouched for by a collision-resistant checksum of what the store holds (read
    it back and hash it, or use a checksum the store computes), never by an MD5 ETag alone."""
    assert hashlib.md5(COLLIDING[0]).digest() == hashlib.md5(COLLIDING[1]).digest()
    client = s3_client(s3_endpoint)
    bucket = "md5-twins"
    client.create_bucket(Bucket=bucket)
    Stall.strip = True
    suffix = b" the rest of the master " * 200
    master, twin = COLLIDING[0] + suffix, COLLIDING[1] + suffix
    world = World(tmp_path).platform(
        "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
        region="us-east-1", endpoint_url=stall_proxy,
    ).rule("R", "BACKUP").asset("VID-A", master)  # fmt: skip
    world.manifests()
    assert reconcile(world, *world.cli_args()).returncode == 0
    etag = client.head_object(Bucket=bucket, Key="vid-a.mp4")["ETag"]
    client.put_object(Bucket=bucket, Key="vid-a.mp4", Body=twin)  # the attacker's swap
    assert client.head_object(Bucket=bucket, Key="vid-a.mp4")["ETag"] == etag
    held = client.get_object(Bucket=bucket, Key="vid-a.mp4")["Body"].read()
    assert sha(held) != sha(master)
    verify = reconcile(world, "verify", *world.cli_args())
    assert verify.returncode == 3, "an object with other bytes verified as a match: " + (
        verify.stdout
    )


# == local targets an administrator laid out with symlinks ========================================
def test_a_target_whose_folder_an_administrator_symlinked_to_another_disk_still_works(
    tmp_path: Path,
) -> None:
    """The NAS target has run out of room for videos, so its administrator moved `videos/` to
    a bigger disk and left a symlink (`<target>/videos -> /mnt/big/videos`), the way rsync
    users keep one with `--keep-dirlinks` and rclone and cp write through it. Since the
    descriptor walk, every upload, look-up and delete below that folder fails permanently
    ("on the target is a symlink; nothing was written through it"), with no setting to allow
    it and no word of it in the README's Drivers section: a layout that worked is refused.
    What must hold: a symlinked folder the platform's owner chose can be used (an opt-in
    setting such as `follow_symlinks: true`, or symlinks that were there before this tool made
    anything); at the very least the refusal is documented and says how to allow it."""
    big = tmp_path / "big" / "videos"
    big.mkdir(parents=True)
    target = tmp_path / "out" / "nas"
    target.mkdir(parents=True)
    (target / "videos").symlink_to(big)
    world = World(tmp_path).platform("NAS").rule("R", "NAS")
    world.asset("VID-A", b"a" * 100, file="videos/a.mp4")
    world.manifests()
    refused = reconcile(world, *world.cli_args())  # by default: refused, saying how to allow
    assert refused.returncode == 3 and "set follow_symlinks: true" in refused.stdout
    assert not (big / "a.mp4").exists()
    world.platform("NAS", follow_symlinks=True)  # the administrator's choice, said so
    world.manifests()
    done = reconcile(world, *world.cli_args())
    assert done.returncode == 0, done.stdout + done.stderr
    assert (big / "a.mp4").read_bytes() == b"a" * 100


# == bad input is one clear line ===================================================================
@pytest.mark.parametrize(
    "args",
    [["--dry-run", "--renditions-max-size", "1e400"],
     ["--dry-run", "--renditions-max-size", "1e400GiB"],
     ["events", "--since", "99999999d"]],
    ids=["size-1e400", "size-1e400GiB", "since-99999999d"],
)  # fmt: skip
def test_an_out_of_range_number_is_one_clear_line(tmp_path: Path, args: list[str]) -> None:
    """A typo or a fuzzer gives a size or an age far out of range: `--renditions-max-size
    1e400` (float infinity once parsed, where `inf` itself is refused) and `events --since
    99999999d` (a date before year 1). Both end in a Python traceback (`OverflowError:
    cannot convert float infinity to integer`, `OverflowError: date value out of range`).
    What must hold: bad input is one `error:` line (or click's usage error), exit 1, no
    traceback."""
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.manifests()
    common = world.cli_args() if args[0] == "--dry-run" else ["--state", str(world.store.path)]
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args[:1], *common, *args[1:]], cwd=world.root,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-600:]
    assert done.returncode == 1, done.stdout + done.stderr


@pytest.mark.parametrize("option", ["--interval", "--debounce"])
def test_watch_refuses_nan_seconds(tmp_path: Path, option: str) -> None:
    """`--lock-timeout nan` is refused since the first round (it waited for ever), but
    `reconcile watch --interval nan` and `--debounce nan` are accepted (click's FloatRange
    lets NaN through): with `--interval nan` the loop's deadline is NaN, it waits 0 s every
    time and spins a core at 100 % for ever, never running a full cycle or verify; with
    `--debounce nan` no change is ever old enough, so an edit of the manifests or the masters
    waits, silently, for the next full cycle (5 minutes by default). What must hold: NaN is
    refused with one line and exit 1, as for --lock-timeout."""
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.manifests()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "watch", *world.cli_args(), option, "nan"],
        cwd=world.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"watch {option} nan was accepted and ran")
    assert process.returncode == 1, stderr
    assert "nan" in stderr.lower(), stderr


# == nothing is written over an object this tool did not make ====================================
def test_an_update_that_moves_a_copy_to_a_new_key_never_overwrites_a_foreign_object(
    tmp_path: Path,
) -> None:
    """A backup copy `report.pdf` is synced. A colleague keeps their own file at
    `report.pdf.enc` on the same target (another tool's encrypted export, say). Then the rule
    gains `encrypt: true`: the copy moves to `report.pdf.enc`. A create looks at its key
    first (identical bytes adopted, other bytes a `foreign_object` conflict), but an update
    whose key changed does not: it renames its part file over the colleague's file, silently,
    and deletes the old key. What must hold: a key this tool has no copy at is looked at before
    anything is written there, whichever job writes it; another object there is a
    `foreign_object` conflict and is left alone."""
    world = World(tmp_path).platform("BACKUP", platform_type="cloud_storage")
    world.rule("R", "BACKUP")
    world.asset("DOC-A", b"the report " * 50, file="report.pdf", asset_type="document",
                mime_type="application/pdf")  # fmt: skip
    world.manifests()
    assert reconcile(world, *world.cli_args()).returncode == 0
    theirs = out(world, "BACKUP") / "report.pdf.enc"
    theirs.write_bytes(b"a colleague's own file, not ours")
    world.rule("R", "BACKUP", transform_rules={
        "encrypt": True, "encryption_key": {"secret_env": "ATTACK2_KEY"}})  # fmt: skip
    world.manifests()
    reconcile(world, *world.cli_args(), env={"ATTACK2_KEY": KEY_HEX})
    assert theirs.read_bytes() == b"a colleague's own file, not ours", (
        "an update overwrote a file this tool did not make"
    )


# == API uploads that outlive their access token ================================================
def test_an_access_token_that_expires_in_the_middle_of_a_youtube_upload_is_refreshed(
    tmp_path: Path, fake: Any
) -> None:
    """Google's access tokens live an hour, so a long upload outlives its token: a chunk PUT
    to the session URI is answered 401. The driver refreshes the token and repeats the
    request with the same streaming body, which refuses to be read twice: the job fails
    permanently with "an upload body was read twice; this is a bug", every hour-long
    upload fails once, and `reconcile` exits 3. (A token expiring before the session starts
    is refreshed fine; only a chunk in flight is not.) What must hold: a 401 on a chunk is
    refreshed and that chunk sent again from the verified copy, and the upload completes in
    the same run."""
    master = os.urandom(1024 * 1024)
    world = World(tmp_path).platform("YT", **video_platform(fake, "youtube")).rule("R", "YT")
    world.asset("VID-A", master)
    world.manifests()
    handler = fake.server.RequestHandlerClass
    original = handler._yt_upload
    expired = threading.Event()

    def expire_after_first_chunk(self: Any, query: Any) -> None:
        original(self, query)
        upload = next(iter(fake.uploads.values()), None)
        if upload is not None and upload.data and not expired.is_set():
            expired.set()
            fake.tokens.clear()  # the hour is up: every token handed out so far is refused

    handler._yt_upload = expire_after_first_chunk
    try:
        done = reconcile(world, *world.cli_args())
    finally:
        handler._yt_upload = original
    assert expired.is_set()
    assert "this is a bug" not in done.stdout, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert [sha(v.data) for v in fake.videos.values()] == [sha(master)]


# == the tool's own files are never masters ========================================================
def test_renditions_and_the_state_file_are_never_read_back_as_masters(tmp_path: Path) -> None:
    """A small repository keeps its manifests at the top (`reconcile --manifests .`, run from
    the repository), so the media root is the repository too, and the state file is in its
    default place, `state/reconciler.duckdb` under the current folder: inside the media root.
    An AssetSet takes every video (`**/*.mp4`) for a watermarked YouTube rule, and
    another takes every other file (`**/*`) for a backup. The first run stores its renditions
    in `state/renditions/<id>.mp4` and `<id>.json`; the next validation matches them (and the
    state file and its lock) as new masters. With these templates their 64-digit names give
    codes that are too long, so the manifests that were valid are now invalid, for good, and
    nothing syncs any more; with templates that fit, the renditions are published as masters
    (a watermark on a watermark, one more each run) and the state file is backed up as a
    document. A local target inside the media root is refused for this very reason ("copies
    would be read back as masters"); the state folder and the rendition cache are not (skip
    them as AssetSets skip credential files, or refuse them at validation). What must hold:
    a second plain `reconcile` has nothing to do, and nothing of the state folder (state file,
    lock, renditions) is ever published."""
    import yaml

    repo = tmp_path / "repo"
    (repo / "media").mkdir(parents=True)
    make_video(repo / "media" / "launch.mp4", 320, 240, rate=25)
    docs = [
        {"kind": "Platform", "metadata": {"code": "YT"},
         "spec": {"platform_name": "Yt", "platform_type": "video_platform", "driver": "local",
                  "target": str(tmp_path / "out" / "yt")}},
        {"kind": "Platform", "metadata": {"code": "BACKUP"},
         "spec": {"platform_name": "Backup", "platform_type": "cloud_storage",
                  "driver": "local", "target": str(tmp_path / "out" / "backup")}},
        {"kind": "AssetSet", "metadata": {"code": "VIDEOS"},
         "spec": {"include": "**/*.mp4", "asset_type": "video", "category": "video",
                  "code_template": "VID-{path}", "code_case": "upper"}},
        {"kind": "AssetSet", "metadata": {"code": "DOCS"},
         "spec": {"include": "**/*", "exclude": ["**/*.mp4", "**/*.yaml"],
                  "asset_type": "document", "category": "docs",
                  "code_template": "DOC-{path}", "code_case": "upper"}},
        {"kind": "SyncRule", "metadata": {"code": "R-YT"},
         "spec": {"platform": "YT", "source_category": ["video"], "asset_types": "all",
                  "sync_mode": "full", "transform_rules": {"add_watermark": True}}},
        {"kind": "SyncRule", "metadata": {"code": "R-BACKUP"},
         "spec": {"platform": "BACKUP", "source_category": ["docs"], "asset_types": "all",
                  "sync_mode": "full"}},
    ]  # fmt: skip
    for doc in docs:
        doc["apiVersion"] = "mediasync/v1"
    (repo / "reconcile.yaml").write_text(yaml.safe_dump_all(docs))
    world = World(tmp_path)
    world.root = repo
    for _ in range(2):
        reconcile(world, "--manifests", ".")
    again = reconcile(world, "--dry-run", "--manifests", ".", "--detailed-exitcode")
    published = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")
                       if p.is_file())  # fmt: skip
    assert not [p for p in published if "state" in p or "renditions" in p], published
    assert again.returncode == 0, again.stdout


# == private copies stay private =================================================================
def test_renditions_of_a_private_master_are_not_readable_by_other_users(tmp_path: Path) -> None:
    """An embargoed launch image is kept `chmod 600` in the media library on a shared host.
    Its CDN rule resizes it. The rendition cache stores the resized picture as
    `state/renditions/<id>.jpg` with mode 0644, in folders of mode 0755 (and the private
    snapshot the media tools read is made 0644 too), so every local user can read the
    embargoed picture there for as long as the cache keeps it; only encrypted renditions and
    the `.send-*` copies are 0600. What must hold: nothing the tool derives from a master is
    more readable than the master (make the cache's files 0600, or its folder 0700)."""
    from PIL import Image

    world = World(tmp_path).platform("CDN").rule("R", "CDN", transform_rules={
        "resize_images": True, "max_dimension": 64})  # fmt: skip
    master = world.media / "hero.jpg"
    Image.new("RGB", (400, 300), "red").save(master, "JPEG")
    master.chmod(0o600)
    world._doc("Asset", "IMG-HERO", {"title": "hero", "asset_type": "image",
                                     "category": "marketing", "file": "hero.jpg"})  # fmt: skip
    world.manifests()
    assert reconcile(world, *world.cli_args()).returncode == 0
    renditions = world.store.path.parent / "renditions"
    readable = []
    for path in [renditions, *renditions.rglob("*")]:
        mode = path.stat().st_mode
        if path.is_file() and mode & 0o044:
            readable.append(f"{path.name} {oct(mode & 0o777)}")
    folder_mode = renditions.stat().st_mode & 0o777
    assert folder_mode & 0o055 == 0 or readable == [], (
        f"renditions of a 0600 master readable by others: {readable} (folder {oct(folder_mode)})"
    )


# == a busy state file and a kill =================================================================
class TwoStalls(Stall):
    """Holds the request that creates a multipart upload until ``go_on`` is set, and the
    upload of part 2 for good (the client is killed there)."""

    go_on = threading.Event()
    creating = threading.Event()
    at_part_two = threading.Event()

    def _forward(self) -> None:
        if self.command == "POST" and "uploads" in self.path and not TwoStalls.creating.is_set():
            TwoStalls.creating.set()
            TwoStalls.go_on.wait(60)
        elif (self.command == "PUT" and "partNumber=2" in self.path
              and not TwoStalls.at_part_two.is_set()):  # fmt: skip
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            TwoStalls.at_part_two.set()
            Stall.released.wait(60)
            self.close_connection = True
            return
        super()._forward()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


def test_a_multipart_upload_started_while_a_reader_holds_the_state_is_not_left_behind(
    tmp_path: Path, s3_endpoint: str, aws_env: None
) -> None:
    """A BI tool holds a read-only connection to the state file (which keeps every writer
    out) just as a 20 MiB S3 upload starts its multipart upload. The upload id is to be
    recorded "before the first part", but that write waits only 2 s for a busy file and the
    parts then go anyway, the id kept in memory. The run is killed (SIGKILL) during part 2.
    The id never reached the state file, so recovery, which aborts only the uploads it
    recorded, knows nothing of it: its parts stay in the bucket, billed, for ever. What must
    hold: after the kill and a plain `reconcile` (the reader gone), no multipart upload is
    left in the bucket (wait for the file before the first part, abort and retry the upload
    when its id cannot be recorded, or find the tool's own uploads at the job's key)."""
    import duckdb

    client = s3_client(s3_endpoint)
    bucket = "busy-multipart"
    client.create_bucket(Bucket=bucket)
    Stall.upstream, Stall.strip, Stall.stall = s3_endpoint, False, None
    Stall.released = threading.Event()
    TwoStalls.go_on, TwoStalls.creating = threading.Event(), threading.Event()
    TwoStalls.at_part_two = threading.Event()
    server, url = serve(TwoStalls)
    try:
        world = World(tmp_path).platform(
            "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
            region="us-east-1", endpoint_url=url,
        ).rule("R", "BACKUP").asset("VID-A", os.urandom(20 * 1024 * 1024))  # fmt: skip
        world.manifests()
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *world.cli_args(), "--lock-timeout", "1"],
            cwd=world.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        reader = None
        try:
            assert TwoStalls.creating.wait(120), "the multipart upload was never started"
            deadline = time.monotonic() + 30
            while reader is None:  # in as soon as the writer lets go, as a BI tool would
                try:
                    reader = duckdb.connect(str(world.store.path), read_only=True)
                except duckdb.IOException:
                    assert time.monotonic() < deadline, "the state file never came free"
                    time.sleep(0.005)
            TwoStalls.go_on.set()
            # part 2 goes only if the upload id got recorded; waiting for the file instead
            # (and aborting the upload when it stays busy) is the other right answer
            TwoStalls.at_part_two.wait(15)
        finally:
            process.kill()
            process.wait(30)
            if reader is not None:
                reader.close()
            Stall.released.set()
            TwoStalls.go_on.set()
        done = reconcile(world, *world.cli_args(), timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        server.shutdown()
        server.server_close()
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert left == [], f"{len(left)} multipart uploads left in the bucket by the killed run"


def test_a_vimeo_video_created_while_a_reader_holds_the_state_is_not_orphaned_by_a_kill(
    tmp_path: Path, fake: Any
) -> None:
    """The same window on Vimeo: the video is created (`POST /me/videos`) while a BI tool
    holds the state file; its upload link, to be on disk "before the first byte", waits 2 s
    and then the chunks go anyway. The run is killed (SIGKILL) mid-upload. Nothing records
    the video, so the next run creates a second one and the first stays in the account for
    ever (empty or half-uploaded, on the channel's video list). What must hold: after the
    kill and a plain `reconcile`, the account holds exactly one video for the asset."""
    import duckdb

    world = World(tmp_path).platform("VIDS", **video_platform(fake, "vimeo")).rule("R", "VIDS")
    world.asset("VID-A", os.urandom(2 * 1024 * 1024))
    world.manifests()
    handler = fake.server.RequestHandlerClass
    original = handler._vimeo
    creating, go_on = threading.Event(), threading.Event()

    def held_create(self: Any, path: str) -> None:
        if path == "/me/videos" and self.command == "POST" and not creating.is_set():
            creating.set()
            go_on.wait(60)
        return original(self, path)

    handler._vimeo = held_create
    fake.stall_fraction = 0.3
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *world.cli_args(), "--lock-timeout", "1"],
        cwd=world.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    reader = None
    try:
        assert creating.wait(60), "the video was never created"
        deadline = time.monotonic() + 30
        while reader is None:
            try:
                reader = duckdb.connect(str(world.store.path), read_only=True)
            except duckdb.IOException:
                assert time.monotonic() < deadline, "the state file never came free"
                time.sleep(0.005)
        go_on.set()
        # the chunks go only once the upload link is on disk; or the video is deleted and
        # the upload waits for the file: either way, killed now
        fake.stalled.wait(15)
    finally:
        process.kill()
        process.wait(30)
        if reader is not None:
            reader.close()
        go_on.set()
        fake.release.set()
        handler._vimeo = original
    done = reconcile(world, *world.cli_args())
    assert done.returncode == 0, done.stdout + done.stderr
    live = [u.id for u in fake.uploads.values() if u.video != "deleted"]
    assert len(live) == 1, f"{len(live)} videos in the account for one asset"


# == short credentials ===========================================================================
class EchoPassword(BaseHTTPRequestHandler):
    """A REST platform that rejects basic auth quoting the password it decoded, as some do."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        import base64

        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.endswith("/health"):
            status, body = 200, {"ok": True}
        else:
            auth = self.headers.get("Authorization", "").removeprefix("Basic ")
            user, _, password = base64.b64decode(auth).decode().partition(":")
            status, body = 401, {"message": f"invalid password '{password}' for {user}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any


def test_a_short_password_a_platform_echoes_is_never_recorded_or_printed(tmp_path: Path) -> None:
    """A DAM's service account has a short password (`Pw#42`, 5 characters; legacy systems
    and PINs have them). The platform rejects the login quoting the password back. Redaction
    ignores every secret shorter than 6 characters (so as not to blank out ordinary words),
    so the password is printed by the apply, and written into the job's error_message and
    the events in the state file. What must hold: no credential is ever recorded or printed,
    whatever its length (redact short ones too, at least in what a platform answers, or
    refuse a credential too short to be kept out of messages, in one line)."""
    password = "Pw#42"
    server, url = serve(EchoPassword)
    try:
        world = World(tmp_path).platform(
            "DAM", driver="http", api_endpoint=url, auth_type="basic",
            auth={"secret_env": "ATTACK2_DAM_LOGIN"}, target=None,
        ).rule("R", "DAM").asset("VID-A", b"a" * 100)  # fmt: skip
        world.manifests()
        env = {"ATTACK2_DAM_LOGIN": f"svc-upload:{password}"}
        done = reconcile(world, *world.cli_args(), "-o", "json", env=env)
        events = reconcile(world, "events", "--state", str(world.store.path), "-o", "json")
    finally:
        server.shutdown()
        server.server_close()
    printed = done.stdout + done.stderr + events.stdout
    assert f"'{password}'" not in printed, "the password was printed"
    stored = b"".join(p.read_bytes() for p in world.store.path.parent.rglob("*") if p.is_file())
    assert password.encode() not in stored, "the password was written to the state file"


# == the copy is checked before it is replaced, not minutes before ===============================
class EditTheCopyWhileSending:
    """An observer that, once the update's first bytes have gone (after the job checked that
    the copy on the platform is still the recorded one), has a colleague edit that copy."""

    def __init__(self, copy: Path) -> None:
        self.copy = copy
        self.edited = False

    def run_started(self, jobs: list) -> None:
        pass

    def job_started(self, job: Any) -> None:
        pass

    def job_progress(self, job: Any, sent: int) -> None:
        if not self.edited:
            self.edited = True
            self.copy.write_bytes(b"the colleague's careful edit of the published copy")

    def job_finished(self, job: Any) -> None:
        pass

    def event(self, event: Any, job: Any) -> None:
        pass

    def run_finished(self) -> None:
        pass


def test_a_copy_edited_on_the_platform_during_a_long_update_is_not_silently_replaced(
    tmp_path: Path,
) -> None:
    """An update checks that the copy on the platform is still the one recorded, then makes
    the rendition (minutes for a video transcode), then sends (minutes for a big file), and
    only then replaces the copy. A colleague edits the published copy on the NAS in between.
    The update renames its file over the edit without a word: no `remote_modified` conflict,
    the edit is lost, and the copy is recorded synced. What must hold: an edit made on the
    platform before the replacement is not silently overwritten (check again at the moment of
    replacing: the local driver by the file's identity and times from the check, S3 with a
    conditional PUT on the recorded ETag); it is a `remote_modified` conflict, as it is when
    the edit comes before the job."""
    from planning import apply_run

    from reconciler.apply.run import apply_plan

    first, second = os.urandom(20 * 1024 * 1024), os.urandom(20 * 1024 * 1024)
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", first)
    assert apply_run(world, FAST).counts()["completed"] == 1
    world.write_file("vid-a.mp4", second)
    copy = out(world, "NAS") / "vid-a.mp4"
    observer = EditTheCopyWhileSending(copy)
    manifests = world.manifests()
    with world.store.session():
        apply_plan(manifests, world.store, world.plan(), FAST, observer)
    assert observer.edited
    conflicts = rows(world, "SELECT conflict_type FROM sync_conflicts")
    assert copy.read_bytes() == b"the colleague's careful edit of the published copy" or (
        conflicts == [("remote_modified",)]
    ), "the colleague's edit was overwritten without a conflict"


def test_a_killed_multipart_upload_is_aborted_even_if_the_first_cleanup_fails(
    tmp_path: Path, s3_endpoint: str, stall_proxy: str
) -> None:
    """A 20 MiB upload to S3 is killed (SIGKILL) during its second part; its upload id was
    recorded. The next run's recovery tries to abort it while the store is having a bad minute
    (503 SlowDown/ServiceUnavailable, or the network not up yet after the reboot that killed
    the run): the failure is a note, the job is closed as failed, and the run uploads the copy
    again, overwriting the recorded session with its own. No later run has a stale job, so
    cleanup never runs again, and the killed upload's parts stay in the bucket, billed, for
    ever. What must hold: a recorded upload id is forgotten only once its upload is aborted
    (or completed); after the store recovers, a plain `reconcile` leaves no multipart upload
    behind."""
    client = s3_client(s3_endpoint)
    bucket = "cleanup-fails"
    client.create_bucket(Bucket=bucket)
    world = World(tmp_path).platform(
        "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
        region="us-east-1", endpoint_url=stall_proxy,
    ).rule("R", "BACKUP").asset("VID-A", os.urandom(20 * 1024 * 1024))  # fmt: skip
    world.manifests()
    Stall.stall = ("PUT", "partNumber=2")
    killed_at(world)
    Stall.refuse = ("DELETE", "uploadId=")  # aborting fails for a while
    reconcile(world, *world.cli_args(), timeout=300)
    Stall.refuse = None  # the store is well again
    for _ in range(2):
        done = reconcile(world, *world.cli_args(), timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert left == [], f"{len(left)} multipart uploads left in the bucket by the killed run"


def test_a_kill_after_an_update_landed_is_no_conflict_when_recovery_cannot_look(
    tmp_path: Path, s3_endpoint: str, stall_proxy: str
) -> None:
    """An update of a copy on S3 lands (the PUT is done) and the run is killed (SIGKILL) before
    it records it. The next run's recovery cannot look at the key (the store answers 503 for a
    while), so it closes the job as failed and the copy as failed, still recording the old
    checksum. Once the store is well, the update runs again: its check that "the copy on the
    platform is still the one recorded" finds the killed run's own upload, and records a
    `remote_modified` conflict against the tool's own write (exit 3, the copy held until a
    person resolves it). What must hold: after a kill at any moment, and a store that was
    briefly unavailable, plain `reconcile` runs converge with no conflict (the bytes the last
    job was about to write, recorded before its first byte, are the tool's own)."""
    client = s3_client(s3_endpoint)
    bucket = "recovery-blind"
    client.create_bucket(Bucket=bucket)
    world = World(tmp_path).platform(
        "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
        region="us-east-1", endpoint_url=stall_proxy,
    ).rule("R", "BACKUP").asset("VID-A", b"1" * 5000)  # fmt: skip
    world.manifests()
    assert reconcile(world, *world.cli_args()).returncode == 0
    world.write_file("vid-a.mp4", b"2" * 5000)
    Stall.stall, Stall.skip = ("HEAD", "/vid-a.mp4"), 1  # the check passes, the PUT lands,
    killed_at(world)  # and the run is killed at the verification that follows it
    assert client.get_object(Bucket=bucket, Key="vid-a.mp4")["Body"].read() == b"2" * 5000
    Stall.refuse = ("HEAD", "/vid-a.mp4")  # the store has a bad minute
    reconcile(world, *world.cli_args())
    Stall.refuse = None
    done = reconcile(world, *world.cli_args())
    conflicts = rows(world, "SELECT conflict_type FROM sync_conflicts")
    assert conflicts == [], f"a conflict against the tool's own write: {done.stdout}"
    assert done.returncode == 0, done.stdout + done.stderr
