"""One object per distinct value, for the values a fold keeps many times over.

A fold keeps figures for every project and month: a role's demand and hours, a baseline's
progress, the report's EAC points. Each event's payload brings new objects for values the
state already holds (the same hours, the same percent complete): at a million events the
report held 125,624 Decimals for its roles' cells, 5,149 distinct, at 104 bytes each, and
as many key tuples. Shared, they cost memory once, and a snapshot pickles each once (the
pickle's memo refers to it again). Values that seldom repeat (a baseline's planned
values: 31,386 distinct of 38,971) are left alone: a cache entry would cost more.

The caches only ever hand back a value equal to the one given, with the same digits and
exponent (its text is unchanged), so a fold is the same with or without them; they are
emptied when full, which only means the values met after are shared among themselves.
"""

from __future__ import annotations

from decimal import Decimal
from sys import intern

#: Distinct values kept before a cache starts again (a few MiB at most).
AMOUNTS_LIMIT = 1 << 16
PAIRS_LIMIT = 1 << 18

_amounts: dict[str, Decimal] = {}
_pairs: dict[tuple[str, str], tuple[str, str]] = {}


def shared_amount(value: Decimal) -> Decimal:
    """`value`, or the equal Decimal of the same text met before."""
    key = str(value)  # "80.0" and "80.00" are equal but print apart: both kept
    found = _amounts.get(key)
    if found is None:
        if len(_amounts) >= AMOUNTS_LIMIT:
            _amounts.clear()
        found = _amounts[key] = value
    return found


def shared_pair(first: str, second: str) -> tuple[str, str]:
    """The pair `(first, second)`, its strings interned, as one tuple for all who ask."""
    found = _pairs.get((first, second))
    if found is None:
        if len(_pairs) >= PAIRS_LIMIT:
            _pairs.clear()
        found = (intern(first), intern(second))
        _pairs[found] = found  # its own key: the payload's copies are not kept alive
    return found
