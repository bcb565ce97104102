"""`portfolio audit`: the decision history (who did what, when, why, what it caused), and
the refused inputs with `--rejections`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contracts.base import Rejection
from contracts.queries import AuditEntry, AuditQuery
from shared.chain import ChainVerification, verify_chain
from shared.client import PortfolioClient
from shared.eventlog import EventLog, LogUnavailable

from .connection import run
from .output import (
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    JsonFlag,
    UrlOption,
    console,
    fail,
)


def audit(
    project: Annotated[
        str | None,
        typer.Option(
            help="Everything about this project: its lifecycle, budget, costs, risks, progress"
        ),
    ] = None,
    aggregate_type: Annotated[str | None, typer.Option(help="e.g. project")] = None,
    aggregate_id: Annotated[str | None, typer.Option()] = None,
    actor: Annotated[str | None, typer.Option(help="Only what this actor did")] = None,
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
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Recompute the log's hash chain over the whole log; exit 1 naming the first "
            "position where it breaks",
        ),
    ] = False,
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """The decision history: who did what, when, why, and what it caused."""
    if verify:
        _verify_chain(as_json, url)
        return
    if rejections:
        _print_rejections(as_json, limit, url)
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
        fail(EXIT_USAGE, f"[red]{escape(str(error))}[/]")

    async def work(client: PortfolioClient) -> list[AuditEntry]:
        return await client.audit_entries(query, limit)

    entries = run(work, url, timeout=30)
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    table = Table("pos", "recorded (UTC)", "actor", "event", "aggregate", "why")
    for entry in entries:
        table.add_row(
            str(entry.position),
            entry.recorded_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(f"{entry.actor} via {entry.source}"),
            entry.event_type,
            escape(f"{entry.aggregate_type}/{entry.aggregate_id}"),
            escape(_why(entry)),
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


def _print_rejections(as_json: bool, limit: int, url: str | None) -> None:
    async def work(client: PortfolioClient) -> list[Rejection]:
        return await client.rejections(limit)

    found = run(work, url)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        return
    table = Table("received (UTC)", "command", "code", "reason", "input")
    for r in found:
        table.add_row(
            r.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(r.command_type or r.subject.rsplit(".", 1)[-1]),
            r.error.code,
            escape(r.error.message),
            escape(r.raw[:40] + ("…" if len(r.raw) > 40 else "")),
        )
    console.print(table)
    console.print(f"{len(found)} rejections")


def _verify_chain(as_json: bool, url: str | None) -> None:
    """`--verify`: shared/chain.py's verify_chain over the whole log, with a progress bar."""

    async def work(client: PortfolioClient) -> ChainVerification:
        log = EventLog(client.nc.jetstream(timeout=10), client.subjects)
        if as_json:
            return await verify_chain(log)
        with Progress(
            TextColumn("verifying the hash chain"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("verify", total=None)

            def advance(position: int, end: int) -> None:
                progress.update(task, completed=position, total=end)

            return await verify_chain(log, progress=advance)

    try:
        result = run(work, url, timeout=30)
    except LogUnavailable as error:
        fail(EXIT_UNREACHABLE, f"[red]log_unavailable: {escape(str(error))}[/]")
    broken = result.broken
    if as_json:
        print(
            json.dumps(
                {
                    "ok": broken is None,
                    "checked": result.checked,
                    "end": result.end,
                    "head": result.head,
                    "pre_chain": result.pre_chain,
                    "reports_checked": result.reports_checked,
                    "broken_at": broken.position if broken else None,
                    "reason": broken.reason if broken else None,
                },
                indent=2,
            )
        )
    elif broken is None:
        console.print(
            f"[green]the chain holds[/]: {result.checked} events, head {result.head} "
            f"at position {result.checked} ({result.pre_chain} from before the chain, "
            f"{result.reports_checked} published report heads checked)"
        )
    else:
        console.print(
            f"[red]the chain breaks at position {broken.position}[/]: {escape(broken.reason)} "
            f"({result.checked} events before it hold)"
        )
    if broken is not None:
        raise typer.Exit(EXIT_REJECTED)
