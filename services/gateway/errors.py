"""HTTP answers for refusals: the same codes and fields as over NATS, as HTTP statuses.

Every refusal, whoever makes it (intake, a query's service, the gateway itself), is one
JSON shape, `CommandRejected`: `{"status": "rejected", "command_id", "error": {"code",
"message", "details"}}`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from contracts.base import ErrorCode

#: Intake's error codes as HTTP statuses.
STATUS: dict[str, int] = {
    ErrorCode.MALFORMED: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNKNOWN_COMMAND: 404,
    ErrorCode.VALIDATION_FAILED: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.ILLEGAL_TRANSITION: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}

#: The read side's error codes (reporting's `code`) as (HTTP status, contract code).
QUERY_CODES: dict[str, tuple[int, str]] = {
    "invalid_query": (400, ErrorCode.VALIDATION_FAILED),
    "bad_time": (400, ErrorCode.VALIDATION_FAILED),
    "not_found": (404, ErrorCode.NOT_FOUND),
    "too_large": (422, ErrorCode.VALIDATION_FAILED),
    "conflict": (409, ErrorCode.CONFLICT),
    "internal": (500, ErrorCode.INTERNAL),
}

#: Seconds a client should wait before retrying a 429 or a 503.
RETRY_AFTER = "1"


def rejected(
    status: int,
    code: str,
    message: str,
    details: Sequence[Mapping[str, Any]] = (),
    command_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {
        "status": "rejected",
        "command_id": command_id,
        "error": {"code": str(code), "message": message, "details": [dict(d) for d in details]},
    }
    extra = dict(headers or {})
    if status in (429, 503):
        extra.setdefault("Retry-After", RETRY_AFTER)
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", headers=extra
    )


def query_refusal(answer: Mapping[str, Any]) -> web.Response:
    """A query's `{"error", "code"?, "details"?}` as an HTTP refusal."""
    message = str(answer.get("error"))
    code = answer.get("code")
    if isinstance(code, str) and code in QUERY_CODES:
        status, contract_code = QUERY_CODES[code]
    else:
        # Prioritization says `<ErrorCode>: message` for a decision it refuses, and
        # `invalid <name> query` with the fields for a question it cannot parse.
        prefix = message.split(":", 1)[0]
        if prefix in STATUS:
            status, contract_code = STATUS[prefix], prefix
        elif message.startswith("invalid "):
            status, contract_code = 400, ErrorCode.VALIDATION_FAILED
        else:
            status, contract_code = 422, ErrorCode.VALIDATION_FAILED
    raw_details = answer.get("details") or ()
    details = (
        [d for d in raw_details if isinstance(d, dict)] if isinstance(raw_details, list) else []
    )
    return rejected(status, contract_code, message, details)
