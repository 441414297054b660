"""Attacks on "trust the bytes, not the plan", the media root, credentials, crash safety and bad
input: each test is what an attacker, a careless colleague, a full disk or a lying server does,
and what must still hold. Real files, real subprocesses of `python -m reconciler` where the
defect shows on the CLI, the loopback fake API platforms and the loopback S3 server.

Each docstring tells the attack, what it did before the product was fixed, and what must
hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from attack_kit import FAST, out, reconcile, sha
from media import has_video_stream, make_video
from planning import World, apply_run, rows

from helpers import held_bytes, is_postgresql, short_lease

MARKER = b"OUTSIDE-THE-MEDIA-ROOT-"


def saved_plan(world: World, name: str = "p.json") -> tuple[Path, dict[str, Any]]:
    plan_file = world.root / name
    done = reconcile(world, "--dry-run", *world.cli_args(), "--out", str(plan_file))
    assert done.returncode == 0, done.stderr
    return plan_file, json.loads(plan_file.read_text())


# == a saved plan is a request, not an authority ==============================================
def test_an_edited_plan_cannot_move_the_media_root_to_publish_an_outside_file(
    tmp_path: Path,
    state_at: str,
) -> None:
    """The attacker edits a reviewed plan file: `media_root` to a folder of their own (outside
    the media root the plan was made with), and the action's path, checksum and size to match
    a file there. `reconcile apply p.json` (as CI runs it, without --media-root) must refuse:
    the fresh plan it compares against must be made with the media root of the invocation
    (--media-root, RECONCILE_MEDIA_ROOT, else the manifests folder), not with one the plan
    file names. Before the fix, the plan file's media_root is used for the "fresh" plan, so the
    comparison agrees with the edit and the outside file is published and recorded synced."""
    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.manifests()
    plan_file, data = saved_plan(world)
    evil = tmp_path / "evil"
    evil.mkdir()
    planted = MARKER + b"attacker content"
    (evil / "vid-a.mp4").write_bytes(planted)
    data["media_root"] = str(evil)
    action = data["actions"][0]
    action.update(path=str(evil / "vid-a.mp4"), checksum=sha(planted), size_bytes=len(planted))
    plan_file.write_text(json.dumps(data))
    done = reconcile(world, "apply", str(plan_file))
    landed = [p.read_bytes() for p in out(world, "NAS").rglob("*") if p.is_file()]
    assert not any(MARKER in d for d in landed), "a file outside the media root was published"
    assert done.returncode == 1, done.stdout


class Capture(BaseHTTPRequestHandler):
    """An attacker's endpoint: records every request's headers, answers like a CDN."""

    seen: ClassVar[list[dict[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        Capture.seen.append(dict(self.headers.items()))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"id": "x1", "url": "http://x/1"}).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _any


@pytest.fixture
def attacker() -> Iterator[str]:
    Capture.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_edited_plan_cannot_swap_in_other_manifests_and_exfiltrate_a_credential(
    tmp_path: Path, state_at: str, attacker: str
) -> None:
    """The attacker edits the plan file's `manifests` (and `media_root`) to a folder of their
    own holding an http Platform at their endpoint whose auth references the CI's secret
    (`secret_env: CDN_API_KEY`), an asset of their own and a create action for it (they know
    its checksum). `reconcile apply p.json` must only ever run the manifests it was told to
    run (--manifests / RECONCILE_MANIFESTS / the default `manifests`) or refuse; before the fix it
    validates and "re-plans" the attacker's manifests and sends the CI's API key to the
    attacker's endpoint."""
    secret = "PLANTED-ci-cdn-key-0123456789"
    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.manifests()
    plan_file, data = saved_plan(world)
    theirs = World(tmp_path / "theirs")
    theirs.platform("EVIL", driver="http", api_endpoint=attacker, auth_type="api_key",
                    auth={"secret_env": "CDN_API_KEY"}, target=None)  # fmt: skip
    theirs.rule("R-EVIL", "EVIL").asset("VID-X", b"x" * 10)
    theirs.manifests()
    their_plan = theirs.root / "theirs.json"
    made = reconcile(theirs, "--dry-run", "--manifests", str(theirs.manifests_dir),
                     "--media-root", str(theirs.media), "--state", world.state,
                     "--out", str(their_plan))  # fmt: skip
    assert made.returncode == 0, made.stderr
    evil = json.loads(their_plan.read_text())
    data.update(manifests=evil["manifests"], media_root=evil["media_root"],
                actions=evil["actions"])  # fmt: skip
    plan_file.write_text(json.dumps(data))
    reconcile(world, "apply", str(plan_file), env={"CDN_API_KEY": secret})
    sent = [h for h in Capture.seen if secret in json.dumps(h)]
    assert sent == [], "the CI's credential was sent to an endpoint only the edited plan named"


def test_an_edited_plan_with_a_duplicated_action_is_refused(tmp_path: Path, state_at: str) -> None:
    """The attacker (or a merge of two plan files) repeats a reviewed create three times.
    Every action must be the very same change as a fresh one *and* each change asked once:
    a repeated action must refuse the plan (exit 1, nothing applied). Before the fix, three
    jobs ran for one placement: the first uploaded, the other two "adopted" the tool's own
    copy, so the copy was recorded as not made by this tool (managed = false, never pruned),
    and two phantom placement rows were left that later plans counted as copies (a prune then
    planned two deletes and an orphan for one file)."""
    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.manifests()
    plan_file, data = saved_plan(world)
    data["actions"] = data["actions"] * 3
    plan_file.write_text(json.dumps(data))
    done = reconcile(world, "apply", str(plan_file), *world.cli_args())
    assert done.returncode == 1 or world.store.exists(), done.stdout
    placements = (
        rows(world, "SELECT sync_status, managed FROM platform_assets")
        if done.returncode != 1
        else []
    )
    jobs = rows(world, "SELECT job_type FROM sync_jobs") if done.returncode != 1 else []
    assert done.returncode == 1 or (placements == [("synced", True)] and jobs == [("initial",)]), (
        done.stdout, placements, jobs,
    )  # fmt: skip


# == what is observed is what is on disk =======================================================
def test_a_same_size_rewrite_with_its_mtime_restored_is_still_synced(
    tmp_path: Path, state_at: str
) -> None:
    """A careless colleague (or `unzip -o` of a reproducible archive, `cp --preserve`,
    `touch -r`) rewrites a master in place with other bytes of the same size and puts its
    old mtime back. The hash cache keys on (device, inode, size, mtime) only, so every later
    plan reuses the old checksum: "No changes", the platform keeps the old bytes for ever and
    `verify` says they match. The change time (st_ctime, which no user can set) moved: a plain
    `reconcile` must notice and sync the new bytes (git compares ctime for this reason)."""
    old, new = b"A" * 4096, b"B" * 4096
    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS").asset("VID-A", old)
    master = world.media / "vid-a.mp4"
    past = 1_700_000_000_000_000_000
    os.utime(master, ns=(past, past))  # long ago: not racily clean, so its hash is cached
    world.manifests()
    first = reconcile(world, *world.cli_args())
    assert first.returncode == 0, first.stdout
    assert (out(world, "NAS") / "vid-a.mp4").read_bytes() == old
    with open(master, "r+b") as handle:  # in place: same inode, same size, other bytes
        handle.write(new)
    os.utime(master, ns=(past, past))
    again = reconcile(world, *world.cli_args())
    assert again.returncode == 0, again.stdout
    assert (out(world, "NAS") / "vid-a.mp4").read_bytes() == new, again.stdout


# == resumable uploads: the bytes confirmed before a resume ====================================
class FlipThenRestore:
    """An observer that rewrites the master's first bytes in place the moment its job starts
    (after the plan hashed it) and puts them back as soon as the first chunk has gone: the
    platform received other bytes for that chunk than the master holds afterwards."""

    def __init__(self, path: Path, original: bytes) -> None:
        self.path, self.original = path, original
        self.state = "armed"

    def _write(self, data: bytes) -> None:
        with open(self.path, "r+b") as handle:
            handle.write(data)

    def run_started(self, jobs: list) -> None:
        pass

    def job_started(self, job: Any) -> None:
        if self.state == "armed":
            self.state = "flipped"
            self._write(bytes(b ^ 0xFF for b in self.original[:4096]))

    def job_progress(self, job: Any, sent: int) -> None:
        if self.state == "flipped":
            self.state = "restored"
            self._write(self.original[:4096])

    def job_finished(self, job: Any) -> None:
        pass

    def event(self, event: Any, job: Any) -> None:
        pass

    def run_finished(self) -> None:
        pass


def api_platform(fake: Any, kind: str) -> dict[str, Any]:
    if kind == "youtube":
        return {"driver": "youtube", "platform_type": "video_platform",
                "api_endpoint": f"{fake.url}/youtube/v3", "token_url": f"{fake.url}/token",
                "auth_type": "oauth2", "auth": {"secret_env": "ATTACK_YT_REFRESH"},
                "chunk_size_kib": 256, "poll_interval": 0, "target": None}  # fmt: skip
    return {"driver": "vimeo", "platform_type": "video_platform",
            "api_endpoint": f"{fake.url}/vimeo", "auth_type": "oauth2",
            "auth": {"secret_env": "ATTACK_VIMEO_TOKEN"}, "chunk_size_kib": 256,
            "poll_interval": 0, "target": None}  # fmt: skip


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from apiservers import API_KEY, REFRESH_TOKEN, VIMEO_TOKEN, FakePlatforms

    monkeypatch.setenv("ATTACK_CDN_KEY", API_KEY)
    monkeypatch.setenv("ATTACK_YT_REFRESH", REFRESH_TOKEN)
    monkeypatch.setenv("ATTACK_VIMEO_TOKEN", VIMEO_TOKEN)
    server = FakePlatforms().start()
    yield server
    server.stop()


@pytest.mark.parametrize("kind", ["vimeo", "youtube"])
def test_a_resumed_upload_never_vouches_for_a_prefix_it_did_not_send(
    tmp_path: Path, state_at: str, fake: Any, kind: str
) -> None:
    """The master's first bytes are changed while the first chunk is read and sent, and put
    back right after; the platform then answers the next chunk with a 503. The retry resumes
    at the offset the platform confirmed and hashes the prefix by reading it *again* from the
    master (now restored), so the digest matches the plan and the copy is recorded synced
    with a checksum the platform's bytes do not have. What must hold: the checksum recorded
    for a resumed upload covers the bytes that were actually sent before the resume (keep the
    running hash of what was sent, or a digest of the confirmed prefix in the session, and
    start over when the re-read prefix differs); otherwise the job fails or starts over."""
    from reconciler.apply.run import apply_plan, recover

    master_bytes = os.urandom(1024 * 1024)
    world = World(tmp_path, state_at).platform("VIDS", **api_platform(fake, kind)).rule("R", "VIDS")
    world.asset("VID-A", master_bytes)
    fake.drop_fraction = 0.2  # the second chunk is answered 503 once
    manifests = world.manifests()
    observer = FlipThenRestore(world.media / "vid-a.mp4", master_bytes)
    with world.store.session():
        recover(manifests, world.store)
        plan = world.plan()
        result = apply_plan(manifests, world.store, plan, FAST, observer)
    (job,) = result.jobs
    if observer.state == "flipped":  # caught before a byte went: what is sent is checked first
        assert job.status == "failed" and "changed after it was planned" in (job.error or "")
        assert fake.bytes_received() == 0
        return
    assert observer.state == "restored"
    received = [bytes(u.data) for u in fake.uploads.values() if len(u.data) == len(master_bytes)]
    recorded = rows(world, "SELECT sync_status, remote_checksum FROM platform_assets")
    if job.status == "completed":
        assert received, "completed, but the platform holds no whole upload"
        assert recorded == [("synced", sha(received[-1]))], (
            "recorded synced with the master's checksum, but the platform holds other bytes"
        )


class RewriteOnProgress(FlipThenRestore):
    """Rewrites the whole master in place with ``torn`` once the first bytes have gone."""

    def __init__(self, path: Path, torn: bytes) -> None:
        super().__init__(path, torn)

    def job_started(self, job: Any) -> None:
        pass

    def job_progress(self, job: Any, sent: int) -> None:
        if self.state == "armed":
            self.state = "restored"
            with open(self.path, "r+b") as handle:
                handle.write(self.original)
                handle.truncate()


def test_a_torn_put_update_on_an_http_platform_never_replaces_the_good_copy(
    tmp_path: Path, state_at: str, fake: Any
) -> None:
    """An http platform with `upload_method: PUT` (objects at collection/KEY, as a DAM or a
    WebDAV-like CDN API does). The master is updated, then rewritten again while the update
    is being sent. The driver notices that the bytes read were not the planned ones, but the
    PUT has already replaced the good copy with the torn bytes under the same id, and since it
    "made nothing new" it removes nothing: the job says "nothing was kept" while the platform
    now holds torn bytes, and the next run reports a false `remote_modified` conflict against
    the tool's own write. What must hold (the local driver's rule, defect 4 of issue 14): a
    torn update never replaces the good copy (send to a new key or id and swap, or use a
    conditional/verified PUT), and no conflict is ever raised against the tool's own write."""
    from reconciler.apply.run import apply_plan

    first, second = os.urandom(2 * 1024 * 1024), os.urandom(2 * 1024 * 1024)
    torn = os.urandom(2 * 1024 * 1024)
    world = World(tmp_path, state_at).platform(
        "DAM", driver="http", api_endpoint=f"{fake.url}/cdn", auth_type="api_key",
        auth={"secret_env": "ATTACK_CDN_KEY"}, upload_method="PUT", target=None,
    ).rule("R", "DAM").asset("VID-A", first)  # fmt: skip
    assert apply_run(world, FAST).counts()["completed"] == 1
    (good,) = fake.objects.values()
    assert good["data"] == first
    world.write_file("vid-a.mp4", second)
    manifests = world.manifests()
    observer = RewriteOnProgress(world.media / "vid-a.mp4", torn)
    with world.store.session():
        result = apply_plan(manifests, world.store, world.plan(), FAST, observer)
    assert observer.state == "restored"
    (held,) = fake.objects.values()
    job = result.jobs[0]
    # either the update refused the torn bytes and kept the good copy, or it sent exactly
    # the planned version (from a copy verified before sending): never the torn bytes
    expected = sha(first) if job.status == "failed" else sha(second)
    assert sha(held["data"]) == expected, ("the good copy was replaced by torn bytes", job.error)
    again = apply_run(world, FAST)
    assert again.open_conflicts == 0, rows(world, "SELECT conflict_type FROM sync_conflicts")
    assert again.counts()["completed"] == 1


# == credentials are never published, recorded or printed ======================================
def test_a_generated_encryption_key_is_never_published_as_a_master(
    tmp_path: Path, state_at: str
) -> None:
    """The default media root is the manifests folder. A careless colleague declares an
    AssetSet over everything (`include: "**/*"`) and an encrypted backup whose key file is
    generated beside the manifests (`secret_file: keys/backup.key, create: true`, relative to
    the manifests folder, as the README shows). The first run generates the key inside the
    media root; the next run matches it as a master and publishes the key in clear on the
    CDN (and "backs it up" encrypted with itself). What must hold: a file referenced as a
    credential (an encryption key file, an auth `secret_file`) is never a master: skipped by
    AssetSets with a warning, an error on an Asset that names it, or refused inside the media
    root at validation."""
    manifests = tmp_path / "manifests"
    (manifests / "library").mkdir(parents=True)
    (manifests / "library" / "a.txt").write_bytes(b"hello")
    docs = [
        {"kind": "Platform", "metadata": {"code": "CDN"},
         "spec": {"platform_name": "Cdn", "platform_type": "cdn", "driver": "local",
                  "target": "../out/cdn"}},
        {"kind": "Platform", "metadata": {"code": "BACKUP"},
         "spec": {"platform_name": "Backup", "platform_type": "cloud_storage",
                  "driver": "local", "target": "../out/backup"}},
        {"kind": "AssetSet", "metadata": {"code": "EVERYTHING"},
         "spec": {"include": "**/*", "asset_type": "document", "category": "docs",
                  "code_template": "DOC-{path}", "code_case": "upper"}},
        {"kind": "SyncRule", "metadata": {"code": "R-CDN"},
         "spec": {"platform": "CDN", "source_category": "all", "asset_types": "all",
                  "sync_mode": "full"}},
        {"kind": "SyncRule", "metadata": {"code": "R-BACKUP"},
         "spec": {"platform": "BACKUP", "source_category": "all", "asset_types": "all",
                  "sync_mode": "full",
                  "transform_rules": {"encrypt": True, "encryption_key": {
                      "secret_file": "keys/backup.key", "create": True}}}},
    ]  # fmt: skip
    import yaml

    for doc in docs:
        doc["apiVersion"] = "mediasync/v1"
    (manifests / "all.yaml").write_text(yaml.safe_dump_all(docs))
    world = World(tmp_path, state_at)
    state = world.state if is_postgresql(world.state) else str(tmp_path / "state" / "s.duckdb")
    args = ["--manifests", str(manifests), "--state", state]
    for _ in range(2):
        reconcile(world, *args)
    key = (manifests / "keys" / "backup.key").read_bytes()
    assert len(key.strip()) == 64  # the key the first run generated
    leaked = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and key.strip() in
              p.read_bytes()]  # fmt: skip
    assert leaked == [], f"the encryption key was published in clear: {leaked}"


class Echo(BaseHTTPRequestHandler):
    """A REST platform that echoes credentials back in the ways real ones do. ``mode``:
    ``url`` answers an upload with an object URL that carries the API key it was sent (a
    "signed" link); ``password`` rejects basic auth quoting only the password it decoded;
    ``redirect`` sends every request on to ``target`` (another origin) with a 307; ``short``
    stores (and reports) only 10 bytes of any upload, and no checksum."""

    mode = "url"
    target = ""
    seen: ClassVar[list[dict[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _any(self) -> None:
        Echo.seen.append(dict(self.headers.items()))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if Echo.mode == "redirect":
            return self._answer(307, {}, {"Location": Echo.target + self.path})
        if self.path.endswith("/health"):
            return self._answer(200, {"ok": True})
        if Echo.mode == "password":
            import base64

            auth = self.headers.get("Authorization", "").removeprefix("Basic ")
            user, _, password = base64.b64decode(auth).decode().partition(":")
            return self._answer(401, {"message": f"invalid password '{password}' for {user}"})
        if Echo.mode == "short":  # keeps only the first 10 bytes, and says so
            return self._answer(
                200 if self.command == "GET" else 201,
                {"id": "obj-1", "url": "http://x/1", "size": 10},
            )
        key = self.headers.get("X-API-Key", "")
        return self._answer(201, {"id": "obj-1", "url": f"https://cdn.test/a.mp4?api_key={key}",
                                  "sha256": self.headers.get("X-Content-SHA256")})  # fmt: skip

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _any


@pytest.fixture
def echo() -> Iterator[str]:
    Echo.seen, Echo.mode = [], "url"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def everything_printed(world: World, env: dict[str, str]) -> str:
    """Every output format of an apply, and of every report command afterwards."""
    state = world.state
    texts = []
    for fmt in ("text", "json", "jsonl"):
        done = reconcile(world, *world.cli_args(), "-o", fmt, env=env)
        texts.append(done.stdout + done.stderr)
    done = reconcile(world, "verify", *world.cli_args(), "-o", "json", env=env)
    texts.append(done.stdout + done.stderr)
    for command in (["jobs"], ["events", "--limit", "1000"], ["status"], ["conflicts", "--all"]):
        for fmt in ("text", "json"):
            done = reconcile(world, *command, "--state", state, "-o", fmt, env=env)
            texts.append(done.stdout + done.stderr)
    return "\n".join(texts)


def state_bytes(world: World) -> bytes:
    # the folder beside the DuckDB file; a PostgreSQL state's ./state (state_at runs in
    # tmp_path) and every row of its schema
    files = world.root / "state"
    held = b"".join(p.read_bytes() for p in files.rglob("*") if p.is_file())
    return held + (held_bytes(world.state) if is_postgresql(world.state) else b"")


def test_a_key_a_platform_echoes_in_an_object_url_is_never_recorded_or_printed(
    tmp_path: Path, state_at: str, echo: str
) -> None:
    """A CDN API answers an upload with a link that carries the API key it was given
    (`https://cdn.test/a.mp4?api_key=KEY`, as "authenticated" links of some services do).
    The link is recorded as platform_url and in upload_sessions, and printed by reports,
    without going through redaction: the key lands in the DuckDB bytes. What must hold: every
    string a platform hands back (ids, URLs, session links, details) is redacted before it is
    recorded or printed, like messages are."""
    secret = "PLANTED-url-echoed-key-9f8e7d6c5b4a"
    env = {"ATTACK_ECHO_KEY": secret}
    world = World(tmp_path, state_at).platform(
        "CDN", driver="http", api_endpoint=echo, auth_type="api_key",
        auth={"secret_env": "ATTACK_ECHO_KEY"}, target=None,
    ).rule("R", "CDN").asset("VID-A", b"a" * 1000)  # fmt: skip
    world.manifests()
    printed = everything_printed(world, env)
    assert any(secret in json.dumps(h) for h in Echo.seen)  # it was really sent
    assert secret.encode() not in state_bytes(world), "the API key is in the state file"
    assert secret not in printed


def test_a_password_a_platform_echoes_alone_is_never_recorded_or_printed(
    tmp_path: Path, state_at: str, echo: str
) -> None:
    """`auth_type: basic` takes `user:password` as one secret; a platform that rejects it
    quoting only the password ("invalid password 'X' for bot") is not redacted, because
    only the whole `user:password` (and its encodings) was registered. What must hold: the
    password part of a basic credential is a secret of its own (registered as such), and
    appears in no output, event, job row or state byte."""
    password = "PLANTED-basic-password-1a2b3c4d"
    env = {"ATTACK_BASIC": f"bot:{password}"}
    Echo.mode = "password"
    world = World(tmp_path, state_at).platform(
        "CDN", driver="http", api_endpoint=echo, auth_type="basic",
        auth={"secret_env": "ATTACK_BASIC"}, target=None,
    ).rule("R", "CDN").asset("VID-A", b"a" * 1000)  # fmt: skip
    world.manifests()
    printed = everything_printed(world, env)
    assert "invalid password" in printed  # the platform's answer was shown
    assert password not in printed
    assert password.encode() not in state_bytes(world)


def test_a_redirect_never_carries_the_api_key_to_another_origin(
    tmp_path: Path, state_at: str, echo: str, attacker: str
) -> None:
    """A platform (or an open redirect on its domain, or a man in the middle on plain http)
    answers 307 to another origin. requests follows redirects and strips only the
    `Authorization` header on a change of host; the API key sent in `X-API-Key` (the default
    `api_key_header`) goes along to the other origin. What must hold: a credential is only
    ever sent to the api_endpoint's origin (do not follow redirects with credentials, or
    strip custom credential headers on a change of origin)."""
    secret = "PLANTED-redirected-key-0a1b2c3d4e"
    Echo.mode, Echo.target = "redirect", attacker.replace("127.0.0.1", "localhost")
    world = World(tmp_path, state_at).platform(
        "CDN", driver="http", api_endpoint=echo, auth_type="api_key",
        auth={"secret_env": "ATTACK_REDIRECT_KEY"}, target=None,
    ).rule("R", "CDN").asset("VID-A", b"a" * 1000)  # fmt: skip
    world.manifests()
    reconcile(world, *world.cli_args(), env={"ATTACK_REDIRECT_KEY": secret})
    assert any(secret in json.dumps(h) for h in Echo.seen)  # sent to the platform itself
    leaked = [h for h in Capture.seen if secret in json.dumps(h)]
    assert leaked == [], "the API key was sent to the origin a redirect named"


# == the local driver stays inside its target ===================================================
def test_pruning_never_deletes_a_copy_someone_changed_on_the_platform(
    tmp_path: Path, state_at: str
) -> None:
    """The tool made a copy; a colleague then replaced it on the NAS with their own edited
    version (other bytes). The asset is dropped from the manifests and `--prune` runs. An
    update would have stopped with a `remote_modified` conflict ("never overwriting
    silently"); a delete does not look: the colleague's file is deleted. What must hold: a
    prune deletes only the object this tool wrote (the checksum recorded), and leaves a
    changed one alone with a conflict."""
    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS")
    world.asset("VID-A", b"a" * 100).asset("VID-B", b"b" * 100)
    world.manifests()
    assert reconcile(world, *world.cli_args()).returncode == 0
    theirs = out(world, "NAS") / "vid-a.mp4"
    theirs.write_bytes(b"their own edit, not the tool's copy")
    world.remove("Asset", "VID-A").manifests()
    reconcile(world, *world.cli_args(), "--prune")
    assert theirs.exists(), "the prune deleted a file someone else had written"
    assert theirs.read_bytes() == b"their own edit, not the tool's copy"


def test_a_symlinked_folder_on_the_target_never_leads_writes_or_deletes_outside_it(
    tmp_path: Path,
    state_at: str,
) -> None:
    """Someone who can write to the NAS replaces a folder the tool made (`clips/`) with a
    symlink to a folder elsewhere on the machine. The local driver opens only the last
    component with O_NOFOLLOW; `mkdir`, the part file, `os.replace` and `unlink` all follow
    the symlinked folder: a new asset is written outside the target, and a prune deletes a
    file outside it. What must hold: every path on a local target is resolved below the
    target without following symlinks (openat with O_NOFOLLOW per component, or a realpath
    check that it stays inside the target), like masters are below the media root."""
    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS")
    world.asset("VID-A", b"a" * 100, file="clips/a.mp4")
    world.manifests()
    assert reconcile(world, *world.cli_args()).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    precious = elsewhere / "a.mp4"
    precious.write_bytes(b"a" * 100)  # the same bytes: even a checksum check passes
    clips = out(world, "NAS") / "clips"
    (clips / "a.mp4").unlink()
    clips.rmdir()
    clips.symlink_to(elsewhere)
    world.asset("VID-N", b"n" * 100, file="clips/n.mp4")
    world.remove("Asset", "VID-A").manifests()
    reconcile(world, *world.cli_args(), "--prune", "--force")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["a.mp4"], "written outside the target"
    assert precious.exists(), "a prune deleted a file outside the target"


# == media tools read only the master =========================================================
MPD = """<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" minBufferTime="PT1S">
 <Period><AdaptationSet mimeType="video/mp4">
  <Representation id="1" bandwidth="100000" width="640" height="480" codecs="avc1.64001e">
   <BaseURL>{outside}</BaseURL>
  </Representation>
 </AdaptationSet></Period>
</MPD>
"""


def test_a_master_that_is_a_streaming_manifest_never_pulls_in_an_outside_video(
    tmp_path: Path,
    state_at: str,
) -> None:
    """The attacker commits a "video" master `clip.mp4` that is really a DASH manifest (a
    few hundred bytes of XML) naming a video elsewhere on the machine by absolute path. The
    master is read safely and snapshotted, but ffprobe and ffmpeg detect the format by content
    and open the file the manifest names: the outside video is transcoded (watermarked) and
    published as the rendition, recorded synced. What must hold: the media tools read nothing
    but the master's snapshot (force a self-contained demuxer from a whitelist — mov/mp4,
    matroska, avi, mpegts ... — and refuse manifests and playlists: dash, hls, concat)."""
    outside = tmp_path / "elsewhere" / "private.mp4"
    make_video(outside, 640, 480, "testsrc", seconds=2)
    world = World(tmp_path, state_at).platform("VIDS", platform_type="video_platform")
    world.rule("R", "VIDS", transform_rules={"add_watermark": True, "quality": "240p"})
    world.asset("VID-A", MPD.format(outside=outside).encode(), file="clip.mp4",
                mime_type="video/mp4")  # fmt: skip
    world.manifests()
    reconcile(world, *world.cli_args(), timeout=300)
    published = [p for p in out(world, "VIDS").rglob("*") if p.is_file()] if out(
        world, "VIDS").exists() else []  # fmt: skip
    for path in published:
        if path.read_bytes().lstrip().startswith(b"<?xml"):
            continue  # the manifest itself (its bytes are the master's): not outside bytes
        assert not has_video_stream(path), f"{path.name} holds a video read from outside"


# == bad input: one clear line, exit 1, nothing changed =========================================
def _top(value: Any) -> Any:
    return lambda data: json.dumps(value)


def _set(**fields: Any) -> Any:
    return lambda data: json.dumps({**data, **fields})


def _action(**fields: Any) -> Any:
    return lambda data: json.dumps({**data, "actions": [{**data["actions"][0], **fields}]})


MALFORMED = {
    "null": _top(None),
    "list": _top([]),
    "int-action": _set(actions=[1]),
    "str-action": _set(actions=["create"]),
    "state-null": _set(state=None),
    "state-int": _set(state=7),
    "state-nul": _set(state="state/s\u0000.duckdb"),
    "manifests-null": _set(manifests=None),
    "asset-list": _action(asset=["VID-A"]),
    "platform-dict": _action(platform={"code": "NAS"}),
    "deep": lambda data: "[" * 50_000 + "]" * 50_000,
}


@pytest.mark.parametrize("shape", sorted(MALFORMED))
def test_a_malformed_saved_plan_is_one_line_and_exit_1(tmp_path: Path, shape: str) -> None:
    """A plan file edited by hand (or mangled by a broken CI step) into other JSON shapes:
    `reconcile apply p.json` must say in one line that it is not a saved plan, exit 1, and
    send nothing. Before the fix, most of these shapes ended in a Python traceback
    (AttributeError on a top-level null or list or a non-object action, TypeError on a state
    or manifests path that is not a string or an unhashable asset code, ValueError on a NUL byte,
    RecursionError on deep nesting)."""
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.manifests()
    plan_file, data = saved_plan(world)
    plan_file.write_text(MALFORMED[shape](data))
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "apply", str(plan_file)],
        capture_output=True, text=True, timeout=120, check=False, cwd=world.root,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out(world, "NAS").exists()


# == the rendition cache is a cache, not an authority =========================================
KEY_HEX = "22" * 32


def test_a_forged_passthrough_record_never_sends_plaintext_to_an_encrypted_platform(
    tmp_path: Path,
    state_at: str,
) -> None:
    """Someone who can write to the rendition cache (a cache folder shared between CI
    runners, `--renditions` on a shared volume) learns the next rendition id from a dry run
    (`rendition_id` in `-o json`) and writes only a small `ID.json` that says
    `"passthrough": true` for it, no data file. The cache trusts the record, so the job
    uploads the *master itself* under `KEY.enc` on the platform whose rule says `encrypt:
    true`: plaintext on the backup, recorded synced. What must hold: a platform whose rule
    encrypts never receives anything but ciphertext (a recipe that encrypts can never be a
    passthrough; a cached record that contradicts its recipe is discarded and made again)."""
    plain_a, plain_b = b"first master " * 100, b"SECOND-MASTER-IN-CLEAR " * 100
    env = {"ATTACK_BACKUP_KEY": KEY_HEX}
    world = World(tmp_path, state_at).platform("BACKUP", platform_type="cloud_storage")
    world.rule("R", "BACKUP", transform_rules={
        "encrypt": True, "encryption_key": {"secret_env": "ATTACK_BACKUP_KEY"}})  # fmt: skip
    world.asset("VID-A", plain_a)
    world.manifests()
    assert reconcile(world, *world.cli_args(), env=env).returncode == 0
    world.write_file("vid-a.mp4", plain_b)
    planned = reconcile(world, "--dry-run", *world.cli_args(), "-o", "json", env=env)
    (action,) = [a for a in json.loads(planned.stdout)["actions"] if a["action"] == "update"]
    rid = action["rendition_id"]
    cache = world.root / "state" / "renditions"  # beside the file; ./state for PostgreSQL
    (cache / f"{rid}.json").write_text(json.dumps({
        "id": rid, "passthrough": True, "master_verified": True, "master_sha256": sha(plain_b),
        "sha256": sha(plain_b), "size": len(plain_b), "mime": "video/mp4", "suffix": "",
    }))  # fmt: skip
    reconcile(world, *world.cli_args(), env=env)
    for path in out(world, "BACKUP").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"SECOND-MASTER-IN-CLEAR" not in data, f"{path.name} holds the master in clear"
            assert data.startswith(b"RCNENC1\n"), path.name


def test_an_edited_plan_cannot_run_a_rule_that_never_runs_by_itself(
    tmp_path: Path, state_at: str
) -> None:
    """A rule with `auto_sync: false` never runs by itself; its changes show in a plan as
    waiting. The attacker sets the action's `waiting` to null in the saved plan: the checker
    compares kind, rule, file, path, checksum ... but takes `waiting` from the file ("a saved
    change runs when the saved plan said it runs"), so the change runs. Saved plans now keep
    their --rule and the fresh plan is made with it, so what runs can come from the fresh
    plan. What must hold: a saved plan only runs what the fresh plan (with the plan's own
    --rule) would run now; an edited `waiting` is a difference."""
    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS", auto_sync=False)
    world.asset("VID-A", b"a" * 100)
    world.manifests()
    plan_file, data = saved_plan(world)
    (action,) = data["actions"]
    assert action["waiting"], action  # the reviewed plan says it waits
    action["waiting"] = None
    plan_file.write_text(json.dumps(data))
    reconcile(world, "apply", str(plan_file), *world.cli_args())
    assert not (out(world, "NAS") / "vid-a.mp4").exists(), "a rule with auto_sync false ran"


# == nothing outside the media root: the descriptor's real path ================================
def test_a_file_named_like_a_deleted_media_root_is_outside_it(
    tmp_path: Path, state_at: str
) -> None:
    """`masters._real_path` strips a " (deleted)" suffix from the kernel's name of the open
    file, and `inside()` counts the root itself as inside. So a regular file *beside* the
    media root named `<root> (deleted)` passes the check: after validation, a folder inside
    the media root is swapped for a symlink to the root's parent, the asset's path now
    leads to `…/media (deleted)` outside the root, and observation hashes it and apply
    publishes it. What must hold: only a descriptor that really is unlinked (fstat
    st_nlink == 0) may have the suffix stripped, and a regular file is never "inside" by
    being equal to the root."""
    from reconciler.apply.run import apply_plan
    from reconciler.plan.planner import make_plan

    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS")
    world.asset("DOC-A", b"inside", file="sub/media (deleted)", asset_type="document",
                mime_type="application/octet-stream")  # fmt: skip
    manifests = world.manifests()
    beside = tmp_path / "media (deleted)"
    beside.write_bytes(MARKER + b"beside the media root")
    sub = world.media / "sub"
    (sub / "media (deleted)").unlink()
    sub.rmdir()
    sub.symlink_to("..")  # media/sub/media (deleted) is now tmp_path/media (deleted)
    plan = make_plan(manifests, world.store)
    with world.store.session():
        apply_plan(manifests, world.store, plan, FAST)
    landed = [p.read_bytes() for p in out(world, "NAS").rglob("*") if p.is_file()] if out(
        world, "NAS").exists() else []  # fmt: skip
    assert not any(MARKER in d for d in landed), "a file outside the media root was published"


# == kill -9 ==================================================================================
def test_a_youtube_upload_killed_after_its_last_chunk_leaves_no_orphan_video(
    tmp_path: Path, state_at: str, fake: Any
) -> None:
    """`reconcile` is killed (SIGKILL) after YouTube received the last chunk and made the
    video, before the answer naming the video was recorded; then the master changes. The
    next run sees a session for other bytes and drops it, but `_abandon` removes only a
    session whose video id it knows: the first, complete video stays in the channel next to
    the new one (issue 14's defect 13, for YouTube). What must hold: after a kill and the
    next plain `reconcile`, the channel holds exactly one video for the asset, the current
    one (ask the stale session URI where it stopped: a finished session answers with its
    video id, which can then be deleted)."""
    from apiservers import Video

    first, second = os.urandom(600 * 1024), os.urandom(600 * 1024)
    world = (
        World(tmp_path, short_lease(state_at))
        .platform("VIDS", **api_platform(fake, "youtube"))
        .rule("R", "VIDS")
    )
    world.asset("VID-A", first)
    world.manifests()
    handler = fake.server.RequestHandlerClass
    original = handler._yt_answer
    completed = threading.Event()

    def stalling(self: Any, upload: Any) -> None:
        if len(upload.data) >= upload.size and upload.video is None and not completed.is_set():
            vid = f"v-{fake.next_id()}"
            fake.videos[vid] = Video(vid, bytes(upload.data), upload.metadata)
            upload.video = vid
            completed.set()
            fake.release.wait(60)  # the answer never reaches the killed client
            self.close_connection = True
            return None
        return original(self, upload)

    handler._yt_answer = stalling
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *world.cli_args()], cwd=world.root,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert completed.wait(60), "the upload never completed on the platform"
        process.kill()
        process.wait(30)
        fake.release.set()
        world.write_file("vid-a.mp4", second)
        done = reconcile(world, *world.cli_args())
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        handler._yt_answer = original
    held = sorted(sha(v.data) for v in fake.videos.values())
    assert held == [sha(second)], f"{len(held)} videos in the channel for one asset"


# == S3-compatible stores that do not report checksums =========================================
class NoChecksums(BaseHTTPRequestHandler):
    """An S3-compatible store in front of the loopback S3 server that stores and serves the
    bytes faithfully but, like several S3-compatible products, reports none of the additional
    checksums (no x-amz-checksum-* headers)."""

    protocol_version = "HTTP/1.1"
    upstream = ""
    strip = True  # drop the x-amz-checksum-* headers of every answer
    stall: tuple[str, str] | None = None  # (method, part of the path) held until ``released``
    stalled = threading.Event()
    released = threading.Event()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        import http.client
        from urllib.parse import urlsplit

        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if NoChecksums.stall and (self.command, True) == (
            NoChecksums.stall[0],
            NoChecksums.stall[1] in self.path,
        ):
            NoChecksums.stall = None
            NoChecksums.stalled.set()
            NoChecksums.released.wait(60)
            self.close_connection = True
            return
        target = urlsplit(NoChecksums.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        headers["Host"] = target.netloc
        connection.request(self.command, self.path, body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            lower = name.lower()
            if (NoChecksums.strip and lower.startswith("x-amz-checksum")) or lower in (
                "content-length", "transfer-encoding", "connection",
            ):  # fmt: skip
                continue
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


def test_an_s3_store_without_additional_checksums_is_read_back_not_a_conflict(
    tmp_path: Path, state_at: str, s3_endpoint: str, aws_env: None
) -> None:
    """The S3 driver's verification after an upload asks HEAD for S3's SHA-256 and treats a
    missing one as "the platform holds other bytes": every attempt records a
    `checksum_mismatch` conflict, the copy is marked failed, and on a store that does not
    report additional checksums nothing ever syncs although every byte landed intact. The
    README promises: "an object without such a checksum is read and hashed". What must hold:
    a plain `reconcile` to such a store ends synced (verified by reading the object back),
    with no conflict against the tool's own, correct upload."""
    import boto3

    bucket = f"nochecksums-{uuid.uuid4().hex[:8]}"  # a bucket of its own per backend case
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    NoChecksums.upstream, NoChecksums.strip, NoChecksums.stall = s3_endpoint, True, None
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), NoChecksums)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        world = World(tmp_path, state_at).platform(
            "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
            region="us-east-1", endpoint_url=f"http://127.0.0.1:{proxy.server_address[1]}",
        ).rule("R", "BACKUP").asset("VID-A", b"a" * 5000)  # fmt: skip
        world.manifests()
        done = reconcile(world, *world.cli_args(), "-o", "json", timeout=300)
    finally:
        proxy.shutdown()
        proxy.server_close()
    held = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").get_object(
        Bucket=bucket, Key="vid-a.mp4")["Body"].read()  # fmt: skip
    assert held == b"a" * 5000  # every byte landed
    conflicts = rows(world, "SELECT conflict_type FROM sync_conflicts")
    assert conflicts == [], f"{len(conflicts)} false conflicts: {done.stdout[-300:]}"
    assert rows(world, "SELECT sync_status FROM platform_assets") == [("synced",)]


def test_a_platform_that_says_it_holds_fewer_bytes_is_never_recorded_synced(
    tmp_path: Path, state_at: str, echo: str
) -> None:
    """An http platform reports no checksum, but answers the upload (and every later GET)
    with the size it kept: 10 bytes of a 5,000-byte master. The driver ignores the reported
    size, records the copy synced with the checksum of what was sent, and `verify` (which
    compares only checksums, and for this platform gets the recorded one back) says it
    matches. What must hold: a size the platform reports that differs from what was sent
    is not "landed": the job fails (or retries), and verify reports the copy as modified."""
    Echo.mode = "short"
    env = {"ATTACK_SHORT_KEY": "PLANTED-short-key-123456"}
    world = World(tmp_path, state_at).platform(
        "CDN", driver="http", api_endpoint=echo, auth_type="api_key",
        auth={"secret_env": "ATTACK_SHORT_KEY"}, target=None,
    ).rule("R", "CDN").asset("VID-A", b"a" * 5000)  # fmt: skip
    world.manifests()
    reconcile(world, *world.cli_args(), env=env)
    synced = rows(world, "SELECT count(*) FROM platform_assets WHERE sync_status = 'synced'")
    verified = reconcile(world, "verify", *world.cli_args(), env=env)
    assert synced == [(0,)] or verified.returncode != 0, (
        "recorded synced and verified although the platform holds 10 of 5,000 bytes"
    )


def test_a_metadata_update_never_vouches_for_an_object_someone_replaced(
    tmp_path: Path, state_at: str, s3_endpoint: str, aws_env: None
) -> None:
    """Someone overwrites the tool's S3 copy with other bytes; then the asset's title changes
    in the manifests. An update would check the copy first (remote_modified); a metadata
    update does not: S3's `copy_object` rewrites the *foreign* object in place (with
    CopySourceIfMatch on the ETag it has just read, so it always matches) and the placement
    is recorded synced with the old checksum, which the bytes at the key no longer have.
    What must hold: a metadata update checks the copy is still the recorded one, like an
    update, and otherwise leaves it alone with a `remote_modified` conflict."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = f"metadata-over-foreign-{uuid.uuid4().hex[:8]}"  # a bucket of its own per backend case
    client.create_bucket(Bucket=bucket)
    world = World(tmp_path, state_at).platform(
        "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
        region="us-east-1", endpoint_url=s3_endpoint,
    ).rule("R", "BACKUP").asset("VID-A", b"a" * 5000, title="Old title")  # fmt: skip
    world.manifests()
    assert reconcile(world, *world.cli_args()).returncode == 0
    client.put_object(Bucket=bucket, Key="vid-a.mp4", Body=b"someone else's bytes",
                      ChecksumAlgorithm="SHA256")  # fmt: skip
    world.asset("VID-A", b"a" * 5000, title="New title").manifests()
    done = reconcile(world, *world.cli_args())
    assert done.returncode == 3, done.stdout
    held = client.get_object(Bucket=bucket, Key="vid-a.mp4")
    assert held["Body"].read() == b"someone else's bytes"  # left alone: not re-described
    assert held["Metadata"].get("asset") != "VID-A" or "New title" not in str(held["Metadata"])
    # the record is flagged as the conflict it is, and holds the copy back (as verify does)
    assert rows(world, "SELECT conflict_type FROM sync_conflicts") == [("remote_modified",)]
    assert rows(world, "SELECT job_type, status FROM sync_jobs ORDER BY id DESC LIMIT 1") == [
        ("metadata", "failed")
    ]
    assert world.plan().actions[0].action == "held"


def test_a_relative_auth_secret_file_is_read_beside_the_manifests_not_the_cwd(
    tmp_path: Path, state_at: str, fake: Any
) -> None:
    """`auth: {secret_file: keys/cdn.key}` is a relative path in a manifest. An encryption
    key's `secret_file` resolves against the manifests folder, as every relative manifest
    path must ("never the current directory"); an auth `secret_file` is opened relative to
    the process's cwd, so the same manifests work from one folder and fail (or, worse, read
    a file an attacker planted in the cwd of a CI job) from another. What must hold: it is
    read from the manifests folder whatever the cwd."""
    from apiservers import API_KEY

    world = World(tmp_path, state_at).platform(
        "CDN", driver="http", api_endpoint=f"{fake.url}/cdn", auth_type="api_key",
        auth={"secret_file": "keys/cdn.key"}, target=None,
    ).rule("R", "CDN").asset("VID-A", b"a" * 1000)  # fmt: skip
    world.manifests()
    (world.manifests_dir / "keys").mkdir()
    (world.manifests_dir / "keys" / "cdn.key").write_text(API_KEY + "\n")
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *world.cli_args()], cwd=elsewhere,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(fake.objects) == 1


def test_a_kill_before_the_old_key_is_deleted_never_leaves_the_plaintext_copy(
    tmp_path: Path, state_at: str, s3_endpoint: str, aws_env: None
) -> None:
    """A backup rule gains `encrypt: true`: the copy moves from `vid-a.mp4` to
    `vid-a.mp4.enc`, and once the new object is up the old plaintext one is deleted. The run
    is killed (SIGKILL) after the `.enc` landed, while the DELETE of the old key is in flight.
    Recovery finds the `.enc` with the expected checksum and completes the job, but never
    deletes the job's `previous_key`: the plaintext copy stays in the bucket for ever,
    recorded nowhere. What must hold: after the kill and a plain `reconcile`, the bucket
    holds only the encrypted copy (recovery, or the next run, removes a completed job's
    previous key)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = f"plaintext-left-{uuid.uuid4().hex[:8]}"  # a bucket of its own per backend case
    client.create_bucket(Bucket=bucket)
    NoChecksums.upstream, NoChecksums.strip, NoChecksums.stall = s3_endpoint, False, None
    NoChecksums.stalled, NoChecksums.released = threading.Event(), threading.Event()
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), NoChecksums)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = {"ATTACK_BACKUP_KEY": KEY_HEX}
    try:
        world = World(tmp_path, short_lease(state_at)).platform(
            "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
            region="us-east-1", endpoint_url=f"http://127.0.0.1:{proxy.server_address[1]}",
        ).rule("R", "BACKUP").asset("VID-A", b"PLAINTEXT " * 500)  # fmt: skip
        world.manifests()
        assert reconcile(world, *world.cli_args(), env=env).returncode == 0
        world.rule("R", "BACKUP", transform_rules={
            "encrypt": True, "encryption_key": {"secret_env": "ATTACK_BACKUP_KEY"}})  # fmt: skip
        world.manifests()
        NoChecksums.stall = ("DELETE", "")
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *world.cli_args()], cwd=world.root,
            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert NoChecksums.stalled.wait(120), "the old key was never deleted"
        process.kill()
        process.wait(30)
        NoChecksums.released.set()
        done = reconcile(world, *world.cli_args(), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        NoChecksums.released.set()
        proxy.shutdown()
        proxy.server_close()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == ["vid-a.mp4.enc"], f"left in the bucket: {keys}"


class RewriteAtStart(FlipThenRestore):
    """Rewrites the master in place with ``other`` the moment its job starts."""

    def job_started(self, job: Any) -> None:
        if self.state == "armed":
            self.state = "restored"
            with open(self.path, "r+b") as handle:
                handle.write(self.original)
                handle.truncate()

    def job_progress(self, job: Any, sent: int) -> None:
        pass


def test_an_adopted_copy_stays_not_ours_after_a_failed_update(
    tmp_path: Path, state_at: str
) -> None:
    """A colleague's file already held exactly the master's bytes, so it was adopted
    (managed = false: "an adopted copy is never pruned, as this tool did not make it"). The
    master then changes and the update attempt fails (here: the master changes again while
    the job runs). The job's "syncing" and "failed" records rewrite `managed` to true
    (`managed` is not among the columns a failed attempt keeps), so the colleague's file now
    counts as the tool's own: when the asset is later dropped with --prune, it is deleted.
    What must hold: only a successful upload by this tool makes a copy managed; a prune never
    deletes an adopted object."""
    from reconciler.apply.run import apply_plan

    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS")
    world.asset("VID-A", b"a" * 100).asset("VID-B", b"b" * 100)
    theirs = out(world, "NAS") / "vid-a.mp4"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"a" * 100)  # the colleague's copy, byte for byte the master
    assert apply_run(world, FAST).counts()["completed"] == 2
    assert rows(world, "SELECT sa.asset_code, pa.managed FROM platform_assets pa JOIN "
                "source_assets sa ON sa.id = pa.source_asset_id ORDER BY 1") == [
        ("VID-A", False), ("VID-B", True)]  # fmt: skip
    world.write_file("vid-a.mp4", b"A" * 100)
    manifests = world.manifests()
    observer = RewriteAtStart(world.media / "vid-a.mp4", b"Z" * 100)
    with world.store.session():
        failed = apply_plan(manifests, world.store, world.plan(), FAST, observer)
    assert [j.status for j in failed.jobs] == ["failed"]
    world.remove("Asset", "VID-A").manifests()
    reconcile(world, *world.cli_args(), "--prune", "--force")
    assert theirs.exists(), "a prune deleted an adopted object this tool never made"


def test_an_edited_plan_cannot_turn_a_reviewed_orphan_into_a_delete(
    tmp_path: Path, state_at: str
) -> None:
    """The reviewed plan was made without --prune: a copy no longer desired shows as
    `? orphan ... left alone`. The attacker sets `"prune": true` in the file and changes that
    action to `delete`. The fresh plan is made with the file's prune flag, so it agrees, and
    the copy is deleted. The README: "an edited plan cannot point an action at another file
    or add a delete". What must hold: whether a saved plan prunes is the applier's decision
    (or the manifests'), never the file's; an orphan edited into a delete refuses the plan."""
    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS")
    for n in range(20):
        world.asset(f"VID-{n:02d}", bytes([65 + n]) * 100)
    world.manifests()
    assert reconcile(world, *world.cli_args()).returncode == 0
    world.remove("Asset", "VID-00").manifests()
    plan_file, data = saved_plan(world)
    (orphan,) = [a for a in data["actions"] if a["asset"] == "VID-00"]
    assert orphan["action"] == "orphan", orphan
    orphan["action"] = "delete"
    data["prune"] = True
    plan_file.write_text(json.dumps(data))
    reconcile(world, "apply", str(plan_file), *world.cli_args())
    assert (out(world, "NAS") / "vid-00.mp4").exists(), "an edited plan deleted a reviewed orphan"


def test_recovery_aborts_the_multipart_upload_of_a_killed_update(
    tmp_path: Path, state_at: str, s3_endpoint: str, aws_env: None
) -> None:
    """A 20 MiB copy on S3 (a multipart object) is being updated; the run is killed (SIGKILL)
    in the middle of the new multipart upload, whose id was recorded before the first part.
    Recovery first looks at the key: the object there is the old multipart one, whose
    "done" session the update had replaced with the "uploading" one, so `stat` reads the
    object, hashes it and *keeps a new "done" session over the recorded upload id*; the
    cleanup that runs next finds no "uploading" session, and the killed upload is never
    aborted (its parts are stored, and billed, for ever). What must hold: after the kill and
    a plain `reconcile`, no multipart upload is left in the bucket, and the copy converges."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = f"killed-update-{uuid.uuid4().hex[:8]}"  # a bucket of its own per backend case
    client.create_bucket(Bucket=bucket)
    NoChecksums.upstream, NoChecksums.strip, NoChecksums.stall = s3_endpoint, False, None
    NoChecksums.stalled, NoChecksums.released = threading.Event(), threading.Event()
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), NoChecksums)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    big = 20 * 1024 * 1024 + 5
    try:
        world = World(tmp_path, short_lease(state_at)).platform(
            "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
            region="us-east-1", endpoint_url=f"http://127.0.0.1:{proxy.server_address[1]}",
        ).rule("R", "BACKUP").asset("VID-A", b"1" * big)  # fmt: skip
        world.manifests()
        assert reconcile(world, *world.cli_args(), timeout=300).returncode == 0
        world.write_file("vid-a.mp4", b"2" * big)
        NoChecksums.stall = ("PUT", "partNumber=2")
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *world.cli_args()], cwd=world.root,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert NoChecksums.stalled.wait(120), "the update never reached its second part"
        process.kill()
        process.wait(30)
        NoChecksums.released.set()
        done = reconcile(world, *world.cli_args(), timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        NoChecksums.released.set()
        proxy.shutdown()
        proxy.server_close()
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert left == [], f"{len(left)} multipart uploads left behind by the killed update"
    held = client.get_object(Bucket=bucket, Key="vid-a.mp4")["Body"].read()
    assert held == b"2" * big


@pytest.mark.parametrize("option", ["--rule", "--platform"])
@pytest.mark.parametrize("dry", [False, True], ids=["apply", "dry-run"])
def test_a_rule_or_platform_that_does_not_exist_is_an_error(
    tmp_path: Path, state_at: str, option: str, dry: bool
) -> None:
    """A typo in CI (`reconcile --rule SYNC-YT-VIDOE`): the run narrows to nothing and exits
    0, "Nothing to apply", so the pipeline is green while nothing was synced (`verify
    --platform NOPE` already refuses with one line). What must hold: a code that the
    manifests do not declare is one clear line and exit 1, for apply and dry run."""
    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.manifests()
    done = reconcile(world, *(["--dry-run"] if dry else []), *world.cli_args(), option, "NOPE")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOPE" in done.stderr
    assert not out(world, "NAS").exists()


def test_an_edited_plan_cannot_choose_where_state_files_are_written(
    tmp_path: Path, state_at: str
) -> None:
    """The plan file's `state` is the default state file of `reconcile apply p.json`. The
    attacker points it at a path of their choosing (here a folder outside the project) and
    sets `state_fingerprint` to that of empty state (a dry run against a missing file shows
    it, and writes nothing): the apply creates a DuckDB file and its `.lock` there (and a
    `renditions/` folder with transforms), "re-syncs" every copy against that empty state
    (adopting the tool's own copies as foreign ones), and exits 0. What must hold: the
    state file is the invocation's (--state, RECONCILE_STATE, the default),
    never one a plan file names; a plan made for another state file is refused."""
    world = World(tmp_path, state_at).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.manifests()
    assert reconcile(world, *world.cli_args()).returncode == 0
    world.asset("VID-B", b"b" * 100).manifests()
    plan_file, data = saved_plan(world)
    chosen = tmp_path / "chosen-by-the-attacker" / "x.duckdb"
    empty = reconcile(world, "--dry-run", "--manifests", str(world.manifests_dir),
                      "--media-root", str(world.media), "--state", str(tmp_path / "no" / "s"),
                      "-o", "json")  # fmt: skip
    data["state"] = str(chosen)
    data["state_exists"] = False
    data["state_fingerprint"] = json.loads(empty.stdout)["state_fingerprint"]  # of no state
    plan_file.write_text(json.dumps(data))
    reconcile(world, "apply", str(plan_file))
    assert not chosen.parent.exists(), sorted(p.name for p in chosen.parent.iterdir())


def test_a_kill_before_the_old_video_is_deleted_leaves_no_second_video(
    tmp_path: Path, state_at: str, fake: Any
) -> None:
    """A changed master is a new YouTube video, and the old one is deleted once the new one
    is processed. The run is killed (SIGKILL) while that DELETE is in flight. Recovery finds
    the new video recorded and completes the job; nothing remembers the old video id, so the
    previous version stays in the channel for ever (public, if the channel's videos are).
    What must hold: after the kill and a plain `reconcile`, the channel holds exactly the
    current video (recovery, or the next run, deletes a completed job's previous object)."""
    first, second = os.urandom(300 * 1024), os.urandom(300 * 1024)
    world = (
        World(tmp_path, short_lease(state_at))
        .platform("VIDS", **api_platform(fake, "youtube"))
        .rule("R", "VIDS")
    )
    world.asset("VID-A", first)
    world.manifests()
    assert reconcile(world, *world.cli_args()).returncode == 0
    assert len(fake.videos) == 1
    world.write_file("vid-a.mp4", second)
    handler = fake.server.RequestHandlerClass
    original = handler._yt_videos
    deleting = threading.Event()

    def stalling(self: Any, query: Any) -> None:
        if self.command == "DELETE" and not deleting.is_set():
            deleting.set()
            fake.release.wait(60)
            self.close_connection = True
            return None
        return original(self, query)

    handler._yt_videos = stalling
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *world.cli_args()], cwd=world.root,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert deleting.wait(60), "the old video was never deleted"
        process.kill()
        process.wait(30)
        fake.release.set()
        handler._yt_videos = original
        done = reconcile(world, *world.cli_args())
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        handler._yt_videos = original
    held = sorted(sha(v.data) for v in fake.videos.values())
    assert held == [sha(second)], f"{len(held)} videos in the channel for one asset"


# == two copies, one key ======================================================================
def test_two_assets_whose_copies_share_a_key_are_blocked_not_a_conflict_with_ourselves(
    tmp_path: Path,
    state_at: str,
) -> None:
    """The planner blocks two assets that share one *file* on a platform, not two whose
    *keys* collide: an encrypted rendition of `report.pdf` is stored as `report.pdf.enc`,
    and a plain master literally named `report.pdf.enc` (another rule on the same platform)
    is stored under the same key. One copy lands, the other job then finds "an object this
    tool did not make" (its own other copy) and records a `foreign_object` conflict on every
    run; with both jobs in flight at once, the last rename wins and both are recorded synced
    with their own checksums. What must hold: copies of two assets never share a key (the
    second is blocked with a reason), and the tool never records a conflict against its own
    copy."""
    env = {"ATTACK_BACKUP_KEY": KEY_HEX}
    world = World(tmp_path, state_at).platform("BACKUP", platform_type="cloud_storage")
    world.rule("R-SECRET", "BACKUP", source_category=["secret"], transform_rules={
        "encrypt": True, "encryption_key": {"secret_env": "ATTACK_BACKUP_KEY"}})  # fmt: skip
    world.rule("R-PLAIN", "BACKUP", source_category=["plain"])
    world.asset("DOC-A", b"the report " * 50, file="report.pdf", asset_type="document",
                category="secret")  # fmt: skip
    world.asset(
        "DOC-B",
        b"already encrypted elsewhere " * 50,
        file="report.pdf.enc",
        asset_type="document",
        category="plain",
        mime_type="application/octet-stream",
    )
    world.manifests()
    for _ in range(2):
        reconcile(world, *world.cli_args(), env=env)
    conflicts = rows(world, "SELECT conflict_type FROM sync_conflicts")
    assert conflicts == [], f"conflicts against the tool's own copy: {conflicts}"
    synced = rows(world, "SELECT remote_key, remote_checksum FROM platform_assets "
                  "WHERE sync_status = 'synced'")  # fmt: skip
    for key, checksum in synced:
        assert sha((out(world, "BACKUP") / key).read_bytes()) == checksum, key


def test_a_post_upload_killed_before_its_answer_leaves_no_duplicate_object(
    tmp_path: Path, state_at: str, fake: Any
) -> None:
    """An http platform with `upload_method: POST` (a new object per upload). `reconcile` is
    killed (SIGKILL) after the platform stored the object but before its answer (the new
    object's id) was read. Nothing was recorded before the first byte that could find it
    again (no session, no idempotency key), so recovery sees nothing, the next run uploads
    again, and the platform holds two objects for one asset, one of them unknown to the
    state for ever. What must hold: after a kill and a plain `reconcile`, the platform holds
    one object per asset (send an idempotency key with the job's code and reuse the answer,
    or look the key up — X-Reconcile-Key — before uploading again)."""
    world = World(tmp_path, short_lease(state_at)).platform(
        "CDN", driver="http", api_endpoint=f"{fake.url}/cdn", auth_type="api_key",
        auth={"secret_env": "ATTACK_CDN_KEY"}, target=None,
    ).rule("R", "CDN").asset("VID-A", b"a" * 5000)  # fmt: skip
    world.manifests()
    handler = fake.server.RequestHandlerClass
    original = handler._send
    stored = threading.Event()

    def stalling(self: Any, status: int, body: Any = None, headers: Any = None) -> None:
        if status == 201 and self.command == "POST" and not stored.is_set():
            stored.set()  # the object is in fake.objects already
            fake.release.wait(60)
            self.close_connection = True
            return None
        return original(self, status, body, headers)

    handler._send = stalling
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *world.cli_args()], cwd=world.root,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert stored.wait(60), "the upload never reached the platform"
        process.kill()
        process.wait(30)
        fake.release.set()
        handler._send = original
        done = reconcile(world, *world.cli_args())
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        handler._send = original
    keys = [o["key"] for o in fake.objects.values()]
    assert keys == ["vid-a.mp4"], f"{len(keys)} objects on the platform for one asset"
