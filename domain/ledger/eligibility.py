"""Which projects may take money, commitments and demand, and record costs."""

from __future__ import annotations

from contracts import projects as p
from contracts.base import ErrorCode
from domain.kernel import Refs, refuse
from domain.projects import project_ref

Status = p.ProjectStatus
#: A project in these statuses receives no new money, commitment or demand.
NOT_FUNDABLE = p.TERMINAL_STATUSES
#: A project in these statuses has no costs or hours to record (it never ran).
NO_COSTS = frozenset({Status.REJECTED})


def project_status(refs: Refs, project_id: str, field_name: str) -> Status:
    project = project_ref(refs, project_id)
    if project is None:
        raise refuse(ErrorCode.NOT_FOUND, f"unknown project {project_id}", field_name, project_id)
    return project.status


def fundable(refs: Refs, project_id: str, field_name: str) -> None:
    """The project exists and may still receive budget, commitments and demand."""
    status = project_status(refs, project_id, field_name)
    if status in NOT_FUNDABLE:
        raise refuse(
            ErrorCode.ILLEGAL_TRANSITION,
            f"project {project_id} is {status}: it takes no new budget, commitment or demand",
            field_name,
            project_id,
        )


def may_record_costs(refs: Refs, project_id: str, field_name: str) -> None:
    """The project exists and ran (late invoices and hours of a cancelled or completed
    project are still facts to record)."""
    status = project_status(refs, project_id, field_name)
    if status in NO_COSTS:
        raise refuse(
            ErrorCode.ILLEGAL_TRANSITION,
            f"project {project_id} is {status}: it has no costs or hours to record",
            field_name,
            project_id,
        )
