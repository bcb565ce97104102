"""Turning raw bytes from the wire into a typed command, or a precise error."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from contracts.base import Command, ErrorCode, ErrorInfo, EventEnvelope, FieldError, FrozenModel
from contracts.registry import COMMANDS, CURRENT_VERSION

#: Event ids derive from the command id, so a retried command yields the same message ids.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2b7e-3a51-4d6e-9a43-5f0e8f6c2d10")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def event_id_for(command_id: str, index: int) -> str:
    """The id of a command's `index`-th event: `str(uuid.uuid5(EVENT_ID_NAMESPACE,
    f"{command_id}/{index}"))`, computed without building `UUID` objects (it is on every
    command's path and every event intake's projection applies)."""
    digest = bytearray(
        hashlib.sha1(
            _NAMESPACE_BYTES + f"{command_id}/{index}".encode(), usedforsecurity=False
        ).digest()[:16]
    )
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


M = TypeVar("M", bound=BaseModel)

_object_setattr = object.__setattr__
_IMMUTABLE_DEFAULTS = (type(None), str, int, float, bool)


def trusted_constructor(model: type[M]) -> Callable[..., M]:
    """`model.model_construct` (an instance from values already valid, not validated
    again) for a model whose fields have no aliases and plain immutable defaults, without
    pydantic's per-field alias and default-factory lookups: about a third of the cost on
    every command's path. Any other model gets `model_construct` itself."""
    fields = model.__pydantic_fields__
    plain = (
        not model.__pydantic_root_model__
        and not model.__pydantic_post_init__
        and model.model_config.get("extra") != "allow"
        and all(
            info.alias is None
            and info.validation_alias is None
            and info.default_factory is None
            and (info.is_required() or type(info.default) in _IMMUTABLE_DEFAULTS)
            for info in fields.values()
        )
    )
    if not plain:
        return model.model_construct
    names = tuple(fields)
    defaults = {name: info.default for name, info in fields.items() if not info.is_required()}

    def construct(**values: Any) -> M:
        instance = model.__new__(model)
        state = {}
        for name in names:
            if name in values:
                state[name] = values[name]
            elif name in defaults:
                state[name] = defaults[name]
        _object_setattr(instance, "__dict__", state)
        _object_setattr(instance, "__pydantic_fields_set__", {n for n in values if n in fields})
        _object_setattr(instance, "__pydantic_extra__", None)
        _object_setattr(instance, "__pydantic_private__", None)
        return instance

    return construct


class InvalidInput(Exception):
    def __init__(
        self, error: ErrorInfo, command_id: str | None = None, actor: str | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.command_id = command_id
        self.actor = actor


def parse_command(name: str, body: bytes, max_bytes: int) -> Command:
    """The command `name` from `body`, or `InvalidInput` naming what is wrong and where.

    Beyond the command's contract, a body is refused when it holds a key twice (parsers
    disagree on which one wins, so the sender's meaning is unknown) or a null character (no
    database stores one in text, so it would stop the projections that read it).
    """
    if len(body) > max_bytes:
        field, size = _largest_field(body)
        where = f"; the largest field is {field} ({size} bytes)" if field != BODY else ""
        message = f"command is {len(body)} bytes; the limit is {max_bytes}{where}"
        raise InvalidInput(
            ErrorInfo(
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                message=message,
                details=(FieldError(field=field, message=f"{size} bytes", input=None),),
            )
        )
    model = COMMANDS.get(name)
    if model is None:
        shown = printable(name)[:200]
        message = f"unknown command {shown!r}; known: {', '.join(sorted(COMMANDS))}"
        raise InvalidInput(
            ErrorInfo(
                code=ErrorCode.UNKNOWN_COMMAND,
                message=message,
                details=(FieldError(field="command", message="not a command", input=shown),),
            )
        )
    try:
        command = model.model_validate_json(body)
    except (ValueError, RecursionError):
        pass  # one pass in pydantic's core for good input; the slow path below explains bad
    else:
        _check_keys_and_nulls(body, command)
        return command
    data = _load_object(body)
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
            command_id=command_id if _usable_id(command_id) else None,
        ) from error


#: The field named when the whole body is at fault.
BODY = "(body)"


def printable(text: str) -> str:
    """`text` as it can be encoded and shown: lone surrogates (valid in JSON text, not in
    UTF-8) become `\\udxxx` escapes, so an answer quoting the input can still be sent."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _usable_id(value: object) -> bool:
    """A command id worth echoing in a refusal (the reply carries it back)."""
    return isinstance(value, str) and 0 < len(value) <= 128 and printable(value) == value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return data


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _load_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object with unique keys, or `InvalidInput` (malformed)."""
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as error:
        raise _malformed(f"body is not UTF-8: {error}") from error
    except RecursionError as error:
        raise _malformed("body is nested too deeply") from error
    except _DuplicateKey as error:
        key = printable(error.key)[:200]
        raise _malformed(f"key {key!r} is given twice", field=key) from error
    except json.JSONDecodeError as error:
        raise _malformed(
            f"body is not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from error
    if not isinstance(data, dict):
        raise _malformed(f"body must be a JSON object, got {type(data).__name__}")
    _refuse_nulls(data)
    return data


def _check_keys_and_nulls(body: bytes, command: Command) -> None:
    """The checks pydantic's one pass does not make, on a body it accepted. A refusal
    carries the command id only when the body gave one (not the default's fresh UUID)."""
    given = command.command_id if "command_id" in command.model_fields_set else None
    try:
        # What `json.loads(body, object_pairs_hook=_unique_keys)` does, with one decoder.
        data = _UNIQUE_KEYS.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except _DuplicateKey as error:
        key = printable(error.key)[:200]
        raise InvalidInput(
            ErrorInfo(
                code=ErrorCode.MALFORMED,
                message=f"key {key!r} is given twice",
                details=(FieldError(field=key, message="given twice", input=None),),
            ),
            command_id=given,
        ) from error
    except (ValueError, RecursionError) as error:  # read by pydantic, not by json: refused
        invalid = _malformed(f"body is not JSON as json reads it: {printable(str(error))}")
        invalid.command_id = given
        raise invalid from error
    if b"\\u0000" in body or b"\x00" in body:
        try:
            _refuse_nulls(data)
        except InvalidInput as invalid:
            invalid.command_id = given
            raise


#: Built once: `json.loads` with a hook builds a decoder per call.
_UNIQUE_KEYS = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _refuse_nulls(value: Any, path: str = "") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            message = "contains a null character (\\u0000)"
            raise _malformed(f"{path or BODY}: {message}", field=path or BODY)
    elif isinstance(value, dict):
        for key, item in value.items():
            shown = printable(key).replace("\x00", "\\u0000")
            where = f"{path}.{shown}" if path else shown
            _refuse_nulls(key, where)
            _refuse_nulls(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nulls(item, f"{path}.{index}" if path else str(index))


def _malformed(message: str, field: str | None = None) -> InvalidInput:
    details = () if field is None else (FieldError(field=field, message=message, input=None),)
    return InvalidInput(ErrorInfo(code=ErrorCode.MALFORMED, message=message, details=details))


def _largest_field(body: bytes) -> tuple[str, int]:
    """The dotted path of the largest value in an oversized body (objects are entered,
    lists are not: a CSV column names either), or the body itself when it is not JSON."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return BODY, len(body)
    path, size = BODY, len(body)
    while isinstance(data, dict) and data:
        sizes = {key: len(json.dumps(item)) for key, item in data.items()}
        key = max(sizes, key=sizes.__getitem__)
        path = key if path == BODY else f"{path}.{key}"
        size, data = sizes[key], data[key]
    return printable(path)[:200], size


def _field_error(error: Any) -> FieldError:
    location = printable(".".join(str(part) for part in error["loc"]) or BODY)[:200]
    value = error.get("input")
    if not isinstance(value, str | int | float | bool | type(None)):
        value = printable(repr(value)[:200])
    elif isinstance(value, str):
        value = printable(value[:200])
    elif isinstance(value, float) and not math.isfinite(value):
        value = repr(value)  # NaN and infinities are not JSON
    return FieldError(field=location, message=printable(error["msg"]), input=value)


_envelope = trusted_constructor(EventEnvelope)


def envelope_for(
    command: Command,
    event: FrozenModel,
    aggregate: tuple[str, str],
    index: int,
    now: datetime,
    command_type: str | None = None,
) -> EventEnvelope:
    """The event's envelope, built from a validated command and event: not validated again,
    as it is on every command's path. `command_type` is recorded as the envelope's
    `command` (intake names the command that caused each event)."""
    event_type = type(event).__name__
    fields: dict[str, Any] = {} if command_type is None else {"command": command_type}
    return _envelope(
        event_id=event_id_for(command.command_id, index),
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
        **fields,
    )
