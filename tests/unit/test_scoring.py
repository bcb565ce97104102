"""Scoring models, pure: WSJF, weighted scoring with min-max normalisation, AHP weights with
the consistency check, ranking with rank changes. Expected numbers are worked by hand."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from contracts.projects import ScoringInputs
from domain.prioritization.scoring import (
    Candidate,
    ScoringError,
    ahp_weights,
    normalise_weights,
    rank,
    strategic_alignment,
    weighted_scores,
    wsjf,
    wsjf_scores,
)


def candidate(project_id: str, cost: int | str = 100, **inputs: Any) -> Candidate:
    return Candidate(project_id=project_id, cost=Decimal(cost), **inputs)


# --- WSJF ------------------------------------------------------------------------------


def test_wsjf_is_cost_of_delay_over_job_size() -> None:
    c = candidate("P1", business_value=8, time_criticality=5, risk_reduction=3, job_size=5)
    assert wsjf(c).score == 3.2  # (8 + 5 + 3) / 5
    assert wsjf(c).scorable


def test_wsjf_rounds_to_six_decimals() -> None:
    c = candidate("P1", business_value=1, time_criticality=1, risk_reduction=2, job_size=3)
    assert wsjf(c).score == 1.333333


def test_wsjf_reports_missing_inputs_instead_of_zero() -> None:
    c = candidate("P1", business_value=8, time_criticality=5)
    result = wsjf(c)
    assert result.score is None
    assert not result.scorable
    assert result.missing == ("risk_reduction", "job_size")


def test_wsjf_scores_keep_the_given_order() -> None:
    a = candidate("B", business_value=1, time_criticality=1, risk_reduction=1, job_size=1)
    b = candidate("A")
    assert [s.project_id for s in wsjf_scores([a, b])] == ["B", "A"]
    assert [s.score for s in wsjf_scores([a, b])] == [3.0, None]


@pytest.mark.parametrize("job_size", [0, -1, 4])
def test_job_size_must_be_on_the_positive_fibonacci_scale(job_size: int) -> None:
    with pytest.raises(ScoringError, match="job_size must be one of 1, 2, 3, 5, 8, 13, 20"):
        candidate("P1", job_size=job_size)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("risk", 6, "risk must be 1..5"),
        ("urgency", 0, "urgency must be 1..5"),
        ("strategic_alignment", 1.5, "strategic_alignment must be 0..1"),
        ("strategic_alignment", float("nan"), "strategic_alignment must be 0..1"),
        ("npv", Decimal("NaN"), "npv must be finite"),
    ],
)
def test_candidate_inputs_are_checked(field: str, value: Any, message: str) -> None:
    with pytest.raises(ScoringError, match=message):
        candidate("P1", **{field: value})


def test_negative_cost_is_refused() -> None:
    with pytest.raises(ScoringError, match="cost must be"):
        candidate("P1", cost=-1)


def test_candidate_from_scoring_inputs() -> None:
    inputs = ScoringInputs(business_value=8, job_size=3, npv=Decimal("1000.50"), risk=2)
    c = Candidate.from_inputs("P1", Decimal(500), inputs, strategic_alignment=0.5, mandatory=True)
    assert (c.business_value, c.job_size, c.npv, c.risk, c.urgency) == (
        8,
        3,
        Decimal("1000.50"),
        2,
        None,
    )
    assert c.strategic_alignment == 0.5
    assert c.mandatory


def test_strategic_alignment_weights_contributions() -> None:
    # (3 x 5/5 + 1 x 1/5 + 1 x 0) / (3 + 1 + 1) = 3.2 / 5
    assert strategic_alignment({"o1": 5, "o2": 1, "other": 5}, {"o1": 3, "o2": 1, "o3": 1}) == 0.64
    assert strategic_alignment({"o1": 5}, {}) == 0.0


# --- weighted scoring ------------------------------------------------------------------


def three() -> list[Candidate]:
    return [
        candidate("A", cost=100, business_value=8, risk=2),
        candidate("B", cost=300, business_value=3, risk=4),
        candidate("C", cost=200, business_value=5),
    ]


def test_weighted_scores_against_a_hand_computed_example() -> None:
    # shares: value 2/4, risk 1/4, cost 1/4
    # value  (x - 3) / 5:         A 1.0  B 0.0  C 0.4
    # risk   1 - (x - 2) / 2:     A 1.0  B 0.0  C missing
    # cost   1 - (x - 100) / 200: A 1.0  B 0.0  C 0.5
    result = weighted_scores(three(), {"value": 2, "risk": 1, "cost": 1})
    assert result.totals() == {"A": 1.0, "B": 0.0, "C": 0.325}
    assert result.weights == {"value": 0.5, "risk": 0.25, "cost": 0.25}
    c = result.by_id["C"]
    assert [(p.criterion, p.normalised, p.contribution, p.status) for p in c.breakdown] == [
        ("value", 0.4, 0.2, "ok"),
        ("risk", None, 0.0, "missing"),
        ("cost", 0.5, 0.125, "ok"),
    ]
    assert c.missing == ("risk",)
    assert result.candidate_ids == ("A", "B", "C")


def test_breakdown_adds_up_to_the_total() -> None:
    result = weighted_scores(three(), {"value": 3, "risk": 7, "cost": 11, "urgency": 1})
    for score in result.scores:
        assert score.total == round(sum(p.contribution for p in score.breakdown), 6)


def test_all_equal_column_scores_one_for_everyone() -> None:
    cs = [candidate("A", urgency=3), candidate("B", urgency=3), candidate("C")]
    result = weighted_scores(cs, {"urgency": 1})
    assert result.totals() == {"A": 1.0, "B": 1.0, "C": 0.0}
    assert result.by_id["A"].breakdown[0].status == "all equal"
    # One candidate: nothing to compare with, so the same rule applies.
    assert weighted_scores([candidate("A", risk=5)], {"risk": 1}).totals() == {"A": 1.0}
    # Cost is always present: equal costs score 1.0 although lower is better.
    same = weighted_scores([candidate("A"), candidate("B")], {"cost": 1})
    assert same.totals() == {"A": 1.0, "B": 1.0}


def test_a_column_missing_everywhere_contributes_nothing() -> None:
    result = weighted_scores(three(), {"npv": 1, "value": 1})
    assert [p.status for p in result.by_id["A"].breakdown] == ["ok", "missing"]
    assert result.totals() == {"A": 0.5, "B": 0.0, "C": 0.2}


def test_npv_and_alignment_are_higher_is_better() -> None:
    cs = [
        candidate("A", npv=Decimal("-500.00"), strategic_alignment=0.2),
        candidate("B", npv=Decimal("1500.00"), strategic_alignment=0.6),
        candidate("C", npv=Decimal("500.00"), strategic_alignment=1.0),
    ]
    assert weighted_scores(cs, {"npv": 1}).totals() == {"A": 0.0, "B": 1.0, "C": 0.5}
    assert weighted_scores(cs, {"strategic_alignment": 1}).totals() == {
        "A": 0.0,
        "B": 0.5,
        "C": 1.0,
    }


def test_relative_scores_move_when_candidates_are_added() -> None:
    before = weighted_scores(three()[:2], {"value": 1}).totals()
    after = weighted_scores([*three(), candidate("D", business_value=20)], {"value": 1})
    assert before["A"] == 1.0
    assert after.totals()["A"] == round(5 / 17, 6)
    assert after.candidate_ids == ("A", "B", "C", "D")


def test_zero_weights_are_left_out_of_the_breakdown() -> None:
    result = weighted_scores(three(), {"value": 1, "risk": 0})
    assert [p.criterion for p in result.by_id["A"].breakdown] == ["value"]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"value": 1, "beauty": 1, "fame": 2}, "unknown criteria beauty, fame"),
        ({"value": 1, "risk": -0.5}, r"weights must be finite and >= 0: risk=-0.5"),
        ({"value": float("inf")}, "weights must be finite"),
        ({"value": 0, "risk": 0}, "all weights are zero"),
        ({}, "all weights are zero"),
    ],
)
def test_bad_weights_are_refused_with_the_cause(weights: dict[str, float], message: str) -> None:
    with pytest.raises(ScoringError, match=message):
        weighted_scores(three(), weights)
    with pytest.raises(ScoringError, match=message):
        normalise_weights(weights)


def test_duplicate_candidates_are_refused() -> None:
    with pytest.raises(ScoringError, match="listed more than once: A"):
        weighted_scores([candidate("A"), candidate("A")], {"cost": 1})


def test_no_candidates_score_nothing() -> None:
    result = weighted_scores([], {"value": 1})
    assert result.scores == ()
    assert result.candidate_ids == ()


# --- AHP -------------------------------------------------------------------------------

CONSISTENT: list[list[float]] = [[1, 3, 5], [1 / 3, 1, 5 / 3], [1 / 5, 3 / 5, 1]]


def test_ahp_consistent_matrix() -> None:
    result = ahp_weights(["value", "risk", "cost"], CONSISTENT)
    assert list(result.weights) == ["value", "risk", "cost"]
    assert result.weights["value"] == pytest.approx(0.652, abs=1e-3)
    assert result.weights["risk"] == pytest.approx(0.217, abs=1e-3)
    assert result.weights["cost"] == pytest.approx(0.130, abs=1e-3)
    assert sum(result.weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.lambda_max == pytest.approx(3.0, abs=1e-6)
    assert result.consistency_index == pytest.approx(0.0, abs=1e-6)
    assert result.consistency_ratio == pytest.approx(0.0, abs=1e-6)


def test_ahp_weights_feed_weighted_scoring() -> None:
    result = ahp_weights(["value", "risk", "cost"], CONSISTENT)
    scores = weighted_scores(three(), result.weights)
    assert scores.totals()["A"] == 1.0


def test_ahp_slightly_inconsistent_matrix_is_accepted_with_its_cr() -> None:
    # 2 x 3 != 4: slightly inconsistent, CR about 0.016
    matrix: list[list[float]] = [[1, 2, 4], [1 / 2, 1, 3], [1 / 4, 1 / 3, 1]]
    result = ahp_weights(["a", "b", "c"], matrix)
    assert 0 < result.consistency_ratio < 0.10
    ci = (result.lambda_max - 3) / 2
    assert result.consistency_index == pytest.approx(ci, abs=1e-6)
    assert result.consistency_ratio == pytest.approx(ci / 0.58, abs=1e-5)
    assert result.weights["a"] > result.weights["b"] > result.weights["c"]


def test_ahp_inconsistent_matrix_is_refused_with_its_cr() -> None:
    # a > b > c > a: as intransitive as it gets
    matrix: list[list[float]] = [[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]]
    with pytest.raises(ScoringError, match="inconsistent") as caught:
        ahp_weights(["a", "b", "c"], matrix)
    found = re.search(r"CR = ([0-9.]+)", str(caught.value))
    assert found is not None
    cr = float(found.group(1))
    assert cr >= 0.10
    # λmax of this circulant matrix is 1 + 9 + 1/9; CR = ((λ - 3) / 2) / 0.58
    assert cr == pytest.approx(((1 + 9 + 1 / 9 - 3) / 2) / 0.58, abs=1e-4)


def test_ahp_uses_the_random_index_for_n() -> None:
    # 4 x 4 with one inconsistent pair; CR = CI / 0.90
    matrix: list[list[float]] = [
        [1, 2, 3, 4],
        [1 / 2, 1, 2, 2],
        [1 / 3, 1 / 2, 1, 2],
        [1 / 4, 1 / 2, 1 / 2, 1],
    ]
    result = ahp_weights(["a", "b", "c", "d"], matrix)
    assert result.consistency_ratio == pytest.approx(result.consistency_index / 0.90, abs=1e-5)


def test_ahp_one_and_two_criteria_are_always_consistent() -> None:
    assert ahp_weights(["value"], [[1]]).weights == {"value": 1.0}
    two = ahp_weights(["value", "cost"], [[1, 3], [1 / 3, 1]])
    assert two.weights == {"value": 0.75, "cost": 0.25}
    assert two.consistency_ratio == 0.0


@pytest.mark.parametrize(
    ("criteria", "matrix", "message"),
    [
        (["a", "b"], [[1, 2, 3], [1 / 2, 1, 1]], "must be 2x2"),
        (["a", "b", "c"], [[1, 2], [1 / 2, 1]], "must be 3x3"),
        (["a", "b"], [[1, 2], [1 / 3, 1]], "must be reciprocal"),
        (["a", "b"], [[1, 0], [0, 1]], "must be positive"),
        (["a", "b"], [[1, -2], [-1 / 2, 1]], "must be positive"),
        (["a", "b"], [[1, 10], [1 / 10, 1]], "1/9..9 scale"),
        (["a", "b"], [[2, 1], [1, 1]], "diagonal must be 1"),
        (["a", "b"], [[1, float("nan")], [1, 1]], "must be positive"),
        (["a", "a"], [[1, 1], [1, 1]], "distinct"),
        ([], [], "at least one criterion"),
        ([str(i) for i in range(11)], [[1] * 11] * 11, "1..10 criteria"),
    ],
)
def test_ahp_bad_matrices(criteria: list[str], matrix: list[list[float]], message: str) -> None:
    with pytest.raises(ScoringError, match=message):
        ahp_weights(criteria, matrix)


def test_ahp_reciprocal_within_tolerance() -> None:
    third = 0.333333333  # 3 x 0.333333333 = 0.999999999, within 1e-6
    assert ahp_weights(["a", "b"], [[1, 3], [third, 1]]).weights["a"] == 0.75


# --- ranking ---------------------------------------------------------------------------


def test_rank_orders_by_score_then_project_id() -> None:
    entries = rank({"C": 0.5, "B": 0.9, "A": 0.5, "D": 0.1})
    assert [(e.project_id, e.rank) for e in entries] == [("B", 1), ("A", 2), ("C", 3), ("D", 4)]
    assert all(e.change == "new" and e.previous_rank is None for e in entries)


def test_rank_change_against_a_previous_ranking() -> None:
    entries = rank({"A": 0.1, "B": 0.9, "C": 0.5, "N": 0.7}, {"A": 1, "B": 2, "C": 3, "gone": 4})
    assert [(e.project_id, e.rank, e.previous_rank, e.change) for e in entries] == [
        ("B", 1, 2, 1),
        ("N", 2, None, "new"),
        ("C", 3, 3, 0),
        ("A", 4, 1, -3),
    ]


def test_rank_refuses_non_finite_scores() -> None:
    with pytest.raises(ScoringError, match="finite: X"):
        rank({"X": float("nan"), "Y": 1.0})
