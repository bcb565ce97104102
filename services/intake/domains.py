"""Every aggregate intake decides commands for: its own (projects, objectives,
stakeholders) and those other services define (prioritization's scoring models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts import prioritization as pr
from contracts.base import Command, ErrorCode, FrozenModel
from services.intake import domain as intake
from services.prioritization.domain import decide_model, evolve_model
from shared.rejected import Rejected

DOMAINS: dict[str, intake.Domain] = {
    **intake.DOMAINS,
    pr.SCORING_MODEL: intake.Domain(evolve_model, decide_model),
}

EVENT_AGGREGATE: dict[type[FrozenModel], str] = {
    **intake.EVENT_AGGREGATE,
    pr.ScoringModelConfigured: pr.SCORING_MODEL,
}


def decide(
    command: Command, state: Any, now: datetime, refs: intake.Refs | None = None
) -> list[FrozenModel]:
    domain = DOMAINS.get(command.aggregate_type)
    if domain is None:
        raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"no domain handles {type(command).__name__}")
    return domain.decide(command, state, now, refs or {})


def evolve(state: Any, event: FrozenModel) -> Any:
    return DOMAINS[EVENT_AGGREGATE[type(event)]].evolve(state, event)
