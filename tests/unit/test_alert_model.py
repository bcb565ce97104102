"""Model-based: random sequences of ledger, risk, rule and lifecycle commands through the
pure domain (decide, evolve) and the alert monitor; after every step the open alerts equal
an oracle written apart from the alert code (tests/alert_oracle.py), value for value."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contracts import ledger as lg
from contracts import projects as p
from contracts import risks as r
from contracts.base import Command
from domain.deciders import decide, evolve
from domain.kernel import Rejected
from domain.risk.monitor import AlertMonitor
from tests.alert_oracle import Oracle

D = Decimal
NOW = datetime(2027, 1, 15, tzinfo=UTC)
PROJECTS = ("P1", "P2", "P3")
MONTHS = ("2027-01", "2027-02", "2027-03")
ROLE = "dev"
money = st.sampled_from([D(v) for v in ("1", "5", "10", "25", "40", "75", "150", "300")])
projects = st.sampled_from(PROJECTS)
months = st.sampled_from(MONTHS)
RISKS = ("R1", "R2", "R3")


def setup_commands() -> list[Command]:
    found: list[Command] = []
    for pid in PROJECTS:
        found.append(
            p.ProposeProject(
                project_id=pid,
                name=pid,
                sponsor="cio",
                category="infrastructure",
                capex=D(1000),
                opex=D(0),
                planned_start=date(2027, 1, 1),
                planned_end=date(2027, 6, 30),
                programme="PRG" if pid != "P3" else None,
            )
        )
        found += [
            p.SubmitProjectForReview(project_id=pid),
            p.ApproveProject(project_id=pid, rationale="approved"),
            p.StartProject(project_id=pid),
            r.SetProjectBaseline(
                project_id=pid,
                budget_at_completion=D(1000),
                planned_value_by_period=(
                    r.PlannedValue(period="2027-01", planned_value=D(100)),
                    r.PlannedValue(period="2027-02", planned_value=D(400)),
                    r.PlannedValue(period="2027-03", planned_value=D(800)),
                ),
            ),
        ]
    found.append(
        lg.DefineBudgetPool(
            pool_id="POOL",
            name="pool",
            fiscal_year=2027,
            category="capex",
            amount=D(1000),
            currency="EUR",
            owner="cfo",
        )
    )
    found += [lg.SetCapacity(role=ROLE, period=m, amount=D(10), unit="fte") for m in MONTHS[:2]]
    return found


class AlertModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.states: dict[tuple[str, str], Any] = {}
        self.monitor = AlertMonitor()
        self.oracle = Oracle()
        self.position = 0
        self.refs_seen: list[str] = []
        self.orders: list[str] = []

    def submit(self, command: Command) -> bool:
        key = command.aggregate_key()
        refs = {k: self.states[k] for k in command.references() if k in self.states}
        if isinstance(command, lg.PoolCommand | lg.CapacityCommand):
            pid = getattr(command, "project_id", None)
            if pid is not None and ("project", pid) in self.states:
                refs[("project", pid)] = self.states[("project", pid)]
        try:
            events = decide(command, self.states.get(key), NOW, refs)
        except Rejected:
            return False
        for event in events:
            self.states[key] = evolve(self.states.get(key), event)
            self.position += 1
            self.monitor.fold(event, f"e{self.position}", self.position)
        self.oracle.accept(command)
        return True

    @initialize()
    def setup(self) -> None:
        for command in setup_commands():
            assert self.submit(command), command

    @rule(project=projects, amount=money, month=months, settle=st.booleans())
    def invoice(self, project: str, amount: Decimal, month: str, settle: bool) -> None:
        self.refs_seen.append(f"INV-{len(self.refs_seen)}")
        ref = self.orders[-1] if settle and self.orders else None
        self.submit(
            lg.RecordActualCost(
                pool_id="POOL",
                project_id=project,
                amount=amount,
                external_ref=self.refs_seen[-1],
                period=month,
                source="finance",
                commitment_ref=ref,
            )
        )

    @rule(project=projects, amount=money, month=months)
    def order(self, project: str, amount: Decimal, month: str) -> None:
        ref = f"PO-{len(self.orders)}"
        if self.submit(
            lg.RecordCommitment(
                pool_id="POOL", project_id=project, amount=amount, external_ref=ref, period=month
            )
        ):
            self.orders.append(ref)

    @rule(amount=st.sampled_from([D(v) for v in ("50", "200", "800", "1000", "2000")]))
    def adjust_pool(self, amount: Decimal) -> None:
        self.submit(lg.AdjustBudgetPool(pool_id="POOL", amount=amount, rationale="re-plan"))

    @rule(project=projects, amount=money)
    def allocate(self, project: str, amount: Decimal) -> None:
        self.submit(
            lg.AllocateBudget(pool_id="POOL", project_id=project, amount=amount, rationale="needed")
        )

    @precondition(lambda self: self.position > 40)
    @rule()
    def close_pool(self) -> None:
        self.submit(lg.ClosePool(pool_id="POOL", rationale="year end"))

    @rule(
        month=months,
        amount=st.sampled_from([D(v) for v in ("0", "4", "8", "10", "12")]),
        off=st.sampled_from([D(0), D(0), D(2)]),
    )
    def capacity(self, month: str, amount: Decimal, off: Decimal) -> None:
        if off > amount:
            return
        self.submit(
            lg.SetCapacity(role=ROLE, period=month, amount=amount, time_off=off, unit="fte")
        )

    @rule(project=projects, month=months, amount=st.sampled_from([D(v) for v in ("0", "3", "6")]))
    def demand(self, project: str, month: str, amount: Decimal) -> None:
        self.submit(lg.AssignDemand(role=ROLE, project_id=project, period=month, amount=amount))

    @rule(risk=st.sampled_from(RISKS), project=projects, pr=st.integers(1, 5), im=st.integers(1, 5))
    def identify(self, risk: str, project: str, pr: int, im: int) -> None:
        self.submit(
            r.IdentifyRisk(
                risk_id=risk,
                project_id=project,
                title="vendor late",
                owner="pmo",
                probability=pr,
                impact=im,
            )
        )

    @rule(risk=st.sampled_from(RISKS), pr=st.integers(1, 5), im=st.integers(1, 5))
    def assess(self, risk: str, pr: int, im: int) -> None:
        self.submit(r.AssessRisk(risk_id=risk, probability=pr, impact=im, rationale="news"))

    @rule(risk=st.sampled_from(RISKS), pr=st.integers(1, 5), im=st.integers(1, 5))
    def reassess(self, risk: str, pr: int, im: int) -> None:
        self.submit(
            r.ChooseRiskResponse(
                risk_id=risk, strategy="mitigate", plan="second vendor", due=date(2027, 5, 1)
            )
        )
        self.submit(
            r.ReassessRisk(
                risk_id=risk, residual_probability=pr, residual_impact=im, rationale="done"
            )
        )

    @rule(risk=st.sampled_from(RISKS))
    def close_risk(self, risk: str) -> None:
        self.submit(r.CloseRisk(risk_id=risk, rationale="gone"))

    @rule(
        project=projects,
        month=months,
        percent=st.sampled_from([D(v) for v in ("0", "5", "10", "30", "45", "60", "90")]),
    )
    def progress(self, project: str, month: str, percent: Decimal) -> None:
        self.submit(r.ReportProgress(project_id=project, period=month, percent_complete=percent))

    @rule(
        rule_id=st.sampled_from(["default-budget-80", "default-cpi", "custom"]),
        spec=st.sampled_from(
            [
                ("budget_consumption", "ge", 60.0, 50.0),
                ("budget_consumption", "gt", 90.0, 85.0),
                ("cpi", "lt", 1.0, 1.1),
                ("cpi", "le", 0.5, 0.7),
                ("spi", "lt", 0.8, 0.9),
                ("risk_score", "ge", 10.0, 6.0),
                ("over_allocation", "ge", 80.0, 60.0),
            ]
        ),
        scope=st.sampled_from([("portfolio", None), ("programme", "PRG"), ("project", "P2")]),
    )
    def define_rule(
        self, rule_id: str, spec: tuple[str, str, float, float], scope: tuple[str, str | None]
    ) -> None:
        metric, comparison, threshold, clear_at = spec
        self.submit(
            r.DefineAlertRule(
                rule_id=rule_id,
                metric=metric,
                comparison=comparison,
                threshold=threshold,
                clear_at=clear_at,
                scope=scope[0],
                scope_id=scope[1],
            )
        )

    @rule(rule_id=st.sampled_from(["default-budget-80", "default-cpi", "custom"]))
    def disable_rule(self, rule_id: str) -> None:
        self.submit(r.DisableAlertRule(rule_id=rule_id, rationale="noise"))

    @rule(project=projects, how=st.sampled_from(["complete", "cancel", "hold", "resume"]))
    def lifecycle(self, project: str, how: str) -> None:
        command: Command = {
            "complete": p.CompleteProject(project_id=project),
            "cancel": p.CancelProject(project_id=project, reason="stopped"),
            "hold": p.PutProjectOnHold(project_id=project, reason="wait"),
            "resume": p.ResumeProject(project_id=project),
        }[how]
        self.submit(command)

    @invariant()
    def open_alerts_are_the_rules_on_the_current_figures(self) -> None:
        found = {
            (a.raised.rule_id, str(a.raised.metric), a.raised.subject_id): a.value
            for a in self.monitor.open_alerts()
        }
        expected = self.oracle.expected()
        assert set(found) == set(expected), (found, expected)
        for key, value in expected.items():
            assert math.isclose(found[key], value, rel_tol=1e-12), (key, found[key], value)
        for alert in self.monitor.open_alerts():
            held = self.oracle.rules[alert.raised.rule_id]
            assert alert.rule_revision == held.revision
            assert (alert.threshold, alert.clear_at) == (held.threshold, held.clear_at)

    @invariant()
    def open_alerts_show_their_subjects_current_figures(self) -> None:
        """What an open alert shows (its figures kept as read, made when shown) is what a
        reading of its subject built afresh now says."""
        for alert in self.monitor.open_alerts():
            now = self.monitor.reading_of(alert.raised.metric, alert.raised.subject_id)
            assert now is not None
            if now.value is None:
                continue  # a value not available leaves the alert as it was
            assert alert.view()["current_figures"] == dict(now.figures), alert.alert_id


AlertModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)
TestAlertModel = AlertModel.TestCase
