"""Scoring models for the prioritization service: WSJF, weighted scoring, AHP, ranking.

Pure and deterministic: no I/O, no clock. Scores are floats rounded to 6 decimals so the
same inputs always print the same numbers. Relative scores (weighted scoring) move when
candidates are added or removed, so every result carries the candidate set it was computed
over; record it with the score.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal

import numpy as np

from contracts.projects import FIBONACCI, ScoringInputs

#: Decimal places every score is rounded to.
PRECISION: Final = 6

#: Criteria of the weighted-scoring model and whether higher raw values are better.
#: "value" is the business value input (the WSJF scale), "cost" the candidate's total cost.
CRITERIA: Final[Mapping[str, bool]] = {
    "value": True,
    "strategic_alignment": True,
    "npv": True,
    "risk": False,
    "urgency": True,
    "cost": False,
}

#: AHP random consistency index by matrix size (Saaty); n = 1 and 2 are always consistent.
RANDOM_INDEX: Final[Mapping[int, float]] = {
    1: 0.0,
    2: 0.0,
    3: 0.58,
    4: 0.90,
    5: 1.12,
    6: 1.24,
    7: 1.32,
    8: 1.41,
    9: 1.45,
    10: 1.49,
}
#: Accept an AHP matrix when its consistency ratio is below this.
MAX_CONSISTENCY_RATIO: Final = 0.10
#: Tolerance of the reciprocal and scale checks on AHP matrices.
AHP_TOLERANCE: Final = 1e-6

_WSJF_FIELDS: Final = ("business_value", "time_criticality", "risk_reduction", "job_size")


class ScoringError(ValueError):
    """The inputs cannot be scored; the message names the cause, `figures` the numbers
    behind it (e.g. an AHP matrix's CR), for the refusal's details."""

    def __init__(self, message: str, figures: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.figures = figures


def _round(value: float) -> float:
    # + 0.0 turns -0.0 into 0.0 so printed output is stable.
    return round(value, PRECISION) + 0.0


# --- candidates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One project as the scoring models see it. Every input but the cost is optional."""

    project_id: str
    cost: Decimal
    business_value: int | None = None
    time_criticality: int | None = None
    risk_reduction: int | None = None
    job_size: int | None = None
    npv: Decimal | None = None
    #: 1..5, higher is riskier (lower is better).
    risk: int | None = None
    #: 1..5, higher is more urgent.
    urgency: int | None = None
    #: 0..1, computed by the caller from objective contributions and objective weights.
    strategic_alignment: float | None = None
    mandatory: bool = False

    def __post_init__(self) -> None:
        where = f"candidate {self.project_id}"
        if not self.project_id:
            raise ScoringError("a candidate needs a project_id")
        if not self.cost.is_finite() or self.cost < 0:
            raise ScoringError(f"{where}: cost must be a finite amount >= 0, got {self.cost}")
        for name in _WSJF_FIELDS:
            value = getattr(self, name)
            if value is not None and value not in FIBONACCI:
                scale = ", ".join(map(str, FIBONACCI))
                raise ScoringError(f"{where}: {name} must be one of {scale}, got {value}")
        if self.npv is not None and not self.npv.is_finite():
            raise ScoringError(f"{where}: npv must be finite, got {self.npv}")
        for name in ("risk", "urgency"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 5:
                raise ScoringError(f"{where}: {name} must be 1..5, got {value}")
        alignment = self.strategic_alignment
        if alignment is not None and not (math.isfinite(alignment) and 0 <= alignment <= 1):
            raise ScoringError(f"{where}: strategic_alignment must be 0..1, got {alignment}")

    @classmethod
    def from_inputs(
        cls,
        project_id: str,
        cost: Decimal,
        inputs: ScoringInputs,
        *,
        strategic_alignment: float | None = None,
        mandatory: bool = False,
    ) -> Candidate:
        """Build a candidate from a proposal's `ScoringInputs`."""
        return cls(
            project_id=project_id,
            cost=cost,
            business_value=inputs.business_value,
            time_criticality=inputs.time_criticality,
            risk_reduction=inputs.risk_reduction,
            job_size=inputs.job_size,
            npv=inputs.npv,
            risk=inputs.risk,
            urgency=inputs.urgency,
            strategic_alignment=strategic_alignment,
            mandatory=mandatory,
        )

    def raw(self, criterion: str) -> float | None:
        """The raw input of a weighted-scoring criterion, or None when it is missing."""
        value: int | float | Decimal | None
        match criterion:
            case "value":
                value = self.business_value
            case "cost":
                value = self.cost
            case "strategic_alignment" | "npv" | "risk" | "urgency":
                value = getattr(self, criterion)
            case _:
                raise ScoringError(_unknown_criteria([criterion]))
        return None if value is None else float(value)


def strategic_alignment(
    contributions: Mapping[str, int], objective_weights: Mapping[str, float]
) -> float:
    """Σ weight x contribution / 5 over the weighted objectives, divided by Σ weights: 0..1.

    Contributions are 1..5 per objective; objectives the project does not serve count 0,
    contributions to objectives without a weight are ignored. No weight at all → 0.0.
    """
    if any(w < 0 or not math.isfinite(w) for w in objective_weights.values()):
        raise ScoringError("objective weights must be finite and >= 0")
    total = sum(objective_weights[o] for o in sorted(objective_weights))
    if total == 0:
        return 0.0
    served = sum(
        objective_weights[o] * contributions.get(o, 0) / 5 for o in sorted(objective_weights)
    )
    return _round(min(1.0, served / total))


def _unique_ids(candidates: Sequence[Candidate]) -> None:
    counts = Counter(c.project_id for c in candidates)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    if duplicates:
        raise ScoringError(f"candidates listed more than once: {', '.join(duplicates)}")


# --- WSJF ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WsjfScore:
    """WSJF of one candidate; `score` is None when inputs are missing (never silently 0)."""

    project_id: str
    score: float | None
    missing: tuple[str, ...] = ()

    @property
    def scorable(self) -> bool:
        return self.score is not None


def wsjf(candidate: Candidate) -> WsjfScore:
    """(business value + time criticality + risk reduction) / job size."""
    missing = tuple(name for name in _WSJF_FIELDS if getattr(candidate, name) is None)
    if missing:
        return WsjfScore(candidate.project_id, None, missing)
    job_size = candidate.job_size
    assert job_size is not None
    if job_size <= 0:  # unreachable through Candidate's validation; kept as a guard
        raise ScoringError(f"candidate {candidate.project_id}: job_size must be > 0")
    assert candidate.business_value is not None
    assert candidate.time_criticality is not None
    assert candidate.risk_reduction is not None
    cost_of_delay = candidate.business_value + candidate.time_criticality + candidate.risk_reduction
    return WsjfScore(candidate.project_id, _round(cost_of_delay / job_size))


def wsjf_scores(candidates: Sequence[Candidate]) -> tuple[WsjfScore, ...]:
    """WSJF of every candidate, in the given order."""
    _unique_ids(candidates)
    return tuple(wsjf(c) for c in candidates)


# --- weighted scoring ------------------------------------------------------------------

CriterionStatus = Literal["ok", "missing", "all equal"]


@dataclass(frozen=True)
class CriterionScore:
    """One criterion's part of a candidate's weighted score.

    `normalised` is 0..1 (1 = best among the candidates); `weight` is the criterion's share
    of Σ weights; `contribution` = normalised x weight, 0 when the input is missing.
    """

    criterion: str
    raw: float | None
    normalised: float | None
    weight: float
    contribution: float
    status: CriterionStatus


@dataclass(frozen=True)
class WeightedScore:
    project_id: str
    total: float
    breakdown: tuple[CriterionScore, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(c.criterion for c in self.breakdown if c.status == "missing")


@dataclass(frozen=True)
class WeightedScoring:
    """Scores in the order the candidates were given, and what they are relative to."""

    scores: tuple[WeightedScore, ...]
    #: The normalised weights (Σ = 1), criteria in `CRITERIA` order.
    weights: Mapping[str, float]
    #: The candidate set the normalisation ran over, sorted: scores are relative to it.
    candidate_ids: tuple[str, ...]
    by_id: Mapping[str, WeightedScore] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {s.project_id: s for s in self.scores})

    def totals(self) -> dict[str, float]:
        return {s.project_id: s.total for s in self.scores}


def _unknown_criteria(names: Iterable[str]) -> str:
    return f"unknown criteria {', '.join(sorted(names))}; known: {', '.join(CRITERIA)}"


def normalise_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Check weights and scale them to Σ = 1 (criteria in `CRITERIA` order, zeros dropped)."""
    unknown = set(weights) - set(CRITERIA)
    if unknown:
        raise ScoringError(_unknown_criteria(unknown))
    bad = sorted(k for k, w in weights.items() if not math.isfinite(w) or w < 0)
    if bad:
        raise ScoringError(
            "weights must be finite and >= 0: " + ", ".join(f"{k}={weights[k]}" for k in bad)
        )
    total = math.fsum(weights.get(k, 0.0) for k in CRITERIA)
    if total <= 0:
        raise ScoringError("all weights are zero: give at least one criterion a positive weight")
    return {k: weights[k] / total for k in CRITERIA if weights.get(k, 0.0) > 0}


def _bounds(values: Iterable[float | None]) -> tuple[float, float] | None:
    """Min and max of the present values, None when every value is missing."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present), max(present)


def weighted_scores(
    candidates: Sequence[Candidate], weights: Mapping[str, float]
) -> WeightedScoring:
    """Min-max normalise each weighted criterion across the candidates, weight, and add up.

    - normalised = (x - min) / (max - min), or 1 - that when lower is better (risk, cost);
      min and max are taken over the candidates that have the input.
    - A column where every present value is equal (including a single candidate) does not
      discriminate: everyone with the input gets 1.0 on it, so the criterion adds its full
      weight to all of them and the ranking is unaffected (status "all equal").
    - A missing input contributes 0 for that candidate (status "missing"); it is never
      imputed.
    - Criteria with weight 0 are left out of the breakdown.
    """
    _unique_ids(candidates)
    shares = normalise_weights(weights)
    ranges = {criterion: _bounds(c.raw(criterion) for c in candidates) for criterion in shares}
    scores: list[WeightedScore] = []
    for candidate in candidates:
        parts: list[CriterionScore] = []
        for criterion, share in shares.items():
            raw = candidate.raw(criterion)
            bounds = ranges[criterion]
            if raw is None or bounds is None:
                parts.append(CriterionScore(criterion, None, None, _round(share), 0.0, "missing"))
                continue
            low, high = bounds
            status: CriterionStatus
            if high == low:
                normalised, status = 1.0, "all equal"
            else:
                normalised, status = (raw - low) / (high - low), "ok"
                if not CRITERIA[criterion]:
                    normalised = 1.0 - normalised
            parts.append(
                CriterionScore(
                    criterion,
                    raw,
                    _round(normalised),
                    _round(share),
                    _round(normalised * share),
                    status,
                )
            )
        # The total is the sum of the rounded contributions, so the breakdown adds up.
        total = _round(math.fsum(p.contribution for p in parts))
        scores.append(WeightedScore(candidate.project_id, total, tuple(parts)))
    return WeightedScoring(
        scores=tuple(scores),
        weights={k: _round(v) for k, v in shares.items()},
        candidate_ids=tuple(sorted(c.project_id for c in candidates)),
    )


# --- AHP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AhpResult:
    """Criterion weights from a pairwise comparison matrix, and how consistent it was."""

    weights: Mapping[str, float]
    lambda_max: float
    consistency_index: float
    consistency_ratio: float


def _check_matrix(criteria: Sequence[str], matrix: Sequence[Sequence[float]]) -> None:
    n = len(criteria)
    if n == 0:
        raise ScoringError("AHP needs at least one criterion")
    if len(set(criteria)) != n:
        raise ScoringError("AHP criteria must be distinct")
    if n not in RANDOM_INDEX:
        raise ScoringError(f"AHP supports 1..{max(RANDOM_INDEX)} criteria, got {n}")
    if len(matrix) != n or any(len(row) != n for row in matrix):
        shape = f"{len(matrix)} rows of lengths {[len(row) for row in matrix]}"
        raise ScoringError(f"AHP matrix must be {n}x{n} (one row per criterion), got {shape}")
    low, high = 1 / 9 - AHP_TOLERANCE, 9 + AHP_TOLERANCE
    for i, row in enumerate(matrix):
        for j, a in enumerate(row):
            where = f"a[{criteria[i]}][{criteria[j]}] = {a}"
            if not math.isfinite(a) or a <= 0:
                raise ScoringError(f"AHP entries must be positive: {where}")
            if not low <= a <= high:
                raise ScoringError(f"AHP entries must be on the 1/9..9 scale: {where}")
            if i == j and abs(a - 1) > AHP_TOLERANCE:
                raise ScoringError(f"AHP diagonal must be 1: {where}")
            if j > i and abs(a * matrix[j][i] - 1) > AHP_TOLERANCE:
                raise ScoringError(
                    f"AHP matrix must be reciprocal: {where} but "
                    f"a[{criteria[j]}][{criteria[i]}] = {matrix[j][i]}"
                )


def ahp_weights(criteria: Sequence[str], matrix: Sequence[Sequence[float]]) -> AhpResult:
    """Normalised principal eigenvector of a reciprocal pairwise matrix (1/9..9 scale).

    a[i][j] says how much more important criteria[i] is than criteria[j].
    CI = (λmax - n) / (n - 1), CR = CI / RI(n); refused when CR ≥ 0.10.
    """
    _check_matrix(criteria, matrix)
    n = len(criteria)
    values, vectors = np.linalg.eig(np.asarray(matrix, dtype=np.float64))
    principal = int(np.argmax(values.real))
    lambda_max = float(values.real[principal])
    vector = np.abs(vectors[:, principal].real)
    weights = vector / vector.sum()
    # λmax ≥ n for a positive reciprocal matrix; clamp rounding noise below n.
    ci = max(0.0, (lambda_max - n) / (n - 1)) if n > 2 else 0.0
    cr = ci / RANDOM_INDEX[n] if n > 2 else 0.0
    if cr >= MAX_CONSISTENCY_RATIO:
        raise ScoringError(
            f"AHP matrix is inconsistent: CR = {cr:.4f} >= {MAX_CONSISTENCY_RATIO} "
            f"(λmax = {lambda_max:.4f}, CI = {ci:.4f}); revise the comparisons",
            {
                "consistency_ratio": round(cr, 4),
                "max_consistency_ratio": MAX_CONSISTENCY_RATIO,
                "lambda_max": round(lambda_max, 4),
                "consistency_index": round(ci, 4),
            },
        )
    return AhpResult(
        weights={c: _round(float(w)) for c, w in zip(criteria, weights, strict=True)},
        lambda_max=_round(lambda_max),
        consistency_index=_round(ci),
        consistency_ratio=_round(cr),
    )


# --- ranking ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RankEntry:
    """`change` = previous rank - rank (positive: moved up), or "new"."""

    project_id: str
    rank: int
    score: float
    previous_rank: int | None
    change: int | Literal["new"]


def rank(
    scores: Mapping[str, float], previous: Mapping[str, int] | None = None
) -> tuple[RankEntry, ...]:
    """Order by score descending, ties by project_id; ranks are 1..n with no shared places.

    `previous` maps project_id to its earlier rank; projects absent from it are "new".
    Unscorable candidates (e.g. WSJF with missing inputs) should be left out by the caller
    and listed separately.
    """
    bad = sorted(k for k, v in scores.items() if not math.isfinite(v))
    if bad:
        raise ScoringError(f"scores must be finite: {', '.join(bad)}")
    earlier = previous or {}
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    entries = []
    for position, (project_id, score) in enumerate(ordered, start=1):
        before = earlier.get(project_id)
        change: int | Literal["new"] = "new" if before is None else before - position
        entries.append(RankEntry(project_id, position, _round(score), before, change))
    return tuple(entries)
