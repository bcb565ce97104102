"""Reports published to stakeholders: what they were told is itself on the record.

`PortfolioReportPublished` is appended by the reporting service (never by a command), on
request (`portfolio report --publish --rationale ...`) or on a schedule, to the aggregate
`report/portfolio`. Its `summary` is the compact report (statuses, budget figures, open
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


COMMANDS: tuple[type[Command], ...] = ()
EVENTS: tuple[type[FrozenModel], ...] = (PortfolioReportPublished,)
