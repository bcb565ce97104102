"""One fact's decision: the alert events it calls for, decided rule by rule against the
monitor's state and applied to it as they are decided (`AlertMonitor.fold` makes one per
fact)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from contracts import risks as r
from domain.risk.alerts import (
    AlertEvent,
    Reading,
    alert_id_for,
    audit_link,
    clears,
    holds,
    in_scope,
    in_scope_of,
    shown,
)
from domain.risk.rules import AlertRuleState

if TYPE_CHECKING:
    from domain.risk.monitor import AlertMonitor


@dataclass
class LiveAlert:
    """An open alert: the event that raised it, the revision it holds under now, and the
    current value of its metric (updated as it moves)."""

    raised: r.AlertRaised
    rule_revision: int
    severity: r.Severity
    comparison: r.Comparison
    threshold: float
    clear_at: float
    value: float
    raised_at: datetime | None = None
    #: The subject's current figures (exact decimals until shown).
    figures: Mapping[str, object] = field(default_factory=dict)

    @property
    def alert_id(self) -> str:
        return self.raised.alert_id

    def as_rule(self) -> AlertRuleState:
        raised = self.raised
        return AlertRuleState(
            rule_id=raised.rule_id,
            revision=self.rule_revision,
            metric=raised.metric,
            comparison=self.comparison,
            threshold=self.threshold,
            clear_at=self.clear_at,
            severity=self.severity,
            scope=raised.scope,
            scope_id=raised.scope_id,
            version=0,
        )

    def view(self) -> dict[str, Any]:
        """What the alerts query answers: the raise, and where things stand now."""
        return self.raised.model_dump(mode="json") | {
            "rule_revision": self.rule_revision,
            "severity": str(self.severity),
            "threshold": self.threshold,
            "clear_at": self.clear_at,
            "raised_value": self.raised.value,
            "value": self.value,
            "value_shown": shown(self.value, self.as_rule()),
            "raised_at": None if self.raised_at is None else self.raised_at.isoformat(),
            "current_figures": {k: _figure(v) for k, v in self.figures.items()},
        }


def _figure(value: object) -> r.Figure:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class Decision:
    """The alert events one fact calls for, applied to the monitor as they are decided."""

    def __init__(
        self,
        monitor: AlertMonitor,
        causes: tuple[str, ...],
        position: int | None,
        at: datetime | None,
    ) -> None:
        self.monitor = monitor
        self.causes = causes
        self.position = position
        self.at = at
        self.events: list[AlertEvent] = []

    def readings(self, readings: Iterable[Reading]) -> None:
        for reading in readings:
            self.reading(reading)

    def reading(self, reading: Reading) -> None:
        for rule in self.monitor.rules_for(reading.metric):
            self.evaluate(rule, reading)

    def observe(
        self,
        metric: r.Metric,
        subject_id: str,
        value: Decimal | float | int | None,
        gone: bool,
        project_id: str | None,
        programme_id: str | None,
        category: str | None,
        figures: Callable[[], Mapping[str, r.Figure]],
        reading: Callable[[], Reading],
    ) -> None:
        """`evaluate` of every rule of `metric` on a reading known by its value, its scope
        and whether its subject is gone: an open alert that stays takes the value and
        `figures()`; the whole `reading()` is made only when some rule raises or clears."""
        watches = self.monitor.watches(metric)
        if not watches:
            return
        opened = self.monitor.open
        number = None if value is None else float(value)
        whole: Reading | None = None
        shown_figures: Mapping[str, r.Figure] | None = None
        for rule, rule_id, everywhere, hold, threshold, low_is_bad, clear_at in watches:
            alert = opened.get((rule_id, subject_id))
            scoped = everywhere or in_scope_of(rule, project_id, programme_id, category)
            if alert is None:
                if gone or number is None or not scoped or not hold(number, threshold):
                    continue
            elif not gone and scoped:
                if number is None:
                    continue
                if not (number >= clear_at if low_is_bad else number <= clear_at):
                    if shown_figures is None:
                        shown_figures = figures() if whole is None else whole.figures
                    alert.value = number
                    alert.figures = shown_figures
                    continue
            if whole is None:
                whole = reading()
            self.evaluate(rule, whole)

    def evaluate(self, rule: AlertRuleState, reading: Reading) -> None:
        value = None if reading.value is None else float(reading.value)
        key = (rule.rule_id, reading.subject_id)
        alert = self.monitor.open.get(key)
        if alert is not None:
            reason = None
            if reading.gone:
                reason = reading.gone_reason
            elif not in_scope(rule, reading):
                reason = "subject left the rule's scope"
            elif value is not None and clears(rule, value):
                reason = "value passed the clear level"
            if reason is not None:
                self.clear(alert, value, reason, rule)
            elif value is not None:
                alert.value = value
                # Kept as read, made JSON scalars when shown: an open alert moves with
                # every invoice of its subject and is read far more rarely.
                alert.figures = reading.figures
            return
        if reading.gone or value is None or not in_scope(rule, reading):
            return
        if holds(rule, value):
            self.raise_(rule, reading, value)

    def raise_(self, rule: AlertRuleState, reading: Reading, value: float) -> None:
        key = (rule.rule_id, reading.subject_id)
        episode = self.monitor.episodes.get(key, 0) + 1
        self.monitor.episodes[key] = episode
        text = shown(value, rule)
        about = f" (project {reading.project_id})" if reading.project_id else ""
        figures = {k: _figure(v) for k, v in reading.figures.items()}
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
            subject_kind=reading.subject_kind,
            project_id=reading.project_id,
            programme_id=reading.programme_id,
            pool_id=reading.pool_id,
            value=value,
            value_shown=text,
            threshold=rule.threshold,
            clear_at=rule.clear_at,
            figures=figures,
            caused_by=self.causes,
            cause_position=self.position,
            audit_link=audit_link(reading),
            message=f"{rule.metric} {text} {rule.comparison.symbol} {rule.threshold:g} for "
            f"{reading.subject_id}{about} (rule {rule.rule_id} revision {rule.revision}, "
            f"clears at {rule.clear_at:g})",
        )
        if raised.project_id is not None:
            self.monitor.open_of_project[raised.project_id].add(key)
        self.monitor.open[key] = LiveAlert(
            raised=raised,
            rule_revision=rule.revision,
            severity=rule.severity,
            comparison=rule.comparison,
            threshold=rule.threshold,
            clear_at=rule.clear_at,
            value=value,
            raised_at=self.at,
            figures=figures,
        )
        self.events.append(raised)

    def clear(
        self, alert: LiveAlert, value: float | None, reason: str, rule: AlertRuleState | None
    ) -> None:
        raised = alert.raised
        revision = alert.rule_revision if rule is None else rule.revision
        clear_at = alert.clear_at if rule is None else rule.clear_at
        text = shown(value, rule or alert.as_rule())
        self.events.append(
            r.AlertCleared(
                alert_id=raised.alert_id,
                rule_id=raised.rule_id,
                rule_revision=revision,
                metric=raised.metric,
                severity=alert.severity,
                subject_id=raised.subject_id,
                project_id=raised.project_id,
                value=value,
                value_shown=text,
                clear_at=clear_at,
                reason=reason,
                caused_by=self.causes,
                cause_position=self.position,
                audit_link=raised.audit_link,
                message=f"{raised.metric} {text} for {raised.subject_id}: {reason} "
                f"(rule {raised.rule_id} revision {revision})",
            )
        )
        key = (raised.rule_id, raised.subject_id)
        del self.monitor.open[key]
        if raised.project_id is not None:
            self.monitor.open_of_project[raised.project_id].discard(key)

    def project_closed(self, project_id: str) -> None:
        # The project's own open alerts (going through every open alert of the portfolio
        # on each closed project grew with it), cleared in the order of their keys.
        opened = self.monitor.open
        for key in sorted(self.monitor.open_of_project.get(project_id, ())):
            self.clear(opened[key], opened[key].value, r.PROJECT_CLOSED, None)

    def rule_changed(self, rule: AlertRuleState) -> None:
        """Open alerts of the rule re-evaluated under its new revision, then every subject
        of its metric evaluated (a redefinition may make the rule hold for new ones)."""
        for key in sorted(k for k in self.monitor.open if k[0] == rule.rule_id):
            alert = self.monitor.open[key]
            reading = self.monitor.reading_of(alert.raised.metric, alert.raised.subject_id)
            value = alert.value if reading is None or reading.value is None else reading.value
            current = None if value is None else float(value)
            if not rule.enabled:
                self.clear(alert, current, r.RULE_DISABLED, rule)
            elif rule.metric != alert.raised.metric:
                self.clear(alert, current, "rule redefined on another metric", rule)
            elif reading is not None and not in_scope(rule, reading):
                self.clear(alert, current, "rule redefined: subject out of its scope", rule)
            elif current is not None and clears(rule, current):
                self.clear(
                    alert,
                    current,
                    f"rule redefined: value passed the clear level {rule.clear_at:g}",
                    rule,
                )
            elif (
                rule.revision,
                rule.threshold,
                rule.clear_at,
                rule.severity,
                rule.comparison,
            ) != (
                alert.rule_revision,
                alert.threshold,
                alert.clear_at,
                alert.severity,
                alert.comparison,
            ):
                self.revise(alert, rule, current)
        if rule.enabled:
            for reading in self.monitor.readings_of(rule.metric):
                if (rule.rule_id, reading.subject_id) not in self.monitor.open:
                    self.evaluate(rule, reading)

    def revise(self, alert: LiveAlert, rule: AlertRuleState, value: float | None) -> None:
        alert.rule_revision = rule.revision
        alert.severity = rule.severity
        alert.comparison = rule.comparison
        alert.threshold = rule.threshold
        alert.clear_at = rule.clear_at
        if value is not None:
            alert.value = value
        text = shown(value, rule)
        raised = alert.raised
        self.events.append(
            r.AlertRevised(
                alert_id=raised.alert_id,
                rule_id=rule.rule_id,
                rule_revision=rule.revision,
                metric=rule.metric,
                comparison=rule.comparison,
                severity=rule.severity,
                subject_id=raised.subject_id,
                project_id=raised.project_id,
                value=value,
                value_shown=text,
                threshold=rule.threshold,
                clear_at=rule.clear_at,
                caused_by=self.causes,
                cause_position=self.position,
                message=f"{rule.metric} {text} {rule.comparison.symbol} {rule.threshold:g} for "
                f"{raised.subject_id}: still holds under rule {rule.rule_id} revision "
                f"{rule.revision} (clears at {rule.clear_at:g})",
            )
        )
