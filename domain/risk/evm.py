"""Earned value and RAG health, pure (REFERENCE.md, Earned value and Health).

BAC budget at completion, PV planned value, EV earned value, AC actual cost:

- CV = EV - AC, SV = EV - PV, CPI = EV / AC, SPI = EV / PV
- EAC typical = BAC / CPI, atypical = AC + (BAC - EV), composite = AC + (BAC - EV) / (CPI x SPI)
- ETC = EAC - AC, VAC = BAC - EAC (both from the typical EAC)
- TCPI(BAC) = (BAC - EV) / (BAC - AC)

Everything is Decimal. Money results are rounded to the cent; indices are kept at full
precision (round them for display). An index that cannot be computed is `None`, reported
as not available, never 1.0: CPI when AC is 0, SPI when PV is 0, the EACs that divide by
a zero (or undefined) index, TCPI when BAC - AC ≤ 0 (the budget is spent: no efficiency
can finish within it). EAC typical is computed as BAC x AC / EV, so the worked example
(BAC 100,000; PV 50,000; EV 40,000; AC 45,000) gives exactly 112,500.

RAG (defaults in `HealthThresholds`, every one configurable):
- CPI and SPI: green ≥ 0.95, amber ≥ 0.90, red below.
- schedule slip (forecast end - planned end): green on time or early, amber up to 30 days
  late, red beyond.
- risk: the highest current score of the project's open threats: amber from 15 (the high
  zone), red from 20.
A project's status is its worst indicator; indicators that are not available do not count,
and a project with none available is `not_available`. Roll-ups to programmes and the
portfolio take the worst child (`not_available` ranks below green) and name the children,
and through them the indicators, that set it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum

from domain.risk.baselines import BaselineState
from domain.risk.register import cents

Amount = Decimal | int


@dataclass(frozen=True)
class EarnedValue:
    bac: Decimal
    pv: Decimal
    ev: Decimal
    ac: Decimal
    cv: Decimal
    sv: Decimal
    cpi: Decimal | None
    spi: Decimal | None
    eac_typical: Decimal | None
    eac_atypical: Decimal
    eac_composite: Decimal | None
    etc: Decimal | None
    vac: Decimal | None
    tcpi: Decimal | None

    def figures(self) -> dict[str, str | None]:
        """Every figure as a decimal string (None: not available), for events and reports."""
        return {name: None if value is None else str(value) for name, value in vars(self).items()}


def _decimal(name: str, value: Amount) -> Decimal:
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name} must be a finite amount ≥ 0, got {value}")
    return amount


def earned_value(bac: Amount, pv: Amount, ev: Amount, ac: Amount) -> EarnedValue:
    bac, pv, ev, ac = (
        _decimal("BAC", bac),
        _decimal("PV", pv),
        _decimal("EV", ev),
        _decimal("AC", ac),
    )
    cpi = ev / ac if ac else None
    spi = ev / pv if pv else None
    eac_typical = _eac_typical(bac, ev, ac)
    eac_composite = cents(ac + (bac - ev) * ac * pv / (ev * ev)) if ac and pv and ev else None
    return EarnedValue(
        bac=bac,
        pv=pv,
        ev=ev,
        ac=ac,
        cv=cents(ev - ac),
        sv=cents(ev - pv),
        cpi=cpi,
        spi=spi,
        eac_typical=eac_typical,
        eac_atypical=cents(ac + (bac - ev)),
        eac_composite=eac_composite,
        etc=None if eac_typical is None else cents(eac_typical - ac),
        vac=None if eac_typical is None else cents(bac - eac_typical),
        tcpi=(bac - ev) / (bac - ac) if bac - ac > 0 else None,
    )


def eac_typical(bac: Amount, ev: Amount, ac: Amount) -> Decimal | None:
    """EAC = BAC x AC / EV (None: AC or EV 0): `earned_value(...).eac_typical` without
    the other figures, for a series of thousands of points."""
    return _eac_typical(_decimal("BAC", bac), _decimal("EV", ev), _decimal("AC", ac))


def _eac_typical(bac: Decimal, ev: Decimal, ac: Decimal) -> Decimal | None:
    return cents(bac * ac / ev) if ac and ev else None


def schedule_slip_days(planned_end: date | None, forecast_end: date | None) -> int | None:
    """Days the forecast end lies after the planned end (negative: early); None unknown."""
    if planned_end is None or forecast_end is None:
        return None
    return (forecast_end - planned_end).days


# --- RAG ---------------------------------------------------------------------------------------


class Rag(StrEnum):
    NOT_AVAILABLE = "not_available"
    GREEN = "green"
    AMBER = "amber"
    RED = "red"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Rag.NOT_AVAILABLE: 0, Rag.GREEN: 1, Rag.AMBER: 2, Rag.RED: 3}


@dataclass(frozen=True)
class HealthThresholds:
    cpi_green: Decimal = Decimal("0.95")
    cpi_amber: Decimal = Decimal("0.90")
    spi_green: Decimal = Decimal("0.95")
    spi_amber: Decimal = Decimal("0.90")
    #: Late by more than 0 days is amber, by more than this many days red.
    slip_red_days: int = 30
    risk_amber: int = 15
    risk_red: int = 20

    def __post_init__(self) -> None:
        if not (self.cpi_amber <= self.cpi_green and self.spi_amber <= self.spi_green):
            raise ValueError("the amber bound of an index cannot lie above its green bound")
        if not 1 <= self.risk_amber <= self.risk_red <= 25:
            raise ValueError("risk bounds need 1 ≤ amber ≤ red ≤ 25")
        if self.slip_red_days < 0:
            raise ValueError("slip_red_days must be ≥ 0")


DEFAULT_THRESHOLDS = HealthThresholds()


@dataclass(frozen=True)
class Indicator:
    name: str
    value: Decimal | int | None
    status: Rag
    #: Why the indicator has its status, e.g. "CPI 0.889 < 0.90".
    reason: str


@dataclass(frozen=True)
class Health:
    """A RAG status and what set it: for a project, its indicators (`drivers`); for a
    roll-up, the children with the worst status (`set_by`) and their drivers."""

    subject_id: str
    level: str
    status: Rag
    drivers: tuple[Indicator, ...] = ()
    set_by: tuple[str, ...] = ()
    indicators: tuple[Indicator, ...] = ()
    children: tuple[Health, ...] = ()
    earned_value: EarnedValue | None = None
    schedule_slip_days: int | None = None

    def explain(self) -> str:
        """One line: 'portfolio red: programme P-1 red: project CRM-1 red: CPI 0.800 < 0.90'."""
        name = self.level if self.subject_id == self.level else f"{self.level} {self.subject_id}"
        head = f"{name} {self.status}"
        if self.set_by:
            by_id = {child.subject_id: child for child in self.children}
            return f"{head}: " + "; ".join(by_id[c].explain() for c in self.set_by)
        if self.drivers:
            return f"{head}: " + ", ".join(d.reason for d in self.drivers)
        return head


def _index_indicator(name: str, value: Decimal | None, green: Decimal, amber: Decimal) -> Indicator:
    label = name.upper()
    if value is None:
        return Indicator(name, None, Rag.NOT_AVAILABLE, f"{label} not available")
    shown = f"{value:.3f}"
    if value >= green:
        return Indicator(name, value, Rag.GREEN, f"{label} {shown} ≥ {green}")
    if value >= amber:
        return Indicator(name, value, Rag.AMBER, f"{label} {shown} < {green}")
    return Indicator(name, value, Rag.RED, f"{label} {shown} < {amber}")


def _slip_indicator(days: int | None, red_days: int) -> Indicator:
    name = "schedule_slip_days"
    if days is None:
        return Indicator(name, None, Rag.NOT_AVAILABLE, "forecast end not available")
    if days < 0:
        return Indicator(name, days, Rag.GREEN, f"{-days} days early")
    if days == 0:
        return Indicator(name, days, Rag.GREEN, "on time")
    if days <= red_days:
        return Indicator(name, days, Rag.AMBER, f"{days} days late")
    return Indicator(name, days, Rag.RED, f"{days} days late > {red_days}")


def _risk_indicator(top_score: int | None, amber: int, red: int) -> Indicator:
    name = "risk_score"
    if top_score is None:
        return Indicator(name, None, Rag.NOT_AVAILABLE, "no open threats")
    if top_score >= red:
        return Indicator(name, top_score, Rag.RED, f"risk score {top_score} ≥ {red}")
    if top_score >= amber:
        return Indicator(name, top_score, Rag.AMBER, f"risk score {top_score} ≥ {amber}")
    return Indicator(name, top_score, Rag.GREEN, f"risk score {top_score} < {amber}")


def assess_project(
    project_id: str,
    evm: EarnedValue | None,
    *,
    slip_days: int | None = None,
    top_risk_score: int | None = None,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
) -> Health:
    """A project's RAG from its indicators; the drivers are those with the worst status."""
    t = thresholds
    indicators = (
        _index_indicator("cpi", evm.cpi if evm else None, t.cpi_green, t.cpi_amber),
        _index_indicator("spi", evm.spi if evm else None, t.spi_green, t.spi_amber),
        _slip_indicator(slip_days, t.slip_red_days),
        _risk_indicator(top_risk_score, t.risk_amber, t.risk_red),
    )
    status = max((i.status for i in indicators), key=lambda s: s.rank)
    drivers = tuple(i for i in indicators if i.status == status and status != Rag.NOT_AVAILABLE)
    return Health(
        subject_id=project_id,
        level="project",
        status=status,
        drivers=drivers,
        indicators=indicators,
        earned_value=evm,
        schedule_slip_days=slip_days,
    )


@dataclass(frozen=True)
class Basis:
    """What a project's earned value reads from its baseline at the end of a period: BAC,
    PV and EV, and the schedule slip. They change only with the baseline and its progress,
    so a monitor keeps them between invoices (only AC moves with each)."""

    bac: Decimal
    pv: Decimal
    ev: Decimal
    slip_days: int | None

    #: `earned_value` accepts these three (it raises otherwise).
    valid: bool = field(init=False)

    def __post_init__(self) -> None:
        valid = all(x.is_finite() and x >= 0 for x in (self.bac, self.pv, self.ev))
        object.__setattr__(self, "valid", valid)


def project_basis(baseline: BaselineState, period: str | None = None) -> Basis:
    """The baseline's side of `project_health` at the end of `period` (default: its latest
    progress report)."""
    at = period or baseline.latest_period
    pv = baseline.planned_value_at(at) if at is not None else Decimal(0)
    forecast = next(
        (
            p.forecast_end
            for p in reversed(baseline.progress)
            if p.forecast_end is not None and (at is None or p.period <= at)
        ),
        None,
    )
    return Basis(
        bac=baseline.budget_at_completion,
        pv=pv,
        ev=baseline.earned_value_at(at),
        slip_days=schedule_slip_days(baseline.planned_end, forecast),
    )


def project_health(
    baseline: BaselineState,
    actual_cost: Amount,
    *,
    period: str | None = None,
    top_risk_score: int | None = None,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
    basis: Basis | None = None,
) -> Health:
    """Health of a project at the end of `period` (default: its latest progress report):
    PV from the baseline plan, EV from the progress, AC (cumulative) from the ledger.
    `basis`: `project_basis(baseline, period)` when the caller has it already."""
    found = basis or project_basis(baseline, period)
    evm = earned_value(found.bac, found.pv, found.ev, actual_cost)
    return assess_project(
        baseline.project_id,
        evm,
        slip_days=found.slip_days,
        top_risk_score=top_risk_score,
        thresholds=thresholds,
    )


def roll_up(subject_id: str, children: Iterable[Health], level: str = "programme") -> Health:
    """Worst child wins; every child with that status is named in `set_by`."""
    kids = tuple(children)
    if not kids:
        return Health(subject_id=subject_id, level=level, status=Rag.NOT_AVAILABLE)
    status = max((c.status for c in kids), key=lambda s: s.rank)
    worst = tuple(c for c in kids if c.status == status) if status != Rag.NOT_AVAILABLE else ()
    return Health(
        subject_id=subject_id,
        level=level,
        status=status,
        drivers=tuple(d for c in worst for d in c.drivers),
        set_by=tuple(c.subject_id for c in worst),
        children=kids,
    )


def portfolio_health(
    projects: Iterable[Health],
    programmes: Mapping[str, Iterable[str]] | None = None,
    portfolio_id: str = "portfolio",
) -> Health:
    """Projects roll up into their programmes (`programme id -> project ids`), programmes
    and the projects of no programme into the portfolio."""
    by_id = {h.subject_id: h for h in projects}
    grouped: set[str] = set()
    children: list[Health] = []
    for programme_id, members in (programmes or {}).items():
        found = [by_id[m] for m in members if m in by_id]
        grouped.update(h.subject_id for h in found)
        children.append(roll_up(programme_id, found, "programme"))
    children.extend(h for pid, h in by_id.items() if pid not in grouped)
    return roll_up(portfolio_id, children, "portfolio")
