"""How a figure reads, in one place: the CLI, every report format (table, md, html, csv,
json, xlsx) and the dashboard format money, ratios, percentages and counts with these
functions, so that one figure never reads two ways.

- For people: money with thousands separators, in whole units of its currency when the
  currency is known (`EUR 9,000,000`); ratios (CPI, SPI, scores) to 3 places; percentages
  whole (`85%`); anything undefined (a CPI without earned value) is `n/a`, never `None`.
- For machines (JSON): decimals as strings at a fixed scale, money to 2 places, ratios to
  4 places, percentages to 1 place; undefined stays null.

Stdlib only: the pure domain's figures arrive as `Decimal` or decimal strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

NA = "n/a"
CENT = Decimal("0.01")
RATIO = Decimal("0.0001")
TENTH = Decimal("0.1")

#: The earned-value figures, in this order and under these names everywhere (the risk
#: monitor's answer, the report, the dashboard): money, then the indices.
EARNED_VALUE_MONEY = (
    "bac",
    "pv",
    "ev",
    "ac",
    "cv",
    "sv",
    "eac_typical",
    "eac_atypical",
    "eac_composite",
    "etc",
    "vac",
)
EARNED_VALUE_RATIOS = ("cpi", "spi", "tcpi")
EARNED_VALUE = (*EARNED_VALUE_MONEY[:6], "cpi", "spi", *EARNED_VALUE_MONEY[6:], "tcpi")


def decimal_of(value: Any) -> Decimal | None:
    """A finite Decimal from a Decimal, int, float or decimal string; None otherwise."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _scaled(value: Any, scale: Decimal) -> str | None:
    number = decimal_of(value)
    return None if number is None else str(number.quantize(scale, rounding=ROUND_HALF_UP))


# --- JSON: strings at a fixed scale ----------------------------------------------------


def money_json(value: Any) -> str | None:
    """Money for JSON: a decimal string with 2 places (`"9000000.00"`); None stays None."""
    return _scaled(value, CENT)


def ratio_json(value: Any) -> str | None:
    """A ratio for JSON (CPI, SPI, TCPI, a score): 4 places (`"0.9600"`)."""
    return _scaled(value, RATIO)


def percent_json(value: Any) -> str | None:
    """A percentage for JSON: 1 place (`"13.6"`)."""
    return _scaled(value, TENTH)


def earned_value_json(figures: Mapping[str, Any] | None) -> dict[str, str | None] | None:
    """Every earned-value figure under its one name, money to 2 places and indices to 4;
    a figure the source lacks is null (not available)."""
    if figures is None:
        return None
    return {
        name: ratio_json(figures.get(name))
        if name in EARNED_VALUE_RATIOS
        else money_json(figures.get(name))
        for name in EARNED_VALUE
    }


#: Keys whose values are money wherever they appear in a JSON answer.
MONEY_KEYS = frozenset(
    {
        *EARNED_VALUE_MONEY,
        "amount",
        "allocated",
        "committed",
        "actual",
        "remaining",
        "forecast_at_completion",
        "burn_rate",
        "emv",
        "reserve",
        "budget",
        "cost",
        "spent",
        "capex",
        "opex",
    }
)
RATIO_KEYS = frozenset({*EARNED_VALUE_RATIOS, "score", "total_value"})


def tidy_json(data: Any, key: str | None = None) -> Any:
    """A JSON answer with its money at 2 places and its ratios at 4 (by the key they sit
    under): decimal strings at that scale, floats rounded; whole numbers and anything else
    untouched. For answers other services compute with
    full precision (e.g. a CPI of 28 digits) before the CLI prints them."""
    if isinstance(data, Mapping):
        return {k: tidy_json(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [tidy_json(v, key) for v in data]
    if isinstance(data, bool | int) or data is None or key is None:
        return data  # counts and scores on a scale (a risk score 20) stay whole
    if isinstance(data, float) and key in RATIO_KEYS:
        return round(data, 4)  # a number stays a number: rounded, not turned to text
    if isinstance(data, float | str) and decimal_of(data) is not None:
        if key in MONEY_KEYS:
            return money_json(data)
        if key in RATIO_KEYS:
            return ratio_json(data)
    return data


# --- text: for people ----------------------------------------------------------------------


def money_text(value: Any, currency: str | None = None) -> str:
    """Whole units with thousands separators, the currency first when known
    (`EUR 9,000,000`); `n/a` when undefined."""
    number = decimal_of(value)
    if number is None:
        return NA if value is None or value == "" else str(value)
    whole = f"{number.quantize(Decimal(1), rounding=ROUND_HALF_UP):,}"
    return f"{currency} {whole}" if currency else whole


def ratio_text(value: Any, places: int = 3) -> str:
    """An index or score to `places` places (`0.960`); `n/a` when undefined."""
    number = decimal_of(value)
    if number is None:
        return NA if value is None or value == "" else str(value)
    return f"{number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):,}"


def percent_text(value: Any) -> str:
    """A percentage, whole (`85%`), `n/a` when undefined."""
    number = decimal_of(value)
    if number is None:
        return NA if value is None or value == "" else str(value)
    return f"{number.quantize(Decimal(1), rounding=ROUND_HALF_UP)}%"


def number_text(value: Any) -> str:
    """A count or quantity: thousands separators, at most 2 places (`1,250`, `2.5`)."""
    number = decimal_of(value)
    if number is None:
        return NA if value is None or value == "" else str(value)
    if number == number.to_integral_value():
        return f"{number.quantize(Decimal(1)):,}"
    return f"{number.quantize(CENT, rounding=ROUND_HALF_UP).normalize():,f}"


def compact_text(value: float) -> str:
    """A chart tick: `250k`, `1.5M`, `2G` (the tick steps are 1-2-5, so at most 2 digits)."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}" if value != int(value) else f"{value:.0f}"


def text_of(value: Any) -> str:
    """Any value as text, never a Python repr: lists joined with commas, mappings as
    `key: value` pairs, None as `n/a`."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {text_of(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(text_of(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
