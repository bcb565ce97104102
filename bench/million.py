"""The big-log benchmarks, on a log of its own (1,000,000 events in the full run, built by
`bench.biglog` from the seed) and a nats-server of its own:

- every service replaying that log from zero in its own process (SQLite; the ledger also
  on PostgreSQL): events/s beside a raw nats-py fetch of the same log in its own process,
  and each one's peak memory beside the raw fetch process's;
- a portfolio report as of past times (reporting answers from its snapshots), beside the
  time a raw fetch takes just to read the log up to that point;
- a project's audit trail, beside a raw JetStream get of one message.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import datetime
from typing import Any

import nats

from bench import biglog, chain_verify
from bench.benchmarks import FULL, QUICK, SMOKE, Context, Service, Sizes, _fetch_in_own_process
from bench.ledger_replay import postgres_database
from bench.measure import cpu_seconds, peak_rss_kib
from bench.report import Row
from contracts.subjects import LOG_STREAM, SERVICES, Subjects
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import EventLog

SUBJECTS = Subjects()
REPLAY_TARGET_RATIO = 0.5
REPORT_TARGET_SECONDS = 3.0
AUDIT_TARGET_MS = 100.0
AS_OF_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
AUDIT_PROJECTS = 20
#: The big log's size in each mode of the harness.
BIG_LOG: dict[Sizes, int] = {FULL: 1_000_000, QUICK: 30_000, SMOKE: 2_000}


async def big_log(ctx: Context, target: int, progress: Any, log_line: Any) -> list[Row]:
    server = EmbeddedNats(ctx.work / "nats-big", port=0)
    url = server.start()
    try:
        nc = await nats.connect(url)
        try:
            return await _measure(ctx, target, url, nc, progress, log_line)
        finally:
            await nc.close()
    finally:
        server.stop()


async def _measure(
    ctx: Context, target: int, url: str, nc: Any, progress: Any, log_line: Any
) -> list[Row]:
    js = nc.jetstream(timeout=30)
    log = EventLog(js, SUBJECTS)
    await log.ensure_streams()
    started = time.perf_counter()
    builder = biglog.BigLog(target, ctx.seed)

    def written(count: int) -> None:
        if count % 100_000 < 512 or count == target:
            log_line(f"    {count:,} / {target:,} events written")

    total = await biglog.publish(js, builder.events(), written)
    log_line(
        f"  built and wrote {total:,} events ({builder.projects:,} projects) in "
        f"{time.perf_counter() - started:.0f} s"
    )
    raw = await _fetch_in_own_process(url, total)
    raw_rate = raw["messages"] / raw["seconds"]
    raw_rss = raw["peak_rss_kib"] / 1024
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        progress(row)

    add(await chain_verify.verify_row(url, total, raw_rate))

    for name in SERVICES:
        keep = name == "reporting"
        service, row, memory = await _replay(ctx, url, nc, name, {}, raw_rate, raw_rss, keep)
        add(row)
        add(memory)
        if keep:
            try:
                for extra in await _queries(ctx, nc, js, service, total, raw_rate):
                    add(extra)
            finally:
                service.stop()
    postgres = postgres_database("bench_big")
    try:
        env = {"PORTFOLIO_DATABASE_URL": postgres[1]}
        _, row, _ = await _replay(ctx, url, nc, "ledger", env, raw_rate, raw_rss, False, "pg")
        add(row)
    finally:
        postgres[0].cleanup()
    return rows


async def _replay(
    ctx: Context,
    url: str,
    nc: Any,
    name: str,
    env: dict[str, str],
    raw_rate: float,
    raw_rss: float,
    keep: bool,
    label: str = "sqlite",
) -> tuple[Service, Row, Row]:
    end = await EventLog(nc.jetstream(), SUBJECTS).last_position()
    service = Service(name, url, ctx.work / f"big-{name}-{label}", env=env)
    started = time.perf_counter()
    service.start()
    try:
        await service.wait_until(
            nc, lambda s: s["position"] >= end, timeout=max(300.0, end / 200), poll=0.5
        )
        seconds = time.perf_counter() - started
        rss = peak_rss_kib(service.pid) / 1024
        cpu = cpu_seconds(service.pid)
    except BaseException:
        service.stop()
        raise
    if not keep:
        service.stop()
    database = "PostgreSQL" if label == "pg" else "SQLite"
    rate = end / seconds
    row = Row(
        f"big-replay-{name}-{label}",
        f"{name} replay of the big log from process start, {database}",
        "ev/s",
        rate,
        "raw pull fetch of the same log, own process",
        raw_rate,
        target=f"≥ {REPLAY_TARGET_RATIO}x raw fetch" if name == "ledger" else "—",
        met=rate / raw_rate >= REPLAY_TARGET_RATIO if name == "ledger" else None,
        details={"events": end, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1)},
    )
    memory = Row(
        f"big-rss-{name}",
        f"{name} peak RSS replaying the big log",
        "MiB",
        rss,
        "raw fetch process peak RSS",
        raw_rss,
        higher_is_better=False,
        details={"events": end},
    )
    return service, row, memory


async def _queries(
    ctx: Context, nc: Any, js: Any, reporting: Service, total: int, raw_rate: float
) -> list[Row]:
    snapshots = await _wait_for_snapshots(nc, total)
    moments: list[tuple[int, datetime]] = []
    for fraction in AS_OF_FRACTIONS:
        position = max(1, int(total * fraction))
        moments.append((position, (await js.get_msg(LOG_STREAM, position)).time))
    timings = []
    for position, moment in moments:
        started = time.perf_counter()
        msg = await nc.request(
            SUBJECTS.query("reporting", "report"),
            json.dumps({"as_of": moment.isoformat()}).encode(),
            timeout=120,
        )
        seconds = time.perf_counter() - started
        answer = json.loads(msg.data)
        if "error" in answer:
            raise RuntimeError(f"report as of {moment}: {answer['error']}")
        timings.append((position, seconds))
    worst_position, worst = max(timings, key=lambda t: t[1])
    report = Row(
        "big-report-as-of",
        "portfolio report as of a past time (slowest of 5)",
        "s",
        worst,
        "raw fetch of the log up to that time",
        worst_position / raw_rate,
        target=f"≤ {REPORT_TARGET_SECONDS:g} s",
        met=worst <= REPORT_TARGET_SECONDS,
        higher_is_better=False,
        note=f"median {statistics.median(t for _, t in timings):.2f} s",
        details={
            "events": total,
            "timings": [{"position": p, "seconds": round(s, 3)} for p, s in timings],
            "snapshots": snapshots,
        },
    )

    projects = [f"BIG-{n:05d}" for n in range(0, max(1, total // biglog.EVENTS_PER_PROJECT), 97)]
    latencies, entries = [], 0
    for project_id in projects[:AUDIT_PROJECTS]:
        started = time.perf_counter()
        msg = await nc.request(
            SUBJECTS.query("reporting", "audit"),
            json.dumps({"project_id": project_id}).encode(),
            timeout=30,
        )
        latencies.append(time.perf_counter() - started)
        entries += len(json.loads(msg.data)["entries"])
    gets = []
    for position in range(1, total, max(1, total // AUDIT_PROJECTS)):
        started = time.perf_counter()
        await js.get_msg(LOG_STREAM, position)
        gets.append(time.perf_counter() - started)
    audit = Row(
        "big-audit-project",
        "a project's audit trail, median of 20 projects",
        "ms",
        statistics.median(latencies) * 1000,
        "raw JetStream get of one message",
        statistics.median(gets) * 1000,
        target=f"≤ {AUDIT_TARGET_MS:g} ms",
        met=statistics.median(latencies) * 1000 <= AUDIT_TARGET_MS,
        higher_is_better=False,
        note=f"max {max(latencies) * 1000:.0f} ms, {entries / len(latencies):.0f} entries each",
        details={"events": total, "projects": len(latencies)},
    )
    return [report, audit]


async def _wait_for_snapshots(nc: Any, total: int, timeout: float = 1800) -> dict[str, Any]:
    """Reporting folds its snapshots beside its projection: wait until they reach the log."""
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            msg = await nc.request(SUBJECTS.query("reporting", "snapshots"), b"", timeout=5)
            found = json.loads(msg.data)
            if found.get("folded_position", 0) >= total:
                return found
        except (nats.errors.NoRespondersError, TimeoutError):
            pass
        await asyncio.sleep(1)
    raise RuntimeError(f"snapshots never caught up: {found}")
