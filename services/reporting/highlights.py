"""A focus project's decision history, as its scorecard shows it: which events are
decisions about the project, each described in one line."""

from __future__ import annotations

from contracts import ledger as lg
from contracts import prioritization as pr
from contracts import projects as p
from contracts import risks as r
from contracts.base import FrozenModel

_LIFECYCLE_WHY = ("rationale", "reason")


def highlight_text(payload: FrozenModel, focus: str, rank: int | None) -> str | None:
    """A one-line description when the event is a decision about the focus project."""
    about = getattr(payload, "project_id", None)
    match payload:
        case pr.RankingDecided():
            entry = next((x for x in payload.ranking if x.project_id == focus), None)
            now = entry.rank if entry else None
            if now == rank:
                return None
            if now is None:
                return f"left the ranking of model {payload.model_id}"
            was = "" if rank is None else f" (was #{rank})"
            return f"ranked #{now} of {len(payload.ranking)}, score {entry.score:.3f}{was}"  # type: ignore[union-attr]
        case pr.SelectionDecided():
            outcome = payload.outcome
            if focus in outcome.selected:
                return f"selected in scenario {outcome.scenario.name}: {payload.rationale}"
            reason = next((n.reason for n in outcome.not_selected if n.project_id == focus), None)
            if reason is None:
                return None
            return f"not selected in scenario {outcome.scenario.name} ({reason})"
        case lg.AllocationTransferred():
            if focus not in (payload.from_project_id, payload.to_project_id):
                return None
            return (
                f"{payload.amount} {payload.currency} moved in {payload.pool_id} from "
                f"{payload.from_project_id} to {payload.to_project_id}: {payload.rationale}"
            )
        case lg.ActualCostRecorded() | lg.DemandAssigned() | lg.ActualHoursRecorded():
            return None
        case r.ProgressReported():
            if about != focus:
                return None
            return f"progress {payload.period}: {payload.percent_complete}% complete"
    if about != focus:
        return None
    why = next((str(v) for k in _LIFECYCLE_WHY if (v := getattr(payload, k, None))), "")
    name = type(payload).__name__
    match payload:
        case p.ProjectProposed():
            detail = f"proposed: {payload.name}, {payload.capex + payload.opex} {payload.currency}"
        case lg.BudgetAllocated() | lg.AllocationReleased():
            verb = "allocated" if isinstance(payload, lg.BudgetAllocated) else "released"
            detail = f"{payload.amount} {payload.currency} {verb} in {payload.pool_id}"
        case lg.CommitmentRecorded():
            detail = f"commitment {payload.external_ref}: {payload.amount} {payload.currency}"
        case lg.ProjectOverspent() | lg.ProjectOverspendCleared():
            detail = f"{name} in {payload.pool_id}: actual {payload.actual} of {payload.allocated}"
        case r.RiskIdentified() | r.RiskAssessed():
            detail = f"{name} {payload.risk_id}: score {payload.score}"
        case r.RiskResponseChosen():
            detail = f"response to {payload.risk_id}: {payload.strategy}, {payload.plan}"
        case r.RiskReassessed():
            detail = f"{payload.risk_id} reassessed: residual score {payload.residual_score}"
        case r.RiskClosed():
            detail = f"{payload.risk_id} closed"
        case r.AlertRaised():
            detail = f"alert raised ({payload.severity}): {payload.message or payload.metric}"
        case r.AlertCleared():
            detail = f"alert cleared: {payload.message or payload.metric}"
        case r.ProjectBaselineSet():
            detail = f"baseline revision {payload.revision}: BAC {payload.budget_at_completion}"
        case p.RealisedBenefitRecorded():
            replaced = payload.replaced_amount
            detail = f"realised benefit {payload.year}: {payload.amount}" + (
                "" if replaced is None else f" (replacing {replaced})"
            )
        case p.LessonLearnedRecorded():
            detail = f"lesson {payload.lesson_id} ({payload.category}): {payload.title}"
        case _:
            detail = name
    return f"{detail}: {why}" if why else detail
