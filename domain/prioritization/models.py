"""The scoring-model aggregate (decided by intake): a method and its criterion weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import prioritization as pr
from contracts.base import Command, ErrorCode, FieldError, FrozenModel
from domain.kernel import Rejected
from domain.prioritization import scoring

# --- the scoring-model aggregate (decided by intake) ------------------------------------


@dataclass(frozen=True)
class ModelState:
    model_id: str
    version: int


def evolve_model(state: ModelState | None, event: FrozenModel) -> ModelState:
    assert isinstance(event, pr.ScoringModelConfigured)
    return ModelState(event.model_id, (state.version if state else 0) + 1)


def decide_model(
    command: Command, state: ModelState | None, now: datetime, refs: Mapping[Any, Any]
) -> list[FrozenModel]:
    if not isinstance(command, pr.ConfigureScoringModel):
        raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")
    weights: dict[str, float] = {}
    consistency_ratio: float | None = None
    try:
        if command.method == pr.ScoringMethod.WEIGHTED:
            weights = scoring.normalise_weights({k: float(v) for k, v in command.weights.items()})
        elif command.method == pr.ScoringMethod.AHP:
            result = scoring.ahp_weights(command.ahp_criteria, command.ahp_matrix)
            weights, consistency_ratio = dict(result.weights), result.consistency_ratio
    except scoring.ScoringError as error:
        field_name = "ahp_matrix" if command.method == pr.ScoringMethod.AHP else "weights"
        raise Rejected(
            ErrorCode.VALIDATION_FAILED,
            str(error),
            (FieldError(field=field_name, message=str(error), input=error.figures),),
        ) from error
    return [
        pr.ScoringModelConfigured(
            model_id=command.model_id,
            method=command.method,
            weights=weights,
            consistency_ratio=consistency_ratio,
            ahp_criteria=command.ahp_criteria,
            ahp_matrix=command.ahp_matrix,
            rationale=command.rationale,
        )
    ]
