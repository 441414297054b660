"""Defect 11: a create never overwrites an object this tool did not make. Identical bytes at
the key are adopted (job_type adopt, nothing sent); other bytes are a foreign_object conflict,
left alone until a person decides, or overwritten when the rule says source_wins."""

from __future__ import annotations

from pathlib import Path

from planning import World, apply_run, rows
from test_integrity import FAST


def target(world: World) -> Path:
    folder = world.root / "out" / "nas"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_identical_bytes_are_adopted_without_sending_them(tmp_path: Path) -> None:
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"the master")
    there = target(world) / "vid-a.mp4"
    there.write_bytes(b"the master")
    before = there.stat()
    (job,) = apply_run(world, FAST).jobs
    assert (job.job_type, job.status) == ("adopt", "completed")
    after = there.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # untouched
    assert rows(world, "SELECT job_type, status FROM sync_jobs") == [("adopt", "completed")]
    assert rows(world, "SELECT sync_status, managed FROM platform_assets") == [("synced", False)]
    assert rows(world, "SELECT count(*) FROM sync_events_log WHERE event_type = 'adopted'") == [
        (1,)
    ]
    assert {a.action for a in world.plan().actions} == {"noop"}


def test_other_bytes_are_a_conflict_and_are_left_alone(tmp_path: Path, run) -> None:
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"the master")
    there = target(world) / "vid-a.mp4"
    there.write_bytes(b"somebody else's file")
    result = apply_run(world, FAST)
    (job,) = result.jobs
    assert job.status == "failed" and "did not make" in (job.error or "")
    assert there.read_bytes() == b"somebody else's file"
    assert rows(world, "SELECT conflict_type, resolution FROM sync_conflicts") == [
        ("foreign_object", "pending")
    ]
    assert int(result.exit_code) == 3
    assert world.plan().actions[0].action == "held"
    # a person decides the master wins: the next reconcile replaces exactly that object
    resolved = run(
        "conflicts", "--state", str(world.store.path), "resolve", "1", "--use", "source",
        "--by", "ops",
    )  # fmt: skip
    assert resolved.exit_code == 0, resolved.output
    (job,) = apply_run(world, FAST).jobs
    assert job.status == "completed" and there.read_bytes() == b"the master"
    assert {a.action for a in world.plan().actions} == {"noop"}


def test_a_foreign_object_changed_again_after_the_decision_is_not_overwritten(
    tmp_path: Path, run
) -> None:
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"the master")
    there = target(world) / "vid-a.mp4"
    there.write_bytes(b"somebody else's file")
    apply_run(world, FAST)
    run("conflicts", "--state", str(world.store.path), "resolve", "1", "--use", "source",
        "--by", "ops")  # fmt: skip
    there.write_bytes(b"and yet another one")  # not the object the decision was about
    (job,) = apply_run(world, FAST).jobs
    assert job.status == "failed" and there.read_bytes() == b"and yet another one"


def test_source_wins_overwrites_a_foreign_object(tmp_path: Path) -> None:
    world = World(tmp_path).platform("NAS").rule("R", "NAS", on_conflict="source_wins")
    world.asset("VID-A", b"the master")
    there = target(world) / "vid-a.mp4"
    there.write_bytes(b"somebody else's file")
    (job,) = apply_run(world, FAST).jobs
    assert job.status == "completed" and there.read_bytes() == b"the master"


def test_a_symlink_at_the_key_is_foreign_and_never_followed(tmp_path: Path) -> None:
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"the master")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"do not touch")
    (target(world) / "vid-a.mp4").symlink_to(elsewhere)
    (job,) = apply_run(world, FAST).jobs
    assert job.status == "failed" and "did not make" in (job.error or "")
    assert elsewhere.read_bytes() == b"do not touch"
    assert (target(world) / "vid-a.mp4").is_symlink()


def test_accepting_the_foreign_object_makes_it_the_copy_but_never_prunes_it(
    tmp_path: Path, run
) -> None:
    world = World(tmp_path).platform("NAS").rule("R", "NAS").asset("VID-A", b"the master")
    there = target(world) / "vid-a.mp4"
    there.write_bytes(b"their version, kept on purpose")
    apply_run(world, FAST)
    resolved = run(
        "conflicts", "--state", str(world.store.path), "resolve", "1", "--use", "target",
        "--by", "ops",
    )  # fmt: skip
    assert resolved.exit_code == 0, resolved.output
    assert {a.action for a in world.plan().actions} == {"noop"}  # accepted as the copy
    from reconciler.apply.verify import verify

    assert verify(world.manifests(), world.store).ok == 1
    world.remove("Asset", "VID-A").asset("VID-B", b"another")
    apply_run(world, FAST, prune=True, force=True)  # not this tool's object: not deleted
    assert there.read_bytes() == b"their version, kept on purpose"
