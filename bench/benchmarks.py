"""The backend's figures: intake (request/reply throughput and latency, the inbox) and a
projection replay, each with the service in its own process as it runs in production."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from bench.generator import Generator
from bench.measure import Run, cpu_seconds, in_flight, open_loop, peak_rss_kib, windows
from bench.report import Baseline, Row, skipped
from contracts.base import EventEnvelope
from contracts.projects import ProposeProject
from contracts.subjects import INBOX_STREAM, LOG_STREAM, Subjects
from domain.deciders import decide
from shared.commands import envelope_for
from shared.eventlog import EventLog

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = Subjects()
IN_FLIGHT = 64
LATENCY_TARGET_MS = 10.0
INBOX_TARGET_RATE = 10_000.0
INBOX_TARGET_RATIO = 0.25
#: Request/reply with one intake process against raw async publish.
REQUEST_TARGET_RATIO = 0.35
REPLAY_TARGET_RATIO = 0.5


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark sends; --quick and --smoke shrink counts, not code paths."""

    publish_awaited: int
    publish_async: int
    eventsourcing: int
    warmup: int
    intake_requests: int
    latency_seconds: float
    inbox: int
    replay: int
    latency_rate: float = 1000.0


FULL = Sizes(5000, 50_000, 10_000, 200, 10_000, 5.0, 20_000, 50_000)
QUICK = Sizes(1000, 10_000, 2000, 100, 2000, 2.0, 5000, 10_000)
SMOKE = Sizes(200, 200, 200, 20, 200, 0.2, 200, 200)


@dataclass
class Context:
    url: str
    nc: Client
    js: JetStreamContext
    work: Path
    sizes: Sizes
    seed: int
    baselines: dict[str, Baseline] = field(default_factory=dict)


# --- services as subprocesses ---------------------------------------------------------------


class Service:
    """`python -m services.cli serve NAME` on its own data folder, logging to a file."""

    def __init__(
        self, name: str, url: str, data_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.url = url
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTFOLIO_")}
        env |= {"PORTFOLIO_NATS_URL": self.url, "PORTFOLIO_DATA_DIR": str(self.data_dir)}
        env |= self.extra_env
        with (self.data_dir / f"{self.name}.log").open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", self.name],
                env=env,
                cwd=ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def status(self, nc: Client) -> dict[str, Any] | None:
        try:
            msg = await nc.request(SUBJECTS.query(self.name, "status"), b"", timeout=2)
        except (nats.errors.NoRespondersError, TimeoutError):
            return None
        answer: dict[str, Any] = json.loads(msg.data)
        return answer

    async def wait_until(
        self, nc: Client, predicate: Any, timeout: float, poll: float = 0.05
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.name} exited with {code}: {self.tail()}")
            last = await self.status(nc)
            if last is not None and predicate(last):
                return last
            await asyncio.sleep(poll)
        raise RuntimeError(f"{self.name} not ready in {timeout:.0f} s; last status {last}")

    def tail(self) -> str:
        log_file = self.data_dir / f"{self.name}.log"
        return log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""

    def stop(self, grace: float = 5.0) -> bool:
        """SIGTERM, then SIGKILL after `grace` seconds; False if it had to be killed."""
        if self.process is None or self.process.poll() is not None:
            return True
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False
        return True


def _accepted(data: bytes) -> bool:
    return bool(json.loads(data).get("status") == "accepted")


def _requester(nc: Client, bodies: list[bytes]) -> Any:
    subject = SUBJECTS.command("ProposeProject")

    async def send(index: int) -> bool:
        msg = await nc.request(subject, bodies[index], timeout=10)
        return _accepted(msg.data)

    return send


def _bodies(seed: int, prefix: str, count: int) -> list[bytes]:
    return [json.dumps(p).encode() for p in Generator(seed, prefix).proposals(count)]


# --- intake -------------------------------------------------------------------------------


async def intake_benchmarks(ctx: Context, selected: set[str], progress: Any) -> list[Row]:
    """One intake process serves the throughput, latency and inbox benchmarks in turn."""
    intake = Service("intake", ctx.url, ctx.work / "intake")
    intake.start()
    rows: list[Row] = []
    try:
        await intake.wait_until(ctx.nc, lambda s: s["state"] == "running", timeout=60)
        warmup = _requester(ctx.nc, _bodies(ctx.seed, "WARM", ctx.sizes.warmup))
        await in_flight(warmup, ctx.sizes.warmup, IN_FLIGHT)
        if "intake-throughput" in selected:
            await _quiet(ctx, intake)
            rows.append(await _with_cpu(intake, ctx.sizes.intake_requests, intake_throughput(ctx)))
            progress(rows[-1])
        if "intake-latency" in selected:
            await _quiet(ctx, intake)
            rows.extend(await intake_latency(ctx))
            progress(rows[-2])
            progress(rows[-1])
        if "inbox" in selected:
            await _quiet(ctx, intake)
            rows.append(await _with_cpu(intake, ctx.sizes.inbox, inbox_throughput(ctx)))
            progress(rows[-1])
    finally:
        stopped = intake.stop()
    if not stopped:
        for row in rows:
            row.details["intake_killed"] = "did not exit within 5 s of SIGTERM"
    return rows


async def _with_cpu(intake: Service, commands: int, work: Any) -> Row:
    """The row, with intake's CPU time per command while it ran (what a bigger machine
    scales with: one intake process uses at most one core)."""
    before = cpu_seconds(intake.pid)
    row: Row = await work
    used = cpu_seconds(intake.pid) - before
    if row.figure is not None and commands:
        micros = used / commands * 1e6
        row.details["intake_cpu_us_per_command"] = round(micros)
        row.note = "; ".join(x for x in (row.note, f"intake {micros:,.0f} µs CPU per command") if x)
    return row


async def _quiet(ctx: Context, intake: Service) -> None:
    """The log stopped growing and intake's projection has applied all of it: a benchmark
    then measures intake alone, not the catching up after the one before."""
    await settle(ctx.js)
    await intake.wait_until(ctx.nc, lambda s: s["lag"] == 0, timeout=120)


async def settle(js: JetStreamContext, quiet: float = 1.0, timeout: float = 120.0) -> None:
    """Wait until the log stops growing, so a benchmark does not inherit the backlog of the
    one before (an overloaded intake keeps working on requests whose sender gave up)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = (await js.stream_info(LOG_STREAM)).state.last_seq
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        await asyncio.sleep(0.1)


async def intake_throughput(ctx: Context) -> Row:
    count = ctx.sizes.intake_requests
    send = _requester(ctx.nc, _bodies(ctx.seed, "THR", count))
    run = await in_flight(send, count, IN_FLIGHT)
    raw = ctx.baselines["publish_async"]
    return Row(
        "intake-throughput",
        f"intake request/reply, {IN_FLIGHT} in flight",
        "cmd/s",
        run.rate,
        raw.name,
        raw.value,
        target=f"≥ {REQUEST_TARGET_RATIO}x raw",
        met=run.rate / raw.value >= REQUEST_TARGET_RATIO,
        note=_failures(run),
        details={"commands": count, "in_flight": IN_FLIGHT, "failures": run.failures},
    )


async def intake_latency(ctx: Context) -> list[Row]:
    rate = ctx.sizes.latency_rate
    count = max(1, int(rate * ctx.sizes.latency_seconds))
    send = _requester(ctx.nc, _bodies(ctx.seed, "LAT", count))
    run = await open_loop(send, count, rate)
    details = {"commands": count, "rate": rate, "failures": run.failures}
    note = f"{run.failures} of {count} failed or timed out (counted with their wait)"
    rows = []
    for q, target in ((0.50, "—"), (0.99, f"≤ {LATENCY_TARGET_MS:.0f} ms")):
        label = f"p{round(q * 100)}"
        raw = ctx.baselines[f"latency_{label}"]
        figure = run.percentile_ms(q)
        rows.append(
            Row(
                f"intake-latency-{label}",
                f"intake request/reply {label} at {rate:,.0f}/s",
                "ms",
                figure,
                raw.name,
                raw.value,
                target=target,
                met=figure <= LATENCY_TARGET_MS if q == 0.99 else None,
                higher_is_better=False,
                note=note if run.failures else "",
                details=details,
            )
        )
    return rows


async def inbox_throughput(ctx: Context) -> Row:
    """Fire-and-forget into the durable inbox; done when every command is in the log."""
    raw = ctx.baselines["publish_async"]
    target = f"≥ {INBOX_TARGET_RATIO}x raw"
    name = "intake inbox, fire-and-forget until in the log"
    try:
        await ctx.js.stream_info(INBOX_STREAM)
    except NotFoundError:
        note = f"skipped: inbox not available (no stream {INBOX_STREAM} after intake started)"
        return skipped("inbox", name, "cmd/s", raw, target, note)
    count = ctx.sizes.inbox
    bodies = _bodies(ctx.seed, "INB", count)
    subject = f"{SUBJECTS.prefix}.inbox.ProposeProject"
    start = (await ctx.js.stream_info(LOG_STREAM)).state.last_seq
    expected = start + count

    async def publish(index: int) -> bool:
        await ctx.js.publish(subject, bodies[index], timeout=10)
        return True

    started = time.perf_counter()
    published = await windows(publish, count, 256)
    deadline = time.monotonic() + max(30.0, count / 200)
    last = start
    while last < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        last = (await ctx.js.stream_info(LOG_STREAM)).state.last_seq
    seconds = time.perf_counter() - started
    details = {"commands": count, "publish_seconds": round(published.seconds, 3)}
    if last < expected:
        note = f"timed out: {last - start} of {count} commands reached the log"
        return Row("inbox", name, "cmd/s", None, raw.name, raw.value, target, note=note)
    rate = count / seconds
    ratio = rate / raw.value
    met = ratio >= INBOX_TARGET_RATIO
    return Row("inbox", name, "cmd/s", rate, raw.name, raw.value, target, met, details=details)


def _failures(run: Run) -> str:
    return f"{run.failures} of {run.count} not accepted" if run.failures else ""


# --- projection replay ----------------------------------------------------------------------


def proposed_envelope(data: dict[str, Any]) -> EventEnvelope:
    """A ProjectProposed event exactly as intake would write it, for filling the log fast."""
    command = ProposeProject.model_validate(data)
    now = datetime.now(UTC)
    (event,) = decide(command, None, now)
    return envelope_for(command, event, ("project", command.project_id), 0, now)


async def fill_log(log: EventLog, seed: int, count: int, concurrency: int = IN_FLIGHT) -> None:
    """Append `count` proposals through the event log client, many in flight at once."""
    envelopes = [proposed_envelope(d) for d in Generator(seed, "RPL").proposals(count)]
    for first in range(0, count, concurrency):
        chunk = envelopes[first : first + concurrency]
        await asyncio.gather(*(log.append(envelope, 0) for envelope in chunk))


async def replay_benchmarks(ctx: Context, progress: Any) -> list[Row]:
    """Fill the log to N events, fetch them raw in a process of their own, then time the
    reporting service from process start until its projection reaches N."""
    log = EventLog(ctx.js, SUBJECTS)
    await log.ensure_streams()
    have = await log.last_position()
    await fill_log(log, ctx.seed, max(0, ctx.sizes.replay - have))
    total = await log.last_position()

    raw = await _fetch_in_own_process(ctx.url, total)
    raw_rate = raw["messages"] / raw["seconds"]
    fetch_name = "raw pull fetch of the same log, own process"
    ctx.baselines["fetch_log"] = Baseline(
        "raw pull fetch of the log, own process",
        raw_rate,
        "msg/s",
        {
            "messages": raw["messages"],
            "peak_rss_mib": round(raw["peak_rss_kib"] / 1024, 1),
            "cpu_seconds": round(raw["cpu_seconds"], 2),
        },
    )

    reporting = Service("reporting", ctx.url, ctx.work / "reporting")
    started = time.perf_counter()
    reporting.start()
    try:
        first = await reporting.wait_until(ctx.nc, lambda s: True, timeout=60, poll=0.02)
        answered = time.perf_counter() - started
        await reporting.wait_until(
            ctx.nc, lambda s: s["position"] >= total, timeout=max(60.0, total / 100), poll=0.1
        )
        seconds = time.perf_counter() - started
        rss = peak_rss_kib(reporting.pid)
        cpu = cpu_seconds(reporting.pid)
    finally:
        reporting.stop()
    after_start = (total - first["position"]) / max(1e-9, seconds - answered)
    rate = total / seconds
    replay = Row(
        "replay",
        "reporting replay from process start",
        "ev/s",
        rate,
        fetch_name,
        raw_rate,
        target=f"≥ {REPLAY_TARGET_RATIO}x raw fetch",
        met=rate / raw_rate >= REPLAY_TARGET_RATIO,
        note=f"{after_start:,.0f} ev/s once it answered ({answered:.1f} s after start)",
        details={
            "events": total,
            "seconds": round(seconds, 3),
            "first_answer_seconds": round(answered, 3),
            "position_at_first_answer": first["position"],
            "rate_after_first_answer": round(after_start, 1),
            "service_cpu_seconds": round(cpu, 2),
        },
    )
    progress(replay)
    memory = Row(
        "replay-rss",
        "reporting peak RSS after replay",
        "MiB",
        rss / 1024,
        "plain nats-py fetch process",
        raw["peak_rss_kib"] / 1024,
        higher_is_better=False,
        details={"events": total},
    )
    progress(memory)
    return [replay, memory]


async def _fetch_in_own_process(url: str, count: int) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.baselines",
        "fetch",
        url,
        LOG_STREAM,
        SUBJECTS.events_all,
        str(count),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=max(60.0, count / 1000))
    if process.returncode != 0:
        raise RuntimeError(f"raw fetch failed: {err.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result
