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
import time
import uuid

import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = structlog.get_logger(__name__)

BUCKET = "PORTFOLIO_LEASES"
#: Work stops once this share of the TTL has passed since the last renewal was sent, so it
#: stops before the key can expire on the server and a standby take over.
SAFE_SHARE = 0.8


class Lease:
    def __init__(
        self,
        js: JetStreamContext,
        name: str,
        ttl: float,
        replicas: int = 1,
    ) -> None:
        self.js = js
        self.name = name
        self.ttl = ttl
        #: As many as the log's: a lease kept on one node would die with that node.
        self.replicas = replicas
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.revision: int | None = None
        #: When the write that last set our revision was sent: the server expires the key
        #: `ttl` after it landed, so the lease is surely ours until this plus `ttl`.
        self._written_at = 0.0
        self._kv: KeyValue | None = None
        self._renewer: asyncio.Task[None] | None = None
        #: Set when the lease is lost: the holder must stop working (`wait_lost`).
        self._lost = asyncio.Event()

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(BUCKET)
            except BucketNotFoundError:
                self._kv = await self.js.create_key_value(
                    KeyValueConfig(
                        bucket=BUCKET,
                        ttl=self.ttl,
                        storage=StorageType.FILE,
                        history=1,
                        replicas=self.replicas,
                    )
                )
        return self._kv

    async def acquire(self) -> None:
        """Wait until this instance holds the lease (at once when nobody else does). NATS
        being unreachable or the bucket electing a leader is waited out the same way."""
        announced = False
        trouble = ""
        while True:
            self._written_at = time.monotonic()
            try:
                kv = await self._bucket()
                self.revision = await kv.create(self.name, self.holder.encode())
                break
            except KeyWrongLastSequenceError:  # another instance holds it
                if not announced:
                    log.info("lease.standby", service=self.name)
                    announced = True
            except Exception as error:  # noqa: BLE001 - waited out; logged when it changes
                if repr(error) != trouble:
                    trouble = repr(error)
                    log.warning("lease.unavailable", service=self.name, error=trouble)
            await asyncio.sleep(self.ttl / 4)
        log.info("lease.acquired", service=self.name, holder=self.holder)
        self._lost.clear()
        self._renewer = asyncio.create_task(self._renew(), name=f"lease:{self.name}")

    async def wait_lost(self) -> None:
        """Return once the lease held since the last `acquire` is lost."""
        await self._lost.wait()

    async def _renew(self) -> None:
        """Renew well within the TTL. A renewal that fails (a node died, the bucket elects a
        leader, NATS reconnects) is tried again while the lease surely is still ours; it is
        lost when another instance took it, or when the TTL may have run out."""
        kv = await self._bucket()
        while True:
            await asyncio.sleep(self.ttl / 6)
            left = self._written_at + self.ttl * SAFE_SHARE - time.monotonic()
            if left <= 0:
                log.error("lease.lost", service=self.name, reason="not renewed within the TTL")
                break
            sent = time.monotonic()
            try:
                assert self.revision is not None
                update = kv.update(self.name, self.holder.encode(), last=self.revision)
                self.revision = await asyncio.wait_for(update, left)
                self._written_at = sent
            except KeyWrongLastSequenceError:
                if await self._still_ours(kv):
                    continue
                log.error("lease.lost", service=self.name, reason="another instance holds it")
                break
            except Exception as error:  # noqa: BLE001 - retried until the TTL says otherwise
                log.warning("lease.renew_failed", service=self.name, error=repr(error))
        self.revision = None
        # Only a signal: the renewer runs no one else's code, so cancelling it is reliable.
        self._lost.set()

    async def _still_ours(self, kv: KeyValue) -> bool:
        """A renewal that landed unanswered moved the revision: adopt it if it is ours."""
        try:
            entry = await kv.get(self.name)
        except Exception:  # noqa: BLE001 - cannot tell: not ours
            return False
        if entry.value != self.holder.encode() or entry.revision is None:
            return False
        self.revision = entry.revision
        return True

    async def release(self) -> None:
        """Stop renewing and delete the lease, so a standby need not wait for the TTL."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self.revision is not None and self._kv is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(self.name, last=self.revision)
            self.revision = None
