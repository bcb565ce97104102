"""Stakeholder engagement, given events, when a command, then events: the grid, the
engagement gap, feedback that stays open until answered, the communication plan."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import stakeholders as sh
from contracts.base import ErrorCode, FrozenModel
from domain.deciders import decide, evolve
from domain.kernel import Rejected
from domain.strategy import StakeholderState

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SID = "cfo"
REGISTERED = sh.StakeholderRegistered(
    stakeholder_id=SID, name="Chief Financial Officer", role="cfo", email="cfo@example.com"
)
PROJECT = ("project", "ERP-7")
OBJECTIVE = ("objective", "growth")


def given(*events: FrozenModel) -> StakeholderState | None:
    state: StakeholderState | None = None
    for event in events:
        state = evolve(state, event)
    return state


def when(
    command: sh.StakeholderCommand, *history: FrozenModel, refs: dict[Any, Any] | None = None
) -> list[FrozenModel]:
    known = {PROJECT: object(), OBJECTIVE: object()} if refs is None else refs
    return decide(command, given(*history), NOW, known)


def refused(
    command: sh.StakeholderCommand, *history: FrozenModel, refs: dict[Any, Any] | None = None
) -> Rejected:
    with pytest.raises(Rejected) as caught:
        when(command, *history, refs=refs)
    return caught.value


def assess(influence: int = 5, interest: int = 4, **changes: Any) -> sh.AssessStakeholder:
    fields: dict[str, Any] = {
        "stakeholder_id": SID,
        "influence": influence,
        "interest": interest,
        "current_engagement": "neutral",
        "desired_engagement": "leading",
        "cares_about": [{"kind": "project", "id": "ERP-7"}, {"kind": "programme", "id": "finance"}],
    } | changes
    return sh.AssessStakeholder.model_validate(fields)


def feedback(feedback_id: str = "F1", **changes: Any) -> sh.GiveFeedback:
    fields: dict[str, Any] = {
        "stakeholder_id": SID,
        "feedback_id": feedback_id,
        "concerns": {"kind": "project", "id": "ERP-7"},
        "decision_event_id": "evt-approve-1",
        "text": "The business case ignores licence costs.",
    } | changes
    return sh.GiveFeedback.model_validate(fields)


def test_an_assessment_places_the_stakeholder_on_the_grid_with_its_gap() -> None:
    events = when(assess(), REGISTERED)
    state = given(REGISTERED, *events)
    assert state is not None
    assert state.quadrant == "manage closely"
    assert state.engagement_gap == 2  # neutral -> leading
    assert [i.id for i in state.cares_about] == ["ERP-7", "finance"]


@pytest.mark.parametrize(
    ("influence", "interest", "quadrant"),
    [
        (5, 5, "manage closely"),
        (5, 1, "keep satisfied"),
        (1, 5, "keep informed"),
        (3, 3, "monitor"),
    ],
)
def test_the_power_interest_grid(influence: int, interest: int, quadrant: str) -> None:
    state = given(REGISTERED, *when(assess(influence, interest), REGISTERED))
    assert state is not None and state.quadrant == quadrant


def test_caring_about_an_unknown_project_is_refused_naming_the_field() -> None:
    error = refused(assess(), REGISTERED, refs={})
    assert error.code == ErrorCode.NOT_FOUND
    assert [d.field for d in error.details] == ["cares_about.0.id"]


def test_feedback_stays_open_until_answered_and_is_answered_once() -> None:
    history = [REGISTERED, *when(feedback("F1"), REGISTERED)]
    history += when(feedback("F2"), *history)
    state = given(*history)
    assert state is not None and state.open_feedback == 2
    history += when(
        sh.RespondToFeedback(stakeholder_id=SID, feedback_id="F1", response="Added."), *history
    )
    state = given(*history)
    assert state is not None and state.open_feedback == 1
    again = refused(
        sh.RespondToFeedback(stakeholder_id=SID, feedback_id="F1", response="Again."), *history
    )
    assert again.code == ErrorCode.ILLEGAL_TRANSITION


def test_feedback_refusals() -> None:
    history = [REGISTERED, *when(feedback("F1"), REGISTERED)]
    assert refused(feedback("F1"), *history).code == ErrorCode.ALREADY_EXISTS
    unknown = refused(
        sh.RespondToFeedback(stakeholder_id=SID, feedback_id="nope", response="?"), *history
    )
    assert unknown.code == ErrorCode.NOT_FOUND and unknown.details[0].field == "feedback_id"
    about_nothing = refused(feedback("F3", concerns={"kind": "objective", "id": "ghost"}), *history)
    assert about_nothing.code == ErrorCode.NOT_FOUND


def test_commands_for_an_unregistered_stakeholder_are_refused() -> None:
    for command in (assess(), feedback(), sh.StopCommunication(stakeholder_id=SID, plan_id="p")):
        assert refused(command).code == ErrorCode.NOT_FOUND


def test_a_communication_plan_is_data_and_can_be_stopped() -> None:
    plan = sh.PlanCommunication(
        stakeholder_id=SID,
        plan_id="monthly",
        content="report",
        frequency="monthly",
        channel="email",
        target="cfo@example.com",
    )
    history = [REGISTERED, *when(plan, REGISTERED)]
    state = given(*history)
    assert state is not None and list(state.plans) == ["monthly"]
    history += when(sh.StopCommunication(stakeholder_id=SID, plan_id="monthly"), *history)
    state = given(*history)
    assert state is not None and state.plans == {}
    assert (
        refused(sh.StopCommunication(stakeholder_id=SID, plan_id="monthly"), *history).code
        == ErrorCode.NOT_FOUND
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"influence": 0},
        {"interest": 6},
        {"influence": "5"},
        {"current_engagement": "ecstatic"},
        {"cares_about": [{"kind": "galaxy", "id": "x"}]},
        {"cares_about": [{"kind": "project", "id": "a b"}]},
    ],
)
def test_bad_assessments_are_refused_at_parse_time(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        assess(**changes)


@pytest.mark.parametrize(
    ("channel", "target"),
    [
        ("email", "https://hooks.example.com/x"),
        ("slack", "cfo@example.com"),
        ("webhook", "ftp://x"),
        # A line break would be a mail header of its own; a space, no URL at all.
        ("email", "cfo@example.com\r\nBcc: x@evil.test"),
        ("email", "cfo@example"),
        ("teams", "https://hooks.example.com/x y"),
    ],
)
def test_a_plan_target_must_fit_its_channel(channel: str, target: str) -> None:
    with pytest.raises(ValidationError):
        sh.PlanCommunication(
            stakeholder_id=SID,
            plan_id="p",
            content="report",
            frequency="weekly",
            channel=channel,
            target=target,
        )  # type: ignore[arg-type]


def test_an_old_registration_without_engagement_still_folds() -> None:
    state = given(
        sh.StakeholderRegistered.model_validate(
            {"stakeholder_id": SID, "name": "CFO", "role": "cfo", "email": None}
        )
    )
    assert state is not None
    assert (state.quadrant, state.engagement_gap, state.open_feedback) == (None, None, 0)
