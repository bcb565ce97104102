"""The only registry of aggregates: which decider handles a command's aggregate type, and
which aggregate each event type belongs to. Intake, reporting and the bench use it alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts import ledger as lg
from contracts import notify as nt
from contracts import objectives as o
from contracts import prioritization as pr
from contracts import projects as p
from contracts import risks as rk
from contracts import stakeholders as sh
from contracts.base import Command, ErrorCode, FrozenModel
from domain import projects, strategy, subscriptions
from domain.kernel import Decider, Refs, Rejected
from domain.ledger import capacity, pools
from domain.prioritization import models
from domain.risk import baselines, register, rules

DECIDERS: dict[str, Decider] = {
    p.AGGREGATE: Decider(projects.evolve_project, projects.decide_project),
    o.AGGREGATE: Decider(strategy.evolve_objective, strategy.decide_objective),
    sh.AGGREGATE: Decider(strategy.evolve_stakeholder, strategy.decide_stakeholder),
    pr.SCORING_MODEL: Decider(models.evolve_model, models.decide_model),
    lg.POOL: Decider(pools.evolve_pool, pools.decide_pool),
    lg.CAPACITY: Decider(capacity.evolve_capacity, capacity.decide_capacity),
    rk.RISK: Decider(register.evolve_risk, register.decide_risk),
    rk.BASELINE: Decider(baselines.evolve_baseline, baselines.decide_baseline),
    rk.ALERT_RULE: Decider(rules.evolve_alert_rule, rules.decide_alert_rule),
    nt.SUBSCRIPTION: Decider(subscriptions.evolve_subscription, subscriptions.decide_subscription),
}

#: Event type -> the aggregate whose history it belongs to. Alerts have no decider: the
#: risk monitor derives them and `domain.risk.alerts` folds them.
EVENT_AGGREGATE: dict[type[FrozenModel], str] = {
    **{event: module.AGGREGATE for module in (p, o, sh) for event in module.EVENTS},
    pr.ScoringModelConfigured: pr.SCORING_MODEL,
    **lg.EVENT_AGGREGATE,
    **rk.EVENT_AGGREGATE,
    **nt.EVENT_AGGREGATE,
}


def decide(
    command: Command, state: Any, now: datetime, refs: Refs | None = None
) -> list[FrozenModel]:
    """The events a command produces, or `Rejected`."""
    decider = DECIDERS.get(command.aggregate_type)
    if decider is None:
        raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"no domain handles {type(command).__name__}")
    return decider.decide(command, state, now, refs or {})


def evolve(state: Any, event: FrozenModel) -> Any:
    return DECIDERS[EVENT_AGGREGATE[type(event)]].evolve(state, event)
