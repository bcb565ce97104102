"""The risk register, project baselines and alert rules: given past events (and the project
a command names, `refs`), when a command, then new events or a refusal. Pure domain and
parsing: no NATS, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import risks as r
from contracts.base import AggregateKey, Command, ErrorCode, FrozenModel
from contracts.projects import ProjectStatus
from domain.deciders import DECIDERS, EVENT_AGGREGATE, decide, evolve
from domain.kernel import Rejected
from domain.projects import ProjectState
from domain.risk import (
    DEFAULT_ZONES,
    PROBABILITY_FRACTION,
    AlertRuleState,
    BaselineState,
    RiskState,
    RiskZone,
    RiskZones,
    contingency,
    decide_risk,
    expected_monetary_value,
    highest_open_threat_score,
)

NOW = datetime(2027, 5, 3, 9, 0, tzinfo=UTC)
PID = "CRM-1"
PLANNED_END = date(2027, 12, 31)


def project(status: ProjectStatus = ProjectStatus.IN_PROGRESS, pid: str = PID) -> ProjectState:
    return ProjectState(
        project_id=pid,
        status=status,
        version=3,
        planned_start=date(2027, 1, 1),
        planned_end=PLANNED_END,
    )


REFS: Mapping[AggregateKey, Any] = {("project", PID): project()}


def given(*events: FrozenModel) -> Any:
    state: Any = None
    for event in events:
        state = evolve(state, event)
    return state


def when(
    command: Command, *history: FrozenModel, refs: Mapping[AggregateKey, Any] | None = None
) -> list[FrozenModel]:
    return decide(command, given(*history), NOW, REFS if refs is None else refs)


def refused(
    command: Command, *history: FrozenModel, refs: Mapping[AggregateKey, Any] | None = None
) -> Rejected:
    with pytest.raises(Rejected) as caught:
        when(command, *history, refs=refs)
    return caught.value


def fields(error: Rejected) -> list[str]:
    return [d.field for d in error.details]


def invalid(model: type[Command], **data: Any) -> list[str]:
    """Parse-time refusal: the fields the error names."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]


def test_every_command_and_event_is_covered() -> None:
    decided = {c.aggregate_type for c in r.COMMANDS}
    assert decided == {r.RISK, r.BASELINE, r.ALERT_RULE} and decided <= set(DECIDERS)
    folded = {event for event, kind in EVENT_AGGREGATE.items() if kind in decided}
    assert folded == set(r.RISK_EVENTS + r.BASELINE_EVENTS + r.ALERT_RULE_EVENTS)
    assert set(r.EVENT_AGGREGATE) == set(r.EVENTS)
    assert (r.AGGREGATE, r.RISK, r.BASELINE, r.ALERT_RULE) == (
        "risk",
        "risk",
        "baseline",
        "alert_rule",
    )


# --- the risk register ----------------------------------------------------------------------

RID = "R-VENDOR"
IDENTIFY = r.IdentifyRisk(
    risk_id=RID,
    project_id=PID,
    title="Vendor insolvency",
    kind="threat",
    category="supplier",
    owner="pm-anna",
    probability=3,
    impact=4,
    monetary_impact=Decimal("80000"),
    proximity=date(2027, 9, 1),
)
IDENTIFIED = r.RiskIdentified(
    risk_id=RID,
    project_id=PID,
    title="Vendor insolvency",
    description="",
    kind=r.RiskKind.THREAT,
    category="supplier",
    owner="pm-anna",
    probability=3,
    impact=4,
    monetary_impact=Decimal("80000"),
    proximity=date(2027, 9, 1),
    score=12,
)
MITIGATION = r.RiskResponseChosen(
    risk_id=RID,
    project_id=PID,
    strategy=r.ResponseStrategy.MITIGATE,
    plan="Escrow the source code; qualify a second vendor",
    due=date(2027, 7, 1),
)
REASSESSED = r.RiskReassessed(
    risk_id=RID,
    project_id=PID,
    residual_probability=2,
    residual_impact=3,
    residual_monetary_impact=Decimal("30000"),
    residual_score=6,
    rationale="escrow signed",
)
CLOSED = r.RiskClosed(risk_id=RID, project_id=PID, rationale="vendor acquired, stable")

OPPORTUNITY = IDENTIFIED.model_copy(
    update={"risk_id": "R-GRANT", "kind": r.RiskKind.OPPORTUNITY, "title": "Innovation grant"}
)


def test_identify_a_project_risk() -> None:
    assert IDENTIFY.references() == (("project", PID),)
    assert IDENTIFY.aggregate_key() == ("risk", RID)
    assert when(IDENTIFY) == [IDENTIFIED]
    state = given(IDENTIFIED)
    assert isinstance(state, RiskState)
    assert (state.score, state.current_score, state.zone(), state.is_open, state.version) == (
        12,
        12,
        RiskZone.MEDIUM,
        True,
        1,
    )


def test_identify_a_portfolio_wide_risk_needs_no_project() -> None:
    command = IDENTIFY.model_copy(update={"project_id": None, "risk_id": "R-PORT"})
    assert command.references() == ()
    [event] = when(command, refs={})
    assert isinstance(event, r.RiskIdentified)
    assert event.project_id is None


def test_identify_an_existing_risk_is_refused() -> None:
    error = refused(IDENTIFY, IDENTIFIED)
    assert error.code == ErrorCode.ALREADY_EXISTS
    assert fields(error) == ["risk_id"]


def test_identify_on_an_unknown_project_is_refused() -> None:
    error = refused(IDENTIFY, refs={})
    assert error.code == ErrorCode.NOT_FOUND
    assert fields(error) == ["project_id"]


@pytest.mark.parametrize("status", [ProjectStatus.CANCELLED, ProjectStatus.REJECTED])
def test_identify_on_a_dead_project_is_refused(status: ProjectStatus) -> None:
    error = refused(IDENTIFY, refs={("project", PID): project(status)})
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == ["project_id"]


BASE_RISK = {"risk_id": "R-1", "title": "t", "owner": "o", "probability": 3, "impact": 3}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"probability": 0}, "probability"),
        ({"probability": 6}, "probability"),
        ({"impact": 0}, "impact"),
        ({"impact": 9}, "impact"),
        ({"impact": "3"}, "impact"),
        ({"probability": 2.5}, "probability"),
        ({"monetary_impact": "-1"}, "monetary_impact"),
        ({"kind": "issue"}, "kind"),
    ],
)
def test_identify_bad_input_is_refused_at_parse_time(changes: dict[str, Any], field: str) -> None:
    assert invalid(r.IdentifyRisk, **(BASE_RISK | changes)) == [field]


def test_assess_replaces_the_assessment_and_drops_the_residual_one() -> None:
    command = r.AssessRisk(risk_id=RID, probability=5, impact=4, rationale="vendor missed payroll")
    [event] = when(command, IDENTIFIED, MITIGATION, REASSESSED)
    assert event == r.RiskAssessed(
        risk_id=RID,
        project_id=PID,
        probability=5,
        impact=4,
        monetary_impact=Decimal("80000"),
        proximity=date(2027, 9, 1),
        score=20,
        previous_score=6,
        rationale="vendor missed payroll",
    )
    state = given(IDENTIFIED, MITIGATION, REASSESSED, event)
    assert (state.current_score, state.residual_score, state.zone()) == (20, None, RiskZone.HIGH)
    assert state.response is not None  # the response stands; its residual must be reassessed


@pytest.mark.parametrize("value", [0, 6, -1])
def test_assess_outside_the_scale_is_refused_at_parse_time(value: int) -> None:
    base = {"risk_id": RID, "probability": 3, "impact": 3, "rationale": "new facts"}
    assert invalid(r.AssessRisk, **(base | {"probability": value})) == ["probability"]
    assert invalid(r.AssessRisk, **(base | {"impact": value})) == ["impact"]


def test_choose_a_response_to_a_threat() -> None:
    command = r.ChooseRiskResponse(
        risk_id=RID,
        strategy="mitigate",
        plan="Escrow the source code; qualify a second vendor",
        due=date(2027, 7, 1),
    )
    assert when(command, IDENTIFIED) == [MITIGATION]
    state = given(IDENTIFIED, MITIGATION)
    assert state.response.strategy == r.ResponseStrategy.MITIGATE


def test_changing_the_response_names_the_previous_one() -> None:
    command = r.ChooseRiskResponse(
        risk_id=RID, strategy="transfer", plan="Insure it", due=date(2027, 8, 1)
    )
    [event] = when(command, IDENTIFIED, MITIGATION)
    assert isinstance(event, r.RiskResponseChosen)
    assert event.previous_strategy == r.ResponseStrategy.MITIGATE


@pytest.mark.parametrize(
    ("kind", "strategy", "fits"),
    [
        (kind, strategy, strategy in r.STRATEGIES[kind])
        for kind in r.RiskKind
        for strategy in r.ResponseStrategy
    ],
)
def test_a_response_must_fit_the_kind_of_risk(
    kind: r.RiskKind, strategy: r.ResponseStrategy, fits: bool
) -> None:
    history = IDENTIFIED.model_copy(update={"kind": kind})
    command = r.ChooseRiskResponse(risk_id=RID, strategy=strategy, plan="a plan", due=date.max)
    if fits:
        [event] = when(command, history)
        assert isinstance(event, r.RiskResponseChosen)
    else:
        error = refused(command, history)
        assert error.code == ErrorCode.VALIDATION_FAILED
        assert fields(error) == ["strategy"]


def test_accept_fits_both_kinds_and_the_tables_match_the_reference() -> None:
    assert {str(s) for s in r.STRATEGIES[r.RiskKind.THREAT]} == {
        "avoid",
        "mitigate",
        "transfer",
        "accept",
    }
    assert {str(s) for s in r.STRATEGIES[r.RiskKind.OPPORTUNITY]} == {
        "exploit",
        "enhance",
        "share",
        "accept",
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"plan": None}, "plan"),
        ({"plan": ""}, "plan"),
        ({"plan": "   \n "}, "plan"),
        ({"due": None}, "due"),
        ({"strategy": "ignore"}, "strategy"),
    ],
)
def test_a_response_without_a_plan_is_refused_at_parse_time(
    changes: dict[str, Any], field: str
) -> None:
    base = {"risk_id": RID, "strategy": "mitigate", "plan": "do it", "due": "2027-07-01"}
    data = {k: v for k, v in (base | changes).items() if v is not None}
    assert invalid(r.ChooseRiskResponse, **data) == [field]


def test_a_blank_plan_built_in_code_is_refused_by_the_domain_too() -> None:
    command = r.ChooseRiskResponse.model_construct(
        risk_id=RID, strategy=r.ResponseStrategy.MITIGATE, plan="  ", due=date(2027, 7, 1)
    )
    error = refused(command, IDENTIFIED)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["plan"])


def test_reassess_after_the_response() -> None:
    command = r.ReassessRisk(
        risk_id=RID,
        residual_probability=2,
        residual_impact=3,
        residual_monetary_impact=Decimal("30000"),
        rationale="escrow signed",
    )
    assert when(command, IDENTIFIED, MITIGATION) == [REASSESSED]
    state = given(IDENTIFIED, MITIGATION, REASSESSED)
    assert (state.score, state.residual_score, state.current_score) == (12, 6, 6)
    assert state.zone() == RiskZone.MEDIUM
    assert state.emv() == Decimal("9000.00")  # 30 % x 30,000


def test_reassess_keeps_the_monetary_impact_when_none_is_given() -> None:
    command = r.ReassessRisk(
        risk_id=RID, residual_probability=1, residual_impact=2, rationale="done"
    )
    [event] = when(command, IDENTIFIED, MITIGATION)
    assert isinstance(event, r.RiskReassessed)
    assert (event.residual_monetary_impact, event.residual_score) == (Decimal("80000"), 2)


def test_reassess_before_any_response_is_refused() -> None:
    command = r.ReassessRisk(
        risk_id=RID, residual_probability=1, residual_impact=2, rationale="hope"
    )
    assert refused(command, IDENTIFIED).code == ErrorCode.ILLEGAL_TRANSITION


def test_reassess_outside_the_scale_is_refused_at_parse_time() -> None:
    base = {"risk_id": RID, "residual_probability": 2, "residual_impact": 2, "rationale": "x y"}
    assert invalid(r.ReassessRisk, **(base | {"residual_probability": 7})) == [
        "residual_probability"
    ]
    assert invalid(r.ReassessRisk, **(base | {"residual_impact": 0})) == ["residual_impact"]


def test_close_a_risk() -> None:
    command = r.CloseRisk(risk_id=RID, rationale="vendor acquired, stable")
    assert when(command, IDENTIFIED, MITIGATION) == [CLOSED]
    state = given(IDENTIFIED, CLOSED)
    assert (state.status, state.is_open, state.version) == (r.RiskStatus.CLOSED, False, 2)


def test_closing_a_closed_risk_is_an_illegal_transition() -> None:
    error = refused(r.CloseRisk(risk_id=RID, rationale="again"), IDENTIFIED, CLOSED)
    assert error.code == ErrorCode.ILLEGAL_TRANSITION
    assert "already closed" in error.message


CHANGES: tuple[r.RiskCommand, ...] = (
    r.AssessRisk(risk_id=RID, probability=2, impact=2, rationale="re-rated"),
    r.ChooseRiskResponse(risk_id=RID, strategy="accept", plan="watch it", due=date(2027, 6, 1)),
    r.ReassessRisk(risk_id=RID, residual_probability=1, residual_impact=1, rationale="fine"),
    r.CloseRisk(risk_id=RID, rationale="gone"),
)


@pytest.mark.parametrize("command", CHANGES, ids=lambda c: type(c).__name__)
def test_commands_on_an_unknown_risk_are_refused(command: r.RiskCommand) -> None:
    error = refused(command)
    assert (error.code, fields(error)) == (ErrorCode.NOT_FOUND, ["risk_id"])


@pytest.mark.parametrize("command", CHANGES, ids=lambda c: type(c).__name__)
def test_a_closed_risk_takes_no_more_commands(command: r.RiskCommand) -> None:
    assert refused(command, IDENTIFIED, MITIGATION, CLOSED).code == ErrorCode.ILLEGAL_TRANSITION


def test_a_foreign_command_is_not_a_risk_command() -> None:
    with pytest.raises(Rejected) as caught:
        decide_risk(r.DisableAlertRule(rule_id="x", rationale="why not"), None, NOW, {})
    assert caught.value.code == ErrorCode.UNKNOWN_COMMAND


def test_events_before_creation_are_a_bug() -> None:
    for event in (
        CLOSED,
        r.ProgressReported.model_construct(),  # type: ignore[call-arg]  # fields missing on purpose
        r.AlertRuleDisabled.model_construct(),  # type: ignore[call-arg]
    ):
        with pytest.raises(ValueError, match="before"):
            evolve(None, event)


# --- scores, zones, expected monetary value ----------------------------------------------


@pytest.mark.parametrize(
    ("score", "zone"),
    [(1, "low"), (4, "low"), (5, "medium"), (14, "medium"), (15, "high"), (25, "high")],
)
def test_default_zones(score: int, zone: str) -> None:
    assert DEFAULT_ZONES.zone(score) == zone


def test_zones_are_configurable_and_checked() -> None:
    zones = RiskZones(low_max=6, medium_max=11)
    assert [zones.zone(s) for s in (6, 7, 11, 12)] == ["low", "medium", "medium", "high"]
    for low, medium in ((0, 10), (10, 10), (5, 25)):
        with pytest.raises(ValueError):
            RiskZones(low_max=low, medium_max=medium)
    with pytest.raises(ValueError):
        DEFAULT_ZONES.zone(26)


def test_probability_scale_maps_to_band_midpoints() -> None:
    assert [PROBABILITY_FRACTION[p] for p in range(1, 6)] == [
        Decimal("0.1"),
        Decimal("0.3"),
        Decimal("0.5"),
        Decimal("0.7"),
        Decimal("0.9"),
    ]
    assert expected_monetary_value(3, Decimal("80000")) == Decimal("40000.00")
    assert expected_monetary_value(5, Decimal("33333.33")) == Decimal("30000.00")


def _risk(rid: str, pid: str | None, p: int, i: int, money: str, **changes: Any) -> RiskState:
    return RiskState(
        risk_id=rid,
        project_id=pid,
        title=rid,
        kind=changes.pop("kind", r.RiskKind.THREAT),
        category="general",
        owner="o",
        probability=p,
        impact=i,
        monetary_impact=Decimal(money),
        proximity=None,
        version=1,
        **changes,
    )


def test_contingency_sums_open_threats_per_project_and_portfolio() -> None:
    risks = [
        _risk("a", "P1", 3, 4, "100000"),  # 50,000
        _risk("b", "P1", 1, 5, "20000"),  # 2,000
        _risk("c", "P2", 4, 4, "10000"),  # 7,000
        _risk("d", None, 2, 2, "50000"),  # 15,000, portfolio-wide
        _risk("e", "P2", 5, 5, "999999", status=r.RiskStatus.CLOSED),  # closed: none
        _risk("f", "P1", 5, 2, "40000", kind=r.RiskKind.OPPORTUNITY),  # 36,000, apart
        # reassessed: residual probability 1 and residual money 10,000 -> 1,000
        _risk(
            "g",
            "P2",
            5,
            5,
            "500000",
            residual_probability=1,
            residual_impact=3,
            residual_monetary_impact=Decimal("10000"),
        ),
    ]
    result = contingency(risks)
    assert result.threats_by_project == {
        "P1": Decimal("52000.00"),
        "P2": Decimal("8000.00"),
        None: Decimal("15000.00"),
    }
    assert result.reserve == Decimal("75000.00")
    assert result.opportunities_by_project == {"P1": Decimal("36000.00")}
    assert result.opportunities == Decimal("36000.00")
    assert highest_open_threat_score(risks, "P1") == 12
    assert highest_open_threat_score(risks, "P2") == 16  # the closed 25 does not count
    assert highest_open_threat_score(risks, "P3") is None


# --- baselines and progress ---------------------------------------------------------------------

CURVE = (
    {"period": "2027-01", "planned_value": "10000"},
    {"period": "2027-03", "planned_value": "50000"},
    {"period": "2027-12", "planned_value": "100000"},
)
SET_BASELINE = r.SetProjectBaseline.model_validate(
    {"project_id": PID, "budget_at_completion": "100000", "planned_value_by_period": CURVE}
)
BASELINE_SET = r.ProjectBaselineSet(
    project_id=PID,
    revision=1,
    budget_at_completion=Decimal(100000),
    planned_value_by_period=SET_BASELINE.planned_value_by_period,
    planned_end=PLANNED_END,
)
PROGRESS_MARCH = r.ProgressReported(
    project_id=PID,
    period="2027-03",
    percent_complete=Decimal(40),
    earned_value=Decimal("40000.00"),
    forecast_end=date(2028, 1, 20),
    baseline_revision=1,
)


def test_set_a_baseline() -> None:
    assert SET_BASELINE.references() == (("project", PID),)
    assert SET_BASELINE.aggregate_key() == ("baseline", PID)
    assert when(SET_BASELINE) == [BASELINE_SET]
    state = given(BASELINE_SET)
    assert isinstance(state, BaselineState)
    assert [state.planned_value_at(p) for p in ("2026-12", "2027-01", "2027-02", "2027-06")] == [
        Decimal(0),
        Decimal(10000),
        Decimal(10000),
        Decimal(50000),
    ]
    assert state.planned_value_at("2030-01") == Decimal(100000)


def test_a_baseline_on_an_unknown_project_is_refused() -> None:
    error = refused(SET_BASELINE, refs={})
    assert (error.code, fields(error)) == (ErrorCode.NOT_FOUND, ["project_id"])


def test_a_baseline_names_its_own_planned_end_when_given() -> None:
    command = SET_BASELINE.model_copy(update={"planned_end": date(2027, 11, 30)})
    [event] = when(command)
    assert isinstance(event, r.ProjectBaselineSet)
    assert event.planned_end == date(2027, 11, 30)


def test_re_baselining_needs_a_rationale_and_keeps_the_progress() -> None:
    error = refused(SET_BASELINE, BASELINE_SET)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["rationale"])
    command = SET_BASELINE.model_copy(
        update={"budget_at_completion": Decimal(120000), "rationale": "scope change CR-12"}
    )
    [event] = when(command, BASELINE_SET, PROGRESS_MARCH)
    assert isinstance(event, r.ProjectBaselineSet)
    assert (event.revision, event.rationale) == (2, "scope change CR-12")
    state = given(BASELINE_SET, PROGRESS_MARCH, event)
    assert state.revision == 2
    assert state.earned_value_at() == Decimal("48000.00")  # 40 % of the new BAC


@pytest.mark.parametrize(
    ("curve", "bac"),
    [
        ([{"period": "2027-03", "planned_value": 1}, {"period": "2027-01", "planned_value": 2}], 9),
        ([{"period": "2027-01", "planned_value": 1}, {"period": "2027-01", "planned_value": 2}], 9),
        ([{"period": "2027-01", "planned_value": 5}, {"period": "2027-02", "planned_value": 2}], 9),
        (
            [{"period": "2027-01", "planned_value": 5}, {"period": "2027-02", "planned_value": 20}],
            9,
        ),
        ([{"period": "2027-13", "planned_value": 1}], 9),
        ([{"period": "27-01", "planned_value": 1}], 9),
        ([], 9),
    ],
)
def test_a_planned_value_curve_must_be_cumulative(curve: list[dict[str, Any]], bac: int) -> None:
    fields_named = invalid(
        r.SetProjectBaseline,
        project_id=PID,
        budget_at_completion=bac,
        planned_value_by_period=curve,
    )
    assert fields_named[0].startswith("planned_value_by_period")


def test_report_progress() -> None:
    command = r.ReportProgress(
        project_id=PID,
        period="2027-03",
        percent_complete=Decimal(40),
        forecast_end=date(2028, 1, 20),
    )
    assert command.references() == (("project", PID),)
    assert when(command, BASELINE_SET) == [PROGRESS_MARCH]
    state = given(BASELINE_SET, PROGRESS_MARCH)
    assert (state.latest_period, state.earned_value_at(), state.forecast_end) == (
        "2027-03",
        Decimal("40000.00"),
        date(2028, 1, 20),
    )


def test_a_later_report_for_a_month_replaces_it_and_history_stays_readable() -> None:
    correction = PROGRESS_MARCH.model_copy(
        update={"percent_complete": Decimal(35), "forecast_end": None}
    )
    may = PROGRESS_MARCH.model_copy(update={"period": "2027-05", "percent_complete": Decimal(60)})
    state = given(BASELINE_SET, may, PROGRESS_MARCH, correction)
    assert [p.period for p in state.progress] == ["2027-03", "2027-05"]
    assert state.earned_value_at("2027-04") == Decimal("35000.00")
    assert state.earned_value_at("2027-02") == Decimal(0)
    assert state.earned_value_at() == Decimal("60000.00")
    assert state.forecast_end == date(2028, 1, 20)  # absent forecast: unchanged


def test_progress_without_a_baseline_is_refused() -> None:
    command = r.ReportProgress(project_id=PID, period="2027-03", percent_complete=Decimal(10))
    error = refused(command)
    assert (error.code, fields(error)) == (ErrorCode.NOT_FOUND, ["project_id"])
    assert refused(command, BASELINE_SET, refs={}).code == ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"percent_complete": "100.01"}, "percent_complete"),
        ({"percent_complete": -1}, "percent_complete"),
        ({"percent_complete": "ten"}, "percent_complete"),
        ({"period": "2027-3"}, "period"),
    ],
)
def test_progress_bad_input_is_refused_at_parse_time(changes: dict[str, Any], field: str) -> None:
    base = {"project_id": PID, "period": "2027-03", "percent_complete": 10}
    assert invalid(r.ReportProgress, **(base | changes)) == [field]


# --- alert rules ---------------------------------------------------------------------------

DEFINE_CPI = r.DefineAlertRule(
    rule_id="cpi-low", metric="cpi", comparison="lt", threshold=0.9, clear_at=0.95
)
CPI_DEFINED = r.AlertRuleDefined(
    rule_id="cpi-low",
    revision=1,
    metric=r.Metric.CPI,
    comparison=r.Comparison.LT,
    threshold=0.9,
    clear_at=0.95,
    severity=r.Severity.WARNING,
    scope=r.Scope.PORTFOLIO,
    scope_id=None,
)
CPI_DISABLED = r.AlertRuleDisabled(rule_id="cpi-low", revision=1, rationale="too noisy")


def test_define_an_alert_rule() -> None:
    assert DEFINE_CPI.references() == ()
    assert when(DEFINE_CPI) == [CPI_DEFINED]
    state = given(CPI_DEFINED)
    assert isinstance(state, AlertRuleState)
    assert (state.enabled, state.revision, state.threshold, state.clear_at) == (
        True,
        1,
        0.9,
        0.95,
    )


def test_redefining_a_rule_bumps_its_revision_and_re_enables_it() -> None:
    command = DEFINE_CPI.model_copy(update={"threshold": 0.85, "severity": "critical"})
    [event] = when(command, CPI_DEFINED, CPI_DISABLED)
    assert isinstance(event, r.AlertRuleDefined)
    assert (event.revision, event.threshold) == (2, 0.85)
    state = given(CPI_DEFINED, CPI_DISABLED, event)
    assert (state.enabled, state.severity, state.version) == (True, "critical", 3)


def test_a_project_scoped_rule_needs_a_known_project() -> None:
    command = DEFINE_CPI.model_copy(update={"scope": r.Scope.PROJECT, "scope_id": PID})
    assert command.references() == (("project", PID),)
    [event] = when(command)
    assert isinstance(event, r.AlertRuleDefined)
    assert (event.scope, event.scope_id) == ("project", PID)
    error = refused(command, refs={})
    assert (error.code, fields(error)) == (ErrorCode.NOT_FOUND, ["scope_id"])


RULE: dict[str, Any] = {
    "rule_id": "x",
    "metric": "cpi",
    "comparison": "lt",
    "threshold": 0.9,
    "clear_at": 0.95,
}


def test_a_rule_on_an_unknown_metric_is_refused() -> None:
    assert invalid(r.DefineAlertRule, **(RULE | {"metric": "happiness"})) == ["metric"]
    built = r.DefineAlertRule.model_construct(**(RULE | {"metric": "happiness"}))
    error = refused(built)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["metric"])


@pytest.mark.parametrize(
    ("comparison", "threshold", "clear_at"),
    [
        ("lt", 0.9, 0.85),
        ("lt", 0.9, 0.9),
        ("le", 0.9, 0.5),
        ("gt", 100, 101),
        ("ge", 15, 15),
        ("ge", 15, 20),
    ],
)
def test_a_clear_level_on_the_wrong_side_is_refused(
    comparison: str, threshold: float, clear_at: float
) -> None:
    metric = "cpi" if comparison in ("lt", "le") else "budget_consumption"
    data: dict[str, Any] = RULE | {
        "metric": metric,
        "comparison": comparison,
        "threshold": threshold,
        "clear_at": clear_at,
    }
    assert invalid(r.DefineAlertRule, **data) == ["clear_at"]
    error = refused(r.DefineAlertRule.model_construct(**data))
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["clear_at"])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"metric": "risk_score", "threshold": 30, "clear_at": 20, "comparison": "ge"},
            "threshold",
        ),
        ({"threshold": -1, "clear_at": 0}, "threshold"),
        ({"threshold": "nan"}, "threshold"),
        ({"comparison": "eq"}, "comparison"),
        ({"severity": "panic"}, "severity"),
        ({"scope": "project"}, ""),
        ({"scope_id": "P-1"}, ""),
    ],
)
def test_rule_bad_input_is_refused_at_parse_time(changes: dict[str, Any], field: str) -> None:
    assert field in invalid(r.DefineAlertRule, **(RULE | changes))


def test_disable_a_rule() -> None:
    command = r.DisableAlertRule(rule_id="cpi-low", rationale="too noisy")
    assert when(command, CPI_DEFINED) == [CPI_DISABLED]
    assert given(CPI_DEFINED, CPI_DISABLED).enabled is False


def test_disabling_an_unknown_or_disabled_rule_is_refused() -> None:
    command = r.DisableAlertRule(rule_id="cpi-low", rationale="too noisy")
    error = refused(command)
    assert (error.code, fields(error)) == (ErrorCode.NOT_FOUND, ["rule_id"])
    assert refused(command, CPI_DEFINED, CPI_DISABLED).code == ErrorCode.ILLEGAL_TRANSITION
