"""Months and fiscal periods, and percentages: the ledger's calendar arithmetic."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from domain.interning import shared_pair

ZERO = Decimal(0)
CENT = Decimal("0.01")
HUNDRED = Decimal(100)


# --- months and fiscal periods ----------------------------------------------------------


def cell_of(project_id: str, period: str) -> tuple[str, str]:
    """The key of a project's month in a pool's or a role's figures: one tuple of interned
    strings per project and month, however many pools and roles hold a cell for it (each
    event's payload brings new copies)."""
    return shared_pair(project_id, period)


def month_index(period: str) -> int:
    year, month = period.split("-")
    return int(year) * 12 + int(month) - 1


def period_at(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_between(first: str, last: str) -> tuple[str, ...]:
    """Every month from `first` to `last`, both included."""
    return tuple(period_at(i) for i in range(month_index(first), month_index(last) + 1))


@lru_cache(maxsize=1024)
def fiscal_months(fiscal_year: int, quarter: int | None, start_month: int = 1) -> tuple[str, ...]:
    """The months of fiscal year `fiscal_year` (or of one quarter of it). Fiscal year N
    starts in month `start_month` of calendar year N."""
    start = fiscal_year * 12 + start_month - 1 + (3 * (quarter - 1) if quarter else 0)
    return tuple(period_at(i) for i in range(start, start + (3 if quarter else 12)))


def fiscal_label(fiscal_year: int, quarter: int | None) -> str:
    return f"FY{fiscal_year}" + (f"-Q{quarter}" if quarter else "")


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """part / whole * 100 to 2 places; None when whole is 0 (undefined, not 0 or 100)."""
    if whole == 0:
        return None
    return (part * HUNDRED / whole).quantize(CENT, rounding=ROUND_HALF_UP)
