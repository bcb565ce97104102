"""Shared building blocks: the event envelope, the command base, replies and errors."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

#: An identifier that is also a valid NATS subject token (aggregate ids end up in subjects).
Identifier = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]+$", min_length=1, max_length=64)
]
#: Who or what acted: a person's login or a tool's name.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
#: Why a decision was taken; required on approvals, rejections, holds and cancellations.
Rationale = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=4000)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=5000)]
#: Money is decimal, never float: at most 2 decimal places, up to a trillion.
Money = Annotated[Decimal, Field(ge=0, le=Decimal("1e12"), max_digits=16, decimal_places=2)]


#: A delivery's target: an http(s) URL, or an e-mail address; neither with whitespace (a
#: line break in a mail header is a header of its own).
URL = re.compile(r"https?://[^\s/]+[^\s]*")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _expressible_in_utc(moment: datetime) -> datetime:
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time lies outside years 1-9999 once converted to UTC") from None
    return moment


#: A time with its UTC offset that is also a time in UTC: 9999-12-31T23:59:59-14:00 is
#: after the last representable instant, and a projection storing UTC could not hold it.
UtcTime = Annotated[AwareDatetime, AfterValidator(_expressible_in_utc)]

#: A reference from a command to another aggregate: (aggregate type, id).
AggregateKey = tuple[str, str]


class FrozenModel(BaseModel):
    """Every contract is immutable and refuses fields it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def new_id() -> str:
    return str(uuid.uuid4())


class Command(FrozenModel):
    """Fields every command carries besides its own.

    `command_id` is the idempotency key: a repeat with the same id returns the first answer.
    """

    command_id: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9_\-:]+$", min_length=1, max_length=128)
    ] = Field(default_factory=new_id, description="Also a subject token: no dots or spaces.")
    actor: Name = "anonymous"
    source: Name = "unknown"
    correlation_id: Identifier | None = None
    occurred_at: UtcTime | None = Field(
        default=None, description="Business time of the fact; defaults to the time intake saw it."
    )
    expected_version: int | None = Field(
        default=None,
        ge=0,
        strict=True,
        description="Optimistic concurrency: the aggregate version the sender decided on.",
    )

    #: The aggregate a command addresses: its type and the field holding its id.
    aggregate_type: ClassVar[str]
    id_field: ClassVar[str]

    def aggregate_key(self) -> AggregateKey:
        return (self.aggregate_type, str(getattr(self, self.id_field)))

    def references(self) -> tuple[AggregateKey, ...]:
        """Other aggregates the decision must see (e.g. the objectives a project serves)."""
        return ()


class EventEnvelope(FrozenModel):
    """One entry of the log. The payload is typed per `event_type` (see contracts.registry)."""

    event_id: str
    event_type: str
    schema_version: int = Field(ge=1)
    aggregate_type: str
    aggregate_id: str
    actor: str
    source: str
    occurred_at: datetime
    recorded_at: datetime
    correlation_id: str
    causation_id: str
    payload: dict[str, Any]
    #: The command that caused the event (its type, e.g. `ProposeProject`); None for a
    #: service's own decisions and for events written before it was recorded.
    command: str | None = None
    #: The hash chain (shared/chain.py): SHA-256 of the aggregate's previous link and this
    #: envelope's canonical JSON, added by the writer. None on events from before the chain.
    chain_hash: str | None = None


class RecordedEvent(FrozenModel):
    """An envelope as read back from the log, with its position (the stream sequence)."""

    position: int = Field(ge=1)
    envelope: EventEnvelope


class ErrorCode(StrEnum):
    MALFORMED = "malformed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNKNOWN_COMMAND = "unknown_command"
    VALIDATION_FAILED = "validation_failed"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    ILLEGAL_TRANSITION = "illegal_transition"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    UNAVAILABLE = "unavailable"
    #: The log could not be read to its end (the server paused or electing): try again.
    LOG_UNAVAILABLE = "log_unavailable"
    INTERNAL = "internal"


class FieldError(FrozenModel):
    field: str
    message: str
    input: Any = None


class ErrorInfo(FrozenModel):
    code: ErrorCode
    message: str
    details: tuple[FieldError, ...] = ()
    #: For `unavailable`: when to send the same command (same id) again, in seconds.
    retry_after_seconds: float | None = None


class AppendedEvent(FrozenModel):
    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    position: int
    version: int


class CommandAccepted(FrozenModel):
    status: Literal["accepted"] = "accepted"
    command_id: str
    events: tuple[AppendedEvent, ...]
    duplicate: bool = False


class CommandRejected(FrozenModel):
    status: Literal["rejected"] = "rejected"
    command_id: str | None
    error: ErrorInfo


CommandReply = Annotated[CommandAccepted | CommandRejected, Field(discriminator="status")]


class Rejection(FrozenModel):
    """What the rejections stream keeps: the raw input and why it was refused."""

    rejection_id: str
    received_at: datetime
    subject: str
    command_type: str | None
    command_id: str | None
    actor: str | None
    error: ErrorInfo
    raw: str
    raw_encoding: Literal["utf-8", "base64"]
    raw_size: int
    raw_truncated: bool = False
