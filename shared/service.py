"""What every service process shares: connections, the projection runner, status and replay.

A service's app.py builds a `ServiceRuntime`, registers its own handlers on the broker and
calls `build_app`. Nothing connects until FastStream starts the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import nats
import nats.errors
import structlog
from faststream import FastStream
from faststream.nats import (
    NatsBroker,
    NatsCredentials,
    NatsMessage,
    NatsSecurity,
    NatsUserPassword,
)
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import ServiceUnavailableError
from pydantic import BaseModel, ValidationError
from sqlalchemy import Table, func, select

from contracts.queries import (
    InboxStatus,
    ProjectsQuery,
    QueryError,
    ReplayStarted,
    ServiceStatus,
)
from shared import metrics, nats_headers, tracing
from shared.db import Database, skipped_events
from shared.eventlog import EventLog
from shared.lease import Lease
from shared.logging import configure_logging
from shared.projection import Projection, ProjectionRunner
from shared.projects_view import list_projects
from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)

#: Connection options of every service connection: reconnect for ever, to any node of the
#: list, and notice a node that vanished without closing the connection (a host that lost
#: power or its network) within seconds rather than after the default two minutes of pings.
RECONNECT: dict[str, Any] = {
    "max_reconnect_attempts": -1,
    "reconnect_time_wait": 0.5,
    "ping_interval": 5,
    "max_outstanding_pings": 3,
}


#: Collect the young generation every this many allocations (Python's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def tune_collector() -> None:
    """A service's objects nearly all die within the batch or the command that made them:
    collecting the young generation every 700 allocations (the default) scanned the batch
    in hand again and again, a tenth of a replay's fold. What is loaded by now lives as
    long as the process, so it is kept out of the full passes (which otherwise stop every
    answer for ~90 ms now and then)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


#: Blocks of this size or more are mapped on their own, and given back when freed (glibc).
MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def tune_allocator() -> None:
    """glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB);
    after that, the big tables a fold keeps replacing (a layered map's merged levels, a
    snapshot's bytes) come from the heap, where a freed one stays resident between live
    objects. Fixed at its default, they stay mapped and go back when freed: reporting's
    peak replaying the million-event log fell from 198 to 188 MiB, at the same speed.
    Nothing on other platforms, or when the operator set `MALLOC_MMAP_THRESHOLD_`."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


class ServiceRuntime:
    """One service process's connections, log client and projection runner."""

    def __init__(self, name: str, settings: ServiceSettings, projection: Projection) -> None:
        self.name = name
        self.settings = settings
        self.projection = projection
        self.started_at = datetime.now(UTC)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._log: EventLog | None = None
        self._db: Database | None = None
        self._runner: ProjectionRunner | None = None
        self._lease: Lease | None = None
        self._guard: asyncio.Task[None] | None = None
        self._stopping = False
        #: Set once everything the service does has started: until then it says "starting".
        self.ready = False
        #: Set by a service that decides on each batch its projection applied.
        self.after_batch: Callable[[], Awaitable[None]] | None = None
        #: Set by intake: its inbox consumer's health, shown in its status.
        self.inbox_status: Callable[[], Awaitable[InboxStatus]] | None = None
        #: Prometheus `/metrics` of this service (None until started, or when turned off).
        self.metrics_server: metrics.MetricsServer | None = None

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "runtime not started"
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "runtime not started"
        return self._js

    @property
    def log(self) -> EventLog:
        assert self._log is not None, "runtime not started"
        return self._log

    @property
    def db(self) -> Database:
        assert self._db is not None, "runtime not started"
        return self._db

    @property
    def runner(self) -> ProjectionRunner:
        assert self._runner is not None, "runtime not started"
        return self._runner

    async def start(self) -> None:
        settings = self.settings
        tracing.configure(self.name)
        nats_headers.install()
        self._nc = await nats.connect(
            settings.nats_servers(),
            name=f"portfolio-{self.name}",
            **RECONNECT,
            **settings.nats_options(),
        )
        self._js = self._nc.jetstream(timeout=settings.request_timeout_seconds)
        self._log = EventLog(
            self._js,
            settings.subjects,
            settings.duplicate_window_seconds,
            settings.log_replicas,
            patience=settings.log_patience_seconds,
            nc=self._nc,
        )
        await patiently(self._log.ensure_streams)
        self._db = Database(settings.database_url_for(self.name))
        await self._serve_metrics()
        if settings.lease_ttl_seconds > 0:
            # A standby waits here, connected, until the active instance's lease lapses.
            self._lease = Lease(
                self._js, self.name, settings.lease_ttl_seconds, replicas=settings.log_replicas
            )
            await self._lease.acquire()
        tune_collector()
        tune_allocator()
        await patiently(self._start_runner)
        if self._lease is not None:
            self._guard = asyncio.create_task(self._guard_lease(), name=f"guard:{self.name}")
        log.info("service.started", position=self.runner.position, pid=os.getpid())

    async def _serve_metrics(self) -> None:
        """`/metrics` from the start, so that a standby waiting for the lease is seen too."""
        port = self.settings.metrics_port_for(self.name)
        if port is None:
            return
        server = metrics.MetricsServer(self.settings.metrics_host, port, self._refresh_metrics)
        await server.start()
        self.metrics_server = server
        log.info("service.metrics", url=server.url)

    async def _refresh_metrics(self) -> None:
        """Before a scrape: the figures read from the server (log position, lag, inbox)."""
        if self._runner is None:
            metrics.LOG_POSITION.labels(self.name).set(await self.log.last_position())
            return
        await self.status()

    async def _start_runner(self) -> None:
        settings = self.settings
        assert self._js is not None and self._db is not None
        runner = ProjectionRunner(
            self._js,
            self._db,
            self.projection,
            settings.subjects,
            batch_size=settings.projection_batch_size,
            retry_delay=settings.projection_retry_delay_seconds,
            after_batch=self.after_batch,
        )
        try:
            await runner.start()
        except BaseException:
            await runner.stop()  # its subscription, if it got that far; the caller tries again
            raise
        self._runner = runner

    async def _guard_lease(self) -> None:
        """When the lease is lost another instance may be writing: stop writing, stand by,
        and take over again when the lease is free (the projection reloads from the
        database). One task does this, so a loss during a resumption waits its turn."""
        lease = self._lease
        assert lease is not None
        while not self._stopping:
            await lease.wait_lost()
            if self._runner is not None:
                await self._runner.stop()
            while not self._stopping:
                await lease.acquire()
                try:
                    await self._start_runner()
                    break
                except Exception:  # e.g. the stream still elects a leader: hand back, retry
                    log.exception("service.resume_failed")
                    await lease.release()
                    await asyncio.sleep(1)

    async def stop(self) -> None:
        self._stopping = True
        if self._guard is not None:
            self._guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._guard
        if self._runner is not None:
            await self._runner.stop()
        if self._lease is not None:
            await self._lease.release()
        if self._nc is not None and not self._nc.is_closed:
            # close, not drain: the workers have stopped, and draining would wait forever on
            # pull subscriptions holding late "no messages" status replies.
            await self._nc.close()
        if self._db is not None:
            await self._db.close()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        log.info("service.stopped")

    async def status(self) -> ServiceStatus:
        log_position = await self.log.last_position()
        skipped = await self.db.read(
            lambda conn: conn.scalar(
                select(func.count()).where(skipped_events.c.projection == self.projection.name)
            )
        )
        runner = self.runner
        inbox = await self.inbox_status() if self.inbox_status is not None else None
        state: str = runner.state if self.ready else "starting"
        if inbox is not None and not inbox.running and self.ready:
            state = "degraded"  # the process answers, but inbox commands get no outcome
        lag = max(0, log_position - runner.position)
        metrics.LOG_POSITION.labels(self.name).set(log_position)
        metrics.POSITION.labels(self.name).set(runner.position)
        metrics.LAG.labels(self.name).set(lag)
        if inbox is not None:
            for gauge, value in (
                (metrics.INBOX_PENDING, inbox.pending),
                (metrics.INBOX_WAITING, inbox.waiting_for_ack),
                (metrics.INBOX_REDELIVERED, inbox.redelivered),
            ):
                if value is not None:
                    gauge.set(value)
        served = self.metrics_server
        return ServiceStatus(
            service=self.name,
            state=state,
            position=runner.position,
            log_position=log_position,
            lag=lag,
            applied_since_start=runner.applied,
            rebuilds_since_start=runner.rebuilds,
            skipped_events=int(skipped or 0),
            last_error=runner.last_error,
            started_at=self.started_at,
            pid=os.getpid(),
            inbox=inbox,
            metrics_url=served.url if served is not None else None,
            metrics=metrics.figures(self.name),
        )


#: How long a starting service waits for JetStream to answer before it gives up and exits.
STARTUP_PATIENCE_SECONDS = 60.0
#: What a cluster that is still electing its leaders (or a server still starting) answers.
UNAVAILABLE = (TimeoutError, nats.errors.NoRespondersError, ServiceUnavailableError)


async def patiently(step: Callable[[], Awaitable[None]]) -> None:
    """Run a start-up step, again while JetStream is unavailable (a cluster without a quorum
    yet, or electing a leader), rather than exit and be restarted. Anything else, such as a
    log with a weak configuration, stops the start at once."""
    deadline = time.monotonic() + STARTUP_PATIENCE_SECONDS
    while True:
        try:
            await step()
            return
        except UNAVAILABLE as error:
            if time.monotonic() > deadline:
                raise
            log.warning("service.jetstream_unavailable", error=repr(error))
            await asyncio.sleep(1)


def answer(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


class Worker(Protocol):
    """Background work a service runs beside its handlers (e.g. intake's inbox)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def build_app(
    runtime: ServiceRuntime,
    register: Callable[[NatsBroker, ServiceRuntime], None] | None = None,
    workers: Sequence[Worker] = (),
) -> FastStream:
    """The FastStream app of one service: its own handlers plus status, replay and, for a
    projection with a `projects` table, the projects query."""
    settings = runtime.settings
    subjects = settings.subjects
    configure_logging(runtime.name, settings.log_level)
    broker = NatsBroker(
        settings.nats_servers(),
        name=f"portfolio-{runtime.name}-broker",
        **RECONNECT,
        logger=structlog.get_logger("faststream"),
        log_level=logging.DEBUG,
        security=broker_security(settings.nats_options()),
        # Replies only on the user's own inbox subjects (deploy/nats/auth.conf).
        inbox_prefix=settings.nats_options().get("inbox_prefix", "_INBOX"),
    )

    @broker.subscriber(subjects.query(runtime.name, "status"))
    async def status(_: NatsMessage) -> bytes:
        return answer(await runtime.status())

    @broker.subscriber(subjects.control(runtime.name, "replay"))
    async def replay(_: NatsMessage) -> bytes:
        target = await runtime.log.last_position()
        runtime.runner.request_rebuild()
        return answer(ReplayStarted(service=runtime.name, target_position=target))

    projects_table = getattr(runtime.projection, "projects", None)
    if isinstance(projects_table, Table):
        register_projects_query(broker, runtime, projects_table)
    if register is not None:
        register(broker, runtime)

    async def start_workers() -> None:
        for worker in workers:
            await worker.start()
        runtime.ready = True

    async def stop_workers() -> None:
        for worker in reversed(workers):
            await worker.stop()

    return FastStream(
        broker,
        logger=structlog.get_logger("faststream.app"),
        on_startup=[runtime.start],
        after_startup=[start_workers],
        on_shutdown=[stop_workers],
        after_shutdown=[runtime.stop],
    )


def broker_security(options: dict[str, Any]) -> NatsSecurity | None:
    """FastStream's form of `nats_options()`: it takes credentials and TLS as `security`."""
    tls = options.get("tls")
    if "user" in options:
        return NatsUserPassword(options["user"], options["password"], ssl_context=tls)
    if "user_credentials" in options:
        return NatsCredentials(options["user_credentials"], ssl_context=tls)
    return NatsSecurity(ssl_context=tls) if tls is not None else None


def register_projects_query(broker: NatsBroker, runtime: ServiceRuntime, table: Table) -> None:
    """`portfolio.query.<service>.projects`: the service's own view of every project."""

    @broker.subscriber(runtime.settings.subjects.query(runtime.name, "projects"))
    async def projects(msg: NatsMessage) -> bytes:
        try:
            query = ProjectsQuery.model_validate_json(msg.body or b"{}")
        except ValidationError as error:
            return answer(invalid_query("projects", error))
        return answer(await runtime.db.read(list_projects, table, query))


def invalid_query(name: str, error: ValidationError) -> QueryError:
    details = tuple(
        {"field": ".".join(map(str, e["loc"])) or "(body)", "message": e["msg"]}
        for e in error.errors(include_url=False)
    )
    return QueryError(error=f"invalid {name} query", details=details)
