"""The local driver never follows a symlink below its target (real folders, real symlinks).

Someone who can write to the target swaps a folder the tool made for a symlink to another
place: uploads, stats, deletes and cleanup must neither write, read nor delete anything there.
The target itself may still be named through a symlink by the user.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import pytest

from reconciler.drivers import driver_for
from reconciler.drivers.base import PermanentError
from reconciler.drivers.local import LocalDriver
from reconciler.drivers.local_paths import remove_files
from reconciler.model import Platform
from reconciler.observe.payload import Payload

from helpers import payload_of


def local(target: Path, **config: object) -> LocalDriver:
    platform = Platform(
        code="NAS",
        platform_name="NAS",
        platform_type="other",
        driver="local",
        target=target,
        driver_config=dict(config),
    )
    driver = driver_for(platform)
    assert isinstance(driver, LocalDriver)
    return driver


def master(tmp_path: Path, content: bytes) -> Payload:
    path = tmp_path / f"master-{hashlib.sha256(content).hexdigest()[:8]}.bin"
    path.write_bytes(content)
    return payload_of(path)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "target"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder outside the target, holding a file an attacker would like overwritten or
    deleted (the same bytes the tool would write, so even a checksum check would pass)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"a" * 100)
    return folder


def swap(folder: Path, link_to: Path, keep: bool = False) -> None:
    """Replace ``folder`` with a symlink to ``link_to`` (``keep``: move the real one aside,
    inside the target, rather than remove it)."""
    if keep:
        folder.rename(folder.with_name(folder.name + ".old"))
    else:
        shutil.rmtree(folder)
    folder.symlink_to(link_to, target_is_directory=True)


def untouched(elsewhere: Path) -> None:
    assert sorted(p.name for p in elsewhere.iterdir()) == ["a.mp4"], "written outside the target"
    assert (elsewhere / "a.mp4").read_bytes() == b"a" * 100


@pytest.mark.parametrize("fresh", [True, False], ids=["new driver", "same driver"])
def test_an_upload_never_goes_through_a_swapped_folder(
    tmp_path: Path, target: Path, elsewhere: Path, fresh: bool
) -> None:
    driver = local(target)
    driver.upload(master(tmp_path, b"a" * 100), "clips/a.mp4", {})
    swap(target / "clips", elsewhere)
    if fresh:
        driver = local(target)
    with pytest.raises(PermanentError, match="clips on the target is a symlink; nothing was writ"):
        driver.upload(master(tmp_path, b"n" * 100), "clips/n.mp4", {})
    with pytest.raises(PermanentError, match="is a symlink"):  # the existing name too
        driver.upload(master(tmp_path, b"b" * 100), "clips/a.mp4", {})
    untouched(elsewhere)


def test_a_swapped_folder_deeper_down_and_a_folder_it_would_create(
    tmp_path: Path, target: Path, elsewhere: Path
) -> None:
    driver = local(target)
    driver.upload(master(tmp_path, b"x"), "A/b/x.mp4", {})
    swap(target / "A" / "b", elsewhere)
    fresh = local(target)
    with pytest.raises(PermanentError, match=r"A/b on the target is a symlink"):
        fresh.upload(master(tmp_path, b"y"), "A/b/new/y.mp4", {})  # no mkdir through it
    untouched(elsewhere)


def test_a_folder_swapped_while_the_driver_holds_it_stays_the_real_one(
    tmp_path: Path, target: Path, elsewhere: Path
) -> None:
    """The cached descriptor is of the real folder, which was inside the target: the write
    goes there (now `clips.old`), never through the symlink."""
    driver = local(target)
    driver.upload(master(tmp_path, b"a" * 100), "clips/a.mp4", {})
    swap(target / "clips", elsewhere, keep=True)
    driver.upload(master(tmp_path, b"n" * 100), "clips/n.mp4", {})
    untouched(elsewhere)
    assert (target / "clips.old" / "n.mp4").read_bytes() == b"n" * 100


def test_stat_never_reads_through_a_swapped_folder(
    tmp_path: Path, target: Path, elsewhere: Path
) -> None:
    driver = local(target)
    driver.upload(master(tmp_path, b"a" * 100), "clips/a.mp4", {})
    assert driver.stat("clips/a.mp4") is not None
    swap(target / "clips", elsewhere)
    for reader in (driver, local(target)):  # the removed folder is noticed, not trusted
        with pytest.raises(PermanentError, match="is a symlink; nothing was read through it"):
            reader.stat("clips/a.mp4")
    assert local(target).stat("other/a.mp4") is None


def test_a_delete_never_removes_anything_through_a_swapped_folder(
    tmp_path: Path, target: Path, elsewhere: Path
) -> None:
    driver = local(target)
    driver.upload(master(tmp_path, b"a" * 100), "clips/a.mp4", {})
    swap(target / "clips", elsewhere)
    for deleter in (driver, local(target)):
        with pytest.raises(PermanentError, match="is a symlink; nothing was deleted through it"):
            deleter.delete("clips/a.mp4")
    untouched(elsewhere)
    assert (target / "clips").is_symlink()  # nor is the symlink taken for an empty folder


def test_a_delete_removes_empty_folders_but_stops_at_a_symlink(
    tmp_path: Path, target: Path, elsewhere: Path
) -> None:
    driver = local(target)
    driver.upload(master(tmp_path, b"x"), "A/b/x.mp4", {})
    (target / "A" / "link").symlink_to(elsewhere, target_is_directory=True)
    driver.delete("A/b/x.mp4")
    assert not (target / "A" / "b").exists()
    assert (target / "A" / "link").is_symlink()  # A is not empty: kept, with its symlink
    untouched(elsewhere)


def test_a_symlink_at_the_key_itself_is_removed_not_followed(
    tmp_path: Path, target: Path, elsewhere: Path
) -> None:
    driver = local(target)
    driver.upload(master(tmp_path, b"x"), "A/x.mp4", {})
    (target / "A" / "a.mp4").symlink_to(elsewhere / "a.mp4")
    remote = driver.stat("A/a.mp4")
    assert remote is not None and remote.checksum is None  # unknown content, never read
    driver.delete("A/a.mp4")
    assert not (target / "A" / "a.mp4").is_symlink()
    untouched(elsewhere)


def test_cleanup_does_not_enter_a_swapped_folder(
    tmp_path: Path, target: Path, elsewhere: Path
) -> None:
    driver = local(target)
    driver.upload(master(tmp_path, b"x"), "A/x.mp4", {})
    driver.upload(master(tmp_path, b"y"), "B/y.mp4", {})
    bait = elsewhere / ".a.mp4.reconcile-1a2b3c4d.part"
    bait.write_bytes(b"not ours")
    swap(target / "B", elsewhere)
    mine = target / "A" / ".reconcile-0123456789ab.part"
    mine.write_bytes(b"half")
    assert driver.cleanup() == 1
    assert not mine.exists() and bait.exists()


def test_cleanup_skips_a_folder_swapped_in_the_middle_of_the_walk(
    tmp_path: Path, target: Path, elsewhere: Path
) -> None:
    """The walk lists a folder as a real one; it is swapped for a symlink before the walk
    goes in: it is not entered, and the part-like file there stays."""
    (target / "sub").mkdir(parents=True)
    (target / ".top.reconcile-00.part").write_bytes(b"x")
    bait = elsewhere / ".b.reconcile-00.part"
    bait.write_bytes(b"not ours")
    swapped: list[bool] = []

    def wanted(name: str) -> bool:
        if not swapped:  # called while the target's own entries are being looked at
            swap(target / "sub", elsewhere)
            swapped.append(True)
        return name.endswith(".part")

    top = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert remove_files(top, wanted) == 1
    finally:
        os.close(top)
    assert swapped and bait.exists()
    assert not (target / ".top.reconcile-00.part").exists()


def test_a_target_named_through_a_symlink_by_the_user_still_works(tmp_path: Path) -> None:
    real = tmp_path / "nas" / "share"
    real.mkdir(parents=True)
    link = tmp_path / "target"
    link.symlink_to(real, target_is_directory=True)
    driver = local(link)
    uploaded = driver.upload(master(tmp_path, b"abc"), "A/b/clip.mp4", {})
    assert (real / "A" / "b" / "clip.mp4").read_bytes() == b"abc"
    assert uploaded.url == (real / "A" / "b" / "clip.mp4").as_uri()
    remote = driver.stat("A/b/clip.mp4")
    assert remote is not None and remote.checksum == sha(b"abc")
    (real / "A" / ".reconcile-0123456789ab.part").write_bytes(b"half")
    assert driver.cleanup() == 1
    driver.delete("A/b/clip.mp4")
    assert list(real.iterdir()) == [] and link.is_symlink()
    assert driver.health_check()[0] == "healthy"


def test_a_target_named_through_a_dangling_symlink_is_made_where_it_points(
    tmp_path: Path,
) -> None:
    link = tmp_path / "target"
    link.symlink_to(tmp_path / "later" / "share", target_is_directory=True)
    local(link).upload(master(tmp_path, b"abc"), "clip.mp4", {})
    assert (tmp_path / "later" / "share" / "clip.mp4").read_bytes() == b"abc"


def test_a_target_swapped_for_a_symlink_after_it_was_resolved(
    tmp_path: Path, target: Path, elsewhere: Path
) -> None:
    target.mkdir()
    driver = local(target)
    target.rmdir()
    target.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(
        PermanentError, match=r"the target folder .* has become a symlink; nothing was written"
    ):
        driver.upload(master(tmp_path, b"n"), "n.mp4", {})
    untouched(elsewhere)


def test_a_file_where_a_folder_should_be_is_permanent(tmp_path: Path, target: Path) -> None:
    target.mkdir()
    (target / "A").write_bytes(b"a file")
    with pytest.raises(PermanentError, match="Not a directory"):
        local(target).upload(master(tmp_path, b"x"), "A/x.mp4", {})


def test_a_folder_removed_while_the_driver_holds_it_is_made_again(
    tmp_path: Path, target: Path
) -> None:
    driver = local(target)
    driver.upload(master(tmp_path, b"x"), "A/b/x.mp4", {})
    shutil.rmtree(target)
    assert driver.stat("A/b/x.mp4") is None
    driver.upload(master(tmp_path, b"y"), "A/b/y.mp4", {})
    assert (target / "A" / "b" / "y.mp4").read_bytes() == b"y"
    remote = driver.stat("A/b/y.mp4")
    assert remote is not None and remote.checksum == sha(b"y")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_folder_descriptors_are_bounded_and_closed_by_finish(tmp_path: Path, target: Path) -> None:
    driver = local(target, fsync=True)  # fsync goes through the same folder descriptors
    driver.folders.keep_open = 4
    payload = master(tmp_path, b"z" * 1000)
    before = open_fds()
    keys = [f"F{i % 20}/G{i % 3}/clip{i}.mp4" for i in range(120)]

    def send(chunk: list[str]) -> None:
        for key in chunk:
            driver.upload(payload, key, {})

    threads = [threading.Thread(target=send, args=(keys[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all((target / key).read_bytes() == b"z" * 1000 for key in keys)
    assert open_fds() - before <= 4 + 1  # the folders kept open, and the target
    driver.finish()
    assert open_fds() == before
    driver.upload(payload, "F0/again.mp4", {})  # usable again after finish
    assert (target / "F0" / "again.mp4").exists()
    driver.finish()
    assert open_fds() == before
