"""Database engines for projections: SQLite files by default, any SQLAlchemy async URL else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True)
