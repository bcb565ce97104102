"""The project lifecycle, given past events, when a command, then new events or a refusal.

Pure domain: no NATS, no clock. Every cell of the TRANSITIONS table is exercised.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from contracts import projects as p
from contracts.base import ErrorCode, FrozenModel
from domain.deciders import decide, evolve
from domain.kernel import Rejected
from domain.projects import CLOSURE, TRANSITIONS, ProjectState
from domain.strategy import StakeholderState

Status = p.ProjectStatus
PID = "crm-2025"
NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
START, END = date(2025, 4, 1), date(2025, 12, 31)


def given(*events: FrozenModel) -> ProjectState | None:
    """The state the history leaves behind, folded with `evolve` as intake does."""
    state: ProjectState | None = None
    for event in events:
        state = evolve(state, event)
    return state


#: Other aggregates the decisions may look at: one registered stakeholder.
REFS = {("stakeholder", "S-1"): StakeholderState(stakeholder_id="S-1", name="Dana")}


def when(command: p.ProjectCommand, *history: FrozenModel) -> list[FrozenModel]:
    return decide(command, given(*history), NOW, REFS)


def refused(command: p.ProjectCommand, *history: FrozenModel) -> Rejected:
    with pytest.raises(Rejected) as caught:
        when(command, *history)
    return caught.value


# --- past events ----------------------------------------------------------------------

PROPOSED = p.ProjectProposed(
    project_id=PID,
    name="New CRM",
    description="",
    sponsor="sales",
    category="general",
    capex=Decimal("100000.00"),
    opex=Decimal("20000.00"),
    currency="EUR",
    planned_start=START,
    planned_end=END,
    mandatory=False,
    dependencies=(),
)
SUBMITTED = p.ProjectSubmittedForReview(project_id=PID)
APPROVED = p.ProjectApproved(project_id=PID, rationale="fits the strategy")
REJECTED = p.ProjectRejected(project_id=PID, rationale="too expensive")
STARTED = p.ProjectStarted(project_id=PID, started_on=START)
COMPLETED = p.ProjectCompleted(project_id=PID, completed_on=END)

#: A history that leaves the project in each status.
HISTORY: dict[Status, tuple[FrozenModel, ...]] = {
    Status.PROPOSED: (PROPOSED,),
    Status.UNDER_REVIEW: (PROPOSED, SUBMITTED),
    Status.APPROVED: (PROPOSED, SUBMITTED, APPROVED),
    Status.REJECTED: (PROPOSED, SUBMITTED, REJECTED),
    Status.IN_PROGRESS: (PROPOSED, SUBMITTED, APPROVED, STARTED),
    Status.ON_HOLD: (
        PROPOSED,
        SUBMITTED,
        APPROVED,
        STARTED,
        p.ProjectPutOnHold(project_id=PID, reason="budget freeze", held_from=Status.IN_PROGRESS),
    ),
    Status.COMPLETED: (PROPOSED, SUBMITTED, APPROVED, STARTED, COMPLETED),
    Status.CANCELLED: (
        PROPOSED,
        p.ProjectCancelled(project_id=PID, reason="not needed", cancelled_from=Status.PROPOSED),
    ),
}

# --- commands -------------------------------------------------------------------------

#: One valid instance of every command the TRANSITIONS table governs, and what it yields.
COMMANDS: dict[type[p.ProjectCommand], tuple[p.ProjectCommand, type[FrozenModel]]] = {
    p.SubmitProjectForReview: (
        p.SubmitProjectForReview(project_id=PID),
        p.ProjectSubmittedForReview,
    ),
    p.ApproveProject: (p.ApproveProject(project_id=PID, rationale="good value"), p.ProjectApproved),
    p.RejectProject: (p.RejectProject(project_id=PID, rationale="poor value"), p.ProjectRejected),
    p.StartProject: (p.StartProject(project_id=PID), p.ProjectStarted),
    p.PutProjectOnHold: (p.PutProjectOnHold(project_id=PID, reason="waiting"), p.ProjectPutOnHold),
    p.ResumeProject: (p.ResumeProject(project_id=PID), p.ProjectResumed),
    p.CompleteProject: (p.CompleteProject(project_id=PID), p.ProjectCompleted),
    p.UpdateProjectEstimate: (
        p.UpdateProjectEstimate(
            project_id=PID, capex=Decimal("120000"), opex=Decimal("25000"), reason="re-quoted"
        ),
        p.ProjectEstimateUpdated,
    ),
    p.CancelProject: (p.CancelProject(project_id=PID, reason="superseded"), p.ProjectCancelled),
    p.CommentOnProposal: (
        p.CommentOnProposal(project_id=PID, stakeholder_id="S-1", comment="What about GDPR?"),
        p.ProposalCommented,
    ),
    p.RecordStakeholderStance: (
        p.RecordStakeholderStance(
            project_id=PID, stakeholder_id="S-1", stance="support", reason="saves hours daily"
        ),
        p.StakeholderStanceRecorded,
    ),
}


def test_helpers_cover_every_status_and_command() -> None:
    assert set(HISTORY) == set(Status)
    assert set(COMMANDS) == set(TRANSITIONS)
    # Closure records (tests/unit/test_improvement.py) are not transitions.
    assert set(TRANSITIONS) == set(p.COMMANDS) - {p.ProposeProject} - set(CLOSURE)


@pytest.mark.parametrize("status", list(Status))
def test_history_reaches_the_status(status: Status) -> None:
    state = given(*HISTORY[status])
    assert state is not None
    assert state.status == status
    assert state.version == len(HISTORY[status])


def _cell_id(cell: object) -> str:
    return cell.__name__ if isinstance(cell, type) else str(cell)


@pytest.mark.parametrize(
    ("status", "command_type"), list(itertools.product(Status, TRANSITIONS)), ids=_cell_id
)
def test_transition_table(status: Status, command_type: type[p.ProjectCommand]) -> None:
    command, event_type = COMMANDS[command_type]
    history = HISTORY[status]
    if status in TRANSITIONS[command_type]:
        events = when(command, *history)
        assert [type(e) for e in events] == [event_type]
        assert events[0].project_id == PID  # type: ignore[attr-defined]
        after = given(*history, *events)
        assert after is not None
        assert after.status == p.status_after(events[0], status)
    else:
        error = refused(command, *history)
        assert error.code == ErrorCode.ILLEGAL_TRANSITION
        assert f"while it is {status.value}" in error.message
        assert command_type.__name__ in error.message


def test_terminal_statuses_accept_no_command() -> None:
    for status in p.TERMINAL_STATUSES:
        assert not any(status in allowed for allowed in TRANSITIONS.values())


# --- proposal and existence -----------------------------------------------------------


def _propose() -> p.ProposeProject:
    return p.ProposeProject(
        project_id=PID,
        name="New CRM",
        sponsor="sales",
        capex=Decimal("100000.00"),
        opex=Decimal("20000.00"),
        planned_start=START,
        planned_end=END,
    )


def test_propose_a_new_project() -> None:
    assert when(_propose()) == [PROPOSED]


@pytest.mark.parametrize("status", list(Status))
def test_propose_twice_is_already_exists(status: Status) -> None:
    error = refused(_propose(), *HISTORY[status])
    assert error.code == ErrorCode.ALREADY_EXISTS
    assert [d.field for d in error.details] == ["project_id"]


@pytest.mark.parametrize("command_type", list(TRANSITIONS), ids=_cell_id)
def test_command_on_unknown_project_is_not_found(command_type: type[p.ProjectCommand]) -> None:
    command, _ = COMMANDS[command_type]
    error = refused(command)
    assert error.code == ErrorCode.NOT_FOUND
    assert [(d.field, d.input) for d in error.details] == [("project_id", PID)]


def test_event_before_proposal_cannot_be_folded() -> None:
    with pytest.raises(ValueError, match="before ProjectProposed"):
        given(SUBMITTED)


# --- hold and resume ------------------------------------------------------------------


@pytest.mark.parametrize("status", [Status.APPROVED, Status.IN_PROGRESS])
def test_resume_returns_to_the_status_held_from(status: Status) -> None:
    history = HISTORY[status]
    held = when(p.PutProjectOnHold(project_id=PID, reason="budget freeze"), *history)
    assert held == [p.ProjectPutOnHold(project_id=PID, reason="budget freeze", held_from=status)]

    resumed = when(p.ResumeProject(project_id=PID), *history, *held)
    assert resumed == [p.ProjectResumed(project_id=PID, resumed_to=status)]
    state = given(*history, *held, *resumed)
    assert state is not None
    assert state.status == status


# --- estimates ------------------------------------------------------------------------


def _estimate(start: date | None = None, end: date | None = None) -> p.UpdateProjectEstimate:
    return p.UpdateProjectEstimate(
        project_id=PID,
        capex=Decimal("150000"),
        opex=Decimal("30000"),
        planned_start=start,
        planned_end=end,
        reason="vendor re-quoted",
    )


def test_estimate_without_dates_keeps_the_planned_dates() -> None:
    [event] = when(_estimate(), PROPOSED)
    assert event == p.ProjectEstimateUpdated(
        project_id=PID,
        capex=Decimal("150000"),
        opex=Decimal("30000"),
        planned_start=START,
        planned_end=END,
        reason="vendor re-quoted",
    )


def test_estimate_overrides_the_dates_it_is_given() -> None:
    [both] = when(_estimate(date(2025, 5, 1), date(2026, 3, 31)), PROPOSED)
    assert isinstance(both, p.ProjectEstimateUpdated)
    assert (both.planned_start, both.planned_end) == (date(2025, 5, 1), date(2026, 3, 31))

    [end_only] = when(_estimate(end=date(2026, 1, 31)), PROPOSED)
    assert isinstance(end_only, p.ProjectEstimateUpdated)
    assert (end_only.planned_start, end_only.planned_end) == (START, date(2026, 1, 31))


def test_later_estimates_start_from_the_updated_dates() -> None:
    [first] = when(_estimate(date(2025, 6, 1), date(2026, 6, 30)), PROPOSED)
    [second] = when(_estimate(), PROPOSED, first)
    assert isinstance(second, p.ProjectEstimateUpdated)
    assert (second.planned_start, second.planned_end) == (date(2025, 6, 1), date(2026, 6, 30))


@pytest.mark.parametrize(
    ("start", "end"),
    [(None, date(2025, 3, 31)), (date(2026, 1, 1), None)],
    ids=["end-before-planned-start", "start-after-planned-end"],
)
def test_estimate_ending_before_it_starts_is_refused(start: date | None, end: date | None) -> None:
    error = refused(_estimate(start, end), PROPOSED)
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert [d.field for d in error.details] == ["planned_end"]


# --- dates default to now -------------------------------------------------------------


def test_start_defaults_to_today_and_keeps_a_given_date() -> None:
    history = HISTORY[Status.APPROVED]
    assert when(p.StartProject(project_id=PID), *history) == [
        p.ProjectStarted(project_id=PID, started_on=NOW.date())
    ]
    assert when(p.StartProject(project_id=PID, started_on=START), *history) == [
        p.ProjectStarted(project_id=PID, started_on=START)
    ]


def test_complete_defaults_to_today_and_keeps_a_given_date() -> None:
    history = HISTORY[Status.IN_PROGRESS]
    assert when(p.CompleteProject(project_id=PID), *history) == [
        p.ProjectCompleted(project_id=PID, completed_on=NOW.date())
    ]
    assert when(p.CompleteProject(project_id=PID, completed_on=END), *history) == [
        p.ProjectCompleted(project_id=PID, completed_on=END)
    ]


# --- cancellation ---------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(set(Status) - p.TERMINAL_STATUSES))
def test_cancel_records_the_status_cancelled_from(status: Status) -> None:
    history = HISTORY[status]
    events = when(p.CancelProject(project_id=PID, reason="superseded"), *history)
    assert events == [
        p.ProjectCancelled(project_id=PID, reason="superseded", cancelled_from=status)
    ]
    state = given(*history, *events)
    assert state is not None
    assert state.status == Status.CANCELLED
