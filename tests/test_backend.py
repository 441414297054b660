"""The state backend interface over a real state of each backend (a DuckDB file, a PostgreSQL
database): what the stages ask of the recorded state, answered by the implementation the
report commands use."""

from __future__ import annotations

import pytest

from reconciler.errors import StateError
from reconciler.model import EventStatus, EventType, Resolution
from reconciler.store.db import location, open_state
from reconciler.store.embedded import DuckDBState
from reconciler.store.events import EventRow

from helpers import created


def backend(state_at: str) -> DuckDBState:
    return DuckDBState(open_state(location(state_at), command="test"))


def test_before_anything_is_recorded_the_reports_answer_empty(state_at: str) -> None:
    state = backend(state_at)
    assert not state.exists() and state.schema_version() is None
    assert state.status().rows == [] and state.jobs().rows == []
    assert state.load_hashes() == {}
    assert not created(state_at)  # reading created nothing


def test_the_seed_sample_through_the_backend(state_at: str) -> None:
    state = backend(state_at)
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


def test_a_transaction_commits_together_or_not_at_all(state_at: str) -> None:
    state = backend(state_at)
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


def test_the_run_lock_names_its_holder_while_held(state_at: str) -> None:
    state = backend(state_at)
    state.load_sample()
    with state.session():
        holder = state.lock_holder()
        assert holder is not None and "test" in holder.describe()
