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
REPLAY_TARGET_RATIO_PG = 0.35
RSS_TARGET_MIB = 300.0
#: Peak memory of a service replaying the largest log against the smallest (`--big-log-scaling`).
SCALING_TARGET_RATIO = 1.5
SNAPSHOT_TARGET_MB_PER_MILLION = 50.0
REPORT_TARGET_SECONDS = 1.0
AUDIT_TARGET_MS = 100.0
AS_OF_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: Each past time is that of the message this many before the position at a fraction
#: (a snapshot's, with the default interval), so that every report folds nearly a whole
#: interval after its snapshot: the worst case, every run. (The time of the snapshot's own
#: message, to the microsecond, fell before or after it as its nanoseconds rounded, and
#: with them the fold: 0 or 9,999 events.)
AS_OF_BEFORE = 1
AUDIT_PROJECTS = 20
#: The big log's size in each mode of the harness.
BIG_LOG: dict[Sizes, int] = {FULL: 1_000_000, QUICK: 30_000, SMOKE: 2_000}
#: Also replay logs of a quarter and a half of the size, for the memory scaling table.
SCALING = False
#: A portfolio report of thousands of projects is more than the default 1 MiB message: the
#: big log's server allows what a deployment of that size would configure.
SERVER_CONFIG = "max_payload: 8MB\n"


def _server(ctx: Context, name: str) -> EmbeddedNats:
    config = ctx.work / f"{name}.conf"
    config.write_text(SERVER_CONFIG)
    return EmbeddedNats(ctx.work / name, port=0, extra_args=("-c", str(config)))


async def big_log(ctx: Context, target: int, progress: Any, log_line: Any) -> list[Row]:
    smaller: list[tuple[int, dict[str, float]]] = []
    if SCALING:
        for size in (target // 4, target // 2):
            smaller.append((size, await _peak_memory(ctx, size, log_line)))
    server = _server(ctx, "nats-big")
    url = server.start()
    try:
        nc = await nats.connect(url)
        try:
            rows = await _measure(ctx, target, url, nc, progress, log_line)
        finally:
            await nc.close()
    finally:
        server.stop()
    if smaller:
        memory = [r for r in rows if r.key.startswith("big-rss-")]
        largest = {str(r.details["service"]): r.figure or 0.0 for r in memory}
        largest["raw fetch"] = memory[0].baseline or 0.0 if memory else 0.0
        for row in _scaling_rows(smaller, target, largest):
            rows.append(row)
            progress(row)
    return rows


async def _peak_memory(ctx: Context, size: int, log_line: Any) -> dict[str, float]:
    """Each service's peak RSS (MiB) replaying a log of `size`, and the raw fetch's."""
    server = _server(ctx, f"nats-big-{size}")
    url = server.start()
    try:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream(timeout=30)
            await EventLog(js, SUBJECTS).ensure_streams()
            total = await biglog.publish(js, biglog.BigLog(size, ctx.seed).events())
            raw = await _fetch_in_own_process(url, total)
            found = {"raw fetch": raw["peak_rss_kib"] / 1024}
            for name in SERVICES:
                _, _, memory = await _replay(
                    ctx, url, nc, name, {}, 1.0, found["raw fetch"], False, f"s{size}"
                )
                found[name] = memory.figure or 0.0
            log_line(
                f"  {size:,} events: peak RSS "
                + ", ".join(f"{k} {v:.0f} MiB" for k, v in found.items())
            )
            return found
        finally:
            await nc.close()
    finally:
        server.stop()


def _scaling_rows(
    smaller: list[tuple[int, dict[str, float]]], target: int, largest: dict[str, float]
) -> list[Row]:
    first_size, first = smaller[0]
    sizes = [first_size, *(size for size, _ in smaller[1:]), target]
    label = " / ".join(f"{n:,}" for n in sizes)
    rows = []
    raw_ratio = largest["raw fetch"] / first["raw fetch"]
    for name in SERVICES:
        if name not in largest or not first.get(name):
            continue
        series = [first[name], *(found[name] for _, found in smaller[1:]), largest[name]]
        ratio = series[-1] / series[0]
        rows.append(
            Row(
                f"big-scaling-{name}",
                f"{name} peak RSS growth, big log of {label} events",
                "x",
                ratio,
                "raw fetch process, same logs",
                raw_ratio,
                target=f"≤ {SCALING_TARGET_RATIO:g}x",
                met=ratio <= SCALING_TARGET_RATIO,
                higher_is_better=False,
                note=" / ".join(f"{v:.0f}" for v in series) + " MiB",
                details={"sizes": sizes, "peak_rss_mib": [round(v, 1) for v in series]},
            )
        )
    return rows


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
    wanted = REPLAY_TARGET_RATIO_PG if label == "pg" else REPLAY_TARGET_RATIO
    rate = end / seconds
    row = Row(
        f"big-replay-{name}-{label}",
        f"{name} replay of the big log from process start, {database}",
        "ev/s",
        rate,
        "raw pull fetch of the same log, own process",
        raw_rate,
        target=f"≥ {wanted}x raw fetch",
        met=rate / raw_rate >= wanted,
        note=f"{cpu / end * 1e6:,.0f} µs CPU per event",
        details={
            "events": end,
            "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu, 1),
            "service": name,
        },
    )
    memory = Row(
        f"big-rss-{name}",
        f"{name} peak RSS replaying the big log",
        "MiB",
        rss,
        "raw fetch process peak RSS",
        raw_rss,
        target=f"≤ {RSS_TARGET_MIB:g} MiB",
        met=rss <= RSS_TARGET_MIB,
        higher_is_better=False,
        details={"events": end, "service": name},
    )
    return service, row, memory


async def _queries(
    ctx: Context, nc: Any, js: Any, reporting: Service, total: int, raw_rate: float
) -> list[Row]:
    snapshots = await _wait_for_snapshots(nc, total)
    moments: list[tuple[int, datetime]] = []
    for fraction in AS_OF_FRACTIONS:
        position = max(1, int(total * fraction) - AS_OF_BEFORE)
        moments.append((position, (await js.get_msg(LOG_STREAM, position)).time))
    every = int(snapshots.get("every") or 0)
    timings = []
    cuts = []
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
        cut = int(answer["cut"]["position"])
        # The events folded from the log after the snapshot below the cut.
        cuts.append({"cut_position": cut, "after_snapshot": cut % every if every else cut})
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
        note=(
            f"median {statistics.median(t for _, t in timings):.2f} s, "
            f"{min(c['after_snapshot'] for c in cuts):,}-{max(c['after_snapshot'] for c in cuts):,}"
            " events folded after a snapshot"
        ),
        details={
            "events": total,
            "timings": [
                {"position": p, "seconds": round(s, 3), **cut}
                for (p, s), cut in zip(timings, cuts, strict=True)
            ],
            "snapshots": snapshots,
        },
    )

    per_million = snapshots.get("bytes", 0) / 1e6 * 1_000_000 / max(1, total)
    snapshot_row = Row(
        "big-snapshots",
        "report snapshots, MB per million events",
        "MB",
        per_million,
        "the log's own size per million events",
        await _log_megabytes(js) * 1_000_000 / max(1, total),
        target=f"≤ {SNAPSHOT_TARGET_MB_PER_MILLION:g} MB",
        met=per_million <= SNAPSHOT_TARGET_MB_PER_MILLION,
        higher_is_better=False,
        note=f"{snapshots.get('snapshots', 0)} snapshots, one every {snapshots.get('every', 0):,}",
        details={"events": total, **snapshots},
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
    return [report, snapshot_row, audit]


async def _log_megabytes(js: Any) -> float:
    return float((await js.stream_info(LOG_STREAM)).state.bytes) / 1e6


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
