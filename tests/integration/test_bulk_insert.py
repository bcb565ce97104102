"""`insert_many`, the projections' bulk write (a raw executemany on SQLite, a COPY on
PostgreSQL), against SQLAlchemy's own insert as the oracle: the same rows read back,
whatever bytes the strings and JSON hold, and a failure that leaves nothing behind."""

from __future__ import annotations

import math
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

from shared.db import JsonDocument, create_engine, insert_many

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
    """The table the projections' way (bulk rows, `JsonDocument`) and SQLAlchemy's own."""

    def table(name: str, payload: Any) -> Table:
        return Table(
            name,
            metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("name", String(200), nullable=False),
            Column("note", String(200), nullable=True),
            Column("at", DateTime(), nullable=False),
            Column("payload", payload, nullable=False),
        )

    return table("bulk_fast", JsonDocument), table("bulk_oracle", JSON)


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


def test_json_documents_keep_what_json_dumps_keeps(engine: Any, database: str) -> None:
    """Big integers, a lone surrogate (which pydantic-core refuses: json.dumps writes it),
    line separators; NaN on SQLite (PostgreSQL's json refuses it either way)."""
    metadata = MetaData()
    fast, oracle = _tables(metadata)
    payloads: list[dict[str, Any]] = [
        {"big": 10**30, "neg": -(10**25)},
        {"lone": "\ud800", "ok": "é\u2028\u2029"},
        {"nested": [{"k": None, "t": True}, 1.5e-7, 0.1]},
    ]
    rows = [
        {"position": i, "name": "n", "note": None, "at": datetime(2026, 1, 1), "payload": p}
        for i, p in enumerate(payloads, 1)
    ]
    with engine.begin() as conn:
        metadata.create_all(conn)
        for row in rows:  # one by one too: SQLAlchemy's own insert with the new type
            conn.execute(fast.insert(), row)
            conn.execute(oracle.insert(), row)
    with engine.connect() as conn:
        got = [r.payload for r in conn.execute(select(fast).order_by(fast.c.position))]
        want = [r.payload for r in conn.execute(select(oracle).order_by(oracle.c.position))]
    assert got == want == payloads
    if database == "sqlite":
        with engine.begin() as conn:
            insert_many(conn, fast, [{**rows[0], "position": 9, "payload": {"x": math.nan}}])
        with engine.connect() as conn:
            value = conn.execute(select(fast.c.payload).where(fast.c.position == 9)).scalar()
        assert math.isnan(value["x"])
