"""Alert rules as an aggregate: defined, redefined, disabled (alerts are folded in
`domain.risk.alerts`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from contracts import risks as r
from contracts.base import Command, ErrorCode, FieldError, FrozenModel
from contracts.projects import AGGREGATE as PROJECT
from domain.kernel import Refs, Rejected, require

# --- alert rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRuleState:
    rule_id: str
    revision: int
    metric: r.Metric
    comparison: r.Comparison
    threshold: float
    clear_at: float
    severity: r.Severity
    scope: r.Scope
    scope_id: str | None
    version: int
    description: str = ""
    enabled: bool = True


def evolve_alert_rule(state: AlertRuleState | None, event: FrozenModel) -> AlertRuleState:
    match event:
        case r.AlertRuleDefined():
            return AlertRuleState(
                rule_id=event.rule_id,
                revision=event.revision,
                metric=event.metric,
                comparison=event.comparison,
                threshold=event.threshold,
                clear_at=event.clear_at,
                severity=event.severity,
                scope=event.scope,
                scope_id=event.scope_id,
                description=event.description,
                version=1 if state is None else state.version + 1,
            )
    if state is None:
        raise ValueError(f"{type(event).__name__} before AlertRuleDefined")
    match event:
        case r.AlertRuleDisabled():
            return replace(state, enabled=False, version=state.version + 1)
    return replace(state, version=state.version + 1)


def decide_alert_rule(
    command: Command, state: AlertRuleState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    match command:
        case r.DefineAlertRule():
            _check_rule(command)
            if command.scope == r.Scope.PROJECT and command.scope_id is not None:
                require(refs, (PROJECT, command.scope_id), "scope_id")
            return [
                r.AlertRuleDefined(
                    rule_id=command.rule_id,
                    revision=1 if state is None else state.revision + 1,
                    metric=command.metric,
                    comparison=command.comparison,
                    threshold=command.threshold,
                    clear_at=command.clear_at,
                    severity=command.severity,
                    scope=command.scope,
                    scope_id=command.scope_id,
                    description=command.description,
                )
            ]
        case r.DisableAlertRule():
            if state is None:
                raise Rejected(
                    ErrorCode.NOT_FOUND,
                    f"alert rule {command.rule_id} does not exist",
                    (FieldError(field="rule_id", message="unknown rule", input=command.rule_id),),
                )
            if not state.enabled:
                raise Rejected(
                    ErrorCode.ILLEGAL_TRANSITION,
                    f"alert rule {command.rule_id} is already disabled",
                )
            return [
                r.AlertRuleDisabled(
                    rule_id=command.rule_id, revision=state.revision, rationale=command.rationale
                )
            ]
    raise Rejected(
        ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not an alert rule command"
    )


def _check_rule(command: r.DefineAlertRule) -> None:
    """What parsing already checks, checked again for commands built in code."""
    known = {m.value for m in r.Metric}
    if str(command.metric) not in known:
        raise Rejected(
            ErrorCode.VALIDATION_FAILED,
            f"unknown metric {command.metric!r}",
            (
                FieldError(
                    field="metric",
                    message=f"known: {', '.join(sorted(known))}",
                    input=str(command.metric),
                ),
            ),
        )
    comparison = r.Comparison(command.comparison)
    wrong = (
        command.clear_at <= command.threshold
        if comparison.low_is_bad
        else command.clear_at >= command.threshold
    )
    if wrong:
        side = "above" if comparison.low_is_bad else "below"
        raise Rejected(
            ErrorCode.VALIDATION_FAILED,
            f"for {comparison} the clear level must be {side} the threshold {command.threshold}",
            (FieldError(field="clear_at", message=f"must be {side} the threshold"),),
        )
