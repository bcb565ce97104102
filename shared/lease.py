"""Active and standby instances of one service: a lease in a JetStream KV bucket.

Each service's projection has exactly one writer. Instances race to create the key
`<service>` in the bucket `PORTFOLIO_LEASES`; the winner renews it well within the TTL and
works, the others stand by (connected, started, waiting) and retry. When the active one
dies, its last revision expires after the TTL and a standby takes over within seconds.
Why not partitioned consumers: every service here folds the whole log into one state
(rankings, pools, alert rules), which cannot be split by aggregate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = structlog.get_logger(__name__)

BUCKET = "PORTFOLIO_LEASES"


class Lease:
    def __init__(
        self,
        js: JetStreamContext,
        name: str,
        ttl: float,
        on_lost: Callable[[], Awaitable[None]],
    ) -> None:
        self.js = js
        self.name = name
        self.ttl = ttl
        self.on_lost = on_lost
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.revision: int | None = None
        self._kv: KeyValue | None = None
        self._renewer: asyncio.Task[None] | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(BUCKET)
            except BucketNotFoundError:
                self._kv = await self.js.create_key_value(
                    KeyValueConfig(bucket=BUCKET, ttl=self.ttl, storage=StorageType.FILE, history=1)
                )
        return self._kv

    async def acquire(self) -> None:
        """Wait until this instance holds the lease (at once when nobody else does)."""
        kv = await self._bucket()
        announced = False
        while True:
            with contextlib.suppress(KeyWrongLastSequenceError, Exception):
                self.revision = await kv.create(self.name, self.holder.encode())
            if self.revision is not None:
                break
            if not announced:
                log.info("lease.standby", service=self.name)
                announced = True
            await asyncio.sleep(self.ttl / 4)
        log.info("lease.acquired", service=self.name, holder=self.holder)
        self._renewer = asyncio.create_task(self._renew(), name=f"lease:{self.name}")

    async def _renew(self) -> None:
        kv = await self._bucket()
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                assert self.revision is not None
                self.revision = await kv.update(self.name, self.holder.encode(), last=self.revision)
            except Exception:  # lost: another instance holds it now, or NATS is gone (logged)
                log.exception("lease.lost", service=self.name)
                self.revision = None
                await self.on_lost()
                return

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self.revision is not None and self._kv is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(self.name, last=self.revision)
            self.revision = None
