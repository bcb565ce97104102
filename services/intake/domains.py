"""Every aggregate intake decides commands for: its own (projects, objectives,
stakeholders) and those other services define (prioritization's scoring models, the
ledger's pools and capacity, the risk monitor's risks, baselines and alert rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts import ledger as lg
from contracts import prioritization as pr
from contracts import risks as rk
from contracts.base import Command, ErrorCode, FrozenModel
from services.intake import domain as intake
from services.ledger import domain as ledger
from services.prioritization.domain import decide_model, evolve_model
from services.risk import domain as risk
from shared.rejected import Rejected

DOMAINS: dict[str, intake.Domain] = {
    **intake.DOMAINS,
    pr.SCORING_MODEL: intake.Domain(evolve_model, decide_model),
    lg.POOL: intake.Domain(ledger.evolve_pool, ledger.decide_pool),
    lg.CAPACITY: intake.Domain(ledger.evolve_capacity, ledger.decide_capacity),
    **{name: intake.Domain(d.evolve, d.decide) for name, d in risk.DOMAINS.items()},
}

EVENT_AGGREGATE: dict[type[FrozenModel], str] = {
    **intake.EVENT_AGGREGATE,
    pr.ScoringModelConfigured: pr.SCORING_MODEL,
    **lg.EVENT_AGGREGATE,
    **rk.EVENT_AGGREGATE,
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
