"""Turning raw bytes from the wire into a typed command, or a precise error."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from contracts.base import Command, ErrorCode, ErrorInfo, EventEnvelope, FieldError, FrozenModel
from contracts.registry import COMMANDS, CURRENT_VERSION

#: Event ids derive from the command id, so a retried command yields the same message ids.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2b7e-3a51-4d6e-9a43-5f0e8f6c2d10")


class InvalidInput(Exception):
    def __init__(
        self, error: ErrorInfo, command_id: str | None = None, actor: str | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.command_id = command_id
        self.actor = actor


def parse_command(name: str, body: bytes, max_bytes: int) -> Command:
    if len(body) > max_bytes:
        raise InvalidInput(
            ErrorInfo(
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                message=f"command is {len(body)} bytes; the limit is {max_bytes}",
            )
        )
    model = COMMANDS.get(name)
    if model is None:
        raise InvalidInput(
            ErrorInfo(
                code=ErrorCode.UNKNOWN_COMMAND,
                message=f"unknown command {name!r}; known: {', '.join(sorted(COMMANDS))}",
            )
        )
    try:
        return model.model_validate_json(body)
    except (ValueError, RecursionError):
        pass  # one pass in pydantic's core for good input; the slow path below explains bad
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise InvalidInput(
            ErrorInfo(code=ErrorCode.MALFORMED, message=f"body is not UTF-8: {error}")
        ) from error
    except RecursionError as error:
        raise InvalidInput(
            ErrorInfo(code=ErrorCode.MALFORMED, message="body is nested too deeply")
        ) from error
    except json.JSONDecodeError as error:
        raise InvalidInput(
            ErrorInfo(
                code=ErrorCode.MALFORMED,
                message=(
                    f"body is not JSON: {error.msg} at line {error.lineno} column {error.colno}"
                ),
            )
        ) from error
    if not isinstance(data, dict):
        raise InvalidInput(
            ErrorInfo(
                code=ErrorCode.MALFORMED,
                message=f"body must be a JSON object, got {type(data).__name__}",
            )
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        command_id = data.get("command_id")
        details = tuple(_field_error(e) for e in error.errors(include_url=False))
        summary = "; ".join(f"{d.field}: {d.message}" for d in details[:3])
        more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
        raise InvalidInput(
            ErrorInfo(
                code=ErrorCode.VALIDATION_FAILED,
                message=f"{name} is invalid: {summary}{more}",
                details=details,
            ),
            command_id=command_id if isinstance(command_id, str) else None,
        ) from error


def _field_error(error: Any) -> FieldError:
    location = ".".join(str(part) for part in error["loc"]) or "(body)"
    value = error.get("input")
    if not isinstance(value, str | int | float | bool | type(None)):
        value = repr(value)[:200]
    elif isinstance(value, str):
        value = value[:200]
    return FieldError(field=location, message=error["msg"], input=value)


def envelope_for(
    command: Command,
    event: FrozenModel,
    aggregate: tuple[str, str],
    index: int,
    now: datetime,
) -> EventEnvelope:
    """The event's envelope, built from a validated command and event: not validated again,
    as it is on every command's path."""
    event_type = type(event).__name__
    return EventEnvelope.model_construct(
        event_id=str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{command.command_id}/{index}")),
        event_type=event_type,
        schema_version=CURRENT_VERSION[event_type],
        aggregate_type=aggregate[0],
        aggregate_id=aggregate[1],
        actor=command.actor,
        source=command.source,
        occurred_at=command.occurred_at or now,
        recorded_at=now,
        correlation_id=command.correlation_id or command.command_id,
        causation_id=command.command_id,
        payload=event.model_dump(mode="json"),
    )
