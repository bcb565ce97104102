"""Pulling a durable JetStream consumer in batches, without a task per message.

nats-py's `PullSubscription.fetch` waits for every message with `asyncio.wait_for` on a
task of its own (and a uuid for it): about a sixth of a replay's CPU went there. Here one
subscription callback keeps the deliveries in the order the server sends them, and
`fetch` hands out what has arrived. One pull request is outstanding at a time; the next is
sent as a batch is handed out, so the server streams the following batch while the caller
applies this one (the consumer must allow twice the batch unacknowledged for that).

A request lingers on the server for the caller's timeout: with a backlog it is answered
at once, when caught up a new event is delivered the moment it is appended. Deliveries
are only ever in the consumer's order, so a message that arrives after a local timeout is
simply handed out by the next fetch.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from datetime import UTC, datetime

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import APIError

#: Status codes that end a pull request without an error: no messages (404), the request
#: expired (408), or the server cut it short (409: leadership change, consumer deleted,
#: too many waiting requests); the next fetch sends a new one.
REQUEST_ENDED = frozenset({"404", "408", "409"})
HEARTBEAT = "100"
NO_RESPONDERS = "503"
#: The request expires this much before the caller stops waiting, so its end (a 408)
#: normally arrives within the fetch that sent it.
EXPIRY_MARGIN = 0.05
#: A request whose end has not arrived this long after it expired is taken as lost (the
#: server restarted, the connection was replaced): the next fetch sends another.
LOST_AFTER = 1.0


def _plain_tokens(msg: Msg) -> list[str] | None:
    """The reply subject's tokens in the plain form the server sends,
    `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`;
    None for any other (left to nats-py's parser)."""
    tokens = msg.reply.split(".") if msg.reply else []
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return tokens
    return None


def position_of(msg: Msg) -> int:
    """A log message's stream sequence, read from its reply subject: nats-py's `metadata`
    builds a datetime and three dataclasses per message, a cost a replay paid for every
    event."""
    tokens = _plain_tokens(msg)
    return int(tokens[5]) if tokens is not None else msg.metadata.sequence.stream


def stored_at(msg: Msg) -> datetime:
    """When the message was stored (as `position_of`), the very value nats-py's
    `metadata.timestamp` gives, so cuts by time fall where they always fell."""
    tokens = _plain_tokens(msg)
    if tokens is None:
        return msg.metadata.timestamp
    return datetime.fromtimestamp(int(tokens[7]) / 1_000_000_000.0, UTC)


class BatchPuller:
    """`fetch(batch, timeout)` as nats-py's, on a durable pull consumer that exists."""

    def __init__(self, js: JetStreamContext, stream: str, consumer: str) -> None:
        # nats-py keeps the connection and the API prefix of a JetStream context private.
        self._nc: Client = js._nc
        self._next = f"{js._prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = self._nc.new_inbox()
        self._buffer: deque[Msg] = deque()
        #: Messages the outstanding request may still deliver (0: none outstanding).
        self._owed = 0
        self._expires_at = 0.0
        self._arrived = asyncio.Event()
        self._error: Exception | None = None
        self._sub: Subscription | None = None

    async def start(self) -> BatchPuller:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)
        return self

    async def unsubscribe(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to `batch` messages as soon as any is there; `nats.errors.TimeoutError`
        when none arrives within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._buffer:
                count = min(batch, len(self._buffer))
                taken = [self._buffer.popleft() for _ in range(count)]
                if self._owed == 0:
                    await self._request(batch, timeout)  # the next batch streams meanwhile
                return taken
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise nats.errors.TimeoutError
            if self._owed and loop.time() > self._expires_at + LOST_AFTER:
                self._owed = 0
            if self._owed == 0:
                await self._request(batch, remaining)
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                if not self._buffer and self._error is None:
                    raise nats.errors.TimeoutError from None

    async def _request(self, batch: int, expires: float) -> None:
        linger = max(expires - EXPIRY_MARGIN, 0.001)
        body = json.dumps({"batch": batch, "expires": int(linger * 1e9)}).encode()
        self._owed = batch
        self._expires_at = asyncio.get_running_loop().time() + linger
        await self._nc.publish(self._next, body, reply=self._inbox)

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._buffer.append(msg)
            self._owed = max(0, self._owed - 1)
        elif status == HEARTBEAT:
            return
        elif status in REQUEST_ENDED:
            self._owed = 0
        elif status == NO_RESPONDERS:
            self._owed = 0
            self._error = nats.errors.NoRespondersError()
        else:
            self._owed = 0
            self._error = APIError.from_msg(msg)
        self._arrived.set()


__all__ = ["BatchPuller", "position_of", "stored_at"]
