"""The dashboard: an HTTP server inside the reporting service, run as one of its workers.

Pages are rendered on the server (`pages.py`); a page in the browser listens to
`/events` (server-sent events) and fetches `/fragment/<page>` again when told that the
log changed. The worker listens to the log's and the alerts' subjects on plain NATS and
says "changed" at most once per `refresh` seconds while events flow."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from string import Template

import structlog
from aiohttp import web
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from contracts.queries import PAGE_SIZE, AuditQuery
from services.reporting.dashboard import outlook_pages, pages
from services.reporting.dashboard.data import NotAnswered, SnapshotsOf, Sources
from services.reporting.facts import UnknownProject
from services.reporting.projection import ReportingProjection
from shared import times
from shared.httpauth import HttpAuth
from shared.service import ServiceRuntime
from shared.settings import ReportingSettings

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
#: Between an event arriving and the browsers being told: the event is stored and the
#: projections have applied it by then (the pages still wait for them when they lag).
SETTLE_SECONDS = 0.15
KEEPALIVE_SECONDS = 15.0
LATEST_EVENTS = 10
AUDIT_PARAMS = {name for name, _, _ in pages.AUDIT_FIELDS}
AUDIT_FILTERS = {
    "project": "aggregate_id",
    "aggregate": "aggregate_type",
    "actor": "actor",
    "type": "event_type",
    "correlation": "correlation_id",
}
AUDIT_TIMES = {"since": "since", "until": "until", "occurred_until": "occurred_until"}


class BadRequest(ValueError):
    """Query parameters the page cannot use; the message says which and why."""


class Live:
    """The browsers listening to `/events`, told "changed" at most once per `interval`."""

    def __init__(self, interval: float, on_change: Callable[[], None]) -> None:
        self.interval = interval
        self.on_change = on_change
        self.clients: set[asyncio.Queue[str | None]] = set()
        self.notifications = 0
        self._pending = asyncio.Event()

    def event_arrived(self) -> None:
        self._pending.set()

    async def run(self) -> None:
        while True:
            await self._pending.wait()
            await asyncio.sleep(SETTLE_SECONDS)
            self._pending.clear()
            # Also here, not only on arrival: an answer computed meanwhile may predate it.
            self.on_change()
            self.notifications += 1
            message = json.dumps({"n": self.notifications})
            for queue in self.clients:
                with contextlib.suppress(asyncio.QueueFull):  # it has one waiting already
                    queue.put_nowait(message)
            await asyncio.sleep(max(0.0, self.interval - SETTLE_SECONDS))

    def close(self) -> None:
        """Ends every stream (else the server would wait for them when it stops)."""
        for queue in self.clients:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)


class Dashboard:
    """The worker: `start()` subscribes and listens, `stop()` closes every stream."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        projection: ReportingProjection,
        settings: ReportingSettings,
        snapshots: SnapshotsOf = lambda: None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.sources = Sources(runtime, projection, settings.dashboard_refresh_seconds, snapshots)
        self.live = Live(settings.dashboard_refresh_seconds, self.sources.changed)
        self.template = Template((HERE / "templates" / "page.html").read_text())
        self.url: str | None = None
        self.auth = HttpAuth.from_settings(settings, "127.0.0.1")  # checked again at start
        self._runner: web.AppRunner | None = None
        self._subscriptions: list[Subscription] = []
        self._notifier: asyncio.Task[None] | None = None

    # --- worker --------------------------------------------------------------------------

    async def start(self) -> None:
        host, port = self.settings.dashboard_host, self.settings.dashboard_port
        # Beyond loopback, a login (shared/httpauth.py); without one configured, no start.
        self.auth = HttpAuth.from_settings(self.settings, host)
        subjects = self.runtime.settings.subjects
        for subject in (subjects.events_all, subjects.alerts_all):
            self._subscriptions.append(await self.runtime.nc.subscribe(subject, cb=self._arrived))
        self._notifier = asyncio.create_task(self.live.run(), name="dashboard-live")
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as error:
            if port == 0:
                raise
            log.warning("dashboard.port_taken", port=port, error=str(error))
            await web.TCPSite(self._runner, host, 0).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}/"
        log.info("dashboard.listening", url=self.url)

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await subscription.unsubscribe()
        if self._notifier is not None:
            self._notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._notifier
        self.live.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _arrived(self, _: Msg) -> None:
        self.live.event_arrived()

    # --- web -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self.auth.middleware(self._login)])
        app.router.add_get("/", self._home)
        app.router.add_get("/events", self._events)
        app.router.add_static("/static", HERE / "static")
        app.router.add_get("/fragment/{page}", self._fragment)
        app.router.add_get("/{page}", self._page)
        return app

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Unknown addresses get the 404 page and failures a short message, never a trace."""
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self._error(request, 404, "Not found", f"nothing at {request.path}")
        except web.HTTPException:
            raise
        except Exception as error:
            log.exception("dashboard.failed", path=request.path)
            return self._error(
                request, 500, "Failed", f"the page failed: {type(error).__name__}: {error}"
            )

    async def _login(self, request: web.Request, why: str) -> web.StreamResponse:
        """401 with a Basic challenge: the browser asks for a login (any user name, a
        token as the password)."""
        response = self._error(request, 401, "Login required", why)
        response.headers["WWW-Authenticate"] = 'Basic realm="portfolio", charset="UTF-8"'
        return response

    def _error(self, request: web.Request, status: int, title: str, message: str) -> web.Response:
        body = pages.error_page(status, title, message)
        if not request.path.startswith("/fragment/"):
            body = pages.shell(self.template, "error", body, title=f"{status} {title}")
        return web.Response(text=body, status=status, content_type="text/html")

    async def _home(self, _: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/overview")

    async def _page(self, request: web.Request) -> web.Response:
        page = request.match_info["page"]
        if page not in pages.PAGES:
            return self._error(request, 404, "Not found", f"there is no page {page!r}")
        try:
            content = await self.render(page, request.query)
        except BadRequest as error:
            content = pages.error_page(400, "Bad request", str(error))
            status = 400
        else:
            status = 200
        body = pages.shell(self.template, page, content, self._controls(page, request.query))
        return web.Response(text=body, status=status, content_type="text/html")

    async def _fragment(self, request: web.Request) -> web.Response:
        page = request.match_info["page"]
        if page not in pages.PAGES:
            return self._error(request, 404, "Not found", f"there is no page {page!r}")
        try:
            content = await self.render(page, request.query)
        except BadRequest as error:
            return self._error(request, 400, "Bad request", str(error))
        return web.Response(text=content, content_type="text/html")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `changed` whenever the log changed (at most once per interval);
        a comment now and then keeps proxies from closing the stream."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1)
        self.live.clients.add(queue)
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if message is None:
                    break
                await response.write(f"event: changed\ndata: {message}\n\n".encode())
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            self.live.clients.discard(queue)
        return response

    # --- pages ---------------------------------------------------------------------------

    def _controls(self, page: str, query: Mapping[str, str]) -> str:
        if page == "audit":
            return pages.audit_form(dict(query))
        if page == "budget":
            return pages.budget_views(query.get("by", "pool"))
        return ""

    async def render(self, page: str, query: Mapping[str, str]) -> str:
        """One page's fragment; `BadRequest` for parameters it cannot use."""
        sources = self.sources
        position = self.runtime.runner.position
        match page:
            case "overview":
                report = await sources.report()
                return pages.overview(report, await sources.latest_events(LATEST_EVENTS))
            case "projects":
                project_id = query.get("project", "").strip()
                if not project_id:
                    return pages.projects(await sources.report())
                try:
                    card = await sources.scorecard(project_id)
                except UnknownProject:
                    raise BadRequest(f"project={project_id!r}: no such project") from None
                return pages.scorecard(card)
            case "roadmap":
                return pages.roadmap(await sources.report())
            case "ranking":
                report = await sources.report()
                try:
                    answer = await sources.ask("prioritization", "ranking", {"model_id": "default"})
                except NotAnswered as error:
                    return pages.ranking(None, report, str(error))
                return pages.ranking(answer, report)
            case "risks":
                cell = parse_cell(query)
                report = await sources.report()
                try:
                    register = await sources.ask("risk", "register")
                    health = await sources.ask("risk", "health")
                except NotAnswered as error:
                    return pages.risks(None, None, report, str(error))
                return pages.risks(register, health, report, cell=cell)
            case "budget":
                by = query.get("by", "pool")
                if by not in pages.BUDGET_VIEWS:
                    raise BadRequest(
                        f"by={by!r} is not a grouping: use {', '.join(pages.BUDGET_VIEWS)}"
                    )
                try:
                    pools = await sources.ask("ledger", "budget", {"by": "pool"})
                    rows = (
                        pools if by == "pool" else await sources.ask("ledger", "budget", {"by": by})
                    )
                except NotAnswered as error:
                    return pages.budget(None, None, by, position, str(error))
                return pages.budget(pools, rows, by, position)
            case "capacity":
                try:
                    cells = await sources.ask("ledger", "capacity")
                except NotAnswered as error:
                    return pages.capacity(None, position, str(error))
                return pages.capacity(cells, position)
            case "forecast":
                return outlook_pages.forecast(await sources.report())
            case "stakeholders":
                return outlook_pages.stakeholders(await sources.report())
            case "alerts":
                try:
                    found = await sources.ask("risk", "alerts")
                except NotAnswered as error:
                    return pages.alerts(None, position, str(error))
                return pages.alerts(found["open"], position)
            case "audit":
                audit_query = parse_audit(query, datetime.now(UTC))
                entries = await sources.audit(audit_query)
                more = len(entries) == audit_query.limit
                next_after = entries[-1].position if more and entries else None
                return pages.audit(dict(query), entries, next_after, position=position)
        raise AssertionError(f"unhandled page {page}")


def parse_cell(params: Mapping[str, str]) -> tuple[int, int] | None:
    """`?probability=P&impact=I` (a heat-map cell, both 1..5) or nothing."""
    if "probability" not in params and "impact" not in params:
        return None
    values = {k: v.strip() for k, v in params.items()}
    return (
        _whole(values, "probability", 0, 1, 5)
        if "probability" in values
        else _missing("probability"),
        _whole(values, "impact", 0, 1, 5) if "impact" in values else _missing("impact"),
    )


def _missing(name: str) -> int:
    raise BadRequest(f"{name}: a heat-map cell needs both probability and impact (1 to 5)")


def parse_audit(params: Mapping[str, str], now: datetime) -> AuditQuery:
    """The audit search's query parameters as an `AuditQuery` (the same filters as
    `portfolio audit`); `BadRequest` naming the parameter and what it accepts."""
    unknown = sorted(set(params) - AUDIT_PARAMS)
    if unknown:
        raise BadRequest(
            f"unknown parameter {', '.join(unknown)}: use {', '.join(sorted(AUDIT_PARAMS))}"
        )
    values = {name: value.strip() for name, value in params.items() if value.strip()}
    body: dict[str, object] = {
        field: values[name] for name, field in AUDIT_FILTERS.items() if name in values
    }
    for name, field in AUDIT_TIMES.items():
        if name in values:
            try:
                body[field] = times.parse_time(values[name], now)
            except ValueError as error:
                raise BadRequest(f"{name}: {error}") from None
    body["after_position"] = _whole(values, "after", 0, 0, None)
    body["limit"] = _whole(values, "limit", 100, 1, PAGE_SIZE)
    try:
        return AuditQuery.model_validate(body)
    except ValidationError as error:
        raise BadRequest(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        ) from None


def _whole(values: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    if name not in values:
        return default
    try:
        number = int(values[name])
    except ValueError:
        raise BadRequest(f"{name}: {values[name]!r} is not a whole number") from None
    if number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise BadRequest(f"{name}: {number} is out of range ({bounds})")
    return number
