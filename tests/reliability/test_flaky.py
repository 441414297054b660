"""A flaky platform: the real local driver behind a wrapper that injects temporary failures
(30 %) and permanent failures (5 %) with a fixed seed. Every temporary failure must converge
within the retry limit with a retry event each; every permanent one must fail fast with its
message; nothing else may be disturbed."""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from pathlib import Path
from typing import ClassVar

import pytest
from planning import World
from test_apply import apply, rows

import reconciler.apply.run as apply_module
from reconciler.apply.run import ApplyOptions
from reconciler.drivers.base import PermanentError, TemporaryError, Uploaded
from reconciler.drivers.local import LocalDriver
from reconciler.observe.payload import Payload
from reconciler.observe.sources import sha256_file

SEED = 2026
ASSETS = 40
TEMPORARY, PERMANENT = 0.30, 0.05


def draw(key: str, attempt: int) -> float:
    """A fixed pseudo-random number per (seed, key, attempt), whatever the thread order."""
    digest = hashlib.sha256(f"{SEED}:{key}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Injecting(LocalDriver):
    lock = threading.Lock()
    attempts: ClassVar[dict[str, list[str]]] = defaultdict(list)

    def upload(self, source: Payload, key: str, metadata: dict, progress=None) -> Uploaded:
        with Injecting.lock:
            attempt = len(Injecting.attempts[key])
            roll = draw(key, attempt)
            outcome = (
                "permanent"
                if roll < PERMANENT
                else "temporary"
                if roll < PERMANENT + TEMPORARY
                else "ok"
            )
            Injecting.attempts[key].append(outcome)
        if outcome == "permanent":
            raise PermanentError(f"injected permanent failure for {key}")
        if outcome == "temporary":
            raise TemporaryError(f"injected temporary failure for {key}")
        return super().upload(source, key, metadata, progress)


@pytest.mark.slow
def test_flaky_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apply_module, "driver_for", lambda platform, *_: Injecting(platform))
    Injecting.attempts.clear()
    world = World(tmp_path).platform("FLAKY").rule("R", "FLAKY")
    for i in range(ASSETS):
        world.asset(f"VID-{i:02d}", f"master {i}".encode() * 100)
    options = ApplyOptions(parallel=4, max_attempts=5, backoff_base=0.001, backoff_max=0.01)
    result = apply(world, options)

    injected = dict(Injecting.attempts)
    permanent = {k for k, seen in injected.items() if "permanent" in seen}
    temporaries = sum(seen.count("temporary") for seen in injected.values())
    assert permanent and temporaries >= ASSETS * 0.2  # the seed does exercise both
    assert len(injected) == ASSETS

    jobs = {j.key: j for j in result.jobs}
    for key, seen in injected.items():
        job = jobs[key]
        if "permanent" in seen:
            # fails fast: nothing is tried after the permanent failure
            assert seen[-1] == "permanent"
            assert job.status == "failed"
            assert job.error == f"injected permanent failure for {key}"
            assert job.retries == seen.count("temporary")
        else:
            assert seen[-1] == "ok" and job.status == "completed"
            assert job.retries == seen.count("temporary") <= options.max_attempts - 1

    recorded = rows(
        world,
        "SELECT j.remote_key, j.status, j.retry_count, j.error_message, "
        "(SELECT count(*) FROM sync_events_log e WHERE e.job_id = j.id AND "
        "e.event_type = 'retry') FROM sync_jobs j",
    )
    assert len(recorded) == ASSETS
    for key, status, retry_count, error, retry_events in recorded:
        seen = injected[key]
        assert retry_count == retry_events == seen.count("temporary")
        if "permanent" in seen:
            assert status == "failed" and error == f"injected permanent failure for {key}"
        else:
            assert status == "completed" and error is None

    # nothing else is disturbed: every other copy landed whole, failed ones left nothing
    target = world.root / "out" / "flaky"
    for i in range(ASSETS):
        key = f"vid-{i:02d}.mp4"
        copy = target / key
        if key in permanent:
            assert not copy.exists()
        else:
            assert sha256_file(copy) == sha256_file(world.media / f"vid-{i:02d}.mp4")
    assert [p for p in target.rglob("*.part")] == []
    assert int(result.exit_code) == 3
