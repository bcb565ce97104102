"""The one exception pure domain code raises: a refusal with the reason the sender sees."""

from __future__ import annotations

from contracts.base import ErrorCode, FieldError


class Rejected(Exception):
    def __init__(self, code: ErrorCode, message: str, details: tuple[FieldError, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
