"""Reporting's queries: parse, load from the projection, reply."""

from __future__ import annotations

from pydantic import ValidationError

from contracts.queries import AuditAnswer, AuditEntry, AuditQuery
from services.reporting.projection import ReportingProjection
from shared.service import ServiceRuntime, answer, invalid_query


async def audit(runtime: ServiceRuntime, projection: ReportingProjection, body: bytes) -> bytes:
    try:
        query = AuditQuery.model_validate_json(body or b"{}")
    except ValidationError as error:
        return answer(invalid_query("audit", error))
    entries = await runtime.db.read(projection.audit_entries, query)
    page = fit_in_one_message(entries)
    more = len(page) < len(entries) or len(entries) == query.limit
    return answer(
        AuditAnswer(entries=tuple(page), next_after_position=page[-1].position if more else None)
    )


def fit_in_one_message(entries: list[AuditEntry], budget: int = 900_000) -> list[AuditEntry]:
    """As many entries as fit in one NATS message (1 MiB by default), at least one."""
    size = 0
    for count, entry in enumerate(entries):
        size += len(entry.model_dump_json())
        if count and size > budget:
            return entries[:count]
    return entries
