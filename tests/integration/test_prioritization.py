"""Prioritization through NATS: models by command, rankings decided and recomputable from
the log, scenarios that never touch the log until one is committed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from sqlalchemy import JSON, Column, MetaData, String, Table, create_engine, insert, select

from contracts import prioritization as pr
from contracts.base import CommandAccepted, CommandRejected
from contracts.subjects import LOG_STREAM
from domain.prioritization import PortfolioView, decide_ranking
from shared.eventlog import EventLog
from shared.settings import PortfolioSettings
from tests.integration.helpers import (
    SETTINGS_CLASS,
    SUBJECTS,
    caught_up,
    proposal,
    running,
    send,
)

FAST = {"reprioritize_quiet_seconds": 0.4, "reprioritize_longest_seconds": 10}


def scored(project_id: str, n: int, **overrides: Any) -> dict[str, Any]:
    fib = (1, 2, 3, 5, 8, 13, 20)
    return proposal(
        project_id,
        capex=str(100_000 + 10_000 * n),
        opex="0",
        costs=[{"year": 2027, "capex": str(100_000 + 10_000 * n), "opex": "0"}],
        objectives=[{"objective_id": "O-1", "contribution": 1 + n % 5}],
        scoring={
            "business_value": fib[n % 7],
            "time_criticality": fib[(n + 2) % 7],
            "risk_reduction": fib[(n + 4) % 7],
            "job_size": fib[(n + 1) % 7],
            "npv": str(50_000 * (n % 4) - 20_000),
            "risk": 1 + n % 5,
            "urgency": 1 + (n * 3) % 5,
        },
        **overrides,
    )


async def rankings(event_log: EventLog) -> list[pr.RankingDecided]:
    return [
        pr.RankingDecided.model_validate(e.envelope.payload)
        async for e in event_log.read(filter_subject=SUBJECTS.events(pr.RANKING, "default"))
    ]


async def wait_for_rankings(event_log: EventLog, count: int) -> list[pr.RankingDecided]:
    for _ in range(200):
        found = await rankings(event_log)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} rankings, found {len(found)}")


async def ask(nc: Client, name: str, body: Any, control: bool = False) -> dict[str, Any]:
    subject = (
        SUBJECTS.control("prioritization", name)
        if control
        else SUBJECTS.query("prioritization", name)
    )
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=30)
    answer: dict[str, Any] = json.loads(msg.data)
    return answer


async def test_models_rankings_scenarios_and_commit(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "prioritization", nats_url, tmp_path, **FAST),
    ):
        objective = {"objective_id": "O-1", "name": "Cloud", "owner": "cio", "weight": 40}
        assert isinstance(await send(nc, "DefineObjective", objective), CommandAccepted)

        inconsistent = await send(
            nc,
            "ConfigureScoringModel",
            {
                "method": "ahp",
                "ahp_criteria": ["value", "cost", "risk"],
                "ahp_matrix": [[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]],
                "rationale": "board workshop",
            },
        )
        assert isinstance(inconsistent, CommandRejected)
        assert "CR =" in inconsistent.error.message
        unknown = await send(
            nc,
            "ConfigureScoringModel",
            {
                "method": "weighted",
                "weights": {"beauty": 1},
                "rationale": "why not",
            },
        )
        assert isinstance(unknown, CommandRejected) and "beauty" in unknown.error.message
        model = await send(
            nc,
            "ConfigureScoringModel",
            {
                "method": "weighted",
                "weights": {"value": 3, "strategic_alignment": 2, "npv": 2, "risk": 1, "cost": 1},
                "rationale": "2027 planning round",
            },
        )
        assert isinstance(model, CommandAccepted)

        for n in range(30):
            reply = await send(nc, "ProposeProject", scored(f"P-{n:02d}", n))
            assert isinstance(reply, CommandAccepted), reply
        (first,) = await wait_for_rankings(event_log, 1)
        await asyncio.sleep(1.0)
        assert len(await rankings(event_log)) == 1  # debounced: 30 proposals, one ranking
        assert len(first.ranking) == 30 and first.model_version == 1
        assert set(first.ranking[0].breakdown) == {
            "value",
            "strategic_alignment",
            "npv",
            "risk",
            "cost",
        }
        assert all(r.previous_rank is None for r in first.ranking)

        # Recomputing from the log at the recorded position gives the same ranking.
        view = PortfolioView()
        async for recorded in event_log.read(until_position=first.computed_at_position):
            view.apply(recorded)
        assert decide_ranking(view, "default") == first

        answer = await ask(nc, "ranking", {})
        assert answer["ranking"] == first.model_dump(mode="json")
        assert answer["names"]["P-00"] == "Project P-00"

        # A reweighting moves projects: a second ranking, with rank changes.
        await send(
            nc,
            "ReweightObjective",
            {
                "objective_id": "O-1",
                "weight": 5,
                "rationale": "cloud is done",
            },
        )
        _, second = await wait_for_rankings(event_log, 2)
        assert all(r.previous_rank is not None for r in second.ranking)

        # Scenarios: answered, compared, and nothing appended.
        before = (await nc.jetstream().stream_info(LOG_STREAM)).state.last_seq
        baseline = {"name": "baseline", "budgets": {"2027/capex": "2000000"}}
        cut = {"name": "cut 20%", "budgets": {"2027/capex": "2000000"}, "budget_scale": "0.8"}
        doubled = baseline | {"name": "P-03 doubled", "cost_multipliers": {"P-03": "2"}}
        answered = await ask(nc, "scenario", {"scenarios": [baseline, cut, doubled]})
        assert "outcomes" in answered, answered
        outcomes = answered["outcomes"]
        assert [o["scenario"]["name"] for o in outcomes] == ["baseline", "cut 20%", "P-03 doubled"]
        spent = [float(o["cost_by_bucket"]["2027/capex"]) for o in outcomes]
        assert spent[0] <= 2_000_000 and spent[1] <= 1_600_000
        assert outcomes[1]["total_value"] <= outcomes[0]["total_value"]
        reasons = {m["reason"] for m in outcomes[1]["not_selected"]}
        assert any("budget 2027/capex" in r for r in reasons), reasons
        assert (await nc.jetstream().stream_info(LOG_STREAM)).state.last_seq == before

        frontier = await ask(
            nc, "frontier", {"budget_from": "0", "budget_to": "5000000", "steps": 6}
        )
        values = [p["value"] for p in frontier["points"]]
        assert values == sorted(values) and values[-1] > values[0]

        # Bad scenarios are answered with their cause.
        unknown_project = await ask(nc, "scenario", {"scenarios": [{"mandatory": ["NOPE"]}]})
        assert "NOPE" in unknown_project["error"]
        too_much = {"budgets": {"2027/capex": "100"}, "mandatory": ["P-01", "P-02"]}
        infeasible = await ask(nc, "scenario", {"scenarios": [too_much]})
        assert "2027/capex" in infeasible["error"]  # names the smallest conflicting set
        assert "P-01" in infeasible["error"] or "P-02" in infeasible["error"]
        malformed = await ask(nc, "scenario", {"scenarios": [{"budget_scale": -1}]})
        assert malformed["error"] == "invalid ScenarioQuery query"

        commit = {"scenario": cut, "rationale": "budget round Q1", "actor": "cfo"}
        commit |= {"command_id": "q1-round"}
        committed = await ask(nc, "commit", commit, True)
        retried = await ask(nc, "commit", commit, True)  # a retry after a lost answer
        assert retried["appended"]["position"] == committed["appended"]["position"]
        assert committed["outcome"]["selected"] == outcomes[1]["selected"]
        decided = await event_log.get(committed["appended"]["position"])
        assert decided.envelope.event_type == "SelectionDecided"
        assert decided.envelope.actor == "cfo"
        assert decided.envelope.payload["rationale"] == "budget round Q1"


async def propose_scored(nc: Client, count: int) -> None:
    """Objective O-1 and `count` scored proposals served by it (P-0, P-1, ...)."""
    await send(
        nc,
        "DefineObjective",
        {"objective_id": "O-1", "name": "Cloud", "owner": "cio", "weight": 40},
    )
    for n in range(count):
        await send(nc, "ProposeProject", scored(f"P-{n}", n))


async def test_restart_keeps_the_view(nc: Client, nats_url: str, tmp_path: Path) -> None:
    async with running(nc, "intake", nats_url, tmp_path):
        await propose_scored(nc, 5)
        async with running(nc, "prioritization", nats_url, tmp_path, **FAST):
            await caught_up(nc, "prioritization", 6)
            before = await ask(
                nc, "scenario", {"scenarios": [{"budgets": {"2027/capex": "300000"}}]}
            )
        async with running(nc, "prioritization", nats_url, tmp_path, **FAST):
            after = await ask(
                nc, "scenario", {"scenarios": [{"budgets": {"2027/capex": "300000"}}]}
            )
    assert after["outcomes"][0]["selected"] == before["outcomes"][0]["selected"]
    assert after["outcomes"][0]["selected"]


async def test_a_database_of_the_older_layout_is_rebuilt(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    """Candidate rows once held fewer fields than the project profile they hold now, and the
    table had no position column: such a database is rebuilt from the log at start instead
    of failing to load."""
    async with running(nc, "intake", nats_url, tmp_path):
        await propose_scored(nc, 3)
        async with running(nc, "prioritization", nats_url, tmp_path, **FAST):
            await caught_up(nc, "prioritization", 4)
            before = await ask(nc, "scenario", {"scenarios": [{}]})
        older_layout(SETTINGS_CLASS["prioritization"](data_dir=tmp_path))
        async with running(nc, "prioritization", nats_url, tmp_path, **FAST):
            await caught_up(nc, "prioritization", 4)
            after = await ask(nc, "scenario", {"scenarios": [{}]})
    assert sorted(after["outcomes"][0]["selected"]) == ["P-0", "P-1", "P-2"]
    assert after["outcomes"][0]["selected"] == before["outcomes"][0]["selected"]


def older_layout(settings: PortfolioSettings) -> None:
    """Rewrite prioritization's stored view as the code before the project profile wrote it."""
    engine = create_engine(settings.database_url_for("prioritization"))
    old = Table(
        "prioritization_view",
        MetaData(),
        Column("kind", String(16), primary_key=True),
        Column("key", String(64), primary_key=True),
        Column("data", JSON, nullable=False),
    )
    kept = ("project_id", "name", "status", "costs", "capex", "opex", "scoring")
    with engine.begin() as conn:
        rows = [dict(row._mapping) for row in conn.execute(select(old))]
        old.drop(conn)
        old.create(conn)
        for row in rows:
            if row["kind"] == "candidate":
                row["data"] = {k: v for k, v in row["data"].items() if k in kept}
        conn.execute(insert(old), rows)
    engine.dispose()


# --- selection on the ledger's capacity ---------------------------------------------------

MARCH = "developer/2027-03"


async def value_only(nc: Client) -> None:
    """Score on business value alone; FLOOR (value 1) scores 0 and anchors the scale."""
    model = {"method": "weighted", "weights": {"value": 1}, "rationale": "value first"}
    assert isinstance(await send(nc, "ConfigureScoringModel", model), CommandAccepted)
    floor = proposal("FLOOR", scoring={"business_value": 1})
    assert isinstance(await send(nc, "ProposeProject", floor), CommandAccepted)


async def ledger_team(nc: Client) -> None:
    """Developers in March 2027: 10 FTE with 2 off; RUN (in progress) holds 4; A (value 8)
    and B (value 5) need 3 each: only one of them fits in the 4 left."""
    await value_only(nc)
    for pid, value in (("RUN", 3), ("A", 8), ("B", 5)):
        body = proposal(pid, scoring={"business_value": value})
        assert isinstance(await send(nc, "ProposeProject", body), CommandAccepted)
    for command, extra in (
        ("SubmitProjectForReview", {}),
        ("ApproveProject", {"rationale": "keep the lights on"}),
        ("StartProject", {"started_on": "2027-01-04"}),
    ):
        assert isinstance(await send(nc, command, {"project_id": "RUN", **extra}), CommandAccepted)
    capacity = {"role": "developer", "period": "2027-03", "amount": "10", "unit": "fte"}
    capacity["time_off"] = "2"
    assert isinstance(await send(nc, "SetCapacity", capacity), CommandAccepted)
    for pid, amount in (("RUN", "4"), ("A", "3"), ("B", "3")):
        demand = {"role": "developer", "project_id": pid, "period": "2027-03", "amount": amount}
        assert isinstance(await send(nc, "AssignDemand", demand), CommandAccepted)


async def ledger_selection(nc: Client) -> dict[str, Any]:
    answered = await ask(nc, "scenario", {"scenarios": [{"name": "ledger"}]})
    assert "outcomes" in answered, answered
    outcome: dict[str, Any] = answered["outcomes"][0]
    return outcome


def same_selection(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def drop(o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if k != "computed_at_position"}

    return drop(a) == drop(b)


def left_out(outcome: dict[str, Any]) -> dict[str, str]:
    return {m["project_id"]: m["reason"] for m in outcome["not_selected"]}


async def test_selection_reads_the_ledgers_capacity_net_of_running_projects(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    """From ledger commands and proposals alone (no capacity typed in the scenario), B is
    left out for `capacity developer/2027-03`; the answer survives a restart and a database
    without the capacity table (rebuilt from the log); freeing RUN's demand lets B in."""
    async with running(nc, "intake", nats_url, tmp_path):
        await ledger_team(nc)
        last = (await nc.jetstream().stream_info(LOG_STREAM)).state.last_seq
        async with running(nc, "prioritization", nats_url, tmp_path, **FAST):
            await caught_up(nc, "prioritization", last)
            outcome = await ledger_selection(nc)
            assert outcome["selected"] == ["A"]
            assert left_out(outcome)["B"] == f"capacity {MARCH}"
            assert outcome["capacity"] == {MARCH: 4.0}
            assert outcome["capacity_use"] == {MARCH: 3.0}
            assert outcome["ledger_capacity"] is True and outcome["note"] is None
            assert "RUN" not in outcome["candidates"]

            # Overrides: a cell of capacity, or a candidate's demand; or no ledger at all.
            overrides = [
                {"name": "more people", "capacity": {MARCH: 6}},
                {"name": "B lighter", "demand": {"B": {MARCH: 1}}},
                {"name": "typed only", "ledger": False},
            ]
            answered = await ask(nc, "scenario", {"scenarios": overrides})
            assert [o["selected"] for o in answered["outcomes"]] == [["A", "B"]] * 3
            bad_cell = await ask(nc, "scenario", {"scenarios": [{"capacity": {"dev/27-3": 1}}]})
            assert bad_cell["error"] == "invalid ScenarioQuery query"

            frontier = await ask(nc, "frontier", {"budget_from": "0", "budget_to": "1000000"})
            assert frontier["points"][-1]["selected"] == ["A"]
            assert frontier["capacity"] == {MARCH: 4.0}
            unbound = {"budget_from": "0", "budget_to": "1000000", "ledger": False}
            frontier = await ask(nc, "frontier", unbound)
            assert frontier["points"][-1]["selected"] == ["A", "B"]

        # Restarted: loaded from its tables. (The log may have moved on by a ranking the
        # service appended meanwhile: the position is left out of the comparison.)
        async with running(nc, "prioritization", nats_url, tmp_path, **FAST):
            assert same_selection(await ledger_selection(nc), outcome)
        # A database from before the capacity table: rebuilt from the log at start.
        without_capacity_table(SETTINGS_CLASS["prioritization"](data_dir=tmp_path))
        async with running(nc, "prioritization", nats_url, tmp_path, **FAST):
            await caught_up(nc, "prioritization", last)
            assert same_selection(await ledger_selection(nc), outcome)

            # RUN's demand released in the ledger: B fits now.
            freed = {"role": "developer", "project_id": "RUN", "period": "2027-03", "amount": "0"}
            assert isinstance(await send(nc, "AssignDemand", freed), CommandAccepted)
            last = (await nc.jetstream().stream_info(LOG_STREAM)).state.last_seq
            await caught_up(nc, "prioritization", last)
            after = await ledger_selection(nc)
            assert after["selected"] == ["A", "B"] and after["capacity"] == {MARCH: 8.0}

            # Committed, the decision carries the capacity it was computed on.
            commit = {"scenario": {"name": "ledger"}, "rationale": "staffed round"}
            committed = await ask(nc, "commit", commit, True)
            decided = await event_log.get(committed["appended"]["position"])
            assert decided.envelope.payload["outcome"]["capacity"] == {MARCH: 8.0}


def without_capacity_table(settings: PortfolioSettings) -> None:
    """Drop the capacity table, as a database written before it existed."""
    engine = create_engine(settings.database_url_for("prioritization"))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE prioritization_capacity")
    engine.dispose()


async def test_at_the_time_limit_the_answer_says_so(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    """PORTFOLIO_SELECTION_TIME_LIMIT_SECONDS bounds the solver: with next to no time, the
    answer is the best selection found, its status, the proven gap and a note."""
    async with running(nc, "intake", nats_url, tmp_path):
        await value_only(nc)
        capacity = {"role": "developer", "period": "2027-03", "amount": "10.5", "unit": "fte"}
        for pid, value in (("A", 20), ("B", 13), ("C", 8)):
            body = proposal(pid, scoring={"business_value": value})
            assert isinstance(await send(nc, "ProposeProject", body), CommandAccepted)
        assert isinstance(await send(nc, "SetCapacity", capacity), CommandAccepted)
        for pid, amount in (("A", "6"), ("B", "5"), ("C", "5")):
            demand = {"role": "developer", "project_id": pid, "period": "2027-03", "amount": amount}
            assert isinstance(await send(nc, "AssignDemand", demand), CommandAccepted)
        last = (await nc.jetstream().stream_info(LOG_STREAM)).state.last_seq
        limited = FAST | {"selection_time_limit_seconds": 1e-6}
        async with running(nc, "prioritization", nats_url, tmp_path, **limited):
            await caught_up(nc, "prioritization", last)
            outcome = await ledger_selection(nc)
    assert outcome["solver_status"] == "time_limit"
    assert outcome["mip_gap"] > 0 and outcome["time_limit_seconds"] == 1e-6
    assert "time limit" in outcome["note"] and f"{outcome['mip_gap'] * 100:.2f}%" in outcome["note"]
