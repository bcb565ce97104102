"""Project baselines and progress: what earned value is measured against."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from sys import intern
from typing import NamedTuple

from contracts import risks as r
from contracts.base import Command, ErrorCode, FieldError, FrozenModel
from domain.interning import shared_amount
from domain.kernel import Refs, Rejected
from domain.projects import live_project
from domain.risk.register import cents

# --- project baselines and progress ------------------------------------------------------------


# The points of every baseline are kept by every fold (reporting, risk, each snapshot):
# tuples, a fraction of the memory of a model or a dataclass, pickled without either's
# per-instance state; their months interned (a few dozen values, held thousands of times).


class PlannedPoint(NamedTuple):
    """The cumulative planned value at the end of a month (the contract's `PlannedValue`)."""

    period: str
    planned_value: Decimal


class Progress(NamedTuple):
    period: str
    percent_complete: Decimal
    forecast_end: date | None


@dataclass(frozen=True)
class BaselineState:
    project_id: str
    revision: int
    budget_at_completion: Decimal
    planned_value_by_period: tuple[PlannedPoint, ...]
    planned_end: date | None
    version: int
    #: One entry per reported month, ascending; a later report for a month replaces it.
    progress: tuple[Progress, ...] = ()
    forecast_end: date | None = None

    def planned_value_at(self, period: str) -> Decimal:
        """Cumulative planned value at the end of `period` (YYYY-MM): the value of the last
        planned month at or before it, 0 before the plan starts."""
        value = Decimal(0)
        for point in self.planned_value_by_period:
            if point.period > period:
                break
            value = point.planned_value
        return value

    def progress_at(self, period: str | None = None) -> Progress | None:
        """The latest report at or before `period` (the latest of all when None)."""
        found = None
        for entry in self.progress:
            if period is not None and entry.period > period:
                break
            found = entry
        return found

    def earned_value_at(self, period: str | None = None) -> Decimal:
        """EV = BAC (of the current baseline) x percent complete / 100."""
        entry = self.progress_at(period)
        if entry is None:
            return Decimal(0)
        return cents(self.budget_at_completion * entry.percent_complete / 100)

    @property
    def latest_period(self) -> str | None:
        return self.progress[-1].period if self.progress else None


def evolve_baseline(state: BaselineState | None, event: FrozenModel) -> BaselineState:
    match event:
        case r.ProjectBaselineSet():
            return BaselineState(
                project_id=event.project_id,
                revision=event.revision,
                budget_at_completion=event.budget_at_completion,
                planned_value_by_period=tuple(
                    PlannedPoint(intern(x.period), x.planned_value)
                    for x in event.planned_value_by_period
                ),
                planned_end=event.planned_end,
                version=1 if state is None else state.version + 1,
                progress=() if state is None else state.progress,
                forecast_end=None if state is None else state.forecast_end,
            )
    if state is None:
        raise ValueError(f"{type(event).__name__} before ProjectBaselineSet")
    match event:
        case r.ProgressReported():
            entry = Progress(
                period=intern(event.period),
                percent_complete=shared_amount(event.percent_complete),
                forecast_end=event.forecast_end,
            )
            others = [p for p in state.progress if p.period != event.period]
            return replace(
                state,
                version=state.version + 1,
                progress=tuple(sorted([*others, entry], key=lambda p: p.period)),
                forecast_end=event.forecast_end or state.forecast_end,
            )
    return replace(state, version=state.version + 1)


def decide_baseline(
    command: Command, state: BaselineState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    if not isinstance(command, r.BaselineCommand):
        raise Rejected(
            ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not a baseline command"
        )
    pid = command.project_id
    project = live_project(refs, pid, "project_id")
    match command:
        case r.SetProjectBaseline():
            if state is not None and command.rationale is None:
                raise Rejected(
                    ErrorCode.VALIDATION_FAILED,
                    f"project {pid} already has baseline revision {state.revision}: "
                    "a re-baseline needs a rationale",
                    (FieldError(field="rationale", message="required to re-baseline"),),
                )
            planned_end = command.planned_end or project.planned_end
            return [
                r.ProjectBaselineSet(
                    project_id=pid,
                    revision=1 if state is None else state.revision + 1,
                    budget_at_completion=command.budget_at_completion,
                    planned_value_by_period=command.planned_value_by_period,
                    planned_end=planned_end,
                    rationale=command.rationale,
                )
            ]
        case r.ReportProgress():
            if state is None:
                raise Rejected(
                    ErrorCode.NOT_FOUND,
                    f"project {pid} has no baseline: set one (SetProjectBaseline) before "
                    "reporting progress",
                    (FieldError(field="project_id", message="no baseline", input=pid),),
                )
            return [
                r.ProgressReported(
                    project_id=pid,
                    period=command.period,
                    percent_complete=command.percent_complete,
                    earned_value=cents(state.budget_at_completion * command.percent_complete / 100),
                    forecast_end=command.forecast_end,
                    baseline_revision=state.revision,
                )
            ]
    raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")
