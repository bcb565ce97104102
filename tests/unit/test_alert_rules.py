"""Alert rules with hysteresis: a rule raises once when it starts to hold and clears once
when the value passes its clear level, across long random sequences (hypothesis); no storms,
no flapping; restarts decide the same; backtests over a made-up history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import risks as r
from domain.risk import AlertRuleState, RiskState
from domain.risk.alerts import (
    DEFAULT_RULES,
    AlertEvent,
    AlertState,
    Reading,
    alert_id_for,
    backtest,
    clears,
    default_rules,
    evaluate,
    evolve_alerts,
    holds,
    project_readings,
    risk_reading,
    rule_state,
)
from domain.risk.evm import assess_project, earned_value

FAST = settings(max_examples=150, deadline=None)


def rule(**changes: Any) -> AlertRuleState:
    data = {
        "rule_id": "cpi-low",
        "metric": "cpi",
        "comparison": "lt",
        "threshold": 0.9,
        "clear_at": 0.95,
    } | changes
    return rule_state(r.DefineAlertRule.model_validate(data))


CPI = rule()
RISK = rule(rule_id="risk-high", metric="risk_score", comparison="ge", threshold=15, clear_at=12)


def cpi(value: float | None, subject: str = "P1", **changes: Any) -> Reading:
    return Reading(
        metric=r.Metric.CPI, subject_id=subject, value=value, project_id=subject, **changes
    )


def feed(
    rules: Sequence[AlertRuleState],
    batches: Iterable[Sequence[Reading]],
    state: AlertState | None = None,
    first: int = 0,
) -> tuple[list[AlertEvent], AlertState]:
    """Evaluate batch after batch, as the risk service does; batch n is caused by evt-n."""
    state = state or AlertState()
    out: list[AlertEvent] = []
    for index, batch in enumerate(batches, start=first):
        events, state = evaluate(rules, state, batch, (f"evt-{index}",))
        out.extend(events)
    return out, state


def kinds(events: Iterable[AlertEvent]) -> str:
    return "".join("R" if isinstance(e, r.AlertRaised) else "C" for e in events)


# --- hysteresis, step by step ---------------------------------------------------------------


def test_raise_once_hold_quietly_clear_once_and_raise_again() -> None:
    values = [1.0, 0.85, 0.80, 0.92, 0.89, 0.94, 0.95, 0.94, 0.89, 0.7]
    events, state = feed([CPI], [[cpi(v)] for v in values])
    assert [(kinds([e]), e.value) for e in events] == [
        ("R", 0.85),
        ("C", 0.95),
        ("R", 0.89),
    ]
    first, cleared, second = events
    assert isinstance(first, r.AlertRaised)
    assert isinstance(cleared, r.AlertCleared)
    assert isinstance(second, r.AlertRaised)
    assert cleared.alert_id == first.alert_id == alert_id_for("cpi-low", "P1", 1)
    assert second.alert_id == alert_id_for("cpi-low", "P1", 2) != first.alert_id
    assert state.is_open("cpi-low", "P1")
    assert state.episodes == {("cpi-low", "P1"): 2}


def test_a_raised_alert_names_the_rule_figures_causes_and_audit_trail() -> None:
    reading = cpi(0.8, figures={"ev": "40000.00", "ac": "45000.00"}, caused_by=("e-1", "e-2"))
    [raised], _ = evaluate([CPI], AlertState(), [reading], ("ignored",))
    assert isinstance(raised, r.AlertRaised)
    assert (raised.rule_id, raised.rule_revision, raised.metric, raised.severity) == (
        "cpi-low",
        1,
        "cpi",
        "warning",
    )
    assert (raised.subject_id, raised.project_id, raised.value, raised.threshold) == (
        "P1",
        "P1",
        0.8,
        0.9,
    )
    assert raised.figures == {"ev": "40000.00", "ac": "45000.00"}
    assert raised.caused_by == ("e-1", "e-2")
    assert raised.audit_link == "portfolio audit --project P1"
    assert raised.message == "cpi 0.8 < 0.9 for P1 (rule cpi-low, clears at 0.95)"
    # Without causes of its own, a reading takes those of the call.
    [raised], _ = evaluate([CPI], AlertState(), [cpi(0.8)], ("evt-9",))
    assert isinstance(raised, r.AlertRaised)
    assert raised.caused_by == ("evt-9",)


def test_a_high_is_bad_rule_clears_at_or_below_its_clear_level() -> None:
    scores = [10, 15, 20, 13, 16, 12, 14, 15]
    events, _ = feed([RISK], [[Reading(r.Metric.RISK_SCORE, "R-1", s)] for s in scores])
    assert [(kinds([e]), e.value) for e in events] == [("R", 15.0), ("C", 12.0), ("R", 15.0)]


def test_values_that_are_not_available_change_nothing() -> None:
    events, state = feed([CPI], [[cpi(None)], [cpi(0.8)], [cpi(None)], [cpi(None)]])
    assert kinds(events) == "R"
    assert state.is_open("cpi-low", "P1")


def test_a_burst_is_coalesced_to_its_last_reading() -> None:
    burst = [cpi(0.5), cpi(1.2), cpi(0.6), cpi(0.99)]
    events, _ = evaluate([CPI], AlertState(), burst, ())
    assert events == []  # it ended healthy: nothing to say
    events, _ = evaluate([CPI], AlertState(), [*burst, cpi(0.7)], ())
    assert kinds(events) == "R"


def test_a_disabled_or_redefined_rule_clears_its_open_alerts() -> None:
    _, state = feed([CPI], [[cpi(0.8, "P1"), cpi(0.7, "P2")]])
    disabled = AlertRuleState(**{**vars(CPI), "enabled": False})
    events, state = evaluate([disabled], state, [], ("evt-disable",))
    assert kinds(events) == "CC"
    assert {e.subject_id for e in events} == {"P1", "P2"}
    assert all(isinstance(e, r.AlertCleared) and e.reason == "rule disabled" for e in events)
    assert all(e.caused_by == ("evt-disable",) for e in events)
    assert state.open == {}
    # and it stays quiet while disabled
    assert evaluate([disabled], state, [cpi(0.1)], ())[0] == []

    _, state = feed([CPI], [[cpi(0.8)]])
    moved = AlertRuleState(**{**vars(CPI), "metric": r.Metric.SPI, "revision": 2})
    events, state = evaluate([moved], state, [], ())
    assert kinds(events) == "C"
    assert state.open == {}


def test_a_closed_risk_clears_its_alert_and_never_raises() -> None:
    risk = RiskState(
        risk_id="R-1",
        project_id="P1",
        title="Vendor",
        kind=r.RiskKind.THREAT,
        category="supplier",
        owner="anna",
        probability=4,
        impact=5,
        monetary_impact=Decimal(10000),
        proximity=None,
        version=1,
    )
    [raised], state = evaluate([RISK], AlertState(), [risk_reading(risk)], ())
    assert isinstance(raised, r.AlertRaised)
    assert raised.audit_link == "portfolio audit --aggregate-type risk --aggregate-id R-1"
    assert raised.figures["emv"] == "7000.00"
    closed = RiskState(**{**vars(risk), "status": r.RiskStatus.CLOSED})
    [cleared], state = evaluate([RISK], state, [risk_reading(closed)], ())
    assert isinstance(cleared, r.AlertCleared)
    assert cleared.reason == "subject closed"
    assert evaluate([RISK], AlertState(), [risk_reading(closed)], ())[0] == []


def test_scopes_select_the_subjects_a_rule_watches() -> None:
    project_rule = rule(rule_id="p2", scope="project", scope_id="P2")
    programme_rule = rule(rule_id="prg", scope="programme", scope_id="PRG-1")
    category_rule = rule(rule_id="cat", scope="category", scope_id="infra")
    rules = [CPI, project_rule, programme_rule, category_rule]
    readings = [
        cpi(0.5, "P1", programme_id="PRG-1"),
        cpi(0.5, "P2", category="infra"),
        cpi(0.5, "P3"),
    ]
    events, state = evaluate(rules, AlertState(), readings, ())
    assert sorted((e.rule_id, e.subject_id) for e in events) == [
        ("cat", "P2"),
        ("cpi-low", "P1"),
        ("cpi-low", "P2"),
        ("cpi-low", "P3"),
        ("p2", "P2"),
        ("prg", "P1"),
    ]
    # P1 leaves the programme: that rule's alert clears, the portfolio one stays.
    events, _ = evaluate(rules, state, [cpi(0.5, "P1", programme_id="PRG-2")], ())
    assert [(e.rule_id, kinds([e])) for e in events] == [("prg", "C")]


def test_the_defaults() -> None:
    rules = default_rules()
    assert [x.rule_id for x in rules] == [c.rule_id for c in DEFAULT_RULES]
    by_id = {x.rule_id: x for x in rules}
    assert (by_id["default-cpi"].comparison, by_id["default-cpi"].threshold) == ("lt", 0.9)
    assert by_id["default-cpi"].clear_at == 0.95
    assert by_id["default-spi"].metric == "spi"
    assert (by_id["default-risk-score"].threshold, by_id["default-risk-score"].clear_at) == (15, 12)
    assert {x.metric for x in rules} >= {"budget_consumption", "over_allocation"}
    assert len({c.command_id for c in DEFAULT_RULES}) == len(DEFAULT_RULES)


def test_budget_consumption_at_80_and_100_percent() -> None:
    rules = default_rules()

    def pool(percent: float) -> list[Reading]:
        return [Reading(r.Metric.BUDGET_CONSUMPTION, "POOL-2027-CAPEX", percent)]

    steps = [50, 82, 90, 101, 99, 94, 78, 75]
    seen = []
    state = AlertState()
    for percent in steps:
        events, state = evaluate(rules, state, pool(percent), ())
        seen.append([(e.rule_id.removeprefix("default-"), kinds([e])) for e in events])
    assert seen == [
        [],
        [("budget-80", "R")],
        [],
        [("budget-100", "R")],
        [],
        [("budget-100", "C")],
        [],
        [("budget-80", "C")],
    ]
    severities = {
        e.rule_id: e.severity for e in feed(rules, [pool(101)])[0] if isinstance(e, r.AlertRaised)
    }
    assert severities == {"default-budget-80": "warning", "default-budget-100": "critical"}


def test_the_worked_example_raises_cpi_and_spi_with_every_figure() -> None:
    health = assess_project("CRM-1", earned_value(100000, 50000, 40000, 45000), slip_days=12)
    events, _ = evaluate(default_rules(), AlertState(), project_readings(health), ("evt-7",))
    assert [(e.rule_id, e.value and round(e.value, 3)) for e in events] == [
        ("default-cpi", 0.889),
        ("default-spi", 0.8),
    ]
    raised = events[0]
    assert isinstance(raised, r.AlertRaised)
    assert raised.figures["eac_typical"] == "112500.00"
    assert raised.figures["vac"] == "-12500.00"
    assert raised.figures["rag"] == "red"
    assert raised.caused_by == ("evt-7",)


# --- long random sequences --------------------------------------------------------------------

values = st.lists(
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=2.0, allow_nan=False)),
    min_size=0,
    max_size=300,
)


@FAST
@given(values)
def test_alerts_alternate_raise_clear_at_exactly_the_crossings(series: list[float | None]) -> None:
    events, state = feed([CPI], [[cpi(v)] for v in series])
    # Never two raises without a clear between, never a clear without a raise.
    assert kinds(events) == "RC" * (len(events) // 2) + "R" * (len(events) % 2)
    # The reference: a raise exactly when closed and the rule holds, a clear exactly when
    # open and the value reached the clear level.
    expected, is_open = [], False
    for v in series:
        if v is None:
            continue
        if not is_open and v < 0.9:
            expected.append(("R", v))
            is_open = True
        elif is_open and v >= 0.95:
            expected.append(("C", v))
            is_open = False
    assert [(kinds([e]), e.value) for e in events] == expected
    assert state.is_open("cpi-low", "P1") == is_open
    # Every episode has its own id; raise and clear of an episode share it.
    ids = [e.alert_id for e in events]
    assert ids[::2] == [alert_id_for("cpi-low", "P1", n + 1) for n in range(len(ids[::2]))]
    assert ids[1::2] == ids[: len(ids[1::2]) * 2 : 2]


@FAST
@given(st.lists(st.floats(min_value=0.9, max_value=0.95, exclude_min=True, exclude_max=True)))
def test_no_flapping_between_threshold_and_clear_level(band: list[float]) -> None:
    for start in (0.5, 1.5):
        events, _ = feed([CPI], [[cpi(v)] for v in [start, *band]])
        assert kinds(events) == ("R" if start < 0.9 else "")


@FAST
@given(values, st.data())
def test_batches_never_storm(series: list[float | None], data: st.DataObject) -> None:
    """However the readings are grouped, alerts still alternate and never outnumber the
    one-by-one evaluation."""
    cuts = sorted(data.draw(st.sets(st.integers(0, len(series)), max_size=20)))
    batches = [series[a:b] for a, b in zip([0, *cuts], [*cuts, len(series)], strict=True)]
    events, _ = feed([CPI], [[cpi(v) for v in batch] for batch in batches])
    one_by_one, _ = feed([CPI], [[cpi(v)] for v in series])
    assert kinds(events) == "RC" * (len(events) // 2) + "R" * (len(events) % 2)
    assert len(events) <= len(one_by_one)


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["P1", "P2", "P3"]),
            st.floats(min_value=0.0, max_value=2.0, allow_nan=False),
        ),
        max_size=300,
    ),
    st.integers(min_value=0, max_value=300),
)
def test_a_restart_rebuilt_from_the_log_decides_the_same(
    stream: list[tuple[str, float]], cut: int
) -> None:
    """Many subjects and two rules; the monitor stops after `cut` readings and rebuilds its
    state from the alerts it had appended: the same alerts, with the same ids, follow."""
    rules = [CPI, rule(rule_id="cpi-critical", threshold=0.7, clear_at=0.8, severity="critical")]
    batches = [[cpi(v, subject)] for subject, v in stream]
    straight, _ = feed(rules, batches)

    before, _ = feed(rules, batches[:cut])
    rebuilt = AlertState()
    for event in before:
        rebuilt = evolve_alerts(rebuilt, event)
    after, _ = feed(rules, batches[cut:], rebuilt, first=len(batches[:cut]))
    assert [e.model_dump() for e in before + after] == [e.model_dump() for e in straight]

    for rule_id in ("cpi-low", "cpi-critical"):
        for subject in ("P1", "P2", "P3"):
            mine = [e for e in straight if (e.rule_id, e.subject_id) == (rule_id, subject)]
            assert kinds(mine) == "RC" * (len(mine) // 2) + "R" * (len(mine) % 2)


@FAST
@given(values)
def test_backtest_agrees_with_evaluation(series: list[float | None]) -> None:
    events, _ = feed([CPI], [[cpi(v)] for v in series])
    episodes = backtest(CPI, list(enumerate(series)))
    assert 2 * len(episodes) - sum(1 for _, end in episodes if end is None) == len(events)
    for (start, end), raised in zip(episodes, events[::2], strict=True):
        assert series[start] == raised.value
        if end is not None:
            assert series[end] is not None
            assert clears(CPI, series[end])  # type: ignore[arg-type]


# --- backtest -----------------------------------------------------------------------------------


def test_backtest_a_threshold_over_a_made_up_history() -> None:
    start = datetime(2027, 1, 4, tzinfo=UTC)
    week = timedelta(weeks=1)
    history = [1.02, 0.97, 0.91, 0.88, 0.86, 0.93, 0.96, 0.99, 0.89, 0.92, 0.94, None, 0.87]
    series = [(start + n * week, v) for n, v in enumerate(history)]
    assert backtest(CPI, series) == [(start + 3 * week, start + 6 * week), (start + 8 * week, None)]
    # A stricter candidate, straight from a command that was never sent:
    candidate = r.DefineAlertRule(
        rule_id="what-if", metric="cpi", comparison="le", threshold=0.86, clear_at=0.9
    )
    assert backtest(candidate, series) == [(start + 4 * week, start + 5 * week)]
    assert backtest(candidate, []) == []


@pytest.mark.parametrize(
    ("comparison", "value", "held"),
    [("lt", 0.9, False), ("le", 0.9, True), ("gt", 0.9, False), ("ge", 0.9, True)],
)
def test_the_boundary_of_each_comparison(comparison: str, value: float, held: bool) -> None:
    clear_at = 1.0 if comparison in ("lt", "le") else 0.5
    assert holds(rule(comparison=comparison, clear_at=clear_at), value) is held
