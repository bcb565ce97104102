"""The one fold of a project's business case (`domain.projects.ProjectProfile`): what
prioritization ranks and reporting reports, folded the same way for both."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from decimal import Decimal

from contracts import projects as p
from domain.prioritization import PortfolioView
from domain.projects import ProjectProfile, evolve_profile, profile_from
from services.reporting.report import fold
from tests.unit.test_report import Log, project, proposed

Status = p.ProjectStatus

PROPOSED = proposed(
    "P1",
    100_000,
    20_000,
    {"O1": 3, "O2": 1},
    category="cloud",
    costs=(p.YearlyCost(year=2027, capex=Decimal(100_000), opex=Decimal(20_000)),),
    expected_benefits=(
        p.YearlyBenefit(year=2028, amount=Decimal(90_000), description="licences"),
        p.YearlyBenefit(year=2029, amount=Decimal(60_000), description="staff"),
    ),
    scoring=p.ScoringInputs(business_value=8, npv=Decimal(5_000)),
)


def test_a_proposal_is_folded_into_its_profile() -> None:
    profile = profile_from(PROPOSED)
    assert profile == ProjectProfile(
        project_id="P1",
        name="Project P1",
        sponsor="cio",
        category="cloud",
        status=Status.PROPOSED,
        capex=Decimal(100_000),
        opex=Decimal(20_000),
        currency="EUR",
        planned_start=date(2027, 1, 1),
        planned_end=date(2027, 12, 31),
        mandatory=False,
        dependencies=(),
        objectives={"O1": 3, "O2": 1},
        costs=PROPOSED.costs,
        benefits=PROPOSED.expected_benefits,
        scoring=PROPOSED.scoring,
    )
    assert profile.cost == Decimal(120_000)
    assert profile.benefits_total == Decimal(150_000)


def test_an_estimate_update_changes_the_totals_and_dates_and_drops_the_yearly_split() -> None:
    updated = evolve_profile(
        profile_from(PROPOSED),
        p.ProjectEstimateUpdated(
            project_id="P1",
            capex=Decimal(130_000),
            opex=Decimal(10_000),
            planned_start=date(2027, 3, 1),
            planned_end=date(2028, 6, 30),
            reason="vendor quote",
        ),
    )
    assert (updated.capex, updated.opex, updated.cost) == (
        Decimal(130_000),
        Decimal(10_000),
        Decimal(140_000),
    )
    assert (updated.planned_start, updated.planned_end) == (date(2027, 3, 1), date(2028, 6, 30))
    assert updated.costs == ()
    assert updated.status == Status.PROPOSED
    assert updated.benefits == PROPOSED.expected_benefits


def test_the_lifecycle_moves_the_status_and_nothing_else() -> None:
    profile = profile_from(PROPOSED)
    for event, status in (
        (p.ProjectSubmittedForReview(project_id="P1"), Status.UNDER_REVIEW),
        (p.ProjectApproved(project_id="P1", rationale="fits"), Status.APPROVED),
        (p.ProjectStarted(project_id="P1", started_on=date(2027, 1, 4)), Status.IN_PROGRESS),
        (
            p.ProjectPutOnHold(project_id="P1", reason="freeze", held_from=Status.IN_PROGRESS),
            Status.ON_HOLD,
        ),
        (p.ProjectResumed(project_id="P1", resumed_to=Status.IN_PROGRESS), Status.IN_PROGRESS),
        (p.ProjectCompleted(project_id="P1", completed_on=date(2027, 12, 1)), Status.COMPLETED),
    ):
        before = profile
        profile = evolve_profile(profile, event)
        assert profile.status == status
        unchanged = [f.name for f in fields(ProjectProfile) if f.name != "status"]
        assert [getattr(profile, k) for k in unchanged] == [getattr(before, k) for k in unchanged]


def test_an_event_that_changes_nothing_leaves_the_same_profile() -> None:
    profile = profile_from(PROPOSED)
    comment = p.ProposalCommented(project_id="P1", stakeholder_id="S-1", comment="fine")
    assert evolve_profile(profile, comment) is profile


def test_prioritization_and_reporting_hold_the_same_profile() -> None:
    log = Log()
    log.add(project("P1"), PROPOSED)
    log.add(project("P1"), p.ProjectSubmittedForReview(project_id="P1"))
    view = PortfolioView()
    for event in log.events:
        view.apply(event)
    report = fold(log.events)
    assert view.candidates["P1"] == report.projects["P1"].profile
    assert view.candidates["P1"].status == Status.UNDER_REVIEW
