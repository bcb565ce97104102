"""Prioritization: `ranking` (projects by score), `scenario` (what-if selections side by
side, committed as the decision with --commit) and `frontier` (value by budget)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from contracts import prioritization as pr
from shared.client import PortfolioClient
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
        bool, typer.Option(help="Commit the (first) scenario as the decision")
    ] = False,
    rationale: Annotated[str | None, typer.Option(help="Why, when committing")] = None,
    actor: ActorOption = None,
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """What-if: the optimal selection for each scenario, side by side. Nothing is recorded
    unless --commit."""
    try:
        loaded = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        fail(EXIT_USAGE, f"[red]cannot read {escape(str(file))}[/]: {escape(str(error))}")
    scenarios = loaded if isinstance(loaded, list) else [loaded]
    if commit:
        if not rationale:
            fail(EXIT_USAGE, "[red]--commit needs --rationale[/]")
        who = identity(actor, None, CliSettings())
        body = {
            "scenario": scenarios[0],
            "rationale": rationale,
            "actor": who.actor,
            "source": SOURCE,
        }
        answer = _ask("commit", body, url, control=True)
        outcomes = [answer["outcome"]]
        console.print(f"[bold green]committed[/] at log position {answer['appended']['position']}")
    else:
        answer = _ask("scenario", {"scenarios": scenarios}, url)
        outcomes = answer["outcomes"]
    if as_json:
        print(json.dumps(outcomes, indent=2))
        return
    _compare(outcomes)


def _compare(outcomes: list[dict[str, Any]]) -> None:
    table = Table("", *(o["scenario"]["name"] for o in outcomes))
    first = set(outcomes[0]["selected"])
    table.add_row("selected", *(str(len(o["selected"])) for o in outcomes))
    table.add_row("total value", *(f"{o['total_value']:.3f}" for o in outcomes))
    buckets = sorted({b for o in outcomes for b in o["cost_by_bucket"]})
    for bucket in buckets:
        table.add_row(f"cost {bucket}", *(o["cost_by_bucket"].get(bucket, "") for o in outcomes))
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
        print(json.dumps(answer, indent=2))
        return
    points = answer["points"]
    best = max((p["value"] or 0 for p in points), default=0) or 1
    table = Table("budget", "value", "", "spent", "projects")
    for point in points:
        if point["status"] == "infeasible":
            problem = escape(point["problem"] or "")
            table.add_row(point["budget"], "—", "[red]infeasible[/]", "", problem)
            continue
        bar = "█" * round(30 * point["value"] / best)
        table.add_row(
            point["budget"],
            f"{point['value']:.3f}",
            f"[cyan]{bar}[/]",
            point["cost"],
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
