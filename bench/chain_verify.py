"""`portfolio audit --verify` on a big log, beside a raw nats-py fetch of the same log.

`verify_chain` (shared/chain.py) reads every stored event and recomputes its hash from
canonical JSON, the aggregate links and the log-wide head: events/s of the whole walk,
divided by the raw pull fetch rate of the same log (own process). The log is the
generated portfolio of bench/biglog.py, written sealed as the portfolio's writers seal it.
"""

from __future__ import annotations

import time
from typing import Any

import nats

from bench import biglog
from bench.benchmarks import FULL, QUICK, SMOKE, Context, Sizes, _fetch_in_own_process
from bench.report import Row
from contracts.subjects import Subjects
from shared.chain import verify_chain
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import EventLog

#: Events of the standalone group's log, by size (the big-log group verifies its own log).
VERIFY_LOG: dict[Sizes, int] = {FULL: 200_000, QUICK: 20_000, SMOKE: 2_000}
SUBJECTS = Subjects()


async def verify_row(url: str, total: int, raw_rate: float) -> Row:
    """Verify the log at `url` once; the row beside the raw fetch rate measured on it."""
    nc = await nats.connect(url)
    try:
        log = EventLog(nc.jetstream(timeout=30), SUBJECTS)
        started = time.perf_counter()
        result = await verify_chain(log)
        seconds = time.perf_counter() - started
    finally:
        await nc.close()
    if result.broken is not None:
        raise RuntimeError(f"the benchmark's log does not verify: {result.broken}")
    return Row(
        key="verify-chain",
        name=f"audit --verify: the hash chain over {result.checked:,} events",
        unit="events/s",
        figure=result.checked / seconds,
        baseline_name="raw pull fetch of the same log, own process",
        baseline=raw_rate,
        target="—",
        details={"events": result.checked, "seconds": round(seconds, 2), "head": result.head},
    )


async def verify_benchmarks(ctx: Context, size: int, progress: Any) -> list[Row]:
    """The standalone group: its own nats-server and generated log."""
    server = EmbeddedNats(ctx.work / "nats-verify", port=0)
    url = server.start()
    try:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream(timeout=30)
            await EventLog(js, SUBJECTS).ensure_streams()
            total = await biglog.publish(js, biglog.BigLog(size, ctx.seed).events())
        finally:
            await nc.close()
        raw = await _fetch_in_own_process(url, total)
        row = await verify_row(url, total, raw["messages"] / raw["seconds"])
        progress(row)
        return [row]
    finally:
        server.stop()
