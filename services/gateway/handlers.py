"""The gateway's handlers: HTTP in, the same NATS request/reply as every other client out.

Commands go to `<prefix>.cmd.<Command>.<principal>`, so intake binds the HTTP principal
to actors exactly as it binds a NATS user; queries go to `<prefix>.query.<service>.<name>`.
Nothing here keeps state: any number of gateways can run side by side.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import nats.errors
import structlog
from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import ValidationError

from contracts.base import CommandAccepted, ErrorCode, ErrorInfo, FieldError
from contracts.queries import (
    PAGE_SIZE,
    AuditQuery,
    ForecastQuery,
    ProjectsQuery,
    ServiceStatus,
)
from contracts.registry import COMMANDS
from contracts.subjects import SERVICES
from services.gateway import webhooks
from services.gateway.errors import STATUS, query_refusal, rejected
from shared import render, times, tracing
from shared.client import REPLY
from shared.httpauth import PRINCIPAL_KEY
from shared.ratelimit import RateLimiter
from shared.rejections import keep_rejection, make_rejection
from shared.settings import GatewaySettings

log = structlog.get_logger(__name__)

#: The command id a client may give in the `Idempotency-Key` header.
_KEY_PATTERN = r"^[A-Za-z0-9_\-:]{1,128}$"
REPORT_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "md": "text/markdown",
    "html": "text/html",
}
AUDIT_TEXT = ("aggregate_type", "aggregate_id", "actor", "event_type", "correlation_id")
AUDIT_TIMES = {"since": "since", "until": "until", "as_of": "until"}
AUDIT_TIMES |= {"occurred_until": "occurred_until", "occurred_as_of": "occurred_until"}


class Unanswered(Exception):
    """Nobody answered on the subject in time: 503 with Retry-After."""

    def __init__(self, subject: str, why: str) -> None:
        super().__init__(f"no answer on {subject}: {why}")
        self.subject = subject


@dataclass
class Gateway:
    settings: GatewaySettings
    nc: Client
    js: JetStreamContext
    sources: dict[str, webhooks.Source]
    openapi: bytes
    limiter: RateLimiter = field(init=False)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(
            self.settings.gateway_rate_per_second, self.settings.gateway_burst
        )
        self.subjects = self.settings.subjects

    # --- routes ---------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/commands/{command}", self.command)
        app.router.add_post("/v1/webhooks/{source}", self.webhook)
        app.router.add_get("/v1/projects", self.projects)
        app.router.add_get("/v1/projects/{project_id}", self.scorecard)
        app.router.add_get("/v1/report", self.report)
        app.router.add_get("/v1/audit", self.audit)
        app.router.add_get("/v1/alerts", self.alerts)
        app.router.add_get("/v1/ranking", self.ranking)
        app.router.add_get("/v1/forecast", self.forecast)
        app.router.add_get("/v1/status", self.status)
        app.router.add_get("/v1/health", self.health)
        app.router.add_get("/v1/openapi.json", self.openapi_document)

    # --- commands -------------------------------------------------------------------------

    async def command(self, request: web.Request) -> web.Response:
        name = request.match_info["command"]
        principal = request[PRINCIPAL_KEY]
        known = name in COMMANDS
        subject = f"{self.subjects.command(name)}.{principal}" if known else None
        body, too_large = await read_capped(request, self.settings.max_command_bytes)
        shown = subject or f"http POST /v1/commands/{name[:100]}"
        if not known:
            message = f"unknown command {name[:100]!r}; the commands are in /v1/openapi.json"
            return await self.refuse(shown, body, 404, ErrorCode.UNKNOWN_COMMAND, message)
        if too_large:
            limit = self.settings.max_command_bytes
            message = f"the command is larger than {limit} bytes"
            return await self.refuse(shown, body, 413, ErrorCode.PAYLOAD_TOO_LARGE, message, name)
        key = request.headers.get("Idempotency-Key")
        try:
            body = with_command_id(body, key)
        except KeyRefused as refused:
            return await self.refuse(
                shown, body, 422, ErrorCode.VALIDATION_FAILED, str(refused), name, refused.details
            )
        if not self.limiter.allow(principal):
            message = (
                f"{principal!r} sends more than {self.settings.gateway_rate_per_second:g} "
                "requests/s here; retry with the same Idempotency-Key"
            )
            return rejected(429, ErrorCode.RATE_LIMITED, message, command_id=key)
        assert subject is not None
        try:
            raw = await self.ask(subject, body, self.settings.gateway_command_timeout_seconds)
        except Unanswered as missing:
            return unavailable(missing, key)
        return reply_response(raw)

    async def refuse(
        self,
        subject: str,
        body: bytes,
        status: int,
        code: ErrorCode,
        message: str,
        command: str | None = None,
        details: tuple[FieldError, ...] = (),
        command_id: str | None = None,
    ) -> web.Response:
        """Answer a refusal made here, and keep it (raw, with its reason) like intake does."""
        error = ErrorInfo(code=code, message=message, details=details)
        rejection = make_rejection(
            subject,
            body,
            error,
            command,
            command_id,
            None,
            self.settings.rejection_raw_limit_bytes,
        )
        await keep_rejection(self.js, self.subjects, rejection)
        log.info("http.refused", subject=subject[:200], code=str(code), reason=message[:200])
        shown = [d.model_dump(mode="json") for d in details]
        return rejected(status, code, message, shown, command_id=command_id)

    async def ask(self, subject: str, body: bytes, timeout: float) -> bytes:
        try:
            msg = await self.nc.request(subject, body, timeout=timeout, headers=tracing.headers())
        except nats.errors.NoRespondersError as error:
            raise Unanswered(subject, "no service is listening") from error
        except (TimeoutError, nats.errors.TimeoutError) as error:
            raise Unanswered(subject, f"no answer within {timeout:g} s") from error
        except nats.errors.ConnectionClosedError as error:
            raise Unanswered(subject, "the gateway's NATS connection is closed") from error
        return bytes(msg.data)

    # --- webhooks -------------------------------------------------------------------------

    async def webhook(self, request: web.Request) -> web.Response:
        name = request.match_info["source"]
        shown = f"http POST /v1/webhooks/{name[:64]}"
        body, too_large = await read_capped(request, self.settings.webhook_max_bytes)
        source = self.sources.get(name) if webhooks.SOURCE.fullmatch(name) else None
        try:
            if source is None:
                raise webhooks.Refused(404, "not_found", f"no webhook source {name[:64]!r}")
            if too_large:
                limit = self.settings.webhook_max_bytes
                raise webhooks.Refused(413, "payload_too_large", f"larger than {limit} bytes")
            webhooks.verify_signature(source, body, request.headers.get(webhooks.SIGNATURE_HEADER))
            command_id = webhooks.command_id(
                source, request.headers.get(source.delivery_header), body
            )
            mapped = webhooks.map_payload(source, webhooks.parse_payload(body))
        except webhooks.Refused as refused:
            details = tuple(
                FieldError(field=str(d.get("field", "")), message=str(d.get("message", "")))
                for d in refused.details
            )
            return await self.refuse(
                shown, body, refused.status, ErrorCode(refused.code), refused.message, None, details
            )
        if not self.limiter.allow(source.principal):
            return rejected(429, ErrorCode.RATE_LIMITED, f"{name} sends too fast; redeliver")
        # The mapped command, under the source's own principal; refusals from here on are
        # intake's, kept by intake with the mapped command.
        command = {**mapped.body, "command_id": command_id}
        subject = f"{self.subjects.command(mapped.command)}.{source.principal}"
        try:
            raw = await self.ask(
                subject, json.dumps(command).encode(), self.settings.gateway_command_timeout_seconds
            )
        except Unanswered as missing:
            return unavailable(missing, command_id)
        return reply_response(raw)

    # --- queries --------------------------------------------------------------------------

    async def query(self, service: str, name: str, body: dict[str, Any]) -> Any:
        """A query's JSON answer, or a refusal response when the service refused it."""
        subject = self.subjects.query(service, name)
        raw = await self.ask(
            subject, json.dumps(body).encode(), self.settings.gateway_query_timeout_seconds
        )
        return json.loads(raw)

    async def answer(self, service: str, name: str, body: dict[str, Any]) -> web.Response:
        try:
            found = await self.query(service, name, body)
        except Unanswered as missing:
            return unavailable(missing)
        if isinstance(found, dict) and "error" in found:
            return query_refusal(found)
        return web.json_response(found)

    async def projects(self, request: web.Request) -> web.Response:
        params = request.query
        try:
            query = ProjectsQuery(
                after_project_id=params.get("after_project_id"),
                limit=_integer(params, "limit", PAGE_SIZE),
            )
        except (ValidationError, BadParameter) as error:
            return bad_request(error)
        return await self.answer(
            "reporting", "projects", query.model_dump(mode="json", exclude_none=True)
        )

    async def scorecard(self, request: web.Request) -> web.Response:
        return await self._report(request, {"project_id": request.match_info["project_id"]})

    async def report(self, request: web.Request) -> web.Response:
        return await self._report(request, {})

    async def _report(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        params = request.query
        fmt = params.get("format", "json")
        if fmt not in REPORT_TYPES:
            return rejected(
                400,
                ErrorCode.VALIDATION_FAILED,
                f"unsupported format {fmt[:20]!r}; one of {', '.join(REPORT_TYPES)}",
                [{"field": "format", "message": "json, csv, md or html"}],
            )
        now = datetime.now(UTC)
        try:
            for name in ("as_of", "occurred_as_of", "diff_from", "diff_to"):
                if name in params:
                    body[name] = _time(params, name, now).isoformat()
        except BadParameter as error:
            return bad_request(error)
        if "diff_by" in params:
            body["diff_by"] = params["diff_by"]
        try:
            found = await self.query("reporting", "report", body)
        except Unanswered as missing:
            return unavailable(missing)
        if isinstance(found, dict) and "error" in found:
            return query_refusal(found)
        if fmt == "json":
            return web.json_response(found)
        return web.Response(
            text=render.render(found, fmt), content_type=REPORT_TYPES[fmt], charset="utf-8"
        )

    async def audit(self, request: web.Request) -> web.Response:
        params = request.query
        now = datetime.now(UTC)
        try:
            fields: dict[str, Any] = {n: params[n] for n in AUDIT_TEXT if n in params}
            if "project" in params or "project_id" in params:
                fields["project_id"] = params.get("project_id", params.get("project"))
            for name, target in AUDIT_TIMES.items():
                if name in params:
                    fields[target] = _time(params, name, now)
            fields["after_position"] = _integer(params, "after_position", 0)
            fields["limit"] = _integer(params, "limit", PAGE_SIZE)
            query = AuditQuery.model_validate(fields)
        except (ValidationError, BadParameter) as error:
            return bad_request(error)
        return await self.answer("reporting", "audit", query.model_dump(mode="json"))

    async def alerts(self, _: web.Request) -> web.Response:
        return await self.answer("risk", "alerts", {})

    async def ranking(self, request: web.Request) -> web.Response:
        return await self.answer(
            "prioritization", "ranking", {"model_id": request.query.get("model", "default")}
        )

    async def forecast(self, request: web.Request) -> web.Response:
        """The portfolio forecast (`portfolio forecast`): seed, iterations, project or
        programme, include_pipeline, as_of; format json, csv, md or html."""
        params = request.query
        fmt = params.get("format", "json")
        if fmt not in REPORT_TYPES:
            return bad_request(BadParameter("format", "json, csv, md or html"))
        try:
            fields: dict[str, Any] = {
                "seed": _integer(params, "seed", 0),
                "iterations": _integer(params, "iterations", 10_000),
                "include_pipeline": params.get("include_pipeline", "false") in ("true", "1"),
            }
            for name in ("project", "programme"):
                if name in params:
                    fields[f"{name}_id"] = params[name]
            if "as_of" in params:
                fields["as_of"] = _time(params, "as_of", datetime.now(UTC))
            query = ForecastQuery.model_validate(fields)
        except (ValidationError, BadParameter) as error:
            return bad_request(error)
        try:
            found = await self.query("reporting", "forecast", query.model_dump(mode="json"))
        except Unanswered as missing:
            return unavailable(missing)
        if isinstance(found, dict) and "error" in found:
            return query_refusal(found)
        if fmt == "json":
            return web.json_response(found)
        return web.Response(
            text=render.render(found, fmt), content_type=REPORT_TYPES[fmt], charset="utf-8"
        )

    async def status(self, _: web.Request) -> web.Response:
        async def one(name: str) -> dict[str, Any] | None:
            try:
                raw = await self.ask(self.subjects.query(name, "status"), b"", 3.0)
            except Unanswered:
                return None
            return ServiceStatus.model_validate_json(raw).model_dump(mode="json")

        found = await asyncio.gather(*(one(name) for name in SERVICES))
        services = dict(zip(SERVICES, found, strict=True))
        return web.json_response(
            {
                "gateway": {
                    "state": "running" if self.nc.is_connected else "disconnected",
                    "started_at": self.started_at.isoformat(),
                    "webhook_sources": sorted(self.sources),
                },
                "services": services,
            }
        )

    async def health(self, _: web.Request) -> web.Response:
        """For a container's health check: up, and connected to NATS."""
        if not self.nc.is_connected:
            return rejected(503, ErrorCode.UNAVAILABLE, "not connected to NATS")
        return web.json_response({"status": "ok"})

    async def openapi_document(self, _: web.Request) -> web.Response:
        return web.Response(body=self.openapi, content_type="application/json")


# --- helpers ----------------------------------------------------------------------------------


class BadParameter(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class KeyRefused(ValueError):
    def __init__(self, message: str, value: str) -> None:
        super().__init__(message)
        self.details = (FieldError(field="Idempotency-Key", message=message, input=value[:200]),)


def _integer(params: Any, name: str, default: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 12:
        raise BadParameter(name, f"{text[:20]!r} is not a whole number")
    return int(text)


def _time(params: Any, name: str, now: datetime) -> datetime:
    try:
        return times.parse_time(params[name], now)
    except (ValueError, OverflowError) as error:
        raise BadParameter(name, str(error)[:300]) from error


def bad_request(error: ValidationError | BadParameter) -> web.Response:
    if isinstance(error, BadParameter):
        details = [{"field": error.name, "message": error.message}]
        message = f"bad parameter {error}"
    else:
        details = [
            {"field": ".".join(map(str, e["loc"])) or "(query)", "message": e["msg"]}
            for e in error.errors(include_url=False)
        ]
        message = "bad parameters: " + "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return rejected(400, ErrorCode.VALIDATION_FAILED, message, details)


def unavailable(missing: Unanswered, command_id: str | None = None) -> web.Response:
    log.warning("http.unanswered", subject=missing.subject, reason=str(missing))
    return rejected(
        503,
        ErrorCode.UNAVAILABLE,
        f"{missing}; retry later (a command: with the same Idempotency-Key)",
        command_id=command_id,
    )


def reply_response(raw: bytes) -> web.Response:
    """Intake's answer as it came, with the HTTP status of its outcome."""
    reply = REPLY.validate_json(raw)
    if isinstance(reply, CommandAccepted):
        return web.Response(body=raw, status=200, content_type="application/json")
    code = str(reply.error.code)
    status = STATUS.get(code, 503 if code.endswith("unavailable") else 500)
    headers = None
    if status in (429, 503):
        wait = getattr(reply.error, "retry_after_seconds", None)
        headers = {"Retry-After": str(max(1, math.ceil(wait))) if wait else "1"}
    return web.Response(body=raw, status=status, content_type="application/json", headers=headers)


async def read_capped(request: web.Request, limit: int) -> tuple[bytes, bool]:
    """The body, and whether it was larger than `limit` (then only its first bytes are
    read, enough to keep in the rejection)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return await request.content.read(limit), True
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True


def with_command_id(body: bytes, key: str | None) -> bytes:
    """The body with `command_id` = the `Idempotency-Key` header. A body that is no JSON
    object goes on unchanged (intake refuses it as `malformed` and keeps it)."""
    if key is None:
        return body
    if not re.fullmatch(_KEY_PATTERN, key):
        raise KeyRefused(
            "letters, digits, '_', '-' or ':', at most 128 (it is the command id)", key
        )
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return body
    if not isinstance(data, dict):
        return body
    given = data.get("command_id")
    if given is not None:
        if given != key:
            raise KeyRefused(f"differs from the body's command_id {str(given)[:128]!r}", key)
        return body
    # Spliced in rather than re-serialised: the body reaches intake (and its rejection
    # record) byte for byte as the client sent it, plus the id.
    start = body.index(b"{") + 1
    rest = body[start:]
    separator = b"" if rest.lstrip().startswith(b"}") else b","
    return body[:start] + b'"command_id":' + json.dumps(key).encode() + separator + rest
