"""Prioritization: `ranking` (projects by score), `scenario` (what-if selections side by
side, committed as the decision with --commit) and `frontier` (value by budget)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from contracts import prioritization as pr
from contracts.queries import PAGE_SIZE, AuditQuery
from shared import formatting
from shared.client import PortfolioClient
from shared.commands import EVENT_ID_NAMESPACE
from shared.settings import CliSettings

from .connection import SOURCE, identity, run
from .output import EXIT_USAGE, ActorOption, JsonFlag, UrlOption, console, fail, refused


def _ask(name: str, body: dict[str, Any], url: str | None, control: bool = False) -> Any:
    """A prioritization query (or control); its refusal is printed and exits 1."""

    async def work(client: PortfolioClient) -> Any:
        if control:
            return await client.control("prioritization", name, body, timeout=60)
        return await client.query("prioritization", name, body, timeout=60)

    answer = run(work, url)
    refused(answer)
    return answer


def ranking(
    model: Annotated[str, typer.Option(help="Scoring model id")] = "default",
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """Projects by score, with the breakdown per criterion and the change since last time."""
    answer = _ask("ranking", {"model_id": model}, url)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    decided = pr.RankingAnswer.model_validate(answer)
    result = decided.ranking
    criteria = sorted({c for r in result.ranking for c in r.breakdown})
    table = Table("rank", "Δ", "project", "name", "score", *criteria)
    for entry in result.ranking:
        if entry.previous_rank is None:
            change = "new"
        else:
            moved = entry.previous_rank - entry.rank
            change = f"[green]+{moved}[/]" if moved > 0 else f"[red]{moved}[/]" if moved else "="
        parts = [
            "—" if entry.breakdown.get(c) is None else f"{entry.breakdown[c]:.3f}" for c in criteria
        ]
        name = decided.names.get(entry.project_id, "")
        table.add_row(
            str(entry.rank),
            change,
            escape(entry.project_id),
            escape(name),
            f"{entry.score:.3f}",
            *parts,
        )
    console.print(table)
    console.print(
        f"model {escape(result.model_id)} v{result.model_version} ({result.method}), "
        f"computed at log position {result.computed_at_position}"
    )
    for missing in result.unscorable:
        console.print(
            f"[yellow]not scorable[/] {escape(missing.project_id)}: "
            f"missing {escape(', '.join(missing.missing))}"
        )


def scenario(
    file: Annotated[Path, typer.Argument(help="JSON: one scenario or a list of them")],
    commit: Annotated[
        bool, typer.Option(help="Commit one scenario as the decision (see --scenario)")
    ] = False,
    name: Annotated[
        str | None,
        typer.Option(
            "--scenario", help="The scenario to commit, by name (needed when the file has several)"
        ),
    ] = None,
    rationale: Annotated[str | None, typer.Option(help="Why, when committing")] = None,
    actor: ActorOption = None,
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """What-if: the optimal selection for each scenario, side by side. Nothing is recorded
    unless --commit; committing the same scenario with the same rationale again records
    nothing more."""
    try:
        loaded = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        fail(EXIT_USAGE, f"[red]cannot read {escape(str(file))}[/]: {escape(str(error))}")
    scenarios = loaded if isinstance(loaded, list) else [loaded]
    if not scenarios or not all(isinstance(x, dict) for x in scenarios):
        fail(EXIT_USAGE, f"[red]{escape(str(file))}: a scenario object or a list of them[/]")
    if name is not None and not commit:
        fail(EXIT_USAGE, "[red]--scenario names the scenario to commit: add --commit[/]")
    if commit:
        chosen = _chosen(scenarios, name)
        if not rationale:
            fail(EXIT_USAGE, "[red]--commit needs --rationale[/]")
        who = identity(actor, None, CliSettings())
        command_id = commit_id(chosen, rationale)
        body = {
            "command_id": command_id,
            "scenario": chosen,
            "rationale": rationale,
            "actor": who.actor,
            "source": SOURCE,
        }
        label = escape(str(chosen.get("name", "baseline")))
        earlier = _committed_before(command_id, url)
        if earlier is not None:
            console.print(
                f"[yellow]already committed[/] scenario {label} with this rationale, at log "
                f"position {earlier}: nothing appended"
            )
            answer = _ask("scenario", {"scenarios": [chosen]}, url)
            outcomes = answer["outcomes"]
        else:
            answer = _ask("commit", body, url, control=True)
            outcomes = [answer["outcome"]]
            console.print(
                f"[bold green]committed[/] scenario {label} at log position "
                f"{answer['appended']['position']}"
            )
    else:
        answer = _ask("scenario", {"scenarios": scenarios}, url)
        outcomes = answer["outcomes"]
    if as_json:
        print(json.dumps(formatting.tidy_json(outcomes), indent=2))
        return
    _compare(outcomes)


def _chosen(scenarios: list[dict[str, Any]], name: str | None) -> dict[str, Any]:
    """The scenario to commit: the one named, or the only one; a usage error otherwise."""
    names = [str(x.get("name", "baseline")) for x in scenarios]
    if name is None:
        if len(scenarios) > 1:
            fail(
                EXIT_USAGE,
                f"[red]the file has {len(scenarios)} scenarios: name one with --scenario[/] "
                f"({escape(', '.join(names))})",
            )
        return scenarios[0]
    found = [x for x, n in zip(scenarios, names, strict=True) if n == name]
    if len(found) != 1:
        why = "no scenario" if not found else f"{len(found)} scenarios"
        fail(
            EXIT_USAGE,
            f"[red]{why} named {escape(repr(name))}[/]; the file has {escape(', '.join(names))}",
        )
    return found[0]


def commit_id(chosen: dict[str, Any], rationale: str) -> str:
    """The commit's command id, from what is committed (the scenario and the rationale):
    a repeat is the same command, recorded once."""
    canonical = json.dumps({"scenario": chosen, "rationale": rationale}, sort_keys=True)
    return "scenario-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def _committed_before(command_id: str, url: str | None) -> int | None:
    """The log position of the decision this commit already made, if any (its event id
    derives from the command id: `shared.decisions`)."""
    event_id = str(uuid.uuid5(EVENT_ID_NAMESPACE, f"SelectionDecided/commit/{command_id}"))

    async def work(client: PortfolioClient) -> int | None:
        entries = await client.audit_entries(
            AuditQuery(event_type="SelectionDecided", limit=PAGE_SIZE), limit=100_000
        )
        return next((e.position for e in entries if e.event_id == event_id), None)

    found: int | None = run(work, url)
    return found


def _compare(outcomes: list[dict[str, Any]]) -> None:
    table = Table("", *(o["scenario"]["name"] for o in outcomes))
    first = set(outcomes[0]["selected"])
    table.add_row("selected", *(str(len(o["selected"])) for o in outcomes))
    table.add_row("total value", *(f"{o['total_value']:.3f}" for o in outcomes))
    buckets = sorted({b for o in outcomes for b in o["cost_by_bucket"]})
    for bucket in buckets:
        table.add_row(
            f"cost {bucket}",
            *(formatting.money_text(o["cost_by_bucket"].get(bucket)) for o in outcomes),
        )
    cells = sorted({c for o in outcomes for c in o["capacity_use"]})
    for cell in cells:
        table.add_row(f"use {cell}", *(_use(o, cell) for o in outcomes))
    table.add_row("solver", *(_solver(o) for o in outcomes))
    table.add_row(
        "vs first",
        *(
            " ".join(
                [f"+{p}" for p in sorted(set(o["selected"]) - first)]
                + [f"-{p}" for p in sorted(first - set(o["selected"]))]
            )
            or "="
            for o in outcomes
        ),
    )
    console.print(table)
    for outcome in outcomes:
        if outcome.get("note"):
            label = escape(outcome["scenario"]["name"])
            console.print(f"[yellow]{label}[/]: {escape(outcome['note'])}")
    for outcome in outcomes:
        if not outcome["not_selected"]:
            continue
        missed = Table("not selected", "why", title=outcome["scenario"]["name"])
        for miss in outcome["not_selected"]:
            missed.add_row(miss["project_id"], miss["reason"])
        console.print(missed)


def _use(outcome: dict[str, Any], cell: str) -> str:
    """Capacity used of what was available to the candidates (the ledger's, net)."""
    used = outcome["capacity_use"].get(cell, 0)
    available = outcome.get("capacity", {}).get(cell)
    return f"{used:g}" if available is None else f"{used:g} of {available:g}"


def _solver(outcome: dict[str, Any]) -> str:
    if outcome["solver_status"] == "optimal":
        return "optimal"
    return f"[yellow]{outcome['solver_status']}, gap {outcome.get('mip_gap', 0) * 100:.2f}%[/]"


def frontier(
    budget_from: Annotated[float, typer.Option("--from", help="Lowest budget")] = 0,
    budget_to: Annotated[float, typer.Option("--to", help="Highest budget")] = 10_000_000,
    steps: Annotated[int, typer.Option(min=2, max=100)] = 20,
    model: Annotated[str, typer.Option(help="Scoring model id")] = "default",
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """The best value reachable at each budget level, as a table and a bar chart."""
    query = {
        "model_id": model,
        "budget_from": str(budget_from),
        "budget_to": str(budget_to),
        "steps": steps,
    }
    answer = _ask("frontier", query, url)
    if as_json:
        print(json.dumps(formatting.tidy_json(answer), indent=2))
        return
    points = answer["points"]
    best = max((p["value"] or 0 for p in points), default=0) or 1
    table = Table("budget", "value", "", "spent", "projects")
    for column in (0, 1, 3, 4):
        table.columns[column].justify = "right"
    for point in points:
        if point["status"] == "infeasible":
            problem = escape(point["problem"] or "")
            budget = formatting.money_text(point["budget"])
            table.add_row(budget, formatting.NA, "[red]infeasible[/]", "", problem)
            continue
        bar = "█" * round(30 * point["value"] / best)
        table.add_row(
            formatting.money_text(point["budget"]),
            formatting.ratio_text(point["value"]),
            f"[cyan]{bar}[/]",
            formatting.money_text(point["cost"]),
            str(len(point["selected"])),
        )
    console.print(table)
    stopped = [p for p in points if p.get("note")]
    if stopped:
        console.print(
            f"[yellow]{len(stopped)} level(s) stopped at the time limit[/]: "
            f"{escape(stopped[0]['note'])}"
        )
    if answer.get("capacity"):
        console.print(f"within the ledger's capacity ({len(answer['capacity'])} role-months)")
