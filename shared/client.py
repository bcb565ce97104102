"""`PortfolioClient`: the small async Python client other tools use to talk to the backend.

Commands are the typed models of `contracts` (mypy checks their fields). A command keeps
its `command_id` across retries, so a retry after a timeout can never append twice.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from pydantic import BaseModel, TypeAdapter

from contracts.base import Command, CommandAccepted, CommandRejected, CommandReply, ErrorCode
from contracts.queries import AuditAnswer, AuditQuery, ProjectsAnswer, ServiceStatus
from contracts.subjects import RESULTS_STREAM, Subjects

Reply = CommandAccepted | CommandRejected
REPLY: TypeAdapter[Reply] = TypeAdapter(CommandReply)
C = TypeVar("C", bound=Command)
M = TypeVar("M", bound=BaseModel)


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
    ) -> None:
        """`principal`: the NATS user this client connects as, named in the subject of every
        command (`portfolio.cmd.<Command>.<user>`) when the server lets each user publish
        only under its own name; intake then knows who sent it (actor binding)."""
        self.nc = nc
        self.subjects = subjects or Subjects()
        self.timeout = timeout
        self.attempts = attempts
        self.actor = actor
        self.source = source
        self.principal = principal
        self._owns_connection = False

    @classmethod
    async def connect(cls, servers: str | list[str], **options: Any) -> PortfolioClient:
        client = cls(await nats.connect(servers), **options)
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

    async def send(self, command: Command) -> Reply:
        """Request/reply through intake; retried on timeouts and rate limiting."""
        command = self._stamped(command)
        subject = self._named(self.subjects.command(type(command).__name__))
        body = command.model_dump_json(exclude_none=True).encode()
        for attempt in range(1, self.attempts + 1):
            try:
                msg = await self.nc.request(subject, body, timeout=self.timeout)
            except (TimeoutError, nats.errors.NoRespondersError):
                if attempt == self.attempts:
                    raise
            else:
                reply = REPLY.validate_json(msg.data)
                limited = (
                    isinstance(reply, CommandRejected)
                    and reply.error.code == ErrorCode.RATE_LIMITED
                )
                if not limited or attempt == self.attempts:
                    return reply
            await asyncio.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    async def send_to_inbox(self, command: Command) -> str:
        """Fire-and-forget into the durable inbox; returns the id to fetch the result by."""
        command = self._stamped(command)
        await self.nc.jetstream().publish(
            self._named(self.subjects.inbox(type(command).__name__)),
            command.model_dump_json(exclude_none=True).encode(),
            headers={"Nats-Msg-Id": command.command_id},
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
        msg = await self.nc.request(
            self.subjects.query(service, name), json.dumps(body).encode(), timeout=self.timeout
        )
        return model.model_validate_json(msg.data)

    async def status(self, service: str) -> ServiceStatus:
        return await self._query(service, "status", {}, ServiceStatus)

    async def projects(self, service: str = "reporting") -> ProjectsAnswer:
        return await self._query(service, "projects", {}, ProjectsAnswer)

    async def audit(self, query: AuditQuery | None = None) -> AuditAnswer:
        body = (query or AuditQuery()).model_dump(mode="json", exclude_none=True)
        return await self._query("reporting", "audit", body, AuditAnswer)
