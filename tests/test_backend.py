"""The state backend interface over a real DuckDB file: what the stages ask of the recorded
state, answered by the embedded implementation the report commands use."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import StateError
from reconciler.model import EventStatus, EventType, Resolution
from reconciler.store.db import StateStore
from reconciler.store.embedded import DuckDBState
from reconciler.store.events import EventRow


def state_at(tmp_path: Path) -> DuckDBState:
    return DuckDBState(StateStore(tmp_path / "state" / "s.duckdb", command="test"))


def test_before_anything_is_recorded_the_reports_answer_empty(tmp_path: Path) -> None:
    state = state_at(tmp_path)
    assert not state.exists() and state.schema_version() is None
    assert state.status().rows == [] and state.jobs().rows == []
    assert state.load_hashes() == {}
    assert not (tmp_path / "state" / "s.duckdb").exists()  # reading created nothing


def test_the_seed_sample_through_the_backend(tmp_path: Path) -> None:
    state = state_at(tmp_path)
    counts = state.load_sample()
    assert counts["sync_platforms"] == 6 and state.exists()
    assert state.schema_version() is not None
    status = {row["platform_code"]: row for row in state.status().records()}
    assert status["SOCIAL-MEDIA"]["conflicts"] == 1  # the seed's one open conflict
    assert status["CDN-PRIMARY"]["up_to_date"] == 2
    (conflict,) = state.conflicts().records()
    resolved = state.resolve_conflict(conflict["id"], "target", "alice", "kept theirs")
    assert resolved.resolution == Resolution.USE_TARGET and resolved.resolved_by == "alice"
    assert state.conflicts().rows == []
    assert len(state.conflicts(include_resolved=True).rows) == 1
    with pytest.raises(StateError):
        state.resolve_conflict(conflict["id"], "source", "bob")  # already closed


def test_a_transaction_commits_together_or_not_at_all(tmp_path: Path) -> None:
    state = state_at(tmp_path)
    state.load_sample()
    before = len(state.events(limit=1000).rows)
    row = EventRow(EventType.VERIFICATION, EventStatus.SUCCESS, "checked by a test")
    with state.transaction() as tx:
        (event_id,) = tx.insert_events([row])
    assert isinstance(event_id, int)
    assert len(state.events(limit=1000).rows) == before + 1
    with pytest.raises(RuntimeError), state.transaction() as tx:
        tx.insert_events([row, row])
        raise RuntimeError("the run died mid-transaction")
    assert len(state.events(limit=1000).rows) == before + 1


def test_the_run_lock_names_its_holder_while_held(tmp_path: Path) -> None:
    state = state_at(tmp_path)
    state.load_sample()
    with state.session():
        holder = state.lock_holder()
        assert holder is not None and "test" in holder.describe()
