"""`insert_many`, the projections' bulk write (a raw executemany on SQLite, a COPY on
PostgreSQL), against SQLAlchemy's own insert as the oracle: the same rows read back,
whatever bytes the strings and JSON hold, and a failure that leaves nothing behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.exc import DBAPIError

from shared.db import create_engine, insert_many

# NUL is refused by PostgreSQL's text in every form: not a bulk-insert matter.
TEXT = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=40)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
ROW = st.fixed_dictionaries(
    {
        "name": TEXT,
        "note": st.none() | TEXT,
        "at": st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
        "payload": st.dictionaries(TEXT, JSONISH, max_size=5),
    }
)


def _tables(metadata: MetaData) -> tuple[Table, Table]:
    def table(name: str) -> Table:
        return Table(
            name,
            metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("name", String(200), nullable=False),
            Column("note", String(200), nullable=True),
            Column("at", DateTime(), nullable=False),
            Column("payload", JSON, nullable=False),
        )

    return table("bulk_fast"), table("bulk_oracle")


@pytest.fixture
def engine(database: str, tmp_path: Path) -> Iterator[Any]:
    url = os.environ["PORTFOLIO_DATABASE_URL"] if database == "postgresql" else ""
    engine = create_engine(url or f"sqlite:///{tmp_path / 'bulk.db'}")
    yield engine
    engine.dispose()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(ROW, min_size=1, max_size=30))
def test_bulk_rows_read_back_as_sqlalchemy_writes_them(
    engine: Any, rows: list[dict[str, Any]]
) -> None:
    metadata = MetaData()
    fast, oracle = _tables(metadata)
    numbered = [{"position": i, **row} for i, row in enumerate(rows, 1)]
    with engine.begin() as conn:
        metadata.drop_all(conn)
        metadata.create_all(conn)
        insert_many(conn, fast, numbered)
        conn.execute(oracle.insert(), numbered)
    with engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(select(fast).order_by(fast.c.position))]
        want = [tuple(r) for r in conn.execute(select(oracle).order_by(oracle.c.position))]
    assert got == want
    assert [r[4] for r in got] == [row["payload"] for row in rows]


def test_a_failed_bulk_insert_is_a_database_error_and_leaves_nothing(engine: Any) -> None:
    metadata = MetaData()
    fast, _ = _tables(metadata)
    row: dict[str, Any] = {"name": "a", "note": None, "at": datetime(2026, 1, 1), "payload": {}}
    with engine.begin() as conn:
        metadata.create_all(conn)
    with pytest.raises(DBAPIError), engine.begin() as conn:
        insert_many(conn, fast, [{"position": 1, **row}, {"position": 1, **row}])
    with engine.connect() as conn:
        assert conn.execute(select(fast)).all() == []
    with engine.begin() as conn:  # the connection is usable after the failure
        insert_many(conn, fast, [{"position": 2, **row}])
    with engine.connect() as conn:
        assert [r.position for r in conn.execute(select(fast))] == [2]
