"""Keeping refused inputs, raw, with their reason, in the rejections stream."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from contracts.base import ErrorCode, ErrorInfo, Rejection
from contracts.subjects import REJECTIONS_STREAM, Subjects
from shared.commands import printable

log = structlog.get_logger(__name__)


def make_rejection(
    subject: str,
    body: bytes,
    error: ErrorInfo,
    command_type: str | None,
    command_id: str | None,
    actor: str | None,
    raw_limit: int,
) -> Rejection:
    kept = body[:raw_limit]
    try:
        raw, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return Rejection(
        rejection_id=str(uuid.uuid4()),
        received_at=datetime.now(UTC),
        subject=subject,
        command_type=command_type,
        command_id=command_id,
        actor=actor,
        error=error,
        raw=raw,
        raw_encoding=encoding,  # type: ignore[arg-type]
        raw_size=len(body),
        raw_truncated=len(body) > raw_limit,
    )


async def keep_rejection(js: JetStreamContext, subjects: Subjects, rejection: Rejection) -> None:
    try:
        await js.publish(
            subjects.rejection(rejection.command_type),
            rejection.model_dump_json().encode(),
            headers={"Nats-Msg-Id": rejection.rejection_id},
        )
    except Exception:
        log.exception("rejection.not_kept", rejection_id=rejection.rejection_id)


async def read_rejections(
    js: JetStreamContext, subjects: Subjects, last: int = 1000
) -> AsyncIterator[Rejection]:
    """The most recent `last` rejections, oldest first."""
    info = await js.stream_info(REJECTIONS_STREAM)
    end = info.state.last_seq
    if not info.state.messages:
        return
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(info.state.first_seq, end - last + 1),
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
        mem_storage=True,
        filter_subject=subjects.rejections_all,
    )
    sub = await js.pull_subscribe(subjects.rejections_all, stream=REJECTIONS_STREAM, config=config)
    try:
        while True:
            try:
                msgs = await sub.fetch(500, timeout=2.0)
            except TimeoutError:
                return
            for msg in msgs:
                yield _rejection_of(msg)
                if msg.metadata.sequence.stream >= end:
                    return
    finally:
        await sub.unsubscribe()


#: How much of a message that is not a rejection record is shown in its place.
UNREADABLE_RAW_LIMIT = 4096


def _rejection_of(msg: Msg) -> Rejection:
    """The record a message on the stream holds; for one that holds none (the embedded
    server lets anyone publish there), a record of its own saying so, with its bytes, so
    that the rejections around it can still be read."""
    try:
        return Rejection.model_validate_json(msg.data)
    except ValidationError as error:
        problem = ErrorInfo(
            code=ErrorCode.MALFORMED,
            message=(
                "not a rejection record (written by something other than the portfolio's "
                f"services): {printable(str(error.errors()[0]['msg']))}"
            ),
        )
        kept = make_rejection(
            msg.subject, msg.data, problem, None, None, None, UNREADABLE_RAW_LIMIT
        )
        position = msg.metadata.sequence.stream
        return kept.model_copy(
            update={"rejection_id": f"unreadable-{position}", "received_at": msg.metadata.timestamp}
        )
