"""The state file as a file: one run lock whatever name reaches it, files left by a kill while
DuckDB created them, and truncated files (a read-only folder and a full disk: test_state_disk).

Everything here is real: DuckDB files, `python -m reconciler` subprocesses and kill -9.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from cli_process import one_error_line, reconcile
from planning import World

from reconciler.store.db import StateStore
from reconciler.store.records import load_sample
from reconciler.store.statefile import HEADERS_BYTES, never_held_data

HOLD_RUN_LOCK = """
import sys, time
from reconciler.store.db import StateStore
store = StateStore(sys.argv[1], command="reconcile apply")
with store.session():
    with store.writing():
        pass
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(path: Path, seconds: float = 60) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD_RUN_LOCK), str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def world_with_assets(root: Path, count: int = 3) -> World:
    world = World(root).platform("CDN").rule("R", "CDN")
    for n in range(count):
        world.asset(f"VID-{n:03d}", f"master {n}".encode() * 50)
    world.manifests()  # writes the manifest file
    return world


# -- one run lock per file, whatever its name ------------------------------------------------


def other_name(state: Path, how: str) -> Path:
    """Another name of the same state file."""
    if how == "symlink":
        link = state.parent.parent / "elsewhere" / "link.duckdb"
        link.parent.mkdir()
        link.symlink_to(state)
        return link
    if how == "dotdot":
        (state.parent / "sub").mkdir()
        return state.parent / "sub" / ".." / state.name
    if how == "symlinked-folder":
        folder = state.parent.parent / "state-link"
        folder.symlink_to(state.parent, target_is_directory=True)
        return folder / state.name
    assert how == "hardlink"
    link = state.parent.parent / "elsewhere" / "hard.duckdb"
    link.parent.mkdir()
    os.link(state, link)
    return link


@pytest.mark.parametrize("how", ["symlink", "dotdot", "symlinked-folder", "hardlink"])
@pytest.mark.parametrize("holder_uses_other_name", [False, True])
def test_two_names_of_one_state_file_share_its_run_lock(
    tmp_path: Path, how: str, holder_uses_other_name: bool
) -> None:
    state = tmp_path / "state" / "reconciler.duckdb"
    load_sample(StateStore(state))
    other = other_name(state, how)
    holding, contending = (other, state) if holder_uses_other_name else (state, other)
    before = state.read_bytes()
    holder = hold(holding)
    try:
        result = reconcile(
            "conflicts", "--state", str(contending), "--lock-timeout", "0.5",
            "resolve", "1", "--use", "ignore", "--by", "test",
        )  # fmt: skip
        line = one_error_line(result)
        assert line.startswith(f"error: the state file is locked by pid {holder.pid} "), line
        assert state.read_bytes() == before  # the second writer wrote nothing
    finally:
        holder.kill()
        holder.wait()
    done = reconcile(
        "conflicts", "--state", str(contending), "--lock-timeout", "5",
        "resolve", "1", "--use", "ignore", "--by", "test",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_two_applies_through_a_symlink_upload_each_copy_once(tmp_path: Path) -> None:
    """The issue's repro: `reconcile` through the state file and through a symlink to it,
    started together. One waits for the other, then finds nothing left to do."""
    world = world_with_assets(tmp_path, count=20)
    state = world.store.path
    state.parent.mkdir(parents=True)
    link = tmp_path / "link.duckdb"
    link.symlink_to(state)
    base = ["--manifests", str(world.manifests_dir), "--media-root", str(world.media)]
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "reconciler", *base, "--state", str(path), "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in (state, link)
    ]
    for run in runs:
        _out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    with duckdb.connect(str(state), read_only=True) as con:
        jobs = con.execute("SELECT count(*), count(DISTINCT asset_id) FROM sync_jobs").fetchone()
    assert jobs == (20, 20)  # not 40: the second run planned after the first had recorded


# -- a file left by a kill while DuckDB created it ------------------------------------------

CONNECT_THEN_WAIT = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("connected", flush=True)
time.sleep(60)
"""


def killed_after_connect(path: Path) -> bytes:
    """What DuckDB leaves when its process is killed (-9) right after creating a file."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CONNECT_THEN_WAIT, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.fixture(scope="module")
def headers(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    data = killed_after_connect(tmp_path_factory.mktemp("kill") / "new.duckdb")
    assert len(data) == HEADERS_BYTES  # DuckDB's headers, and nothing after them
    return data


@pytest.mark.parametrize(
    "cut", [None, 2 * 4096, 4096, 0], ids=["killed-after-connect", "8KiB", "4KiB", "empty"]
)
def test_a_file_left_while_duckdb_created_it_counts_as_none_and_is_replaced(
    tmp_path: Path, headers: bytes, cut: int | None
) -> None:
    world = world_with_assets(tmp_path)
    state = world.store.path
    state.parent.mkdir(parents=True)
    state.write_bytes(headers if cut is None else headers[:cut])
    assert never_held_data(state)

    status = reconcile("status", "--state", str(state))
    assert status.returncode == 0, status.stderr
    assert "no state file yet" in status.stderr
    planned = reconcile("--dry-run", *world.cli_args(), "-o", "json")
    assert planned.returncode == 0, planned.stderr
    assert '"create": 3' in planned.stdout

    applied = reconcile(*world.cli_args())  # a watch cycle does the same: it recovers
    assert applied.returncode == 0, applied.stderr
    with duckdb.connect(str(state), read_only=True) as con:
        synced = con.execute("SELECT count(*) FROM platform_assets WHERE sync_status = 'synced'")
        assert synced.fetchone() == (3,)
        (message,) = con.execute(
            "SELECT message FROM sync_events_log WHERE event_type = 'state_file_replaced'"
        ).fetchone()
    assert f"({len(headers) if cut is None else cut} bytes" in message
    assert not never_held_data(state)


KILLED_WHILE_CREATING = """
import sys, time
from pathlib import Path
from reconciler.store import statefile
from reconciler.store.migrations import migrate

def prepare(con):
    migrate(con, sys.argv[1])
    print("migrated", flush=True)
    time.sleep(60)

statefile.create(Path(sys.argv[1]), prepare, {"threads": 1})
"""


def test_a_kill_while_reconcile_creates_the_file_leaves_no_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state" / "reconciler.duckdb"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WHILE_CREATING, str(state)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "migrated"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not state.exists()  # only the temporary file (and its WAL) is left
    left = {p.name for p in state.parent.iterdir()}
    assert f".{state.name}.{proc.pid}.new" in left and not left & {state.name}
    loaded = reconcile("state", "load-sample", "--state", str(state))
    assert loaded.returncode == 0, loaded.stderr
    assert sorted(p.name for p in state.parent.iterdir()) == [state.name, f"{state.name}.lock"]


# -- a truncated file that held data ----------------------------------------------------------


@pytest.fixture(scope="module")
def synced_state(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("synced")
    world = world_with_assets(root, count=30)
    applied = reconcile(*world.cli_args())
    assert applied.returncode == 0, applied.stderr
    data = world.store.path.read_bytes()
    assert len(data) > HEADERS_BYTES
    return data


@pytest.mark.parametrize("keep", ["half", "first-database-header"])
def test_a_truncated_state_file_is_a_one_line_error_and_never_replaced(
    tmp_path: Path, synced_state: bytes, keep: str
) -> None:
    world = world_with_assets(tmp_path, count=30)
    state = world.store.path
    state.parent.mkdir(parents=True)
    cut = len(synced_state) // 2 if keep == "half" else 2 * 4096
    state.write_bytes(synced_state[:cut])
    assert not never_held_data(state)  # it held data: never treated as absent
    commands = [
        ["status", "--state", str(state)],
        ["events", "--state", str(state)],
        ["report", "distribution", "--state", str(state)],
        ["--dry-run", *world.cli_args()],
        [*world.cli_args()],
        ["conflicts", "--state", str(state), "resolve", "1", "--use", "ignore", "--by", "x"],
    ]
    for args in commands:
        line = one_error_line(reconcile(*args))
        assert f"the state file {state} is truncated or damaged" in line, (args, line)
        assert "Restore it from a backup" in line
        assert state.read_bytes() == synced_state[:cut], args  # not a byte changed


def test_a_symlinked_state_file_is_created_where_the_link_points(tmp_path: Path) -> None:
    real = tmp_path / "real" / "state.duckdb"
    real.parent.mkdir()
    link = tmp_path / "link.duckdb"
    link.symlink_to(real)  # dangling until the first write
    load_sample(StateStore(link))
    assert link.is_symlink() and real.is_file()
    assert (real.parent / "state.duckdb.lock").exists()
    assert not (tmp_path / "link.duckdb.lock").exists()
    shutil.rmtree(real.parent)


TRY_TO_WRITE = """
import sys, duckdb
try:
    duckdb.connect(sys.argv[1]).close()
except duckdb.IOException as exc:
    print("refused" if "Could not set lock" in str(exc) else exc)
else:
    print("opened")
"""


def test_releasing_the_run_lock_keeps_duckdbs_own_lock_of_this_process(tmp_path: Path) -> None:
    """Closing a descriptor of the file would drop every POSIX lock this process holds on it:
    DuckDB's lock of a connection still open must survive the end of a session."""
    store = StateStore(tmp_path / "state.duckdb")
    load_sample(store)
    with store.session():
        con = duckdb.connect(str(store.path))  # e.g. a reader in another thread
    try:
        other = subprocess.run(
            [sys.executable, "-c", TRY_TO_WRITE, str(store.path)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert other.stdout.strip() == "refused"
    finally:
        con.close()
    with store.session():  # the parked descriptor is closed now that nothing else is open
        pass
    assert not [
        name
        for name in os.listdir("/proc/self/fd")
        if os.path.realpath(f"/proc/self/fd/{name}") == str(store.real_path)
    ]
