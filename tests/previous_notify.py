"""Notify as the version before alert digests were sent kept and owed reports, put back
for upgrade tests: its digest of a report named no alerts (counts only), and a published
report was owed to report plans only. Verbatim from that version (7bb3f9e)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import reports as rp
from contracts import stakeholders as sh
from services.notify import projection
from services.notify.reports import MAX_AGE, Pending, period


def digest(summary: Mapping[str, Any]) -> dict[str, Any]:
    alerts = summary.get("alerts") or {}
    pools = summary.get("pools") or {}
    return {
        "projects": dict(sorted(Counter((summary.get("projects") or {}).values()).items())),
        "open_risks": len(summary.get("risks") or {}),
        "contingency_reserve": summary.get("contingency_reserve"),
        "open_alerts": len(alerts),
        "alerts_by_severity": dict(
            sorted(Counter(str(a.get("severity")) for a in alerts.values()).items())
        ),
        "health": dict(sorted(Counter((summary.get("health") or {}).values()).items())),
        "ranking": list(summary.get("ranking") or [])[:10],
        "pools": {k: pools[k] for k in sorted(pools)[:20]},
    }


def _published(
    self: projection.NotifyProjection, report: rp.PortfolioReportPublished, position: int
) -> None:
    if datetime.now(UTC) - report.generated_at > MAX_AGE:
        return
    if "open_risks" not in report.summary:
        report = report.model_copy(update={"summary": digest(report.summary)})
    for key, plan in sorted(self.plans.items()):
        if plan.content != sh.Content.REPORT:
            continue
        when = period(plan.frequency, report.generated_at)
        if self.last_period.get(key) == when:
            continue
        self.last_period[key] = when
        owed = Pending(position, report, plan)
        if owed.key not in self.reports_done:
            self.owed[owed.key] = owed


def notify_as_the_previous_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(projection, "digest", digest)
    monkeypatch.setattr(projection.NotifyProjection, "_published", _published)
