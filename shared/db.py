"""The projections' database: SQLite files by default, PostgreSQL by URL.

Each service writes to its database from one dedicated thread through a synchronous
SQLAlchemy engine: a whole batch of events is one hop to that thread, not one hop per
statement (which an async driver costs), and there is only ever one writer. Queries run
on a second thread, so they never wait behind a batch (SQLite in WAL mode and PostgreSQL
both let readers work beside the writer).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Dialect,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    event,
)
from sqlalchemy import create_engine as sqlalchemy_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

#: Tables the projection runner itself keeps, beside each projection's own.
runner_metadata = MetaData()

positions = Table(
    "projection_positions",
    runner_metadata,
    Column("projection", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
)

skipped_events = Table(
    "projection_skipped_events",
    runner_metadata,
    Column("projection", String(64), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("event_type", String(128)),
    Column("reason", Text, nullable=False),
)

#: Async driver names people may configure, and the synchronous driver used instead.
SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
}

P = ParamSpec("P")
T = TypeVar("T")


def create_engine(url: str) -> Engine:
    parsed = make_url(url)
    parsed = parsed.set(drivername=SYNC_DRIVERS.get(parsed.drivername, parsed.drivername))
    if parsed.drivername != "sqlite":
        return sqlalchemy_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy_engine(parsed, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


class JsonDocument(TypeDecorator[Any]):
    """A JSON column written by pydantic-core's serialiser: the same JSON values as
    `json.dumps` (NaN and the infinities as its constants, big integers exact), several
    times faster on an event's payload, which every projection stores per event; what it
    refuses (a lone surrogate) goes to `json.dumps` as before. Read back as JSON is."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], str]:
        def process(value: Any) -> str:
            try:
                return to_json(value, inf_nan_mode="constants").decode()
            except PydanticSerializationError:
                return json.dumps(value)

        return process


@dataclass(frozen=True)
class _InsertPlan:
    sql: str
    keys: tuple[str, ...]
    #: The row's values in column order, as a tuple.
    values: Callable[[dict[str, Any]], tuple[Any, ...]]
    #: (position, bind processor) of the columns that have one (JSON, dates).
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]


_plans: dict[tuple[int, str, tuple[str, ...]], _InsertPlan] = {}


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys in one statement.

    On SQLite the statement goes to the driver as plain SQL (one executemany) with the
    columns' own bind processors applied (JSON, dates), instead of SQLAlchemy's per-row
    parameter handling, which cost more than the insert itself when a projection replays
    the log; on PostgreSQL (psycopg) the rows go in one COPY, where an executemany sends a
    statement per row. Other databases (and rows with differing keys) go through
    SQLAlchemy as before."""
    first = rows[0]
    dialect = conn.dialect
    fast = dialect.name == "sqlite" or (
        dialect.name == "postgresql" and dialect.driver == "psycopg"
    )
    if not fast or any(len(row) != len(first) for row in rows):
        conn.execute(table.insert(), rows)
        return
    plan = _plans.get((id(table), dialect.name, tuple(first)))
    if plan is None:
        # Keys that are not the table's columns are left out, as SQLAlchemy's insert does.
        keys = tuple(key for key in first if key in table.c)
        plan = _plan(conn, table, keys)
        _plans[(id(table), dialect.name, tuple(first))] = plan
    values, processed = plan.values, plan.processed
    try:
        if processed:
            params: list[Any] = []
            for row in rows:
                found = list(values(row))
                for index, process in processed:
                    found[index] = process(found[index])
                params.append(tuple(found))
        else:
            params = [values(row) for row in rows]
    except KeyError:  # as many keys, not the same ones
        conn.execute(table.insert(), rows)
        return
    if dialect.name == "sqlite":
        conn.exec_driver_sql(plan.sql, params)
    else:
        _copy(conn, plan.sql, params)


def _copy(conn: Connection, sql: str, params: list[Any]) -> None:
    """COPY on the connection's own psycopg connection, so inside its transaction; a
    driver error comes out as SQLAlchemy's, as from any other statement."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in params:
                copy.write_row(row)
    except conn.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(sql, None, error, conn.dialect.loaded_dbapi.Error) from error


def _plan(conn: Connection, table: Table, keys: tuple[str, ...]) -> _InsertPlan:
    dialect = conn.dialect
    quote = dialect.identifier_preparer
    columns = ", ".join(quote.quote(key) for key in keys)
    marks = ", ".join("?" for _ in keys)
    table_name = quote.format_table(table)
    sql = (
        f"INSERT INTO {table_name} ({columns}) VALUES ({marks})"
        if dialect.name == "sqlite"
        else f"COPY {table_name} ({columns}) FROM STDIN"
    )
    processors = [table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys]
    getter = itemgetter(*keys)
    values = getter if len(keys) > 1 else (lambda row: (getter(row),))
    return _InsertPlan(
        sql,
        keys,
        values,
        tuple((index, process) for index, process in enumerate(processors) if process),
    )


class Database:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-write")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-read")

    async def write(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work(connection, *args)` in one transaction, committed when it returns."""
        return await self._run(self._writer, self._in_transaction, work, *args)

    async def read(self, work: Callable[..., T], *args: Any) -> T:
        return await self._run(self._reader, self._connected, work, *args)

    async def _run(self, thread: ThreadPoolExecutor, runner: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(thread, runner, *args)

    def _in_transaction(self, work: Callable[..., T], *args: Any) -> T:
        with self.engine.begin() as conn:
            return work(conn, *args)

    def _connected(self, work: Callable[..., T], *args: Any) -> T:
        with self.engine.connect() as conn:
            return work(conn, *args)

    async def close(self) -> None:
        await self._run(self._writer, self.engine.dispose)
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)


__all__ = [
    "Connection",
    "Database",
    "JsonDocument",
    "insert_many",
    "positions",
    "runner_metadata",
    "skipped_events",
]
