"""The PostgreSQL state's address and SQL: what `--state postgresql://...` accepts and refuses,
and how the store's DuckDB-style placeholders reach psycopg."""

from __future__ import annotations

import pytest

from reconciler.errors import StateError
from reconciler.store.db import location, state_name
from reconciler.store.pg import PgLocation, translate


def test_a_url_is_a_postgresql_state_and_anything_else_a_file() -> None:
    found = location("postgresql://ci@db.example.com:5433/media?schema=team_a&sslmode=require")
    assert isinstance(found, PgLocation)
    assert found.schema == "team_a"
    assert "sslmode=require" in found.conninfo and "schema" not in found.conninfo
    assert state_name(found) == "postgresql://ci@db.example.com:5433/media (schema team_a)"
    assert str(location("state/x.duckdb")) == "state/x.duckdb"
    assert isinstance(location("POSTGRES://h/db"), PgLocation)


def test_a_password_in_the_url_is_refused_and_never_repeated() -> None:
    with pytest.raises(StateError) as caught:
        PgLocation.parse("postgresql://ci:hunter2@db/media")
    assert "hunter2" not in str(caught.value)
    assert "PGPASSWORD" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ci@db/media?schema=Robert');DROP",
        "postgresql://ci@db/media?schema=",
        "postgresql://ci@db/media?lease_ttl=0",
        "postgresql://ci@db/media?lease_ttl=nan",
        "postgresql://",
    ],
)
def test_a_bad_schema_ttl_or_address_is_refused(url: str) -> None:
    with pytest.raises(StateError):
        PgLocation.parse(url)


def test_the_password_comes_from_the_variable_the_url_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where = PgLocation.parse("postgresql://ci@db/media?password_env=CI_DB_PASSWORD")
    monkeypatch.delenv("CI_DB_PASSWORD", raising=False)
    with pytest.raises(StateError, match=r"\$CI_DB_PASSWORD"):
        where.password()
    monkeypatch.setenv("CI_DB_PASSWORD", "s3cret")
    assert where.password() == "s3cret"
    assert "s3cret" not in where.describe() and "password_env" not in where.conninfo


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT ? + 1", "SELECT %s + 1"),
        ("WHERE a = $asset OR $asset IS NULL", "WHERE a = %(asset)s OR %(asset)s IS NULL"),
        ("SELECT '?', '50%' , ? LIKE 'a%'", "SELECT '?', '50%%' , %s LIKE 'a%%'"),
        ("SELECT 5 % 2, ?", "SELECT 5 %% 2, %s"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),
    ],
)
def test_placeholders_become_psycopg_ones_outside_quoted_text(sql: str, expected: str) -> None:
    assert translate(sql, True) == expected


def test_sql_without_parameters_is_left_as_it_is() -> None:
    assert translate("SELECT 5 % 2 WHERE x = '?'", False) == "SELECT 5 % 2 WHERE x = '?'"


def test_quoted_text_reaches_the_server_as_written(pg_url: str) -> None:
    from reconciler.store.pg import connect

    con = connect(PgLocation.parse(pg_url))
    try:
        row = con.execute("SELECT '50%', '?', 'it''s', ?, 7 % 4", ["$x"]).fetchone()
    finally:
        con.close()
    assert row == ("50%", "?", "it's", "$x", 3)
