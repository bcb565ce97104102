"""Shared values: what a fold keeps many times over is held once, and never changed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import interning
from domain.interning import shared_amount, shared_pair

decimals = st.decimals(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [Decimal("80"), Decimal("80.0"), Decimal("80.00"), Decimal("-0"), Decimal("0E+3")]
)


@given(st.lists(decimals, max_size=40))
def test_an_amount_shared_is_the_same_value_with_the_same_text(values: list[Decimal]) -> None:
    for value in values:
        found = shared_amount(value)
        assert str(found) == str(value)  # "80.0" is never handed back as "80.00"
        assert found.as_tuple() == value.as_tuple()
        assert shared_amount(Decimal(str(value))) is found  # one object per text


def test_equal_amounts_of_another_exponent_are_kept_apart() -> None:
    assert str(shared_amount(Decimal("7.5"))) == "7.5"
    assert str(shared_amount(Decimal("7.50"))) == "7.50"


def test_a_full_cache_starts_again_and_still_answers_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(interning, "AMOUNTS_LIMIT", 4)
    monkeypatch.setattr(interning, "PAIRS_LIMIT", 4)
    for n in range(20):
        assert str(shared_amount(Decimal(f"{n}.25"))) == f"{n}.25"
        assert shared_pair(f"P{n}", "2027-01") == (f"P{n}", "2027-01")
    assert len(interning._amounts) <= 4 and len(interning._pairs) <= 4


@given(st.text(), st.text())
def test_a_pair_is_one_tuple_of_interned_strings(first: str, second: str) -> None:
    found = shared_pair(first, second)
    assert found == (first, second)
    # Built from other string objects of the same text: the very same tuple back.
    assert shared_pair("".join(first), "".join(second)) is found
