"""`PortfolioClient`: the small async Python client other tools use to talk to the backend.

Commands are the typed models of `contracts` (mypy checks their fields). A command keeps
its `command_id` across retries, so a retry after a timeout can never append twice.
`send_raw` takes a command as JSON text (what the CLI and the importer hold); queries,
replay and the alert feed are here too, so the CLI builds no NATS request of its own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts.base import (
    Command,
    CommandAccepted,
    CommandRejected,
    CommandReply,
    ErrorCode,
    Rejection,
    new_id,
)
from contracts.queries import (
    AuditAnswer,
    AuditEntry,
    AuditQuery,
    ProjectsAnswer,
    ReplayStarted,
    ServiceStatus,
)
from contracts.subjects import RESULTS_STREAM, SERVICES, Subjects
from shared import tracing
from shared.commands import printable
from shared.rejections import read_rejections

Reply = CommandAccepted | CommandRejected
REPLY: TypeAdapter[Reply] = TypeAdapter(CommandReply)
C = TypeVar("C", bound=Command)
M = TypeVar("M", bound=BaseModel)
#: Answers worth asking again with the same command id: the sender is told to come back.
RETRIED = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})


class NoAnswer(TimeoutError):
    """Nobody answered a request: no service listens on the subject, or none in time."""

    def __init__(self, subject: str, why: str) -> None:
        self.subject = subject
        super().__init__(f"{why} on {subject}")


class PortfolioClient:
    def __init__(
        self,
        nc: Client,
        *,
        subjects: Subjects | None = None,
        timeout: float = 5.0,
        attempts: int = 4,
        actor: str | None = None,
        source: str | None = None,
        principal: str | None = None,
        budget: float = 30.0,
    ) -> None:
        """`principal`: the NATS user this client connects as, named in the subject of every
        command (`portfolio.cmd.<Command>.<user>`) when the server lets each user publish
        only under its own name; intake then knows who sent it (actor binding).
        `budget`: seconds a command keeps being resent, with the same command id, while
        there is no answer or the answer is `unavailable` (a leader election takes 4-9 s,
        intake waits out 20 s itself); at least `attempts` sends either way."""
        self.nc = nc
        self.subjects = subjects or Subjects()
        self.timeout = timeout
        self.attempts = attempts
        self.budget = budget
        self.actor = actor
        self.source = source
        self.principal = principal
        self._owns_connection = False

    @classmethod
    async def connect(
        cls,
        servers: str | list[str],
        nats_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> PortfolioClient:
        """`nats_options`: for `nats.connect`, e.g. `PortfolioSettings.nats_options()` (the
        user, and its own reply inbox prefix, which the shipped permissions require)."""
        client = cls(await nats.connect(servers, **(nats_options or {})), **options)
        client._owns_connection = True
        return client

    async def close(self) -> None:
        if self._owns_connection:
            await self.nc.close()

    async def __aenter__(self) -> PortfolioClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _stamped(self, command: C) -> C:
        """Fill in this client's actor and source where the command left the defaults."""
        update: dict[str, str] = {}
        if self.actor and command.actor == "anonymous":
            update["actor"] = self.actor
        if self.source and command.source == "unknown":
            update["source"] = self.source
        return command.model_copy(update=update) if update else command

    def _named(self, subject: str) -> str:
        return f"{subject}.{self.principal}" if self.principal else subject

    async def _request(self, subject: str, body: bytes, timeout: float | None = None) -> bytes:
        wait = self.timeout if timeout is None else timeout
        try:
            # The current trace context, when tracing is on (shared/tracing.py).
            msg = await self.nc.request(subject, body, timeout=wait, headers=tracing.headers())
        except nats.errors.NoRespondersError as error:
            raise NoAnswer(subject, "no responders (is the service running?)") from error
        except TimeoutError as error:
            raise NoAnswer(subject, f"no answer within {wait:g}s (timeout)") from error
        return bytes(msg.data)

    async def send(self, command: Command) -> Reply:
        """Request/reply through intake; retried on timeouts and rate limiting. When tracing
        is on, one span per command, its context in the headers of every attempt."""
        with tracing.span(f"send {type(command).__name__}", kind=SpanKind.CLIENT):
            return await self._send(command)

    async def _send(self, command: Command) -> Reply:
        command = self._stamped(command)
        subject = self._named(self.subjects.command(type(command).__name__))
        body = command.model_dump_json(exclude_none=True).encode()
        deadline = asyncio.get_running_loop().time() + self.budget
        attempt = 0
        while True:
            attempt += 1
            hint = None
            try:
                raw = await self._request(subject, body)
            except NoAnswer:
                if not self._again(attempt, deadline):
                    raise
            else:
                reply = REPLY.validate_json(raw)
                again = isinstance(reply, CommandRejected) and reply.error.code in RETRIED
                if not again or not self._again(attempt, deadline):
                    return reply
                assert isinstance(reply, CommandRejected)
                hint = reply.error.retry_after_seconds
            await asyncio.sleep(self._pause(attempt, deadline, hint))

    def _again(self, attempt: int, deadline: float) -> bool:
        """Send once more: fewer than `attempts` sends so far, or the budget not spent."""
        return attempt < self.attempts or asyncio.get_running_loop().time() < deadline

    def _pause(self, attempt: int, deadline: float, hint: float | None) -> float:
        left = max(0.0, deadline - asyncio.get_running_loop().time())
        return min(hint if hint is not None else 0.1 * 2 ** min(attempt, 4), max(left, 0.1))

    def stamped_json(self, body: bytes) -> tuple[bytes, bool]:
        """A command written as JSON, with this client's actor and source where it names
        none (or the defaults) and a command id where it has none, so that a resend is the
        same command. Anything but a JSON object goes as it is (intake answers for it);
        the flag says whether the body has a command id (only then is a resend safe)."""
        try:
            data = json.loads(body)
        except ValueError:
            return body, False
        if not isinstance(data, dict):
            return body, False
        before = dict(data)
        if self.actor and data.get("actor", "anonymous") == "anonymous":
            data["actor"] = self.actor
        if self.source and data.get("source", "unknown") == "unknown":
            data["source"] = self.source
        data.setdefault("command_id", new_id())
        if data == before:
            return body, True
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(), True

    async def send_raw(self, command: str, body: bytes, timeout: float | None = None) -> bytes:
        """One command by name, as JSON text, stamped (`stamped_json`); intake's raw answer.
        Asked again with the same command id on a timeout or a `rate_limited` or
        `unavailable` answer, up to `attempts` times."""
        with tracing.span(f"send {command[:64]}", kind=SpanKind.CLIENT):
            return await self._send_raw(command, body, timeout)

    async def _send_raw(self, command: str, body: bytes, timeout: float | None) -> bytes:
        subject = self._named(self.subjects.command(command))
        body, resendable = self.stamped_json(body)
        deadline = asyncio.get_running_loop().time() + (self.budget if resendable else 0.0)
        attempts = self.attempts if resendable else 1
        attempt = 0
        while True:
            attempt += 1
            hint = None
            more = attempt < attempts or asyncio.get_running_loop().time() < deadline
            try:
                raw = await self._request(subject, body, timeout)
            except NoAnswer:
                if not more:
                    raise
            else:
                try:
                    reply = REPLY.validate_json(raw)
                except ValidationError:
                    return raw
                again = isinstance(reply, CommandRejected) and reply.error.code in RETRIED
                if not again or not more:
                    return raw
                assert isinstance(reply, CommandRejected)
                hint = reply.error.retry_after_seconds
            await asyncio.sleep(self._pause(attempt, deadline, hint))

    async def send_to_inbox(self, command: Command) -> str:
        """Fire-and-forget into the durable inbox; returns the id to fetch the result by."""
        command = self._stamped(command)
        name = type(command).__name__
        with tracing.span(f"send {name} to the inbox", kind=SpanKind.PRODUCER):
            await self.nc.jetstream().publish(
                self._named(self.subjects.inbox(name)),
                command.model_dump_json(exclude_none=True).encode(),
                headers=tracing.inject({"Nats-Msg-Id": command.command_id}),
            )
        return command.command_id

    async def result(self, command_id: str, timeout: float = 30.0) -> Reply:
        """The outcome of an inbox command, waiting for it if intake has not answered yet."""
        js = self.nc.jetstream()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                msg = await js.get_last_msg(RESULTS_STREAM, self.subjects.result(command_id))
            except NotFoundError:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"no result for {command_id} yet") from None
                await asyncio.sleep(0.05)
                continue
            assert msg.data is not None
            return REPLY.validate_json(msg.data)

    async def _query(self, service: str, name: str, body: Any, model: type[M]) -> M:
        raw = await self._request(self.subjects.query(service, name), json.dumps(body).encode())
        return model.model_validate_json(raw)

    async def query(
        self, service: str, name: str, body: Any = None, timeout: float | None = None
    ) -> Any:
        """A read-side query (`<prefix>.query.<service>.<name>`), its answer as JSON: a
        refusal is an object with an `error` field."""
        subject = self.subjects.query(service, name)
        return json.loads(await self._request(subject, json.dumps(body or {}).encode(), timeout))

    async def control(
        self, service: str, name: str, body: Any = None, timeout: float | None = None
    ) -> Any:
        """An operation on a service (`<prefix>.control.<service>.<name>`): a replay, a
        report published, a scenario committed; its answer as JSON."""
        subject = self.subjects.control(service, name)
        data = b"" if body is None else json.dumps(body).encode()
        return json.loads(await self._request(subject, data, timeout))

    async def status(self, service: str) -> ServiceStatus:
        return await self._query(service, "status", {}, ServiceStatus)

    async def statuses(self, timeout: float = 3.0) -> dict[str, ServiceStatus | None]:
        """Every service's status, asked at once; None for one that does not answer, or
        answers what this version cannot read (another version's, or anything a stranger
        on the subject sends): the others' are still shown."""

        async def one(service: str) -> ServiceStatus | None:
            try:
                raw = await self._request(self.subjects.query(service, "status"), b"", timeout)
                return ServiceStatus.model_validate_json(raw)
            except (NoAnswer, ValidationError):
                return None

        found = await asyncio.gather(*(one(service) for service in SERVICES))
        return dict(zip(SERVICES, found, strict=True))

    async def replay(self, service: str, timeout: float = 30.0) -> ReplayStarted:
        """Start rebuilding a service's projection from the whole log."""
        subject = self.subjects.control(service, "replay")
        return ReplayStarted.model_validate_json(await self._request(subject, b"", timeout))

    async def projects(self, service: str = "reporting") -> ProjectsAnswer:
        return await self._query(service, "projects", {}, ProjectsAnswer)

    async def audit(self, query: AuditQuery | None = None) -> AuditAnswer:
        body = (query or AuditQuery()).model_dump(mode="json", exclude_none=True)
        return await self._query("reporting", "audit", body, AuditAnswer)

    async def audit_entries(
        self, query: AuditQuery | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        """Up to `limit` entries of the decision history, page after page."""
        entries: list[AuditEntry] = []
        page = query or AuditQuery()
        while len(entries) < limit:
            answer = await self.audit(page)
            entries.extend(answer.entries)
            if answer.next_after_position is None:
                break
            page = page.model_copy(update={"after_position": answer.next_after_position})
        return entries[:limit]

    async def rejections(self, last: int = 1000) -> list[Rejection]:
        """The most recent refused inputs, raw, with their reasons, oldest first."""
        js = self.nc.jetstream()
        return [r async for r in read_rejections(js, self.subjects, last)]

    async def follow_alerts(self) -> AsyncGenerator[dict[str, Any], None]:
        """Every alert raised or cleared from now on, as published (JSON objects). A message
        on the alerts stream that is not one (the embedded server lets anyone publish) comes
        as `{"event": "Unreadable", "raw": <its start>}`, and the feed goes on."""
        sub = await self.nc.jetstream().subscribe(
            self.subjects.alerts_all, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        try:
            async for msg in sub.messages:
                try:
                    alert = json.loads(msg.data)
                except (ValueError, RecursionError):
                    alert = None
                if not isinstance(alert, dict):
                    raw = printable(msg.data[:200].decode("utf-8", "replace"))
                    alert = {"event": "Unreadable", "raw": raw}
                yield alert
        finally:
            await sub.unsubscribe()
