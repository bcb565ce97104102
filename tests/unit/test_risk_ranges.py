"""Risk impacts as a minimum / most likely / maximum range and a delay in days: optional,
backwards compatible (events written before them fold as single values), carried through
assessment and reassessment, and the monetary impact (hence the EMV) defaults to the
range's mean."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import risks as r
from contracts.projects import ProjectStatus
from contracts.registry import parse_payload
from domain.deciders import decide, evolve
from domain.projects import ProjectState
from domain.risk import RiskState

NOW = datetime(2027, 5, 3, 9, 0, tzinfo=UTC)
REFS = {
    ("project", "P-1"): ProjectState(
        "P-1", ProjectStatus.IN_PROGRESS, 3, date(2027, 1, 1), date(2027, 12, 31)
    )
}


def identify(**extra: Any) -> r.IdentifyRisk:
    return r.IdentifyRisk.model_validate(
        {
            "risk_id": "R-1",
            "project_id": "P-1",
            "title": "vendor late",
            "owner": "ana",
            "probability": 3,
            "impact": 4,
            **extra,
        }
    )


def run(state: RiskState | None, command: Any) -> RiskState:
    for event in decide(command, state, NOW, REFS):
        state = evolve(state, event)
    assert state is not None
    return state


RANGE = {"minimum": "10000", "most_likely": "20000", "maximum": "60000"}


def test_a_range_sets_the_monetary_impact_to_its_mean_and_the_emv_follows() -> None:
    state = run(None, identify(impact_range=RANGE, delay_days=15))
    assert state.monetary_impact == Decimal("30000.00")
    assert state.current_impact_range is not None
    assert state.current_impact_range.maximum == Decimal(60000)
    assert state.current_delay_days == 15
    assert state.emv() == Decimal("15000.00")  # 50% x 30,000


def test_a_monetary_impact_outside_its_range_is_refused() -> None:
    with pytest.raises(ValidationError, match="outside"):
        identify(impact_range=RANGE, monetary_impact="70000")
    assert identify(impact_range=RANGE, monetary_impact="25000").monetary_impact == 25000


@pytest.mark.parametrize(
    "bad",
    [
        {"minimum": "3", "most_likely": "2", "maximum": "9"},
        {"minimum": "-1", "most_likely": "2", "maximum": "9"},
        {"minimum": "1", "most_likely": "2"},
        {"minimum": "1", "most_likely": "2", "maximum": "1e13"},
        {"minimum": "1", "most_likely": "2", "maximum": "9", "extra": 1},
    ],
)
def test_bad_ranges_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        identify(impact_range=bad)


@pytest.mark.parametrize("days", [-1, 3651, "5", 2.5, None.__class__])
def test_bad_delays_are_refused(days: Any) -> None:
    with pytest.raises(ValidationError):
        identify(delay_days=days)


def test_assessment_keeps_replaces_or_drops_the_range() -> None:
    state = run(None, identify(impact_range=RANGE, delay_days=15))
    kept = run(state, r.AssessRisk(risk_id="R-1", probability=4, impact=4, rationale="again"))
    assert kept.impact_range == state.impact_range and kept.delay_days == 15
    dropped = run(
        state,
        r.AssessRisk(
            risk_id="R-1", probability=4, impact=4, monetary_impact=Decimal(5000), rationale="x y"
        ),
    )
    assert dropped.impact_range is None and dropped.monetary_impact == 5000
    replaced = run(
        state,
        r.AssessRisk.model_validate(
            {
                "risk_id": "R-1",
                "probability": 4,
                "impact": 4,
                "rationale": "new range",
                "impact_range": {"minimum": "0", "most_likely": "3", "maximum": "6"},
                "delay_days": 0,
            }
        ),
    )
    assert replaced.monetary_impact == Decimal("3.00") and replaced.delay_days == 0


def test_the_residual_range_and_delay_count_once_reassessed() -> None:
    state = run(None, identify(impact_range=RANGE, delay_days=15))
    state = run(
        state,
        r.ChooseRiskResponse(
            risk_id="R-1", strategy="mitigate", plan="second vendor", due=NOW.date()
        ),
    )
    inherited = run(
        state,
        r.ReassessRisk(risk_id="R-1", residual_probability=2, residual_impact=2, rationale="done"),
    )
    assert inherited.current_impact_range == state.impact_range
    assert inherited.current_delay_days == 15
    residual = run(
        state,
        r.ReassessRisk.model_validate(
            {
                "risk_id": "R-1",
                "residual_probability": 2,
                "residual_impact": 2,
                "rationale": "smaller",
                "residual_impact_range": {
                    "minimum": "1000",
                    "most_likely": "2000",
                    "maximum": "3000",
                },
                "residual_delay_days": 2,
            }
        ),
    )
    assert residual.current_monetary_impact == Decimal("2000.00")
    assert residual.current_delay_days == 2
    with pytest.raises(ValidationError, match="outside"):
        r.ReassessRisk.model_validate(
            {
                "risk_id": "R-1",
                "residual_probability": 2,
                "residual_impact": 2,
                "rationale": "smaller",
                "residual_monetary_impact": "9",
                "residual_impact_range": RANGE,
            }
        )


def test_events_written_before_ranges_still_fold_as_single_values() -> None:
    old = {
        "risk_id": "R-9",
        "project_id": None,
        "title": "old",
        "description": "",
        "kind": "threat",
        "category": "general",
        "owner": "ana",
        "probability": 2,
        "impact": 2,
        "monetary_impact": "100.00",
        "proximity": None,
        "score": 4,
    }
    event = parse_payload("RiskIdentified", old, 1)
    state = evolve(None, event)
    assert state.current_impact_range is None and state.current_delay_days is None
    assert state.current_monetary_impact == Decimal(100)
