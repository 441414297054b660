"""Rendition claims across real processes sharing one cache folder: two workers racing for a
rendition make it once, a worker SIGKILLed while holding a claim blocks no one, sweeps never
remove what a live maker holds, and a symlink planted at a claim file is never followed.

Each worker is a ``python -c`` child running :meth:`RenditionCache.make` for real, with only
its render step replaced: it counts each make in a shared file, then waits for the test's
"go" before it writes its output. Its ``time.sleep`` leaves a mark, so the test knows when a
worker is polling for a claim held elsewhere."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.transforms import TransformError
from reconciler.transforms import claims as claims_module
from reconciler.transforms.recipe import recipe_for
from reconciler.transforms.renditions import RenditionCache

from helpers import payload_of

REPO = Path(__file__).resolve().parents[1]
RULES = {"resize_images": True, "max_dimension": 100}
PATIENCE = 60.0  # how long anything here waits before it calls it a hang

WORKER = r"""
import json, os, sys, time
from pathlib import Path
from reconciler.observe.payload import Payload
from reconciler.transforms import claims
from reconciler.transforms.recipe import recipe_for
from reconciler.transforms.renditions import RenditionCache

folder, master, shared = (Path(arg) for arg in sys.argv[1:4])
name, rules = sys.argv[4], json.loads(sys.argv[5])
claims.CLAIM_PATIENCE = float(sys.argv[6])
pause = time.sleep


def polling(seconds):  # only the claim's wait sleeps in make()
    (shared / f"waiting-{name}").touch()
    pause(seconds)


def render(self, recipe, payload, master_name, mime, media_root, manifests_dir, work, progress):
    with open(shared / "made", "a") as made:
        made.write(f"{name} {work.name}\n")
    while not (shared / "go").exists():
        pause(0.02)
    output = work / "media.jpg"
    output.write_bytes(f"made by {name}".encode())
    return output, {"maker": name}, None


time.sleep = polling
RenditionCache._render = render
fd = os.open(master, os.O_RDONLY)
payload = Payload(fd, os.fstat(fd).st_size, sys.argv[7], master.name)
recipe = recipe_for(rules, "image/jpeg", "cdn")
try:
    made = RenditionCache(folder).make(recipe, payload, master.name, "image/jpeg", folder, folder)
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
else:
    print(json.dumps({"cached": made.cached, "sha256": made.sha256, "path": str(made.path)}))
"""

HOLDER = r"""
import sys
from pathlib import Path
from reconciler.transforms.renditions import RenditionCache

cache = RenditionCache(Path(sys.argv[1]))
cache.private_folder()
with cache.claims.hold(sys.argv[2]) as held:
    print("held" if held else "not held", flush=True)
    sys.stdin.read()  # until the test closes it
"""


class Workers:
    """Start workers on one cache folder and master, and watch what they share."""

    def __init__(self, root: Path) -> None:
        self.cache = root / "cache"
        self.shared = root / "shared"
        self.shared.mkdir()
        self.master = root / "m.jpg"
        self.master.write_bytes(b"\xff\xd8 a master's bytes \xff\xd9")
        self.digest = hashlib.sha256(self.master.read_bytes()).hexdigest()
        recipe = recipe_for(RULES, "image/jpeg", "cdn")
        assert recipe is not None
        self.recipe = recipe
        self.rid = recipe.rendition_id(self.digest)
        self.started: list[subprocess.Popen[str]] = []

    def start(self, name: str, patience: float = PATIENCE) -> subprocess.Popen[str]:
        return self._child(WORKER, str(self.cache), str(self.master), str(self.shared), name,
                           json.dumps(RULES), str(patience), self.digest)  # fmt: skip

    def hold(self) -> subprocess.Popen[str]:
        """A process holding the rendition's claim until its stdin is closed."""
        holder = self._child(HOLDER, str(self.cache), self.rid, stdin=subprocess.PIPE)
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        return holder

    def _child(self, script: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
        paths = os.environ.get("PYTHONPATH", "")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), paths]))}
        child = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            env=env, stdin=stdin, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.started.append(child)
        return child

    def makes(self) -> list[str]:
        """The workers that entered the render step, in order."""
        made = self.shared / "made"
        return [line.split()[0] for line in made.read_text().splitlines()] if made.exists() else []

    def waiting(self, name: str) -> bool:
        return (self.shared / f"waiting-{name}").exists()

    def go(self) -> None:
        (self.shared / "go").touch()

    def result(self, worker: subprocess.Popen[str]) -> dict[str, object]:
        out, _ = worker.communicate(timeout=PATIENCE)
        assert worker.returncode == 0
        result: dict[str, object] = json.loads(out)
        return result

    def stop(self) -> None:
        for worker in self.started:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            for stream in (worker.stdin, worker.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_two_workers_racing_for_a_rendition_make_it_once(workers: Workers) -> None:
    a, b = workers.start("a"), workers.start("b")
    until(lambda: bool(workers.makes()), "a worker starts making the rendition")
    maker = workers.makes()[0]
    other = "b" if maker == "a" else "a"
    # the other worker finds the claim held and waits (without claims it would make it too)
    until(lambda: workers.waiting(other) or len(workers.makes()) > 1, "the other worker arrives")
    workers.go()
    results = {"a": workers.result(a), "b": workers.result(b)}
    assert workers.makes() == [maker]
    assert results[maker]["cached"] is False and results[other]["cached"] is True
    assert results[other]["sha256"] == results[maker]["sha256"]
    assert results[other]["path"] == results[maker]["path"]
    made = Path(str(results[maker]["path"]))
    assert made.read_bytes() == f"made by {maker}".encode()
    assert results[maker]["sha256"] == hashlib.sha256(made.read_bytes()).hexdigest()


def test_a_worker_killed_holding_a_claim_does_not_block_another(workers: Workers) -> None:
    killed = workers.start("killed")
    until(lambda: workers.makes() == ["killed"], "the first worker claims and starts making")
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(PATIENCE)
    assert not list(workers.cache.glob("*.json"))  # it finished nothing
    workers.go()
    # a claim left held would be a TransformError after this worker's patience
    result = workers.result(workers.start("next", patience=PATIENCE / 2))
    assert result.get("error") is None
    assert result["cached"] is False and workers.makes() == ["killed", "next"]
    assert Path(str(result["path"])).read_bytes() == b"made by next"
    # the killed worker's work folder is a dead one's: swept, its claim no longer held
    assert [w.name[:64] for w in (workers.cache / "tmp").iterdir()] == [workers.rid]
    RenditionCache(workers.cache).sweep_work(0)
    assert not list((workers.cache / "tmp").iterdir())


def test_sweeps_never_remove_what_a_live_worker_holds(workers: Workers) -> None:
    maker = workers.start("maker")
    until(lambda: workers.makes() == ["maker"], "the worker claims and starts making")
    cache = RenditionCache(workers.cache, max_bytes=0)
    (work,) = (workers.cache / "tmp").iterdir()
    claim = workers.cache / "claims" / f"{workers.rid}.lock"
    inode = claim.stat().st_ino
    cache.sweep_work(0)  # any age: the claim says it is in use
    cache.evict(keep=set())
    assert work.is_dir() and claim.stat().st_ino == inode
    workers.go()
    result = workers.result(maker)
    assert result.get("error") is None and result["cached"] is False
    assert cache.cached_ids() == {workers.rid}
    # a finished rendition claimed by another process now (checking it, remaking it) stays
    holder = workers.hold()
    assert cache.evict(keep=set()) == [] and cache.cached_ids() == {workers.rid}
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(PATIENCE) == 0
    # once nobody holds it, it is evicted over the bound and its claim file swept
    assert cache.evict(keep=set()) == [workers.rid]
    assert not claim.exists() and not list((workers.cache / "tmp").iterdir())


def test_a_claim_held_too_long_is_an_error_naming_the_rendition(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = workers.hold()
    monkeypatch.setattr(claims_module, "CLAIM_PATIENCE", 0.5)
    cache = RenditionCache(workers.cache)
    with pytest.raises(TransformError, match=f"rendition {workers.rid} is still claimed"):
        cache.make(workers.recipe, payload_of(workers.master, workers.digest),
                   workers.master.name, "image/jpeg", workers.cache, workers.cache)  # fmt: skip
    assert holder.poll() is None and cache.cached_ids() == set()


def test_a_symlink_at_a_claim_file_is_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claims_module, "CLAIM_PATIENCE", 5)  # a wait would be an error
    cache = RenditionCache(tmp_path / "cache")
    master = tmp_path / "m.jpg"
    master.write_bytes(b"a master's bytes")
    recipe = recipe_for(RULES, "image/jpeg", "cdn")
    assert recipe is not None
    rid = recipe.rendition_id(hashlib.sha256(master.read_bytes()).hexdigest())
    claims = cache.private_folder() / "claims"
    claims.mkdir()
    victim, absent = tmp_path / "victim", tmp_path / "absent"
    victim.write_bytes(b"precious")
    for target in (victim, absent):
        (claims / f"{rid}.lock").unlink(missing_ok=True)
        (claims / f"{rid}.lock").symlink_to(target)
        with pytest.raises(TransformError, match="symbolic link, which is never followed"):
            cache.make(recipe, payload_of(master), master.name, "image/jpeg", tmp_path, tmp_path)
        assert victim.read_bytes() == b"precious" and not absent.exists()
        assert cache.cached_ids() == set()
    cache.sweep_work(0)  # not a claim file it made: left alone, not followed
    assert (claims / f"{rid}.lock").is_symlink() and not absent.exists()


def test_a_symlinked_claims_folder_is_refused(tmp_path: Path) -> None:
    cache = RenditionCache(tmp_path / "cache")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (cache.private_folder() / "claims").symlink_to(elsewhere)
    with pytest.raises(TransformError, match="symbolic link"), cache.claims.hold("0" * 64):
        pass
    assert not list(elsewhere.iterdir())


def test_claim_files_are_private(tmp_path: Path) -> None:
    cache = RenditionCache(tmp_path / "cache")
    cache.private_folder()
    old = os.umask(0)  # the modes are the code's, not the umask's
    try:
        with cache.claims.hold("0" * 64) as held:
            assert held
    finally:
        os.umask(old)
    claims = cache.folder / "claims"
    assert claims.stat().st_mode & 0o777 == 0o700
    assert (claims / f"{'0' * 64}.lock").stat().st_mode & 0o777 == 0o600
