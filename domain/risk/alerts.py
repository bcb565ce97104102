"""Alert rules evaluated with hysteresis, pure: no clock, no I/O.

A rule holds while `value <comparison> threshold`. For each (rule, subject) there is at
most one open alert:

- closed, and the rule holds            -> `AlertRaised` (once: nothing more while it holds)
- open, and the value passed `clear_at` -> `AlertCleared` (lt/le: value ≥ clear_at;
                                           gt/ge: value ≤ clear_at)
- anything else                          -> nothing

`clear_at` lies strictly beyond the threshold (the contract refuses anything else), so a
value moving inside the band between the two neither raises nor clears: no flapping. Within
one `evaluate` call the readings are coalesced, the last reading per (metric, subject)
wins, so a burst of events yields at most one transition per rule and subject: no storms.
A reading with no value (an index that is not available) changes nothing; a reading marked
`gone` (a closed risk, a finished project) clears and never raises. Open alerts of a rule
that is no longer active (disabled) are cleared on the next call.

The alert state is rebuilt from the log with `evolve_alerts`, and alert ids derive from
(rule, subject, episode number), so a risk monitor restarted mid-way decides exactly what
it would have decided without the restart, and appends with the same ids.

Hysteresis needs the value as it moves, not only at the crossings: a reading of 79 % after
a budget alert raised at 80 % leaves it open (the default clears at 75 %). The live risk
monitor (`domain.risk.monitor`) therefore folds every input itself and evaluates after each
event; `evaluate` here serves backtests and sets of readings decided at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal, Protocol, TypeVar

from contracts import risks as r
from contracts.base import FrozenModel
from domain.risk.evm import EarnedValue, Health
from domain.risk.register import RiskState
from domain.risk.rules import AlertRuleState, evolve_alert_rule

Value = float | Decimal | int | None
AlertEvent = r.AlertRaised | r.AlertRevised | r.AlertCleared
T = TypeVar("T")


class RuleLike(Protocol):
    """Anything with a comparison, a threshold and a clear level: a rule's state, its
    event, its command, or a candidate threshold to backtest."""

    @property
    def comparison(self) -> r.Comparison: ...

    @property
    def threshold(self) -> float: ...

    @property
    def clear_at(self) -> float: ...


def holds(rule: RuleLike, value: float) -> bool:
    match r.Comparison(rule.comparison):
        case r.Comparison.LT:
            return value < rule.threshold
        case r.Comparison.LE:
            return value <= rule.threshold
        case r.Comparison.GT:
            return value > rule.threshold
        case r.Comparison.GE:
            return value >= rule.threshold
    raise ValueError(f"unknown comparison {rule.comparison!r}")


def clears(rule: RuleLike, value: float) -> bool:
    if r.Comparison(rule.comparison).low_is_bad:
        return value >= rule.clear_at
    return value <= rule.clear_at


def step(rule: RuleLike, is_open: bool, value: Value) -> Literal["raise", "clear"] | None:
    """The one transition a value causes, given whether the alert is open."""
    if value is None:
        return None
    number = float(value)
    if not is_open and holds(rule, number):
        return "raise"
    if is_open and clears(rule, number):
        return "clear"
    return None


def backtest(rule: RuleLike, series: Iterable[tuple[T, Value]]) -> list[tuple[T, T | None]]:
    """When the rule would have fired over a history of (time, value), oldest first: one
    (raised_at, cleared_at) per episode, cleared_at None if still open at the end. Times
    may be datetimes, log positions, anything ordered the way the series is."""
    episodes: list[tuple[T, T | None]] = []
    raised_at: T | None = None
    is_open = False
    for at, value in series:
        match step(rule, is_open, value):
            case "raise":
                is_open, raised_at = True, at
            case "clear":
                assert raised_at is not None
                episodes.append((raised_at, at))
                is_open, raised_at = False, None
    if is_open:
        assert raised_at is not None
        episodes.append((raised_at, None))
    return episodes


# --- readings: the metric values rules look at ----------------------------------------------


@dataclass(frozen=True)
class Reading:
    """The value of one metric for one subject (a project, a risk, a pool, a role-month),
    with what a rule's scope and an alert need to know about the subject."""

    metric: r.Metric
    subject_id: str
    value: Value
    project_id: str | None = None
    programme_id: str | None = None
    #: The subject's category: a risk's category, a project's category.
    category: str | None = None
    #: The aggregate the subject is, for the audit link (default: the project's trail).
    aggregate: tuple[str, str] | None = None
    figures: Mapping[str, r.Figure] = field(default_factory=dict)
    #: The event ids behind the value; default: the `cause_event_ids` of the call.
    caused_by: tuple[str, ...] = ()
    #: The subject is gone (risk closed, project finished): clear, never raise.
    gone: bool = False
    #: project, risk, pool or role_month (`contracts.risks.SUBJECT_KIND`).
    subject_kind: str | None = None
    pool_id: str | None = None
    #: Why the subject is gone (e.g. `project closed`), when it is.
    gone_reason: str = "subject closed"


def shown(value: float | None, rule: RuleLike | None = None) -> str:
    """A value with enough digits to see why a rule holds or not: never rounded onto the
    other side of the threshold or clear level (0.898876 against 0.90 shows 0.898876)."""
    if value is None:
        return "n/a"
    if rule is None:
        return f"{value:.6g}"
    for digits in range(6, 18):
        text = f"{value:.{digits}g}"
        rounded = float(text)
        if holds(rule, rounded) == holds(rule, value) and clears(rule, rounded) == clears(
            rule, value
        ):
            return text
    return repr(value)


def in_scope(rule: AlertRuleState, reading: Reading) -> bool:
    return in_scope_of(rule, reading.project_id, reading.programme_id, reading.category)


def in_scope_of(
    rule: AlertRuleState, project_id: str | None, programme_id: str | None, category: str | None
) -> bool:
    """`in_scope` for a subject known by these three, without a `Reading`."""
    match rule.scope:
        case r.Scope.PORTFOLIO:
            return True
        case r.Scope.PROGRAMME:
            return programme_id == rule.scope_id
        case r.Scope.PROJECT:
            return project_id == rule.scope_id
        case r.Scope.CATEGORY:
            return category == rule.scope_id
    return False


class LazyFigures(Mapping[str, r.Figure]):
    """A subject's figures made on first use from what they were read from (immutable
    values captured when read): an open alert takes its subject's figures on every move
    and shows them far more rarely."""

    __slots__ = ("_args", "_made", "_make")

    def __init__(self, make: Callable[..., Mapping[str, r.Figure]], *args: object) -> None:
        self._make = make
        self._args = args
        self._made: Mapping[str, r.Figure] | None = None

    def _figures(self) -> Mapping[str, r.Figure]:
        if self._made is None:
            self._made = self._make(*self._args)
            self._make, self._args = _made_already, ()
        return self._made

    def __getitem__(self, key: str) -> r.Figure:
        return self._figures()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._figures())

    def __len__(self) -> int:
        return len(self._figures())

    def __repr__(self) -> str:
        return f"LazyFigures({dict(self._figures())!r})"


def _made_already() -> Mapping[str, r.Figure]:
    raise AssertionError("figures made once")


def audit_link(reading: Reading) -> str:
    """The CLI command showing the decision history behind the subject."""
    if reading.aggregate is not None:
        kind, ident = reading.aggregate
        return f"portfolio audit --aggregate-type {kind} --aggregate-id {ident}"
    if reading.project_id is not None:
        return f"portfolio audit --project {reading.project_id}"
    return "portfolio audit"


def _figure(value: object) -> r.Figure:
    """Figures as JSON scalars; money and other decimals as exact strings."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def project_readings(
    health: Health,
    *,
    programme_id: str | None = None,
    category: str | None = None,
    caused_by: tuple[str, ...] = (),
) -> list[Reading]:
    """The earned-value metrics of a project's health (cpi, spi, tcpi, cv, sv, vac,
    schedule_slip_days), each with every EVM figure."""
    ev: EarnedValue | None = health.earned_value
    figures = health_figures(health)
    values: dict[r.Metric, Value] = {r.Metric.SCHEDULE_SLIP_DAYS: health.schedule_slip_days}
    if ev is not None:
        values |= {
            r.Metric.CPI: ev.cpi,
            r.Metric.SPI: ev.spi,
            r.Metric.TCPI: ev.tcpi,
            r.Metric.CV: ev.cv,
            r.Metric.SV: ev.sv,
            r.Metric.VAC: ev.vac,
        }
    return [
        Reading(
            metric=metric,
            subject_id=health.subject_id,
            value=value,
            project_id=health.subject_id,
            programme_id=programme_id,
            category=category,
            figures=figures,
            caused_by=caused_by,
        )
        for metric, value in values.items()
    ]


def health_figures(health: Health) -> dict[str, r.Figure]:
    """A project's figures in its readings: every EVM figure, the slip and the RAG."""
    ev = health.earned_value
    figures = {} if ev is None else {k: _figure(v) for k, v in ev.figures().items()}
    figures["schedule_slip_days"] = health.schedule_slip_days
    figures["rag"] = str(health.status)
    return figures


def risk_reading(
    risk: RiskState, *, programme_id: str | None = None, caused_by: tuple[str, ...] = ()
) -> Reading:
    """A risk's current score (residual once reassessed); a closed risk is `gone`."""
    return Reading(
        metric=r.Metric.RISK_SCORE,
        subject_id=risk.risk_id,
        value=risk.current_score,
        project_id=risk.project_id,
        programme_id=programme_id,
        category=risk.category,
        aggregate=(r.RISK, risk.risk_id),
        figures={
            "title": risk.title,
            "kind": str(risk.kind),
            "probability": risk.current_probability,
            "impact": risk.residual_impact or risk.impact,
            "score": risk.score,
            "residual_score": risk.residual_score,
            "emv": str(risk.emv()),
            "owner": risk.owner,
        },
        caused_by=caused_by,
        gone=not risk.is_open,
    )


# --- alert state, rebuilt from the log ---------------------------------------------------------

Key = tuple[str, str]  # (rule_id, subject_id)


@dataclass(frozen=True)
class OpenAlert:
    alert_id: str
    rule_id: str
    subject_id: str
    metric: r.Metric
    severity: r.Severity
    project_id: str | None
    clear_at: float
    audit_link: str
    rule_revision: int = 1
    threshold: float | None = None


@dataclass(frozen=True)
class AlertState:
    open: Mapping[Key, OpenAlert] = field(default_factory=dict)
    #: How many times each (rule, subject) has been raised: the next alert id's episode.
    episodes: Mapping[Key, int] = field(default_factory=dict)

    def is_open(self, rule_id: str, subject_id: str) -> bool:
        return (rule_id, subject_id) in self.open


def alert_id_for(rule_id: str, subject_id: str, episode: int) -> str:
    """Deterministic: the same decision after a restart appends the same alert id."""
    digest = hashlib.sha256(f"{rule_id}\x1f{subject_id}\x1f{episode}".encode()).hexdigest()
    return f"alert-{digest[:24]}"


def evolve_alerts(state: AlertState, event: FrozenModel) -> AlertState:
    """Fold an `AlertRaised` or `AlertCleared` from the log into the alert state."""
    match event:
        case r.AlertRaised():
            key = (event.rule_id, event.subject_id)
            return AlertState(
                open={
                    **state.open,
                    key: OpenAlert(
                        alert_id=event.alert_id,
                        rule_id=event.rule_id,
                        subject_id=event.subject_id,
                        metric=event.metric,
                        severity=event.severity,
                        project_id=event.project_id,
                        clear_at=event.clear_at,
                        audit_link=event.audit_link,
                        rule_revision=event.rule_revision,
                        threshold=event.threshold,
                    ),
                },
                episodes={**state.episodes, key: state.episodes.get(key, 0) + 1},
            )
        case r.AlertRevised():
            key = (event.rule_id, event.subject_id)
            found = state.open.get(key)
            if found is None or found.alert_id != event.alert_id:
                return state
            revised = replace(
                found,
                severity=event.severity,
                clear_at=event.clear_at,
                rule_revision=event.rule_revision,
                threshold=event.threshold,
            )
            return AlertState(open={**state.open, key: revised}, episodes=state.episodes)
        case r.AlertCleared():
            key = (event.rule_id, event.subject_id)
            return AlertState(
                open={k: v for k, v in state.open.items() if k != key},
                episodes=state.episodes,
            )
    return state


# --- evaluation --------------------------------------------------------------------------------


def _message(rule: AlertRuleState, reading: Reading, value: float) -> str:
    return (
        f"{rule.metric} {shown(value, rule)} {rule.comparison.symbol} {rule.threshold:g} for "
        f"{reading.subject_id} (rule {rule.rule_id}, clears at {rule.clear_at:g})"
    )


def evaluate(
    rules: Iterable[AlertRuleState],
    current_alert_state: AlertState,
    metric_values: Iterable[Reading],
    cause_event_ids: Sequence[str] = (),
) -> tuple[list[AlertEvent], AlertState]:
    """The alerts to append (in order) and the state after them.

    `rules`: every rule's current state (disabled ones clear their open alerts);
    `metric_values`: the readings that changed; `cause_event_ids`: the events behind them,
    used for any reading that names no `caused_by` of its own."""
    active = {rule.rule_id: rule for rule in rules if rule.enabled}
    by_metric: dict[r.Metric, list[AlertRuleState]] = {}
    for rule in sorted(active.values(), key=lambda x: x.rule_id):
        by_metric.setdefault(rule.metric, []).append(rule)
    default_causes = tuple(cause_event_ids)
    events: list[AlertEvent] = []
    state = current_alert_state

    def clear(
        alert: OpenAlert,
        value: float | None,
        reason: str,
        causes: tuple[str, ...],
        clear_at: float | None = None,
    ) -> None:
        nonlocal state
        event = r.AlertCleared(
            alert_id=alert.alert_id,
            rule_id=alert.rule_id,
            metric=alert.metric,
            severity=alert.severity,
            subject_id=alert.subject_id,
            project_id=alert.project_id,
            value=value,
            clear_at=alert.clear_at if clear_at is None else clear_at,
            reason=reason,
            caused_by=causes,
            audit_link=alert.audit_link,
            value_shown=shown(value),
            message=f"{alert.metric} {shown(value)} for {alert.subject_id}: {reason} "
            f"(rule {alert.rule_id})",
        )
        events.append(event)
        state = evolve_alerts(state, event)

    # Rules no longer active, or now watching another metric, leave no alert open.
    for _, stale in sorted(state.open.items()):
        current = active.get(stale.rule_id)
        if current is None:
            clear(stale, None, "rule disabled", default_causes)
        elif current.metric != stale.metric:
            clear(stale, None, "rule redefined on another metric", default_causes)

    latest: dict[tuple[r.Metric, str], Reading] = {}
    for reading in metric_values:
        which = (reading.metric, reading.subject_id)
        latest.pop(which, None)  # in the order of each subject's last reading
        latest[which] = reading

    for reading in latest.values():
        causes = reading.caused_by or default_causes
        value = None if reading.value is None else float(reading.value)
        for rule in by_metric.get(reading.metric, ()):
            alert = state.open.get((rule.rule_id, reading.subject_id))
            if alert is not None:
                if reading.gone:
                    clear(alert, value, "subject closed", causes, rule.clear_at)
                elif not in_scope(rule, reading):
                    clear(alert, value, "subject left the rule's scope", causes, rule.clear_at)
                elif step(rule, True, value) == "clear":
                    clear(alert, value, "value passed the clear level", causes, rule.clear_at)
                continue
            if reading.gone or value is None or not in_scope(rule, reading):
                continue
            if step(rule, False, value) == "raise":
                key = (rule.rule_id, reading.subject_id)
                episode = state.episodes.get(key, 0) + 1
                raised = r.AlertRaised(
                    alert_id=alert_id_for(rule.rule_id, reading.subject_id, episode),
                    rule_id=rule.rule_id,
                    rule_revision=rule.revision,
                    metric=rule.metric,
                    comparison=rule.comparison,
                    severity=rule.severity,
                    scope=rule.scope,
                    scope_id=rule.scope_id,
                    subject_id=reading.subject_id,
                    project_id=reading.project_id,
                    value=value,
                    threshold=rule.threshold,
                    clear_at=rule.clear_at,
                    figures={k: _figure(v) for k, v in reading.figures.items()},
                    caused_by=causes,
                    audit_link=audit_link(reading),
                    message=_message(rule, reading, value),
                )
                events.append(raised)
                state = evolve_alerts(state, raised)
    return events, state


# --- default rules -------------------------------------------------------------------------------


def _default(name: str, **fields: object) -> r.DefineAlertRule:
    return r.DefineAlertRule.model_validate(
        {
            "command_id": f"default-alert-rule-{name}",
            "rule_id": f"default-{name}",
            "actor": "risk-monitor",
            "source": "risk-monitor",
            **fields,
        }
    )


#: The rules the portfolio starts with, as commands (fixed command ids: submitting them
#: again is a duplicate, so a bootstrap may send them on every start).
DEFAULT_RULES: tuple[r.DefineAlertRule, ...] = (
    _default(
        "cpi",
        metric="cpi",
        comparison="lt",
        threshold=0.9,
        clear_at=0.95,
        severity="warning",
        description="Cost performance below 0.90",
    ),
    _default(
        "spi",
        metric="spi",
        comparison="lt",
        threshold=0.9,
        clear_at=0.95,
        severity="warning",
        description="Schedule performance below 0.90",
    ),
    _default(
        "risk-score",
        metric="risk_score",
        comparison="ge",
        threshold=15,
        clear_at=12,
        severity="warning",
        description="A risk in the high zone (score 15 or more)",
    ),
    _default(
        "budget-80",
        metric="budget_consumption",
        comparison="ge",
        threshold=80,
        clear_at=75,
        severity="warning",
        description="80 % of a budget consumed (ledger threshold)",
    ),
    _default(
        "budget-100",
        metric="budget_consumption",
        comparison="ge",
        threshold=100,
        clear_at=95,
        severity="critical",
        description="A budget fully consumed (ledger threshold)",
    ),
    _default(
        "over-allocation",
        metric="over_allocation",
        comparison="gt",
        threshold=100,
        clear_at=95,
        severity="warning",
        description="A role booked beyond its capacity in a month (ledger threshold)",
    ),
)


def rule_state(command: r.DefineAlertRule, revision: int = 1) -> AlertRuleState:
    """The state a `DefineAlertRule` alone leads to, without the log or its references:
    the defaults before they are submitted, a candidate rule to backtest."""
    event = r.AlertRuleDefined(
        rule_id=command.rule_id,
        revision=revision,
        **command.model_dump(include=_RULE_FIELDS),
    )
    return evolve_alert_rule(None, event)


_RULE_FIELDS = {
    "metric",
    "comparison",
    "threshold",
    "clear_at",
    "severity",
    "scope",
    "scope_id",
    "description",
}


def default_rules() -> tuple[AlertRuleState, ...]:
    return tuple(rule_state(command) for command in DEFAULT_RULES)
