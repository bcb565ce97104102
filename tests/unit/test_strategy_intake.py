"""Strategic objectives, stakeholders and the business case of a proposal: given past
events (and the other aggregates a decision reads, `refs`), when a command, then new events
or a refusal. Pure domain and parsing: no NATS, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from contracts import objectives as o
from contracts import projects as p
from contracts import stakeholders as sh
from contracts.base import AggregateKey, Command, ErrorCode, FrozenModel
from domain.deciders import decide, evolve
from domain.kernel import Rejected
from shared.commands import InvalidInput, parse_command

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
LIMIT = 64 * 1024
Status = p.ProjectStatus


def given(*events: FrozenModel) -> Any:
    """The state one aggregate's history leaves behind, folded as intake folds it."""
    state: Any = None
    for event in events:
        state = evolve(state, event)
    return state


def when(
    command: Command,
    *history: FrozenModel,
    refs: Mapping[AggregateKey, Any] | None = None,
) -> list[FrozenModel]:
    return decide(command, given(*history), NOW, refs or {})


def refused(
    command: Command,
    *history: FrozenModel,
    refs: Mapping[AggregateKey, Any] | None = None,
) -> Rejected:
    with pytest.raises(Rejected) as caught:
        when(command, *history, refs=refs)
    return caught.value


def fields(error: Rejected) -> list[tuple[str, Any]]:
    return [(d.field, d.input) for d in error.details]


# --- strategic objectives ---------------------------------------------------------------

DEFINE = o.DefineObjective(
    objective_id="OBJ-SEC", name="Security and resilience", owner="ciso", weight=Decimal(15)
)
DEFINED = o.ObjectiveDefined(
    objective_id="OBJ-SEC",
    name="Security and resilience",
    description="",
    owner="ciso",
    weight=Decimal(15),
)
RETIRED = o.ObjectiveRetired(objective_id="OBJ-SEC", rationale="merged into resilience")
REWEIGHT = o.ReweightObjective(
    objective_id="OBJ-SEC", weight=Decimal("22.5"), rationale="ransomware wave in the sector"
)
RETIRE = o.RetireObjective(objective_id="OBJ-SEC", rationale="merged into resilience")


def test_define_an_objective() -> None:
    assert when(DEFINE) == [DEFINED]
    state = given(DEFINED)
    assert (state.objective_id, state.weight, state.retired) == ("OBJ-SEC", Decimal(15), False)


def test_define_an_objective_twice_is_already_exists() -> None:
    error = refused(DEFINE, DEFINED)
    assert error.code == ErrorCode.ALREADY_EXISTS
    assert [d.field for d in error.details] == ["objective_id"]


def test_reweight_records_the_previous_weight() -> None:
    [event] = when(REWEIGHT, DEFINED)
    assert event == o.ObjectiveReweighted(
        objective_id="OBJ-SEC",
        weight=Decimal("22.5"),
        previous_weight=Decimal(15),
        rationale="ransomware wave in the sector",
    )
    [second] = when(
        o.ReweightObjective(objective_id="OBJ-SEC", weight=Decimal(18), rationale="calmer"),
        DEFINED,
        event,
    )
    assert isinstance(second, o.ObjectiveReweighted)
    assert (second.previous_weight, second.weight) == (Decimal("22.5"), Decimal(18))


def test_retire_an_objective() -> None:
    assert when(RETIRE, DEFINED) == [RETIRED]
    assert given(DEFINED, RETIRED).retired is True


@pytest.mark.parametrize("command", [REWEIGHT, RETIRE], ids=lambda c: type(c).__name__)
def test_a_retired_objective_takes_no_more_commands(command: Command) -> None:
    error = refused(command, DEFINED, RETIRED)
    assert error.code == ErrorCode.ILLEGAL_TRANSITION
    assert "retired" in error.message


@pytest.mark.parametrize("command", [REWEIGHT, RETIRE], ids=lambda c: type(c).__name__)
def test_commands_on_an_unknown_objective_are_not_found(command: Command) -> None:
    error = refused(command)
    assert error.code == ErrorCode.NOT_FOUND
    assert [d.field for d in error.details] == ["objective_id"]


def test_objective_weights_stay_within_0_and_100() -> None:
    body = {"objective_id": "O-1", "name": "n", "owner": "x"}
    for weight in ("0", "-5", "100.5"):
        with pytest.raises(InvalidInput) as caught:
            parse_command("DefineObjective", json.dumps(body | {"weight": weight}).encode(), LIMIT)
        assert [d.field for d in caught.value.error.details] == ["weight"]


# --- stakeholders -----------------------------------------------------------------------

REGISTER = sh.RegisterStakeholder(
    stakeholder_id="STK-CFO", name="Margaret Holloway", role="CFO", email="mh@example.com"
)
REGISTERED = sh.StakeholderRegistered(
    stakeholder_id="STK-CFO", name="Margaret Holloway", role="CFO", email="mh@example.com"
)


def test_register_a_stakeholder() -> None:
    assert when(REGISTER) == [REGISTERED]
    assert given(REGISTERED).name == "Margaret Holloway"


def test_register_a_stakeholder_twice_is_already_exists() -> None:
    error = refused(REGISTER, REGISTERED)
    assert error.code == ErrorCode.ALREADY_EXISTS
    assert [d.field for d in error.details] == ["stakeholder_id"]


# --- proposals and what they reference --------------------------------------------------

START, END = date(2027, 1, 4), date(2027, 12, 17)


def propose(**changes: Any) -> p.ProposeProject:
    fields: dict[str, Any] = {
        "project_id": "IAM-PAM",
        "name": "Privileged access management",
        "sponsor": "ciso",
        "planned_start": START,
        "planned_end": END,
    }
    return p.ProposeProject.model_validate(fields | changes)


def proposed(project_id: str) -> p.ProjectProposed:
    return p.ProjectProposed(
        project_id=project_id,
        name=project_id,
        description="",
        sponsor="cio",
        category="security",
        capex=Decimal(1000),
        opex=Decimal(0),
        currency="EUR",
        planned_start=START,
        planned_end=END,
        mandatory=False,
        dependencies=(),
    )


SERVES = [
    {"objective_id": "OBJ-SEC", "contribution": 5},
    {"objective_id": "OBJ-REG", "contribution": 3},
]
OBJECTIVES = {
    ("objective", "OBJ-SEC"): given(DEFINED),
    ("objective", "OBJ-REG"): given(
        o.ObjectiveDefined(
            objective_id="OBJ-REG", name="Compliance", description="", owner="cco", weight=20
        )
    ),
}


def test_a_proposal_serving_defined_objectives_records_them() -> None:
    [event] = when(propose(objectives=SERVES), refs=OBJECTIVES)
    assert isinstance(event, p.ProjectProposed)
    assert [(s.objective_id, s.contribution) for s in event.objectives] == [
        ("OBJ-SEC", 5),
        ("OBJ-REG", 3),
    ]


def test_the_command_names_what_the_decision_must_see() -> None:
    command = propose(objectives=SERVES, dependencies=["IAM-MFA"])
    assert command.references() == (
        ("objective", "OBJ-SEC"),
        ("objective", "OBJ-REG"),
        ("project", "IAM-MFA"),
    )


def test_an_unknown_objective_is_not_found_naming_its_place() -> None:
    refs = {("objective", "OBJ-SEC"): OBJECTIVES[("objective", "OBJ-SEC")]}
    error = refused(propose(objectives=SERVES), refs=refs)
    assert error.code == ErrorCode.NOT_FOUND
    assert fields(error) == [("objectives.1.objective_id", "OBJ-REG")]

    first = refused(propose(objectives=SERVES[1:]))
    assert first.code == ErrorCode.NOT_FOUND
    assert fields(first) == [("objectives.0.objective_id", "OBJ-REG")]


def test_a_retired_objective_cannot_be_served() -> None:
    refs = {("objective", "OBJ-SEC"): given(DEFINED, RETIRED)}
    error = refused(propose(objectives=SERVES[:1]), refs=refs)
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == [("objectives.0.objective_id", "OBJ-SEC")]
    assert "retired" in error.message


def test_a_proposal_may_depend_on_an_open_project() -> None:
    for history in [
        (proposed("IAM-MFA"),),
        (proposed("IAM-MFA"), p.ProjectStarted(project_id="IAM-MFA", started_on=START)),
    ]:
        refs = {("project", "IAM-MFA"): given(*history)}
        [event] = when(propose(dependencies=["IAM-MFA"]), refs=refs)
        assert isinstance(event, p.ProjectProposed)
        assert event.dependencies == ("IAM-MFA",)


def test_an_unknown_dependency_is_not_found() -> None:
    refs = {("project", "IAM-MFA"): given(proposed("IAM-MFA"))}
    error = refused(propose(dependencies=["IAM-MFA", "NET-SDWAN"]), refs=refs)
    assert error.code == ErrorCode.NOT_FOUND
    assert fields(error) == [("dependencies.1", "NET-SDWAN")]


@pytest.mark.parametrize(
    "ending",
    [
        p.ProjectCancelled(
            project_id="IAM-MFA", reason="superseded", cancelled_from=Status.PROPOSED
        ),
        p.ProjectRejected(project_id="IAM-MFA", rationale="no budget"),
    ],
    ids=["cancelled", "rejected"],
)
def test_a_dependency_on_a_dead_project_is_refused(ending: FrozenModel) -> None:
    history: list[FrozenModel] = [proposed("IAM-MFA")]
    if isinstance(ending, p.ProjectRejected):
        history.append(p.ProjectSubmittedForReview(project_id="IAM-MFA"))
    refs = {("project", "IAM-MFA"): given(*history, ending)}
    error = refused(propose(dependencies=["IAM-MFA"]), refs=refs)
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == [("dependencies.0", "IAM-MFA")]
    assert given(*history, ending).status.value in error.message


# --- yearly costs and scoring inputs ----------------------------------------------------

COSTS = [
    {"year": 2027, "capex": "180000", "opex": "45000"},
    {"year": 2028, "opex": "48000.50"},
]


def parsed(**changes: Any) -> p.ProposeProject:
    body = {
        "project_id": "IAM-MFA",
        "name": "MFA",
        "sponsor": "ciso",
        "planned_start": "2027-01-04",
        "planned_end": "2027-06-30",
    }
    command = parse_command("ProposeProject", json.dumps(body | changes).encode(), LIMIT)
    assert isinstance(command, p.ProposeProject)
    return command


def parse_error(**changes: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parsed(**changes)
    return caught.value


def test_capex_and_opex_default_to_the_sums_of_the_yearly_costs() -> None:
    command = parsed(costs=COSTS)
    assert (command.capex, command.opex) == (None, None)
    [event] = when(command)
    assert isinstance(event, p.ProjectProposed)
    assert (event.capex, event.opex) == (Decimal(180000), Decimal("93000.50"))
    assert [c.year for c in event.costs] == [2027, 2028]


def test_totals_that_match_the_yearly_costs_are_kept() -> None:
    [event] = when(parsed(costs=COSTS, capex="180000.00", opex="93000.5"))
    assert isinstance(event, p.ProjectProposed)
    assert (event.capex, event.opex) == (Decimal(180000), Decimal("93000.50"))


def test_without_yearly_costs_totals_default_to_zero() -> None:
    [event] = when(parsed())
    assert isinstance(event, p.ProjectProposed)
    assert (event.capex, event.opex) == (Decimal(0), Decimal(0))


@pytest.mark.parametrize(
    ("kind", "total", "sum_"), [("capex", "200000", "180000"), ("opex", "1", "93000.50")]
)
def test_totals_differing_from_the_yearly_costs_are_refused(
    kind: str, total: str, sum_: str
) -> None:
    error = parse_error(costs=COSTS, **{kind: total}).error
    assert error.code == ErrorCode.VALIDATION_FAILED
    [detail] = error.details
    assert f"{kind} {total} differs from the sum of the yearly costs {sum_}" in detail.message


def test_a_year_listed_twice_is_refused() -> None:
    error = parse_error(costs=[*COSTS, {"year": 2027, "capex": "1"}]).error
    assert [d.field for d in error.details] == ["costs"]
    assert "2027" in error.details[0].message


@pytest.mark.parametrize(
    "field", ["business_value", "time_criticality", "risk_reduction", "job_size"]
)
@pytest.mark.parametrize("value", [0, 4, 21, 100])
def test_scoring_inputs_off_the_fibonacci_scale_are_refused(field: str, value: int) -> None:
    error = parse_error(scoring={field: value}).error
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert [d.field for d in error.details] == [f"scoring.{field}"]
    assert "1, 2, 3, 5, 8, 13, 20" in error.details[0].message


def test_scoring_inputs_on_the_scale_are_kept() -> None:
    scoring = {"business_value": 8, "time_criticality": 13, "risk_reduction": 20, "job_size": 1}
    command = parsed(scoring=scoring | {"npv": "-260000.50", "risk": 2, "urgency": 5})
    assert command.scoring.business_value == 8
    assert command.scoring.npv == Decimal("-260000.50")


@pytest.mark.parametrize(("field", "value"), [("risk", 6), ("urgency", 0), ("job_size", "8")])
def test_risk_and_urgency_are_1_to_5_and_scores_are_numbers(field: str, value: Any) -> None:
    error = parse_error(scoring={field: value}).error
    assert [d.field for d in error.details] == [f"scoring.{field}"]


def test_an_objective_contribution_is_1_to_5() -> None:
    error = parse_error(objectives=[{"objective_id": "OBJ-SEC", "contribution": 6}]).error
    assert [d.field for d in error.details] == ["objectives.0.contribution"]


# --- stakeholder feedback ---------------------------------------------------------------

PROPOSED = proposed("CRM-2027")
SUBMITTED = p.ProjectSubmittedForReview(project_id="CRM-2027")
APPROVED = p.ProjectApproved(project_id="CRM-2027", rationale="strongest CX case")
STAKEHOLDERS = {("stakeholder", "STK-CFO"): given(REGISTERED)}
COMMENT = p.CommentOnProposal(
    project_id="CRM-2027", stakeholder_id="STK-CFO", comment="Plan the licence ramp-up."
)
STANCE = p.RecordStakeholderStance(
    project_id="CRM-2027", stakeholder_id="STK-CFO", stance="support", reason="pays back in 2029"
)


@pytest.mark.parametrize(
    "history", [(PROPOSED,), (PROPOSED, SUBMITTED)], ids=["proposed", "under_review"]
)
def test_feedback_on_an_open_proposal_is_recorded(history: tuple[FrozenModel, ...]) -> None:
    assert when(COMMENT, *history, refs=STAKEHOLDERS) == [
        p.ProposalCommented(
            project_id="CRM-2027", stakeholder_id="STK-CFO", comment="Plan the licence ramp-up."
        )
    ]
    assert when(STANCE, *history, refs=STAKEHOLDERS) == [
        p.StakeholderStanceRecorded(
            project_id="CRM-2027",
            stakeholder_id="STK-CFO",
            stance=p.StakeholderStance.SUPPORT,
            reason="pays back in 2029",
        )
    ]


@pytest.mark.parametrize("command", [COMMENT, STANCE], ids=lambda c: type(c).__name__)
def test_feedback_from_an_unknown_stakeholder_is_not_found(command: Command) -> None:
    error = refused(command, PROPOSED)
    assert error.code == ErrorCode.NOT_FOUND
    assert fields(error) == [("stakeholder_id", "STK-CFO")]


@pytest.mark.parametrize("command", [COMMENT, STANCE], ids=lambda c: type(c).__name__)
def test_feedback_after_approval_is_an_illegal_transition(command: Command) -> None:
    error = refused(command, PROPOSED, SUBMITTED, APPROVED, refs=STAKEHOLDERS)
    assert error.code == ErrorCode.ILLEGAL_TRANSITION
    assert "while it is approved" in error.message


def test_feedback_on_an_unknown_project_is_not_found() -> None:
    error = refused(COMMENT, refs=STAKEHOLDERS)
    assert error.code == ErrorCode.NOT_FOUND
    assert fields(error) == [("project_id", "CRM-2027")]
