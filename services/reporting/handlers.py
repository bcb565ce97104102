"""Reporting's queries: parse, load from the projection, reply."""

from __future__ import annotations

from pydantic import ValidationError

from contracts.queries import AuditAnswer, AuditQuery, QueryError
from services.reporting.projection import ReportingProjection
from shared.service import ServiceRuntime


async def audit(runtime: ServiceRuntime, projection: ReportingProjection, body: bytes) -> bytes:
    try:
        query = AuditQuery.model_validate_json(body or b"{}")
    except ValidationError as error:
        details = tuple(
            {"field": ".".join(map(str, e["loc"])), "message": e["msg"]}
            for e in error.errors(include_url=False)
        )
        return QueryError(error="invalid audit query", details=details).model_dump_json().encode()
    async with runtime.engine.connect() as conn:
        entries = await projection.audit_entries(conn, query)
    return AuditAnswer(entries=tuple(entries)).model_dump_json().encode()
