"""`insert_many` writes exactly what SQLAlchemy's own insert writes (JSON, dates, NULLs),
on the driver directly for SQLite, and falls back when the rows' keys differ."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, select

from shared.db import create_engine, insert_many

metadata = MetaData()
table = Table(
    "rows",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("name", String(32), nullable=True),
    Column("at", DateTime(), nullable=False),
    Column("payload", JSON, nullable=False),
)


def rows(first: int) -> list[dict[str, Any]]:
    return [
        {
            "position": first + n,
            "name": None if n % 2 else f"row {n} 'quoted'",
            "at": datetime(2026, 1, 2, 3, 4, 5, n * 1000),
            "payload": {"amount": "12.50", "tags": ["a", "é"], "n": n, "none": None},
            "not_a_column": n,  # left out, as SQLAlchemy's insert leaves it out
        }
        for n in range(5)
    ]


def stored(url: str, insert: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        insert(conn)
    with engine.connect() as conn:
        found = [tuple(row) for row in conn.execute(select(table).order_by(table.c.position))]
        raw = [tuple(row) for row in conn.exec_driver_sql("SELECT * FROM rows ORDER BY 1")]
    engine.dispose()
    return found + raw


def test_the_same_rows_as_sqlalchemys_insert(tmp_path: Path) -> None:
    ours = stored(f"sqlite:///{tmp_path / 'a.sqlite'}", lambda c: insert_many(c, table, rows(1)))
    theirs = stored(
        f"sqlite:///{tmp_path / 'b.sqlite'}", lambda c: c.execute(table.insert(), rows(1))
    )
    assert ours == theirs
    assert ours[0][3] == rows(1)[0]["payload"]


def test_rows_whose_keys_come_in_another_order(tmp_path: Path) -> None:
    mixed = rows(1)
    mixed[3] = dict(reversed(list(mixed[3].items())))
    ours = stored(f"sqlite:///{tmp_path / 'c.sqlite'}", lambda c: insert_many(c, table, mixed))
    theirs = stored(
        f"sqlite:///{tmp_path / 'd.sqlite'}", lambda c: c.execute(table.insert(), mixed)
    )
    assert ours == theirs


def test_rows_with_other_keys_go_through_sqlalchemy(tmp_path: Path) -> None:
    mixed = rows(1)
    mixed[2] = {k: v for k, v in mixed[2].items() if k != "name"} | {"nickname": "x"}
    errors = []
    for name, insert in (("ours", insert_many), ("theirs", None)):

        def run(conn: Any, insert: Any = insert) -> None:
            if insert is None:
                conn.execute(table.insert(), mixed)
            else:
                insert(conn, table, mixed)

        try:
            stored(f"sqlite:///{tmp_path / name}.sqlite", run)
        except Exception as error:  # noqa: BLE001 - compared below
            errors.append(type(error))
    assert len(errors) == 2 and errors[0] == errors[1]
