"""Fault injection: masters rewritten, truncated, swapped for a symlink out of the media root or
for a FIFO, and deleted, at random moments while a real `reconcile` applies a few hundred
files through transforms (resized images, encrypted backups), on the local driver and on S3.

After each trial the swaps are undone (a deleted file stays deleted), and the next plain
`reconcile` must converge: nothing left to do, every copy recorded synced holds exactly the
bytes its recorded checksum names (decrypted: exactly its master), nothing from outside the
media root on any platform, and no open conflict, since nobody but the tool wrote to the
platforms."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from PIL import Image
from planning import World, rows

from reconciler.transforms.crypto import decrypt_file

KEY_HEX = "33" * 32
IMAGES, FILES = 60, 140
MARKER = b"FAULT-INJECTION-OUTSIDE-"
KINDS = ("rewrite", "rewrite", "truncate", "symlink", "fifo", "delete")


def jpeg(rng: random.Random) -> bytes:
    out = io.BytesIO()
    size = (rng.randint(40, 90), rng.randint(30, 60))
    Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3))).save(out, "JPEG")
    return out.getvalue()


def blob(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(20_000, 60_000))


class Library:
    """The world: two AssetSets (images, files), three platforms, and what is outside."""

    def __init__(self, tmp_path: Path, endpoint: str | None) -> None:
        self.rng = random.Random(11)
        self.world = world = World(tmp_path)
        self.endpoint = endpoint
        self.outside = tmp_path / "outside" / "secret.bin"
        self.outside.parent.mkdir()
        self.outside.write_bytes(MARKER + uuid.uuid4().hex.encode())
        world.platform("PLAIN").platform("CDN")
        if endpoint is not None:
            self.bucket = f"faults-{uuid.uuid4().hex[:10]}"
            self.s3().create_bucket(Bucket=self.bucket)
            world.platform(
                "BACKUP", platform_type="cloud_storage", driver="s3", target=None,
                bucket=self.bucket, region="us-east-1", endpoint_url=endpoint,
            )  # fmt: skip
        else:
            world.platform("BACKUP", platform_type="cloud_storage")
        world.rule("R-PLAIN", "PLAIN")
        world.rule("R-CDN", "CDN", source_category=["images"],
                   transform_rules={"resize_images": True, "max_dimension": 32})  # fmt: skip
        world.rule("R-BACKUP", "BACKUP", transform_rules={
            "encrypt": True, "encryption_key": {"secret_env": "FAULT_TEST_KEY"}})  # fmt: skip
        for code, folder, category, ext in (("IMAGES", "img", "images", "jpg"),
                                            ("FILES", "bin", "files", "mp4")):  # fmt: skip
            world._doc("AssetSet", code, {
                "include": f"{folder}/*.{ext}", "asset_type": "image" if ext == "jpg" else "video",
                "category": category, "code_template": f"{code[:3]}-{{stem}}",
                "code_case": "upper"})  # fmt: skip
        (world.media / "img").mkdir()
        (world.media / "bin").mkdir()
        for i in range(IMAGES):
            (world.media / "img" / f"i{i:03d}.jpg").write_bytes(jpeg(self.rng))
        for i in range(FILES):
            (world.media / "bin" / f"f{i:03d}.mp4").write_bytes(blob(self.rng))
        world.manifests()

    def s3(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def masters(self) -> list[Path]:
        return sorted(p for p in self.world.media.rglob("*") if p.is_file() or p.is_symlink())

    def command(self) -> list[str]:
        return [sys.executable, "-m", "reconciler", *self.world.cli_args(), "--parallel", "3",
                "-o", "jsonl"]  # fmt: skip

    def reconcile(self) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip

    def copy_bytes(self, platform: str, key: str) -> bytes:
        if platform == "BACKUP" and self.endpoint is not None:
            return self.s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return (self.world.root / "out" / platform.lower() / key).read_bytes()

    def published(self) -> list[bytes]:
        """Every object on every platform, decrypted where it is encrypted."""
        found = [p.read_bytes() for p in (self.world.root / "out").rglob("*") if p.is_file()]
        if self.endpoint is not None:
            listing = self.s3().list_objects_v2(Bucket=self.bucket).get("Contents", [])
            found += [self.copy_bytes("BACKUP", o["Key"]) for o in listing]
        return [self.plain(data) for data in found]

    def plain(self, data: bytes) -> bytes:
        if not data.startswith(b"RCNENC1\n"):
            return data
        sealed, opened = self.world.root / "sealed.tmp", self.world.root / "opened.tmp"
        sealed.write_bytes(data)
        decrypt_file(sealed, opened, bytes.fromhex(KEY_HEX))
        return opened.read_bytes()


class Faults:
    """Faults at random moments while a run goes on; swaps are undone after a short while."""

    def __init__(self, library: Library, seed: int) -> None:
        self.library = library
        self.rng = random.Random(seed)
        self.undo: list[Callable[[], None]] = []
        self.done: list[str] = []

    def run(self, process: subprocess.Popen[str], count: int) -> None:
        deadline = time.monotonic() + 20
        for _ in range(count):
            time.sleep(self.rng.uniform(0.0, 0.6))
            if process.poll() is not None or time.monotonic() > deadline:
                break
            self.inject(self.rng.choice(KINDS))
            if self.undo and self.rng.random() < 0.5:
                self.undo.pop(0)()

    def finish(self) -> None:
        while self.undo:
            self.undo.pop(0)()

    def inject(self, kind: str) -> None:
        candidates = [p for p in self.library.masters() if p.is_file() and not p.is_symlink()]
        if not candidates:
            return
        path = self.rng.choice(candidates)
        image = path.suffix == ".jpg"
        self.done.append(f"{kind} {path.name}")
        if kind == "rewrite":
            content = jpeg(self.rng) if image else blob(self.rng)
            if self.rng.random() < 0.5:
                with open(path, "r+b") as handle:  # in place: the same inode
                    handle.write(content)
                    handle.truncate()
            else:
                self._replace(path, lambda tmp: tmp.write_bytes(content))
        elif kind == "truncate":
            if image:  # an image cut short cannot be resized: rewrite it instead
                return self.inject("rewrite")
            os.truncate(path, self.rng.randint(0, path.stat().st_size - 1))
        elif kind in ("symlink", "fifo"):
            original = path.read_bytes()
            outside = self.library.outside
            swap = (lambda tmp: tmp.symlink_to(outside)) if kind == "symlink" else os.mkfifo
            self._replace(path, swap)
            self.undo.append(lambda: self._replace(path, lambda tmp: tmp.write_bytes(original)))
        elif kind == "delete":
            path.unlink()

    def _replace(self, path: Path, make: Callable[[Path], object]) -> None:
        tmp = path.with_name(f".swap-{uuid.uuid4().hex[:8]}")
        make(tmp)
        os.replace(tmp, path)


def check_converged(library: Library) -> None:
    world = library.world
    done = subprocess.run(library.command(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = world.plan()
    left = [(a.asset, a.platform, a.action, a.reason) for a in plan.actions
            if a.action not in ("noop", "orphan")]  # fmt: skip
    assert left == [], left[:5]
    assert rows(world, "SELECT count(*) FROM sync_conflicts WHERE resolution = 'pending'") == [
        (0,)
    ], rows(world, "SELECT conflict_type, source_value, target_value, notes FROM sync_conflicts")
    synced = rows(
        world,
        "SELECT sp.platform_code, pa.remote_key, pa.remote_checksum, pa.local_checksum, "
        "sa.file_path, sa.status FROM platform_assets pa "
        "JOIN sync_platforms sp ON sp.id = pa.platform_id "
        "JOIN source_assets sa ON sa.id = pa.source_asset_id WHERE pa.sync_status = 'synced'",
    )
    assert len(synced) >= IMAGES  # most of the library is there
    for platform, key, remote, local, master, status in synced:
        data = library.copy_bytes(platform, key)
        assert hashlib.sha256(data).hexdigest() == remote, (platform, key)
        if status != "active":  # a deleted master: its copy stays an orphan
            continue
        master_bytes = Path(master).read_bytes()
        assert hashlib.sha256(master_bytes).hexdigest() == local, (platform, key)
        if platform == "PLAIN":
            assert data == master_bytes, key
        elif platform == "BACKUP":
            assert library.plain(data) == master_bytes, key
        else:
            with Image.open(io.BytesIO(data)) as got:
                assert max(got.size) <= 32, key
    assert not any(MARKER in data for data in library.published())


def trials(tmp_path: Path, endpoint: str | None, seeds: range) -> None:
    library = Library(tmp_path, endpoint)
    first = subprocess.run(library.command(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    for seed in seeds:
        rng = random.Random(seed)
        for path in rng.sample(library.masters(), 40):  # work for the run: 40 updates
            path.write_bytes(jpeg(rng) if path.suffix == ".jpg" else blob(rng))
        faults = Faults(library, seed)
        process = library.reconcile()
        injector = threading.Thread(target=faults.run, args=(process, 8))
        injector.start()
        try:
            _, errors = process.communicate(timeout=300)
        finally:
            injector.join()
            faults.finish()
        assert "Traceback" not in errors, (faults.done, errors[-3000:])
        assert process.returncode in (0, 1, 3), (process.returncode, errors[-2000:])
        check_converged(library)


@pytest.mark.slow
def test_faults_during_applies_to_local_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULT_TEST_KEY", KEY_HEX)
    trials(tmp_path, None, range(4))


@pytest.mark.slow
def test_faults_during_applies_to_s3(
    tmp_path: Path, s3_endpoint: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULT_TEST_KEY", KEY_HEX)
    trials(tmp_path, s3_endpoint, range(100, 103))
