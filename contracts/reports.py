"""Reports published to stakeholders: what they were told is itself on the record.

`PortfolioReportPublished` is appended by the reporting service (never by a command), on
request (`portfolio report --publish --rationale ...`) or on a schedule, to the aggregate
`report/portfolio`. The notify service then sends it to the recipients of the stakeholders'
communication plans whose content is `report`, and records each delivery under
`delivery/report-<stakeholder id>`: `ReportDelivered`, or `ReportDeadLettered` with why.
Its `summary` is the compact report (statuses, budget figures, open
risks and alerts, health, the top of the ranking) that the next report's "changes since
the previous report" are measured against.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from contracts.base import Command, FrozenModel

AGGREGATE = "report"
#: Every published portfolio report lives in one aggregate, in publication order.
PORTFOLIO_REPORTS = "portfolio"


class ChainHead(FrozenModel):
    """Where the log-wide hash chain stood: `portfolio audit --verify` recomputes it."""

    position: int = Field(ge=0)
    hash: str


class PortfolioReportPublished(FrozenModel):
    report_id: str
    #: The log position the report was computed at (the last event it folded).
    position: int = Field(ge=0)
    #: The last position of an event other than a published report: what the content
    #: of the report depends on (a scheduled publication is skipped when it is unchanged).
    content_position: int = Field(ge=0)
    as_of: datetime | None = None
    occurred_as_of: datetime | None = None
    generated_at: datetime
    rationale: str
    scheduled: bool = False
    summary: dict[str, Any]
    #: The log-wide hash-chain head at `position` (shared/chain.py): pins the history the
    #: report was computed from. None on reports published before the chain.
    chain_head: ChainHead | None = None


#: Where the notify service records what became of a report sent to a stakeholder: the
#: aggregate `delivery` (which its NATS user may write, beside the alerts' outcomes), id
#: `report-<stakeholder id>`.
DELIVERY = "delivery"


def delivery_aggregate(stakeholder_id: str) -> tuple[str, str]:
    return (DELIVERY, f"report-{stakeholder_id}")


class ReportDelivered(FrozenModel):
    """A published report reached a stakeholder through their communication plan."""

    report_id: str
    stakeholder_id: str
    plan_id: str
    delivery_id: str
    channel: str
    attempts: int
    #: The HTTP status, or 250 for a mail the SMTP server accepted.
    status: int


class ReportDeadLettered(FrozenModel):
    """A published report could not be sent: retries spent, refused for good, or too old
    by the time it could be sent."""

    report_id: str
    stakeholder_id: str
    plan_id: str
    delivery_id: str
    channel: str
    attempts: int
    reason: str


COMMANDS: tuple[type[Command], ...] = ()
EVENTS: tuple[type[FrozenModel], ...] = (
    PortfolioReportPublished,
    ReportDelivered,
    ReportDeadLettered,
)
