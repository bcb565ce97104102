"""Pools and roles as their figures alone, for the folds that only read figures."""

from __future__ import annotations

from typing import TypeVar

from domain.ledger.capacity import CapacityState
from domain.ledger.persistent import RefSet, with_changes
from domain.ledger.pools import PoolState

S = TypeVar("S")
_NO_REFS = RefSet()


def sums_only(state: S) -> S:
    """A pool or role without the references of every invoice and timesheet it has seen:
    they only tell duplicates apart, which intake decides from the log, and would make a
    projection's memory (and the report's snapshots) grow with every invoice ever booked."""
    if isinstance(state, PoolState) and state.actual_refs.levels:
        return with_changes(state, actual_refs=_NO_REFS)  # type: ignore[return-value]
    if isinstance(state, CapacityState) and state.hours_refs.levels:
        return with_changes(state, hours_refs=_NO_REFS)  # type: ignore[return-value]
    return state
