"""The one shape every aggregate has, and the one refusal pure code raises.

`decide(command, state, now, refs) -> events` refuses with `Rejected`; `evolve(state,
event) -> state` folds. `refs` are the other aggregates a decision must see (the project a
risk names, the objectives a proposal serves), loaded by the handler before deciding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.base import AggregateKey, Command, ErrorCode, FieldError, FrozenModel

Refs = Mapping[AggregateKey, Any]
Evolve = Callable[[Any, FrozenModel], Any]
Decide = Callable[[Command, Any, datetime, Refs], list[FrozenModel]]


class Rejected(Exception):
    """A refusal with the reason the sender sees (code, message, offending fields)."""

    def __init__(self, code: ErrorCode, message: str, details: tuple[FieldError, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Decider:
    evolve: Evolve
    decide: Decide


def refuse(code: ErrorCode, message: str, field_name: str, value: Any = None) -> Rejected:
    """A refusal naming one field (raise what it returns)."""
    return Rejected(code, message, (FieldError(field=field_name, message=message, input=value),))


def require(refs: Refs, key: AggregateKey, field_name: str) -> Any:
    """The referenced aggregate, or `not_found` naming the field that referenced it."""
    found = refs.get(key)
    if found is None:
        raise Rejected(
            ErrorCode.NOT_FOUND,
            f"unknown {key[0]} {key[1]}",
            (FieldError(field=field_name, message=f"unknown {key[0]}", input=key[1]),),
        )
    return found
