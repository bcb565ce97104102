"""The `portfolio` command line. Exit codes: 0 ok, 1 rejected or conflict, 2 usage,
3 the backend cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import nats
import nats.errors
import typer
from nats.aio.client import Client
from nats.js.api import DeliverPolicy
from pydantic import TypeAdapter
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contracts import prioritization as pr
from contracts.base import CommandAccepted, CommandRejected, CommandReply, Rejection
from contracts.queries import AuditAnswer, AuditEntry, AuditQuery, ReplayStarted, ServiceStatus
from contracts.subjects import SERVICES
from services import importer
from shared.rejections import read_rejections
from shared.settings import PortfolioSettings, SupervisorSettings

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

app = typer.Typer(
    name="portfolio",
    help="Event-sourced IT portfolio backend.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)
T = TypeVar("T")
REPLY = TypeAdapter[CommandAccepted | CommandRejected](CommandReply)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _connect_and(work: Callable[[Client, PortfolioSettings], Awaitable[T]]) -> T:
    settings = PortfolioSettings()
    url = settings.resolved_nats_url()
    servers = settings.nats_servers()

    async def run() -> T:
        try:
            # nats-py retries forever with 0 attempts; 1 attempt and a short wait fail fast.
            nc = await asyncio.wait_for(
                nats.connect(
                    servers,
                    connect_timeout=3,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.1,
                    allow_reconnect=False,
                    error_cb=_quiet,
                    **settings.nats_options(),
                ),
                timeout=10,
            )
        except Exception as error:
            errors.print(
                f"[red]cannot reach NATS at {url}[/] ({error}); is `portfolio up` running?"
            )
            raise typer.Exit(EXIT_UNREACHABLE) from error
        try:
            return await work(nc, settings)
        finally:
            await nc.close()

    return asyncio.run(run())


async def _quiet(_: Exception) -> None:
    """nats-py prints every connection error by default; the CLI reports its own."""


async def _request(nc: Client, subject: str, data: bytes, timeout: float) -> bytes:
    try:
        msg = await nc.request(subject, data, timeout=timeout)
    except nats.errors.NoRespondersError as error:
        errors.print(f"[red]nobody answers on {subject}[/]: is the service running?")
        raise typer.Exit(EXIT_UNREACHABLE) from error
    except TimeoutError as error:
        errors.print(f"[red]no answer on {subject} within {timeout}s[/]")
        raise typer.Exit(EXIT_UNREACHABLE) from error
    return bytes(msg.data)


@app.command()
def up() -> None:
    """Run the whole backend: embedded NATS and SQLite under the data folder, unless
    PORTFOLIO_NATS_URL / PORTFOLIO_DATABASE_URL point elsewhere."""
    from services.supervisor import Supervisor

    raise typer.Exit(asyncio.run(Supervisor(SupervisorSettings(), console).run()))


@app.command()
def serve(service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")]) -> None:
    """Run one service alone (what a container runs)."""
    if service not in SERVICES:
        errors.print(f"[red]unknown service {service!r}[/]; one of {', '.join(SERVICES)}")
        raise typer.Exit(EXIT_USAGE)
    module = importlib.import_module(f"services.{service}.app")
    asyncio.run(module.create_app().run())


@app.command()
def send(
    command: Annotated[str, typer.Argument(help="Command name, e.g. ProposeProject")],
    data: Annotated[str | None, typer.Option(help="The command as JSON")] = None,
    file: Annotated[Path | None, typer.Option(help="Read the command's JSON from a file")] = None,
    as_json: JsonFlag = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer")] = 10.0,
) -> None:
    """Submit one command to intake and print its answer."""
    if (data is None) == (file is None):
        errors.print("[red]give exactly one of --data or --file[/]")
        raise typer.Exit(EXIT_USAGE)
    if file is not None:
        try:
            body = file.read_bytes()
        except OSError as error:
            errors.print(f"[red]cannot read {file}[/]: {error}")
            raise typer.Exit(EXIT_USAGE) from error
    else:
        body = (data or "").encode()

    async def work(nc: Client, settings: PortfolioSettings) -> bytes:
        return await _request(nc, settings.subjects.command(command), body, timeout)

    raw = _connect_and(work)
    reply = REPLY.validate_json(raw)
    if as_json:
        console.print_json(raw.decode())
    else:
        _print_reply(reply)
    raise typer.Exit(EXIT_OK if isinstance(reply, CommandAccepted) else EXIT_REJECTED)


def _print_reply(reply: CommandAccepted | CommandRejected) -> None:
    if isinstance(reply, CommandRejected):
        console.print(f"[bold red]rejected[/] ({reply.error.code}): {reply.error.message}")
        for detail in reply.error.details:
            console.print(f"  - {detail.field}: {detail.message} (got {detail.input!r})")
        return
    note = " [yellow](duplicate: the original answer)[/]" if reply.duplicate else ""
    console.print(f"[bold green]accepted[/] command {reply.command_id}{note}")
    table = Table("position", "event", "aggregate", "version")
    for event in reply.events:
        table.add_row(
            str(event.position),
            event.event_type,
            f"{event.aggregate_type}/{event.aggregate_id}",
            str(event.version),
        )
    console.print(table)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A .csv (header row) or .jsonl/.ndjson file")],
    command: Annotated[
        str | None, typer.Option(help="The command of rows that name none, e.g. ProposeProject")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Requests in flight")] = 64,
    as_json: JsonFlag = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer")] = 30.0,
) -> None:
    """Submit many commands from a file; re-importing the same file appends nothing.

    One aggregate's rows are decided in file order; a summary lists every rejected row."""
    try:
        loaded = importer.read_file(file, command)
    except importer.ImportFileError as error:
        errors.print(f"[red]{error}[/]")
        raise typer.Exit(EXIT_USAGE) from error

    async def work(nc: Client, settings: PortfolioSettings) -> importer.Summary:
        async def send(name: str, body: bytes) -> bytes:
            return await _request(nc, settings.subjects.command(name), body, timeout)

        with importer.progress(errors, loaded) as advance:
            outcomes, seconds = await importer.submit(loaded.rows, send, concurrency, advance)
        return importer.Summary(loaded, outcomes, seconds)

    summary = _connect_and(work)
    if as_json:
        print(json.dumps(summary.as_json(), indent=2))
    else:
        importer.print_summary(console, summary)
    raise typer.Exit(EXIT_REJECTED if summary.rejected else EXIT_OK)


@app.command()
def audit(
    project: Annotated[
        str | None,
        typer.Option(
            help="Everything about this project: its lifecycle, budget, costs, risks, progress"
        ),
    ] = None,
    aggregate_type: Annotated[str | None, typer.Option(help="e.g. project")] = None,
    aggregate_id: Annotated[str | None, typer.Option()] = None,
    actor: Annotated[str | None, typer.Option()] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="e.g. ProjectApproved")] = None,
    correlation: Annotated[str | None, typer.Option(help="One correlation id's chain")] = None,
    since: Annotated[datetime | None, typer.Option(help="Recorded at or after (ISO time)")] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            "--until", "--as-of", help="Recorded at or before: the trail as it stood then"
        ),
    ] = None,
    occurred_as_of: Annotated[
        datetime | None, typer.Option(help="Business time at or before (late facts included)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    rejections: Annotated[bool, typer.Option(help="Show refused inputs instead")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The decision history: who did what, when, why, and what it caused."""
    if rejections:
        _print_rejections(as_json, limit)
        return
    try:
        query = AuditQuery(
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            project_id=project,
            actor=actor,
            event_type=event_type,
            correlation_id=correlation,
            since=_aware(since),
            until=_aware(until),
            occurred_until=_aware(occurred_as_of),
        )
    except ValueError as error:
        errors.print(f"[red]{error}[/]")
        raise typer.Exit(EXIT_USAGE) from error

    async def work(nc: Client, settings: PortfolioSettings) -> list[AuditEntry]:
        subject = settings.subjects.query("reporting", "audit")
        entries: list[AuditEntry] = []
        page = query
        while len(entries) < limit:
            raw = await _request(nc, subject, page.model_dump_json().encode(), 30)
            answer = AuditAnswer.model_validate_json(raw)
            entries.extend(answer.entries)
            if answer.next_after_position is None:
                break
            page = page.model_copy(update={"after_position": answer.next_after_position})
        return entries[:limit]

    entries = _connect_and(work)
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    table = Table("pos", "recorded (UTC)", "actor", "event", "aggregate", "why")
    for entry in entries:
        table.add_row(
            str(entry.position),
            entry.recorded_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{entry.actor} via {entry.source}",
            entry.event_type,
            f"{entry.aggregate_type}/{entry.aggregate_id}",
            _why(entry),
        )
    console.print(table)
    console.print(f"{len(entries)} entries")


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone()


def _why(entry: AuditEntry) -> str:
    for key in ("rationale", "reason"):
        value = entry.payload.get(key)
        if value:
            return str(value)
    return ""


def _print_rejections(as_json: bool, limit: int) -> None:
    async def work(nc: Client, settings: PortfolioSettings) -> list[Rejection]:
        return [r async for r in read_rejections(nc.jetstream(), settings.subjects, limit)]

    found = _connect_and(work)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        return
    table = Table("received (UTC)", "command", "code", "reason", "input")
    for r in found:
        table.add_row(
            r.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.subject.rsplit(".", 1)[-1],
            r.error.code,
            r.error.message,
            r.raw[:40] + ("…" if len(r.raw) > 40 else ""),
        )
    console.print(table)
    console.print(f"{len(found)} rejections")


async def _statuses(nc: Client, settings: PortfolioSettings) -> dict[str, ServiceStatus | None]:
    async def one(name: str) -> ServiceStatus | None:
        try:
            msg = await nc.request(settings.subjects.query(name, "status"), b"", timeout=3)
        except (nats.errors.NoRespondersError, TimeoutError):
            return None
        return ServiceStatus.model_validate_json(msg.data)

    found = await asyncio.gather(*(one(name) for name in SERVICES))
    return dict(zip(SERVICES, found, strict=True))


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Health, projection position and lag of every service."""
    statuses = _connect_and(_statuses)
    if as_json:
        print(
            json.dumps(
                {n: (s.model_dump(mode="json") if s else None) for n, s in statuses.items()},
                indent=2,
            )
        )
    else:
        table = Table("service", "state", "position", "log", "lag", "applied", "skipped", "pid")
        for name, s in statuses.items():
            if s is None:
                table.add_row(name, "[red]down[/]", "", "", "", "", "", "")
                continue
            state = s.state if s.last_error is None else f"{s.state}: {s.last_error}"
            table.add_row(
                name,
                state,
                str(s.position),
                str(s.log_position),
                str(s.lag),
                str(s.applied_since_start),
                str(s.skipped_events),
                str(s.pid),
            )
        console.print(table)
    raise typer.Exit(EXIT_OK if all(statuses.values()) else EXIT_REJECTED)


@app.command()
def replay(service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")]) -> None:
    """Rebuild a service's projection from the whole log, with a progress bar."""
    if service not in SERVICES:
        errors.print(f"[red]unknown service {service!r}[/]; one of {', '.join(SERVICES)}")
        raise typer.Exit(EXIT_USAGE)

    async def work(nc: Client, settings: PortfolioSettings) -> None:
        raw = await _request(nc, settings.subjects.control(service, "replay"), b"", 30)
        started = ReplayStarted.model_validate_json(raw)
        with Progress(
            TextColumn(f"replaying {service}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("replay", total=started.target_position)
            while True:
                now = (await _statuses(nc, settings))[service]
                if now is not None:
                    progress.update(task, completed=min(now.position, started.target_position))
                    if now.position >= started.target_position and now.state == "running":
                        break
                await asyncio.sleep(0.2)
        console.print(f"{service} rebuilt up to position {started.target_position}")

    _connect_and(work)


def _ask_prioritization(name: str, body: bytes, control: bool = False) -> dict[str, Any]:
    """A prioritization query; its refusal (an `error` field) is printed and exits 1."""

    async def work(nc: Client, settings: PortfolioSettings) -> bytes:
        subjects = settings.subjects
        subject = (
            subjects.control("prioritization", name)
            if control
            else subjects.query("prioritization", name)
        )
        return await _request(nc, subject, body, 60)

    answer: dict[str, Any] = json.loads(_connect_and(work))
    if "error" in answer:
        errors.print(f"[red]{answer['error']}[/]")
        for detail in answer.get("details", ()):
            errors.print(f"  - {detail}")
        raise typer.Exit(EXIT_REJECTED)
    return answer


@app.command()
def ranking(
    model: Annotated[str, typer.Option(help="Scoring model id")] = "default",
    as_json: JsonFlag = False,
) -> None:
    """Projects by score, with the breakdown per criterion and the change since last time."""
    answer = _ask_prioritization("ranking", json.dumps({"model_id": model}).encode())
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
        table.add_row(str(entry.rank), change, entry.project_id, name, f"{entry.score:.3f}", *parts)
    console.print(table)
    console.print(
        f"model {result.model_id} v{result.model_version} ({result.method}), "
        f"computed at log position {result.computed_at_position}"
    )
    for missing in result.unscorable:
        console.print(
            f"[yellow]not scorable[/] {missing.project_id}: missing {', '.join(missing.missing)}"
        )


@app.command()
def scenario(
    file: Annotated[Path, typer.Argument(help="JSON: one scenario or a list of them")],
    commit: Annotated[
        bool, typer.Option(help="Commit the (first) scenario as the decision")
    ] = False,
    rationale: Annotated[str | None, typer.Option(help="Why, when committing")] = None,
    actor: Annotated[str, typer.Option()] = "anonymous",
    as_json: JsonFlag = False,
) -> None:
    """What-if: the optimal selection for each scenario, side by side. Nothing is recorded
    unless --commit."""
    try:
        loaded = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        errors.print(f"[red]cannot read {file}[/]: {error}")
        raise typer.Exit(EXIT_USAGE) from error
    scenarios = loaded if isinstance(loaded, list) else [loaded]
    if commit:
        if not rationale:
            errors.print("[red]--commit needs --rationale[/]")
            raise typer.Exit(EXIT_USAGE)
        body = {"scenario": scenarios[0], "rationale": rationale, "actor": actor, "source": "cli"}
        answer = _ask_prioritization("commit", json.dumps(body).encode(), control=True)
        outcomes = [answer["outcome"]]
        console.print(f"[bold green]committed[/] at log position {answer['appended']['position']}")
    else:
        answer = _ask_prioritization("scenario", json.dumps({"scenarios": scenarios}).encode())
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
        table.add_row(f"use {cell}", *(f"{o['capacity_use'].get(cell, 0):g}" for o in outcomes))
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
        if not outcome["not_selected"]:
            continue
        missed = Table("not selected", "why", title=outcome["scenario"]["name"])
        for miss in outcome["not_selected"]:
            missed.add_row(miss["project_id"], miss["reason"])
        console.print(missed)


@app.command()
def frontier(
    budget_from: Annotated[float, typer.Option("--from", help="Lowest budget")] = 0,
    budget_to: Annotated[float, typer.Option("--to", help="Highest budget")] = 10_000_000,
    steps: Annotated[int, typer.Option(min=2, max=100)] = 20,
    model: Annotated[str, typer.Option(help="Scoring model id")] = "default",
    as_json: JsonFlag = False,
) -> None:
    """The best value reachable at each budget level, as a table and a bar chart."""
    query = {
        "model_id": model,
        "budget_from": str(budget_from),
        "budget_to": str(budget_to),
        "steps": steps,
    }
    answer = _ask_prioritization("frontier", json.dumps(query).encode())
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    points = answer["points"]
    best = max((p["value"] or 0 for p in points), default=0) or 1
    table = Table("budget", "value", "", "spent", "projects")
    for point in points:
        if point["status"] == "infeasible":
            table.add_row(point["budget"], "—", "[red]infeasible[/]", "", point["problem"] or "")
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


def _ask(service: str, name: str, body: dict[str, Any] | None = None) -> Any:
    """A read-side query; a refusal (an `error` field) is printed and exits 1."""

    async def work(nc: Client, settings: PortfolioSettings) -> bytes:
        data = json.dumps(body or {}).encode()
        return await _request(nc, settings.subjects.query(service, name), data, 60)

    answer = json.loads(_connect_and(work))
    if isinstance(answer, dict) and "error" in answer:
        errors.print(f"[red]{answer['error']}[/]")
        raise typer.Exit(EXIT_REJECTED)
    return answer


@app.command()
def alerts(
    follow: Annotated[bool, typer.Option(help="Keep printing alerts as they arrive")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Open alerts; with --follow, every alert raised or cleared from now on."""
    if follow:
        _follow_alerts(as_json)
        return
    found = _ask("risk", "alerts")["open"]
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("severity", "metric", "subject", "value", "threshold", "rule", "why / audit")
    for alert in found:
        table.add_row(
            _severity(alert["severity"]),
            alert["metric"],
            alert["subject_id"],
            f"{alert['value']:g}",
            f"{alert['threshold']:g}",
            alert["rule_id"],
            f"{alert['message']}\n[dim]{alert['audit_link']}[/]",
        )
    console.print(table)
    console.print(f"{len(found)} open alerts")


def _severity(severity: str) -> str:
    colour = {"critical": "bold red", "warning": "yellow"}.get(severity, "cyan")
    return f"[{colour}]{severity}[/]"


def _follow_alerts(as_json: bool) -> None:
    async def work(nc: Client, settings: PortfolioSettings) -> None:
        js = nc.jetstream()
        sub = await js.subscribe(
            settings.subjects.alerts_all, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        errors.print("following alerts (Ctrl-C to stop)")
        async for msg in sub.messages:
            alert = json.loads(msg.data)
            if as_json:
                print(json.dumps(alert), flush=True)
                continue
            verb = "[red]RAISED[/]" if alert["event"] == "AlertRaised" else "[green]cleared[/]"
            console.print(
                f"{alert['message'] or alert['alert_id']}  {verb} {_severity(alert['severity'])}"
                f"  [dim]{alert['audit_link']}[/]"
            )

    with contextlib.suppress(KeyboardInterrupt):
        _connect_and(work)


@app.command()
def budget(
    by: Annotated[
        str, typer.Option(help="pool, project, pool_project, category, fiscal_period")
    ] = "pool",
    as_json: JsonFlag = False,
) -> None:
    """Allocated, committed, actual, remaining, forecast and burn rate from the ledger."""
    rows = _ask("ledger", "budget", {"by": by})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(
        by, "amount", "allocated", "committed", "actual", "remaining", "forecast", "burn/month", ""
    )
    for key, row in rows.items():
        amount = row["amount"]
        used = float(row["actual"]) / float(amount) if amount and float(amount) else 0.0
        bar = "█" * min(20, round(20 * used))
        table.add_row(
            key,
            amount or "",
            row["allocated"],
            row["committed"],
            row["actual"],
            row["remaining"],
            row["forecast_at_completion"],
            row["burn_rate"] or "",
            f"[{'red' if used > 1 else 'cyan'}]{bar}[/]",
        )
    console.print(table)


@app.command()
def capacity(
    over: Annotated[bool, typer.Option(help="Only over-allocated role-months")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Capacity against demand by role and month, with utilisation."""
    cells = _ask("ledger", "capacity", {"over_allocated_only": over})
    if as_json:
        print(json.dumps(cells, indent=2))
        return
    table = Table("role", "month", "net capacity", "demand", "utilisation", "")
    for cell in cells:
        percent = cell["utilisation_percent"]
        shown = "—" if percent is None else f"{float(percent):.0f}%"
        bar = "" if percent is None else "█" * min(25, round(float(percent) / 5))
        colour = "red" if cell["over_allocated"] else "cyan"
        table.add_row(
            cell["role"],
            cell["period"],
            cell["net_capacity"],
            cell["demand"],
            shown,
            f"[{colour}]{bar}[/]",
        )
    console.print(table)


@app.command()
def risks(as_json: JsonFlag = False) -> None:
    """The risk register with scores, zones and expected monetary value; project health."""
    register = _ask("risk", "register")
    health = _ask("risk", "health")
    if as_json:
        print(json.dumps({"register": register, "health": health}, indent=2))
        return
    table = Table("risk", "project", "title", "kind", "score", "zone", "EMV", "open")
    for risk in register["risks"]:
        table.add_row(
            risk["risk_id"],
            risk["project_id"] or "portfolio",
            risk["title"],
            risk["kind"],
            str(risk["current_score"]),
            risk["zone"],
            risk["emv"],
            "yes" if risk["open"] else "closed",
        )
    console.print(table)
    console.print(f"contingency reserve (open threats): {register['contingency']['reserve']}")
    console.print(health["portfolio"]["explain"])
    for project_id, found in health["projects"].items():
        console.print(f"  {project_id}: {found['explain']}")


@app.command()
def report(
    as_of: Annotated[
        str | None, typer.Option(help="As recorded by then (ISO time, 'now', -2h, -7d)")
    ] = None,
    occurred_as_of: Annotated[
        str | None, typer.Option(help="Only facts that had occurred by then (business time)")
    ] = None,
    project: Annotated[str | None, typer.Option(help="One project's scorecard")] = None,
    diff: Annotated[
        tuple[str, str] | None, typer.Option(help="What changed between two times: FROM TO")
    ] = None,
    business_time: Annotated[
        bool, typer.Option(help="--diff by business time (occurred_at), not recorded time")
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="table, json, csv, md or html")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write the report to this file")] = None,
    publish: Annotated[
        bool, typer.Option(help="Put the current report on the record (PortfolioReportPublished)")
    ] = False,
    rationale: Annotated[str | None, typer.Option(help="Why, when publishing")] = None,
    actor: Annotated[str, typer.Option()] = "anonymous",
    as_json: JsonFlag = False,
) -> None:
    """The portfolio report (or a project's scorecard, or a diff), at any point in time."""
    from datetime import UTC

    from shared import render, times

    fmt = "json" if as_json else fmt
    if fmt not in render.FORMATS:
        errors.print(f"[red]unsupported format {fmt!r}[/]; one of {', '.join(render.FORMATS)}")
        raise typer.Exit(EXIT_USAGE)
    now = datetime.now(UTC)
    body: dict[str, Any] = {}
    try:
        for name, text in (("as_of", as_of), ("occurred_as_of", occurred_as_of)):
            if text is not None:
                body[name] = times.parse_time(text, now).isoformat()
        if diff is not None:
            body["diff_from"], body["diff_to"] = (
                times.parse_time(t, now).isoformat() for t in diff
            )
            body["diff_by"] = "occurred" if business_time else "recorded"
    except ValueError as error:
        errors.print(f"[red]{error}[/]")
        raise typer.Exit(EXIT_USAGE) from error
    if project is not None:
        body["project_id"] = project
    if diff is not None and (as_of or occurred_as_of or project):
        errors.print("[red]--diff takes its two times only (no --as-of or --project)[/]")
        raise typer.Exit(EXIT_USAGE)
    if publish and (body or not rationale):
        errors.print("[red]--publish needs --rationale, and publishes the current report only[/]")
        raise typer.Exit(EXIT_USAGE)

    async def work(nc: Client, settings: PortfolioSettings) -> bytes:
        if publish:
            request = {"rationale": rationale, "actor": actor, "source": "cli"}
            subject = settings.subjects.control("reporting", "publish")
            return await _request(nc, subject, json.dumps(request).encode(), 60)
        subject = settings.subjects.query("reporting", "report")
        return await _request(nc, subject, json.dumps(body).encode(), 60)

    answer: dict[str, Any] = json.loads(_connect_and(work))
    if "error" in answer:
        errors.print(f"[red]{answer['error']}[/]")
        for detail in answer.get("details", ()):
            errors.print(f"  - {detail.get('field')}: {detail.get('message')}")
        raise typer.Exit(EXIT_REJECTED)
    if publish:
        appended = answer["appended"]
        errors.print(f"[bold green]published[/] at log position {appended['position']}")
        answer = answer["report"]
    if output is None and fmt == "table":
        render.print_report(answer, console)
        return
    text = render.render(answer, fmt)
    if output is None:
        print(text, end="")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        errors.print(f"[red]cannot write {output}[/]: {error}")
        raise typer.Exit(EXIT_USAGE) from error
    errors.print(f"wrote {output} ({fmt}, {len(text.encode())} bytes)")


@app.command()
def lessons(
    search: Annotated[
        str | None, typer.Option(help="Words that must all appear (title, text, project)")
    ] = None,
    project: Annotated[str | None, typer.Option(help="One project's lessons")] = None,
    category: Annotated[str | None, typer.Option(help="One category (any case)")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, the latest")] = 500,
    as_json: JsonFlag = False,
) -> None:
    """Lessons learned by closed projects, searchable."""
    body = {"search": search, "project_id": project, "category": category, "limit": limit}

    async def work(nc: Client, settings: PortfolioSettings) -> bytes:
        subject = settings.subjects.query("reporting", "lessons")
        data = json.dumps({k: v for k, v in body.items() if v is not None}).encode()
        return await _request(nc, subject, data, 60)

    answer: dict[str, Any] = json.loads(_connect_and(work))
    if "error" in answer:
        errors.print(f"[red]{answer['error']}[/]")
        for detail in answer.get("details", ()):
            errors.print(f"  - {detail.get('field')}: {detail.get('message')}")
        raise typer.Exit(EXIT_REJECTED)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    table = Table("project", "lesson", "category", "title and description", "recommendation")
    for found in answer["lessons"]:
        table.add_row(
            f"{found['project_id']}\n[dim]{found['project_status']}[/]",
            found["lesson_id"],
            found["category"],
            f"[bold]{escape(found['title'])}[/]\n{escape(found['description'])}",
            escape(found["recommendation"]),
        )
    console.print(table)
    shown = len(answer["lessons"])
    more = f" (the latest {shown} shown)" if shown < answer["total"] else ""
    console.print(f"{answer['total']} lessons{more}")


@app.command()
def backtest(
    metric: Annotated[str, typer.Option(help="cpi, spi, risk_score, budget_consumption, ...")],
    comparison: Annotated[str, typer.Option(help="lt, le, gt or ge")],
    threshold: Annotated[float, typer.Option()],
    clear_at: Annotated[float, typer.Option(help="Where an open alert would clear")],
    as_json: JsonFlag = False,
) -> None:
    """How often a rule would have fired over the whole history, and when."""
    rule = {
        "metric": metric,
        "comparison": comparison,
        "threshold": threshold,
        "clear_at": clear_at,
    }
    found = _ask("risk", "backtest", rule)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("subject", "raised", "cleared")
    for episode in found["episodes"]:
        table.add_row(
            episode["subject_id"], episode["raised_at"], episode["cleared_at"] or "still open"
        )
    console.print(table)
    console.print(f"would have fired {found['fired']} times")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
