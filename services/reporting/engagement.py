"""The report's stakeholder section: where each stakeholder stands on the power/interest
grid, the gap between their current and desired engagement, their open feedback (given and
not yet answered with `RespondToFeedback`), and what the communication plan sends them.

Grid quadrants (influence and interest 1-5, high is 4 or 5): manage closely (high, high),
keep satisfied (high influence), keep informed (high interest), monitor. The engagement
gap counts levels of unaware < resistant < neutral < supportive < leading from current to
desired (positive: more engagement is needed). Plan targets (addresses, hook URLs) are not
shown: a report travels further than the plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from domain.strategy import StakeholderState
from services.reporting.facts import LIST_LIMIT

QUADRANTS = ("manage closely", "keep satisfied", "keep informed", "monitor")


def figures(stakeholders: Mapping[str, StakeholderState]) -> dict[str, Any]:
    everyone = sorted(
        stakeholders.values(),
        key=lambda s: (
            -(s.engagement_gap or 0),
            -s.open_feedback,
            -(s.influence or 0),
            s.stakeholder_id,
        ),
    )
    quadrants = Counter(s.quadrant for s in everyone if s.quadrant is not None)
    open_items = [
        {
            "stakeholder_id": s.stakeholder_id,
            "name": s.name,
            "feedback_id": f.feedback_id,
            "concerns": f"{f.concerns.kind}:{f.concerns.id}",
            "decision_event_id": f.decision_event_id,
            "text": f.text,
        }
        for s in sorted(everyone, key=lambda s: s.stakeholder_id)
        for f in s.feedback.values()
        if f.is_open
    ]
    plans = [p for s in everyone for p in s.plans.values()]
    return {
        "total": len(everyone),
        "assessed": sum(1 for s in everyone if s.quadrant is not None),
        "by_quadrant": {q: quadrants.get(q, 0) for q in QUADRANTS},
        "needing_engagement": sum(1 for s in everyone if (s.engagement_gap or 0) > 0),
        "open_feedback": len(open_items),
        "communication_plans": len(plans),
        "plans_by_content": dict(sorted(Counter(str(p.content) for p in plans).items())),
        "items": [row(s) for s in everyone[:LIST_LIMIT]],
        "open_feedback_items": open_items[:LIST_LIMIT],
    }


def row(s: StakeholderState) -> dict[str, Any]:
    return {
        "stakeholder_id": s.stakeholder_id,
        "name": s.name,
        "role": s.role,
        "influence": s.influence,
        "interest": s.interest,
        "quadrant": s.quadrant,
        "current_engagement": None if s.current_engagement is None else str(s.current_engagement),
        "desired_engagement": None if s.desired_engagement is None else str(s.desired_engagement),
        "engagement_gap": s.engagement_gap,
        "open_feedback": s.open_feedback,
        "feedback": len(s.feedback),
        "cares_about": [f"{i.kind}:{i.id}" for i in s.cares_about],
        "plans": [
            {
                "plan_id": p.plan_id,
                "content": str(p.content),
                "frequency": str(p.frequency),
                "channel": str(p.channel),
            }
            for _, p in sorted(s.plans.items())
        ],
    }
