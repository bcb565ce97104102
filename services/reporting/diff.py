"""What changed between two points of the portfolio: two summaries (`PortfolioReport.summary`)
compared, for a report's changes since the last published one and for
`portfolio report --diff FROM TO`.

**changes**: new proposals, approvals (a project now approved or beyond that was not),
status changes, risks opened and closed, alerts raised and cleared, budget figures of each
pool, health changes, the top of the ranking. Lists are capped, counts exact.

**transitions** (a diff only): every status step a project took between the two points,
in the order they happened, so a project proposed, approved and cancelled in between is
not shown as only "proposed -> cancelled".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from contracts import projects as p
from contracts.base import RecordedEvent
from contracts.registry import payload_of
from services.reporting.facts import APPROVED_OR_LATER, LIST_LIMIT, iso, money
from services.reporting.figures import budget as budget_of
from services.reporting.report import PortfolioReport


def diff_report(
    before: PortfolioReport,
    after: PortfolioReport,
    generated_at: datetime,
    between: Iterable[RecordedEvent] = (),
) -> dict[str, Any]:
    """What changed between two points: `portfolio report --diff FROM TO`. `between` are
    the events the later point folded and the earlier did not, in log order."""
    old, new = before.summary(), after.summary()
    found = changes(old, new)
    steps = transitions(old["projects"], between)
    found["counts"]["transitions"] = len(steps)
    found["transitions"] = steps[:LIST_LIMIT]
    return {
        "kind": "diff",
        "generated_at": iso(generated_at),
        "from": before.cut_json(),
        "to": after.cut_json(),
        "totals": {"from": _totals(before, old), "to": _totals(after, new)},
        "changes": found,
    }


def transitions(
    statuses: Mapping[str, str], between: Iterable[RecordedEvent]
) -> list[dict[str, Any]]:
    """Every project status step in `between`, starting from `statuses`."""
    current: dict[str, str | None] = dict(statuses)
    steps: list[dict[str, Any]] = []
    for recorded in between:
        envelope = recorded.envelope
        if envelope.aggregate_type != p.AGGREGATE:
            continue
        try:
            event = payload_of(envelope)
        except (LookupError, ValueError):
            continue  # an event the fold cannot use either (it is counted there)
        was = current.get(envelope.aggregate_id)
        now = p.status_after(event, None if was is None else p.ProjectStatus(was))
        if now is None or str(now) == was:
            continue
        current[envelope.aggregate_id] = str(now)
        steps.append(
            {
                "project_id": envelope.aggregate_id,
                "from": was,
                "to": str(now),
                "event_type": envelope.event_type,
                "position": recorded.position,
                "occurred_at": iso(envelope.occurred_at),
                "actor": envelope.actor,
            }
        )
    return steps


def _totals(report: PortfolioReport, summary: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "projects": len(summary["projects"]),
        "open_risks": len(summary["risks"]),
        "open_alerts": len(summary["alerts"]),
        "contingency_reserve": summary["contingency_reserve"],
        "budget": budget_of(report.pools)["totals"],
    }


EMPTY_SUMMARY: Mapping[str, Any] = {
    "projects": {},
    "pools": {},
    "risks": {},
    "alerts": {},
    "health": {},
    "ranking": [],
}
POOL_FIGURES = ("amount", "allocated", "committed", "actual", "remaining")


def changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """What changed from one summary to the next (lists capped, counts exact)."""
    old = old or EMPTY_SUMMARY
    old_p: Mapping[str, str] = old.get("projects", {})
    new_p: Mapping[str, str] = new["projects"]
    proposals = sorted(set(new_p) - set(old_p))
    approvals = sorted(
        k
        for k, s in new_p.items()
        if s in APPROVED_OR_LATER and old_p.get(k) not in APPROVED_OR_LATER
    )
    moved = [
        {"project_id": k, "from": old_p[k], "to": s}
        for k, s in sorted(new_p.items())
        if k in old_p and old_p[k] != s
    ]
    old_r: Mapping[str, Any] = old.get("risks", {})
    new_r: Mapping[str, Any] = new["risks"]
    rescored = [
        {"risk_id": k, "from": old_r[k]["score"], "to": v["score"]}
        for k, v in sorted(new_r.items())
        if k in old_r and old_r[k]["score"] != v["score"]
    ]
    old_a: Mapping[str, Any] = old.get("alerts", {})
    new_a: Mapping[str, Any] = new["alerts"]
    budget = []
    old_pools: Mapping[str, Any] = old.get("pools", {})
    for pool_id, figures in sorted(new["pools"].items()):
        before = old_pools.get(pool_id, {})
        for name in POOL_FIGURES:
            was = Decimal(before.get(name, "0"))
            now = Decimal(figures[name])
            if was != now:
                budget.append(
                    {
                        "pool_id": pool_id,
                        "currency": figures["currency"],
                        "figure": name,
                        "from": money(was),
                        "to": money(now),
                        "delta": money(now - was),
                    }
                )
    old_h: Mapping[str, str] = old.get("health", {})
    health = [
        {"project_id": k, "from": old_h.get(k), "to": v}
        for k, v in sorted(new["health"].items())
        if old_h.get(k) != v
    ]
    old_top, new_top = list(old.get("ranking", [])), list(new["ranking"])
    found: dict[str, list[Any]] = {
        "new_proposals": proposals,
        "approvals": approvals,
        "status_changes": moved,
        "new_risks": sorted(set(new_r) - set(old_r)),
        "closed_risks": sorted(set(old_r) - set(new_r)),
        "risk_score_changes": rescored,
        "alerts_raised": [{"alert_id": k, **new_a[k]} for k in sorted(set(new_a) - set(old_a))],
        "alerts_cleared": [{"alert_id": k, **old_a[k]} for k in sorted(set(old_a) - set(new_a))],
        "budget_changes": budget,
        "health_changes": health,
        "entered_top": [k for k in new_top if k not in old_top],
        "left_top": [k for k in old_top if k not in new_top],
    }
    return {
        "counts": {k: len(v) for k, v in found.items()},
        **{k: v[:LIST_LIMIT] for k, v in found.items()},
    }
