"""The run lock of a PostgreSQL state as a lease (issue 16), against a real PostgreSQL: one
session at a time and re-entrant within a process, its holder shown by `reconcile state
info`, a live holder waited for and named on --lock-timeout, a heartbeat that keeps a long
session (and a long write) alive past many TTLs, and a holder stopped inside a write
transaction that lets the lease go after its TTL and writes nothing when it wakes.

The holders are second processes (tests/leaseholder.py); the commands that wait for them are
real `reconcile` subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import one_error_line, reconcile
from leasekit import execute, lease, query, with_ttl, world_args
from planning import World

from reconciler.errors import LockTimeout
from reconciler.store.pg import PgLocation
from reconciler.store.postgres import PgStore

HOLDER = Path(__file__).with_name("leaseholder.py")
TTL = 2.0


class Holder:
    """tests/leaseholder.py in a subprocess, once it says it is there."""

    def __init__(self, url: str, mode: str, seconds: float, command: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HOLDER), url, mode, str(seconds), command],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.first = self.process.stdout.readline().strip()

    @property
    def pid(self) -> int:
        return self.process.pid

    def rest(self, timeout: float = 60) -> str:
        out, _ = self.process.communicate(timeout=timeout)
        return out.strip()

    def end(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    made: list[Holder] = []
    yield made
    for holder in made:
        holder.end()


def hold(made: list[Holder], url: str, mode: str, seconds: float, command: str) -> Holder:
    holder = Holder(url, mode, seconds, command)
    made.append(holder)
    assert holder.first in ("held", "inside"), holder.first
    return holder


def tiny_world(tmp_path: Path) -> World:
    world = World(tmp_path).platform("NAS").rule("TO-NAS", "NAS").asset("VID-A", b"a video")
    world.manifests()
    return world


def store(url: str, timeout: float = 30.0, command: str = "test") -> PgStore:
    return PgStore(PgLocation.parse(url), lock_timeout=timeout, command=command)


def test_a_session_is_reentrant_and_released_at_its_outermost_end(pg_url: str) -> None:
    url = with_ttl(pg_url, TTL)
    first = store(url)
    with first.session():
        token = lease(url)["token"]
        with first.session(), first.writing():
            pass
        with first.writing():  # an inner session's end did not release the lease
            pass
        row = lease(url)
        assert (row["token"], row["released"], row["pid"]) == (token, False, os.getpid())
        with pytest.raises(LockTimeout), store(url, timeout=0.5).session():
            pass  # another store (another command) waits for it
    assert lease(url)["released"] is True
    with store(url, timeout=0.5).session():
        assert lease(url)["token"] == token + 1  # free at once, with the next token


def test_state_info_names_the_holder_host_pid_command_and_heartbeat(
    pg_url: str, holders: list[Holder]
) -> None:
    url = with_ttl(pg_url, TTL)
    holder = hold(holders, url, "session", 30, "reconcile watch")
    shown = reconcile("state", "info", "--state", url)
    assert shown.returncode == 0, shown.stderr
    (line,) = [x for x in shown.stdout.splitlines() if x.startswith("lock: ")]
    row = lease(url)
    assert f"pid {holder.pid} (reconcile watch, since " in line
    assert f"last heartbeat {row['heartbeat_at']:%Y-%m-%d %H:%M}" in line
    assert row["host"] == socket.gethostname()
    # a holder on another host is named with its host
    execute(url, "UPDATE run_lease SET host = 'ci-runner-7' WHERE name = 'run'")
    time.sleep(TTL / 4 + 0.3)  # a heartbeat in between does not touch the host
    line = reconcile("state", "info", "--state", url).stdout.splitlines()[-1]
    assert line.startswith(f"lock: held by pid {holder.pid} on ci-runner-7 (reconcile watch")
    holder.end()
    line = reconcile("state", "info", "--state", url).stdout.splitlines()[-1]
    assert line.startswith("lock: held by")  # killed: the record stays until a takeover


def test_a_live_holder_is_waited_for_and_lock_timeout_names_it(
    pg_url: str, holders: list[Holder], tmp_path: Path
) -> None:
    url = with_ttl(pg_url, TTL)
    args = world_args(tiny_world(tmp_path), url)
    holder = hold(holders, url, "session", 30, "reconcile --parallel 8")
    started = time.monotonic()
    refused = reconcile(*args, "--lock-timeout", "3")
    waited = time.monotonic() - started
    line = one_error_line(refused)
    assert 3 <= waited < 10, waited
    assert f"is locked by pid {holder.pid} (reconcile --parallel 8, since " in line
    assert "last heartbeat" in line and "gave up after 3 s" in line, line
    assert lease(url)["pid"] == holder.pid  # 3 s is more than the TTL: still not taken over
    holder.end()


def test_a_command_waiting_for_a_live_holder_goes_on_once_it_is_done(
    pg_url: str, holders: list[Holder], tmp_path: Path
) -> None:
    url = with_ttl(pg_url, TTL)
    holder = hold(holders, url, "session", 3, "reconcile")
    started = time.monotonic()
    waited_for = reconcile(*world_args(tiny_world(tmp_path), url), "--lock-timeout", "20")
    took = time.monotonic() - started
    assert holder.rest() == "done"
    assert waited_for.returncode == 0, waited_for.stderr
    assert 1.5 <= took < 15, took
    row = lease(url)
    assert row["released"] is True and row["pid"] != holder.pid
    taken = query(url, "SELECT count(*) FROM sync_events_log WHERE event_type = 'lock_takeover'")
    assert taken == [(0,)]  # released, not taken over


@pytest.mark.parametrize("mode", ["session", "write"])
def test_the_heartbeat_keeps_a_long_session_alive_past_many_ttls(
    pg_url: str, holders: list[Holder], mode: str
) -> None:
    """4 TTLs of holding, as a whole session or as one long write transaction: the heartbeat
    renews the lease all along, and a command that waits the whole time does not take it."""
    url = with_ttl(pg_url, TTL)
    holder = hold(holders, url, mode, 4 * TTL, f"reconcile ({mode})")
    token = lease(url)["token"]
    beats = set()
    waiting = subprocess.Popen(
        [sys.executable, "-c", WAITER, url, str(3 * TTL)], stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 3.5 * TTL
    while time.monotonic() < deadline:
        (age, beat) = query(
            url,
            "SELECT extract(epoch FROM (clock_timestamp() AT TIME ZONE 'UTC') - heartbeat_at), "
            "heartbeat_at FROM run_lease",
        )[0]
        assert float(age) < TTL, f"the heartbeat is {age} s old, more than the TTL"
        beats.add(beat)
        time.sleep(0.1)
    out, _ = waiting.communicate(timeout=30)
    assert out.strip() == "LockTimeout", out
    assert len(beats) >= 10  # renewed every quarter TTL
    assert lease(url)["token"] == token and lease(url)["pid"] == holder.pid
    assert holder.rest() == "done"


WAITER = """
import sys
from reconciler.errors import LockTimeout
from reconciler.store.pg import PgLocation
from reconciler.store.postgres import PgStore
try:
    with PgStore(PgLocation.parse(sys.argv[1]), lock_timeout=float(sys.argv[2])).session():
        print("took it")
except LockTimeout:
    print("LockTimeout")
"""


def test_a_holder_stopped_inside_a_write_transaction_loses_the_lease_after_its_ttl(
    pg_url: str, holders: list[Holder]
) -> None:
    """SIGSTOP inside a write: PostgreSQL ends its session after the TTL
    (idle_in_transaction_session_timeout), which frees the lease's row for a takeover; woken
    up, the holder commits nothing and says it lost the lease."""
    url = with_ttl(pg_url, TTL)
    holder = hold(holders, url, "inside", 3 * TTL, "reconcile")
    os.kill(holder.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    taker = store(url, timeout=4 * TTL, command="reconcile (B)")
    with taker.session():
        took = time.monotonic() - stopped
        assert took <= TTL + 2, took
        with taker.writing() as con:
            rows = con.execute(
                "SELECT message, details FROM sync_events_log ORDER BY id"
            ).fetchall()
        os.kill(holder.pid, signal.SIGCONT)
        said = holder.rest()
    assert [r[0] for r in rows if r[0] == "written inside"] == []
    assert [r[0].split(",")[0] for r in rows] == [
        f"took over the run lock of pid {holder.pid} on {socket.gethostname()} (reconcile"
    ]
    assert said.startswith("error: LeaseLost: this run lost its lock on "), said
    final = query(url, "SELECT message FROM sync_events_log")
    assert ("written inside",) not in final


def test_the_heartbeat_comes_back_after_its_connection_is_cut(
    pg_url: str, holders: list[Holder]
) -> None:
    """A server restart or a network blip ends the heartbeat's session: the next beat
    connects again, so a live holder does not lose its lease to the first command that
    comes along after a TTL."""
    url = with_ttl(pg_url, TTL)
    holder = hold(holders, url, "session", 4 * TTL, "reconcile (cut)")
    cut = query(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'reconcile (cut) (run lock)'",
    )
    assert cut == [(True,)]
    deadline = time.monotonic() + 2.5 * TTL
    while time.monotonic() < deadline:
        age = query(
            url,
            "SELECT extract(epoch FROM (clock_timestamp() AT TIME ZONE 'UTC') - heartbeat_at) "
            "FROM run_lease",
        )[0][0]
        assert float(age) < TTL, f"the heartbeat is {age} s old, more than the TTL"
        time.sleep(0.1)
    assert holder.rest() == "done"
