"""Prioritization's decisions and queries: parse, load (the in-memory view), decide,
append, reply. Scenarios are answered without touching the log; committing one appends it.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from contracts import prioritization as pr
from contracts.queries import QueryError
from domain.kernel import Rejected
from domain.prioritization import (
    DEFAULT_TIME_LIMIT,
    decide_ranking,
    decide_selection,
    frontier,
    same_ranking,
)
from services.prioritization.projection import PrioritizationProjection
from shared.decisions import append_decision
from shared.eventlog import EventLog
from shared.service import answer, invalid_query

log = structlog.get_logger(__name__)


async def reprioritize(
    event_log: EventLog, projection: PrioritizationProjection, model_id: str = "default"
) -> pr.RankingDecided | None:
    """Rank the open projects again; append the ranking only if it says something new."""
    ranking = decide_ranking(projection.view, model_id)
    previous = projection.last_ranking.get(model_id)
    if previous is not None and same_ranking(previous, ranking):
        return None
    identity = f"{model_id}/{ranking.model_version}/{ranking.computed_at_position}"
    await append_decision(
        event_log,
        (pr.RANKING, model_id),
        ranking,
        identity,
        projection.last_input,
        actor="prioritization",
        source="prioritization",
    )
    projection.last_ranking[model_id] = ranking
    log.info("ranking.decided", model=model_id, position=ranking.computed_at_position)
    return ranking


def _refused(error: Rejected) -> bytes:
    details = tuple(d.model_dump(mode="json") for d in error.details)
    return answer(QueryError(error=f"{error.code}: {error.message}", details=details))


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: bytes) -> M | bytes:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as error:
        return answer(invalid_query(model.__name__, error))


async def ranking_query(projection: PrioritizationProjection, body: bytes) -> bytes:
    """The last decided ranking, or one computed now when none was decided yet."""
    model_id = "default"
    if body:
        request = _parse(pr.RankingRequest, body)
        if isinstance(request, bytes):
            return request
        model_id = request.model_id
    decided = projection.last_ranking.get(model_id)
    if decided is None:
        try:
            decided = decide_ranking(projection.view, model_id)
        except Rejected as error:
            return _refused(error)
    names = {c.project_id: c.name for c in projection.view.candidates.values()}
    return answer(pr.RankingAnswer(ranking=decided, names=names))


async def scenario_query(
    projection: PrioritizationProjection, body: bytes, time_limit: float | None = DEFAULT_TIME_LIMIT
) -> bytes:
    """Each scenario solved in a worker thread (up to `time_limit` seconds each), so the
    service's loop keeps answering and projecting meanwhile."""
    request = _parse(pr.ScenarioQuery, body)
    if isinstance(request, bytes):
        return request
    try:
        outcomes = tuple(
            [
                await asyncio.to_thread(decide_selection, projection.view, s, time_limit=time_limit)
                for s in request.scenarios
            ]
        )
    except Rejected as error:
        return _refused(error)
    return answer(pr.ScenarioAnswer(outcomes=outcomes))


async def frontier_query(
    projection: PrioritizationProjection, body: bytes, time_limit: float | None = DEFAULT_TIME_LIMIT
) -> bytes:
    request = _parse(pr.FrontierQuery, body)
    if isinstance(request, bytes):
        return request
    try:
        found = await asyncio.to_thread(frontier, projection.view, request, time_limit=time_limit)
    except Rejected as error:
        return _refused(error)
    return answer(found)


async def commit_scenario(
    event_log: EventLog,
    projection: PrioritizationProjection,
    body: bytes,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
) -> bytes:
    request = _parse(pr.CommitScenario, body)
    if isinstance(request, bytes):
        return request
    try:
        outcome = await asyncio.to_thread(
            decide_selection, projection.view, request.scenario, time_limit=time_limit
        )
    except Rejected as error:
        return _refused(error)
    decision = pr.SelectionDecided(outcome=outcome, rationale=request.rationale)
    identity = f"commit/{request.command_id}"
    appended = await append_decision(
        event_log,
        (pr.SELECTION, request.scenario.model_id),
        decision,
        identity,
        projection.last_input,
        actor=request.actor,
        source=request.source,
    )
    return answer(pr.CommitAnswer(appended=appended, outcome=outcome))
