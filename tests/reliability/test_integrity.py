"""Trust the bytes, not the plan: a copy is recorded synced only with the checksum of the bytes
that were read and landed, nothing outside the media root is ever read, and a saved plan is
a request checked against the manifests, never an authority. Real files, real subprocesses of
`reconcile`, the real local driver."""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from cli_process import reconcile as run_cli
from PIL import Image
from planning import World, apply_run, rows

from reconciler.apply.run import ApplyOptions, Job, NullObserver, apply_plan
from reconciler.observe.sources import sha256_file
from reconciler.plan.planner import make_plan
from reconciler.transforms.crypto import decrypt_file

FAST = ApplyOptions(parallel=2, backoff_base=0.001, backoff_max=0.01)
KEY_HEX = "11" * 32
RESIZE = {"resize_images": True, "max_dimension": 100}
ENCRYPT = {"encrypt": True, "encryption_key": {"secret_env": "TEST_INTEGRITY_KEY"}}
MARKER = b"OUTSIDE-THE-MEDIA-ROOT-"


def jpeg(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG", quality=95)
    return out.getvalue()


HERO = jpeg(400, 300, (10, 20, 200))
OTHER = jpeg(90, 60, (200, 10, 10))  # small enough to pass through a resize unchanged


def reconcile(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    done = run_cli(*args, cwd=world.root)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def out(world: World, platform: str) -> Path:
    return world.root / "out" / platform.lower()


def published(world: World) -> list[bytes]:
    """Every byte on every local target (decrypted where it is a reconcile .enc)."""
    found = []
    for path in (world.root / "out").rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".enc":
            plain = world.root / "decrypted.tmp"
            decrypt_file(path, plain, bytes.fromhex(KEY_HEX))
            data = plain.read_bytes()
            plain.unlink()
        found.append(data)
    return found


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("TEST_INTEGRITY_KEY", KEY_HEX)
    return (
        World(tmp_path)
        .platform("CDN")
        .platform("BACKUP", platform_type="cloud_storage")
        .rule("R-CDN", "CDN", transform_rules=RESIZE)
        .rule("R-BACKUP", "BACKUP", transform_rules=ENCRYPT)
        .asset("IMG-HERO", HERO, file="hero.jpg", asset_type="image", mime_type="image/jpeg")
    )


def check_truthful(world: World) -> None:
    """Every synced copy's recorded checksum is the sha256 of what the platform holds, and
    its master checksum is the master's now."""
    synced = rows(
        world,
        "SELECT sp.platform_code, pa.remote_key, pa.remote_checksum, pa.local_checksum, "
        "sa.file_path FROM platform_assets pa JOIN sync_platforms sp ON sp.id = pa.platform_id "
        "JOIN source_assets sa ON sa.id = pa.source_asset_id WHERE pa.sync_status = 'synced'",
    )
    assert synced
    for platform, key, remote, local, master in synced:
        assert sha256_file(out(world, platform) / key) == remote, (platform, key)
        assert sha256_file(master) == local, (platform, key)


# -- a master that changes after planning --------------------------------------------------
def test_a_saved_plan_after_the_master_changed_is_refused_and_nothing_is_poisoned(
    images: World,
) -> None:
    """Defects 1, 2 and 7: plan, copy another image over the master, apply the saved plan:
    refused, nothing sent, no rendition stored; restored, two runs give true copies."""
    world = images
    world.manifests()
    plan_file = world.root / "p.json"
    planned = reconcile(world, "--dry-run", *world.cli_args(), "--out", str(plan_file))
    assert planned.returncode == 0, planned.stderr
    world.write_file("hero.jpg", OTHER)
    refused = reconcile(world, "apply", str(plan_file), *world.cli_args())
    assert refused.returncode == 1
    assert "does not match the manifests and the masters" in refused.stderr
    assert "IMG-HERO on " in refused.stderr and "checksum was" in refused.stderr
    assert not (world.root / "out").exists()  # nothing was sent anywhere
    renditions = world.root / "state" / "renditions"
    assert not renditions.exists() or not list(renditions.glob("*.json"))
    world.write_file("hero.jpg", HERO)
    for _ in range(2):
        done = reconcile(world, *world.cli_args())
        assert done.returncode == 0, done.stdout + done.stderr
    with Image.open(out(world, "CDN") / "hero.jpg") as got:
        assert got.size == (100, 75)  # the hero, resized: not the other image
    decrypt_file(out(world, "BACKUP") / "hero.jpg.enc", world.root / "back.jpg",
                 bytes.fromhex(KEY_HEX))  # fmt: skip
    assert (world.root / "back.jpg").read_bytes() == HERO
    verified = reconcile(world, "verify", *world.cli_args())
    assert verified.returncode == 0 and "2 match" in verified.stdout
    check_truthful(world)


class Rewriter(NullObserver):
    """Rewrites a master the moment its job starts: after the plan hashed it, before the job
    reads it (the window between hashing and transforming inside one reconcile)."""

    def __init__(self, path: Path, content: bytes, when: str = "start") -> None:
        self.path, self.content, self.when = path, content, when
        self.done = threading.Event()

    def _rewrite(self) -> None:
        if not self.done.is_set():
            self.done.set()
            with open(self.path, "r+b") as handle:  # in place: the same inode, other bytes
                handle.write(self.content)
                handle.truncate()

    def job_started(self, job: Job) -> None:
        if self.when == "start":
            self._rewrite()

    def job_progress(self, job: Job, sent: int) -> None:
        if self.when == "progress":
            self._rewrite()


def test_a_master_rewritten_between_hash_and_transform_is_never_recorded(
    images: World,
) -> None:
    world = images.remove("SyncRule", "R-BACKUP")
    manifests = world.manifests()
    plan = make_plan(manifests, world.store)
    planned_rendition = plan.actions[0].rendition_id
    with world.store.session():
        result = apply_plan(
            manifests, world.store, plan, FAST, Rewriter(world.media / "hero.jpg", OTHER)
        )
    (job,) = result.jobs
    assert job.status == "failed" and "changed after it was planned" in (job.error or "")
    assert not list(out(world, "CDN").glob("*")) if out(world, "CDN").exists() else True
    cache = world.root / "state" / "renditions"
    assert not (cache / f"{planned_rendition}.json").exists()  # no rendition under that id
    assert rows(world, "SELECT sync_status FROM platform_assets") == [("failed",)]
    # the next run syncs what the master is now, truthfully
    again = apply_run(world, FAST)
    assert again.counts()["completed"] == 1
    assert (out(world, "CDN") / "hero.jpg").read_bytes() == OTHER  # small: passed through
    check_truthful(world)


def test_encryption_reads_the_master_once_and_checks_what_it_encrypted(
    images: World,
) -> None:
    """Encryption only (no media step): the plaintext is hashed in the same pass that
    encrypts it; a master rewritten meanwhile stores nothing."""
    world = images.remove("SyncRule", "R-CDN")
    manifests = world.manifests()
    plan = make_plan(manifests, world.store)
    with world.store.session():
        result = apply_plan(
            manifests, world.store, plan, FAST, Rewriter(world.media / "hero.jpg", OTHER)
        )
    assert result.jobs[0].status == "failed"
    assert "changed after it was planned" in (result.jobs[0].error or "")
    assert not out(world, "BACKUP").exists() or not list(out(world, "BACKUP").rglob("*.enc"))
    apply_run(world, FAST)
    decrypt_file(out(world, "BACKUP") / "hero.jpg.enc", world.root / "b", bytes.fromhex(KEY_HEX))
    assert (world.root / "b").read_bytes() == OTHER
    check_truthful(world)


# -- the local driver: compare, then rename ------------------------------------------------
def test_a_torn_update_never_replaces_the_good_copy(tmp_path: Path) -> None:
    """Defect 4: a master rewritten during an update (a multi-chunk copy): the part file is
    deleted, the good copy stays, and the next run reports no conflict against our own
    write."""
    first, second, torn = (bytes([n]) * (20 * 1024 * 1024) for n in (1, 2, 3))
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", first)
    apply_run(world, FAST)
    copy = out(world, "NAS") / "vid-a.mp4"
    assert copy.read_bytes() == first
    world.write_file("vid-a.mp4", second)
    manifests = world.manifests()
    plan = make_plan(manifests, world.store)
    with world.store.session():
        result = apply_plan(
            manifests, world.store, plan, FAST,
            Rewriter(world.media / "vid-a.mp4", torn, when="progress"),
        )  # fmt: skip
    assert result.jobs[0].status == "failed"
    assert "changed after it was planned" in (result.jobs[0].error or "")
    assert copy.read_bytes() == first  # the good copy is still there
    assert [p.name for p in copy.parent.iterdir()] == ["vid-a.mp4"]  # no part file
    again = apply_run(world, FAST)
    assert again.counts() == {"completed": 1, "failed": 0, "deferred": 0}
    assert again.open_conflicts == 0
    assert copy.read_bytes() == torn and rows(world, "SELECT count(*) FROM sync_conflicts") == [
        (0,)
    ]
    check_truthful(world)


def test_a_file_name_of_any_legal_length_reaches_a_local_target(tmp_path: Path) -> None:
    """Defect 17: the part file has a short name of its own."""
    name = "v" * 251 + ".mp4"  # 255 bytes: the longest legal name
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-LONG", b"x", file=name)
    result = apply_run(world, FAST)
    assert result.counts()["completed"] == 1, [j.error for j in result.jobs]
    assert (out(world, "NAS") / name).read_bytes() == b"x"


# -- nothing outside the media root ---------------------------------------------------------
@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "elsewhere" / "passwd"
    secret.parent.mkdir()
    secret.write_bytes(MARKER + os.urandom(8).hex().encode())
    return secret


def test_a_master_swapped_for_a_symlink_after_validation_is_never_followed(
    images: World, outside: Path
) -> None:
    """Defect 6: validated, planned, then swapped for a symlink to a file outside the media
    root: nothing outside is read, published or recorded, on a plain and an encrypted
    target."""
    world = images.platform("PLAIN").rule("R-PLAIN", "PLAIN")
    manifests = world.manifests()
    plan = make_plan(manifests, world.store)
    hero = world.media / "hero.jpg"
    hero.unlink()
    hero.symlink_to(outside)
    with world.store.session():
        result = apply_plan(manifests, world.store, plan, FAST)
    assert {j.status for j in result.jobs} == {"failed"}
    assert all("symlink that leads outside the media root" in (j.error or "") for j in result.jobs)
    assert not any(MARKER in data for data in published(world))
    assert rows(world, "SELECT count(*) FROM platform_assets WHERE sync_status = 'synced'") == [
        (0,)
    ]


def test_a_master_swapped_for_a_fifo_fails_its_job_and_does_not_hang(images: World) -> None:
    world = images
    manifests = world.manifests()
    plan = make_plan(manifests, world.store)
    hero = world.media / "hero.jpg"
    hero.unlink()
    os.mkfifo(hero)
    finished: list[Any] = []

    def apply() -> None:
        with world.store.session():
            finished.append(apply_plan(manifests, world.store, plan, FAST))

    worker = threading.Thread(target=apply, daemon=True)
    worker.start()
    worker.join(60)
    assert finished, "the apply hung on a FIFO"
    assert {j.status for j in finished[0].jobs} == {"failed"}
    assert all("not a regular file (a FIFO)" in (j.error or "") for j in finished[0].jobs)


def test_planning_never_reads_a_symlink_out_of_the_media_root(
    tmp_path: Path, outside: Path
) -> None:
    """Observation opens masters the same safe way: a master swapped for a symlink after
    validation is unreadable, not hashed (its checksum is not even shown)."""
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"a")
    manifests = world.manifests()
    (world.media / "vid-a.mp4").unlink()
    (world.media / "vid-a.mp4").symlink_to(outside)
    plan = make_plan(manifests, world.store)
    (action,) = plan.actions
    assert action.action == "blocked" and action.checksum is None
    assert "outside the media root" in action.reason


# -- a saved plan is a request ----------------------------------------------------------------
def edited_plan(world: World, change: Any) -> Path:
    plan_file = world.root / "p.json"
    done = reconcile(world, "--dry-run", *world.cli_args(), "--out", str(plan_file))
    assert done.returncode == 0, done.stderr
    data = json.loads(plan_file.read_text())
    change(data)
    plan_file.write_text(json.dumps(data))
    return plan_file


def test_an_edited_plan_cannot_publish_a_file_outside_the_media_root(
    tmp_path: Path, outside: Path
) -> None:
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.manifests()

    def point_elsewhere(data: dict) -> None:
        data["actions"][0]["path"] = str(outside)
        data["actions"][0]["checksum"] = sha256_file(outside)

    refused = reconcile(world, "apply", str(edited_plan(world, point_elsewhere)), *world.cli_args())
    assert refused.returncode == 1, refused.stdout
    assert "checksum was" in refused.stderr and "nothing was applied" in refused.stderr
    assert not out(world, "NAS").exists()

    def only_the_path(data: dict) -> None:  # the file's path is never taken from the plan
        data["actions"][0]["path"] = str(outside)

    done = reconcile(world, "apply", str(edited_plan(world, only_the_path)), *world.cli_args())
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out(world, "NAS") / "vid-a.mp4").read_bytes() == b"a" * 100
    assert not any(MARKER in d for d in published(world))


def test_an_injected_delete_of_a_wanted_copy_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"a" * 100)
    world.asset("VID-B", b"b" * 100)
    apply_run(world, FAST)

    def inject(data: dict) -> None:
        wanted = next(a for a in data["actions"] if a["asset"] == "VID-A")
        wanted["action"] = "delete"
        data["prune"] = True

    plan_file = edited_plan(world, inject)
    refused = reconcile(world, "apply", str(plan_file), *world.cli_args())
    assert refused.returncode == 1 and "VID-A on NAS" in refused.stderr
    assert (out(world, "NAS") / "vid-a.mp4").read_bytes() == b"a" * 100


def test_a_saved_plan_after_an_asset_set_lost_a_file_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    """Defect 19: no KeyError traceback; one line, exit 1, nothing applied."""
    world = World(tmp_path).platform("NAS").rule("R", "NAS")
    for name in ("a", "b"):
        (world.media / "clips").mkdir(exist_ok=True)
        (world.media / "clips" / f"{name}.mp4").write_bytes(name.encode() * 50)
    world._doc(
        "AssetSet",
        "CLIPS",
        {"include": "clips/*.mp4", "asset_type": "video", "category": "marketing",
         "code_template": "VID-{stem}", "code_case": "upper"},
    )  # fmt: skip
    world.manifests()
    plan_file = edited_plan(world, lambda data: None)
    (world.media / "clips" / "b.mp4").unlink()
    refused = reconcile(world, "apply", str(plan_file), *world.cli_args())
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0, refused.stderr  # one line
    assert "VID-B on NAS" in refused.stderr and "no longer declare" in refused.stderr
    assert not out(world, "NAS").exists()


# -- exit codes -----------------------------------------------------------------------------
def test_blocked_work_exits_3_and_says_so(tmp_path: Path) -> None:
    """Defect 20: a placement blocked by an unsupported format is work not done."""
    world = World(tmp_path).platform("NAS", supported_formats=["image/png"]).rule("R", "NAS")
    world.asset("VID-A", b"a")
    world.manifests()
    done = reconcile(world, *world.cli_args())
    assert done.returncode == 3, done.stdout
    assert "blocked: VID-A -> NAS" in done.stdout
    assert "Exit 3: not everything was done (1 blocked)" in done.stdout


def test_a_disabled_platform_is_not_work_left_undone(tmp_path: Path) -> None:
    world = World(tmp_path).platform("NAS", sync_enabled=False).rule("R", "NAS")
    world.platform("CDN").rule("R-CDN", "CDN").asset("VID-A", b"a")
    world.manifests()
    done = reconcile(world, *world.cli_args())
    assert done.returncode == 0, done.stdout  # sync_enabled: false is a decision, not a fault
    assert "blocked: VID-A -> NAS: the platform has sync_enabled: false" in done.stdout


def test_the_pruning_guards_of_a_saved_plan_are_the_appliers_not_the_files(
    tmp_path: Path,
) -> None:
    world = World(tmp_path).platform("NAS").rule("R", "NAS")
    for code in ("VID-A", "VID-B", "VID-C"):
        world.asset(code, code.encode() * 10)
    apply_run(world, FAST)
    world.remove("Asset", "VID-A").remove("Asset", "VID-B")
    world.manifests()
    plan_file = world.root / "p.json"
    made = reconcile(world, "--dry-run", *world.cli_args(), "--prune", "--force", "--out",
                     str(plan_file))  # fmt: skip
    assert made.returncode == 0 and json.loads(plan_file.read_text())["summary"]["delete"] == 2
    unasked = reconcile(world, "apply", str(plan_file), *world.cli_args())
    assert unasked.returncode == 1 and "pass --prune to apply its deletes" in unasked.stderr
    guarded = reconcile(world, "apply", str(plan_file), *world.cli_args(), "--prune")
    assert guarded.returncode == 1 and "refusing to delete 2 of 3 copies" in guarded.stderr
    assert len(list(out(world, "NAS").iterdir())) == 3  # nothing deleted
    forced = reconcile(world, "apply", str(plan_file), *world.cli_args(), "--prune", "--force")
    assert forced.returncode == 0, forced.stderr
    assert [p.name for p in out(world, "NAS").iterdir()] == ["vid-c.mp4"]


def test_a_saved_plan_made_for_one_rule_runs_that_rule_now(tmp_path: Path) -> None:
    """A plan made with --rule runs its scheduled changes now, as the dry run showed, when
    the applier says so too (the file alone cannot make a rule run before its time)."""
    world = World(tmp_path).platform("NAS").rule("R", "NAS", schedule_cron="0 9 1 1 *")
    world.asset("VID-A", b"a" * 10)
    apply_run(world, FAST)  # a rule that never ran is due at once: now it waits a year
    world.write_file("vid-a.mp4", b"b" * 10)
    world.manifests()
    plan_file = world.root / "p.json"
    made = reconcile(world, "--dry-run", *world.cli_args(), "--rule", "R", "--out",
                     str(plan_file))  # fmt: skip
    assert made.returncode == 0 and json.loads(plan_file.read_text())["rule"] == "R"
    waits = reconcile(world, "apply", str(plan_file), *world.cli_args())
    assert waits.returncode == 1 and "pass --rule R to run it now" in waits.stderr
    done = reconcile(world, "apply", str(plan_file), *world.cli_args(), "--rule", "R")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out(world, "NAS") / "vid-a.mp4").read_bytes() == b"b" * 10
