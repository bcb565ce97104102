"""What the report fold keeps (per project, objective, alert, focus entry, progress report
and lesson), the `Cut` that bounds it, and the definitions every part of the report shares.

A project's business case and status are its `ProjectProfile` (domain/projects.py), the
same fold prioritization ranks; the report adds what it alone needs (the profile as
proposed, delivery dates, realised benefits).

Definitions (every money figure a decimal string):

- **stage**: pipeline (proposed, under review), approved, delivery (in progress, on hold),
  closed (completed, rejected, cancelled).
- **live** projects: any status but completed, rejected and cancelled; **funded**: approved
  or in progress.
"""

from __future__ import annotations

import calendar
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from itertools import accumulate
from typing import Any, NamedTuple

from contracts import projects as p
from contracts import risks as r
from contracts.base import EventEnvelope
from domain.projects import ProjectProfile
from domain.risk import evm

Status = p.ProjectStatus
ZERO = Decimal(0)
CENT = Decimal("0.01")
INDEX = Decimal("0.0001")

#: How many entries the top lists hold (ranking, risks).
TOP = 10
#: The longest per-item list a report carries (health rows, alerts, changes, chart points);
#: counts stay exact. Keeps a report summary-sized, i.e. within one NATS message.
LIST_LIMIT = 200
#: Audit highlights kept for a project scorecard (the latest).
HIGHLIGHTS = 100

STAGES: Mapping[str, frozenset[Status]] = {
    "pipeline": frozenset({Status.PROPOSED, Status.UNDER_REVIEW}),
    "approved": frozenset({Status.APPROVED}),
    "delivery": frozenset({Status.IN_PROGRESS, Status.ON_HOLD}),
    "closed": frozenset({Status.COMPLETED, Status.REJECTED, Status.CANCELLED}),
}
LIVE = frozenset(Status) - STAGES["closed"]
FUNDED = frozenset({Status.APPROVED, Status.IN_PROGRESS})
#: Statuses only an approval leads to.
APPROVED_OR_LATER = frozenset(
    {Status.APPROVED, Status.IN_PROGRESS, Status.ON_HOLD, Status.COMPLETED}
)


class UnknownProject(LookupError):
    pass


def stage_of(status: Status) -> str:
    return next(name for name, members in STAGES.items() if status in members)


def money(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def index(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(INDEX, rounding=ROUND_HALF_UP))


def text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass(frozen=True)
class Cut:
    """Which events a report folds: recorded at or before `as_of` and occurred at or
    before `occurred_as_of` (None: no bound)."""

    as_of: datetime | None = None
    occurred_as_of: datetime | None = None

    def includes(self, envelope: EventEnvelope) -> bool:
        if self.as_of is not None and envelope.recorded_at > self.as_of:
            return False
        return self.occurred_as_of is None or envelope.occurred_at <= self.occurred_as_of

    def as_json(self) -> dict[str, str | None]:
        return {"as_of": iso(self.as_of), "occurred_as_of": iso(self.occurred_as_of)}


@dataclass
class ProjectFacts:
    """A project as the report knows it: its profile now and as proposed (what estimate
    accuracy measures against), and what delivery and closure recorded."""

    profile: ProjectProfile
    proposed: ProjectProfile
    proposed_at: datetime
    last_position: int
    started_on: date | None = None
    completed_on: date | None = None
    #: The programme it was proposed in (the forecast's and roll-ups' grouping).
    programme: str | None = None
    #: Realised benefits by year (the latest record of each year).
    realised: dict[int, Decimal] = field(default_factory=dict)


@dataclass
class ObjectiveFacts:
    objective_id: str
    name: str
    owner: str
    weight: Decimal
    retired: bool = False


@dataclass(frozen=True)
class Highlight:
    """One entry of a project's decision history, as a scorecard shows it."""

    position: int
    recorded_at: datetime
    occurred_at: datetime
    event_type: str
    actor: str
    source: str
    what: str

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "recorded_at": iso(self.recorded_at),
            "occurred_at": iso(self.occurred_at),
            "event_type": self.event_type,
            "actor": self.actor,
            "source": self.source,
            "what": self.what,
        }


@dataclass(frozen=True)
class RaisedAlert:
    event: r.AlertRaised
    position: int
    recorded_at: datetime


@dataclass(frozen=True)
class RevisedAlert:
    """The latest `AlertRevised` of an open alert: it holds under a new rule revision."""

    event: r.AlertRevised
    position: int
    recorded_at: datetime


def cumulative(spent: Mapping[str, Decimal]) -> Callable[[str], Decimal]:
    """The actual cost of the months up to a month (`spent`: cost by YYYY-MM), by bisection
    of running totals instead of a sum per question."""
    months = sorted(spent)
    totals = list(accumulate((spent[m] for m in months), initial=ZERO))
    return lambda period: totals[bisect_right(months, period)]


@lru_cache(maxsize=4096)
def month_end(period: str) -> date:
    """The last day of month `period` (YYYY-MM): asked for every point of every project's
    EAC series, of a few dozen months."""
    year, month = int(period[:4]), int(period[5:7])
    return date(year, month, calendar.monthrange(year, month)[1])


class EacPoint(NamedTuple):
    """One progress report: the baseline's BAC then and the earned value (a tuple: every
    project keeps one a month, in memory and in every snapshot)."""

    period: str
    position: int
    percent_complete: Decimal
    bac: Decimal
    ev: Decimal

    @property
    def as_of(self) -> date:
        """The last day of the reported month."""
        return month_end(self.period)

    def eac(self, ac: Decimal) -> Decimal | None:
        """EAC = BAC x AC / EV (None: EV or AC 0), `ac` the actual cost up to this month."""
        return evm.eac_typical(self.bac, self.ev, ac)

    def as_json(self, ac: Decimal) -> dict[str, Any]:
        eac = self.eac(ac)
        return {
            "period": self.period,
            "position": self.position,
            "percent_complete": str(self.percent_complete),
            "bac": money(self.bac),
            "ac": money(ac),
            "ev": money(self.ev),
            "eac": None if eac is None else money(eac),
        }


@dataclass(frozen=True)
class Lesson:
    project_id: str
    lesson_id: str
    title: str
    description: str
    recommendation: str
    category: str
    actor: str
    position: int
    recorded_at: datetime
