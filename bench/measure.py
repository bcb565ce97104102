"""Load drivers shared by the baselines and the backend benchmarks, so both are measured
the same way: a fixed number in flight (throughput) or a fixed send rate (latency)."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats.errors

#: Returns whether the request got the answer it wanted (e.g. "accepted").
Send = Callable[[int], Awaitable[bool]]


@dataclass
class Run:
    count: int
    seconds: float
    failures: int
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile in milliseconds (q in 0..1)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


async def in_flight(send: Send, count: int, concurrency: int) -> Run:
    """Keep `concurrency` requests outstanding until `count` have been answered."""
    indexes = iter(range(count))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for index in indexes:
            if not await send(index):
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(count, time.perf_counter() - started, failures, [])


async def windows(send: Send, count: int, window: int) -> Run:
    """Fire `window` requests at once, wait for all of them, repeat (async publish)."""
    failures = 0
    started = time.perf_counter()
    for first in range(0, count, window):
        answers = await asyncio.gather(*(send(i) for i in range(first, min(count, first + window))))
        failures += answers.count(False)
    return Run(count, time.perf_counter() - started, failures, [])


async def open_loop(send: Send, count: int, rate: float) -> Run:
    """Send at fixed intervals whatever the answers do, and time each answer from the moment
    it was due, so a slow reply delays no later send (no coordinated omission)."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    latencies: list[float] = []
    failures = 0

    async def one(index: int, due: float) -> None:
        nonlocal failures
        try:
            ok = await send(index)
        except (TimeoutError, nats.errors.Error):
            ok = False
        # A timed-out request counts with the time waited: leaving it out would flatter p99.
        latencies.append(loop.time() - due)
        failures += not ok

    tasks = []
    first = loop.time() + 0.01
    for index in range(count):
        due = first + index * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    return Run(count, loop.time() - first, failures, latencies)


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time the process has used: tells busy from waiting."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int | str = "self") -> int:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0
