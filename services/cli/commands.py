"""Writing: `portfolio send` (one command) and `portfolio import` (a file of them).

Both record who acts (`--actor`, else PORTFOLIO_ACTOR, else the login) and from where
(`cli`; imported rows say `import`), and name their principal in the subject when one is
set; a command without an id gets one, so a resend after a lost answer is the same command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from rich.markup import escape
from rich.table import Table

from contracts.base import CommandAccepted, CommandRejected, CommandReply
from services import importer
from shared.client import PortfolioClient
from shared.settings import CliSettings

from .connection import identity, run
from .output import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ActorOption,
    JsonFlag,
    PrincipalOption,
    UrlOption,
    console,
    errors,
    fail,
)

REPLY = TypeAdapter[CommandAccepted | CommandRejected](CommandReply)


def send(
    command: Annotated[str, typer.Argument(help="Command name, e.g. ProposeProject")],
    data: Annotated[str | None, typer.Option(help="The command as JSON")] = None,
    file: Annotated[Path | None, typer.Option(help="Read the command's JSON from a file")] = None,
    as_json: JsonFlag = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer")] = 10.0,
    actor: ActorOption = None,
    principal: PrincipalOption = None,
    url: UrlOption = None,
) -> None:
    """Submit one command to intake and print its answer."""
    if (data is None) == (file is None):
        fail(EXIT_USAGE, "[red]give exactly one of --data or --file[/]")
    if file is not None:
        try:
            body = file.read_bytes()
        except OSError as error:
            fail(EXIT_USAGE, f"[red]cannot read {escape(str(file))}[/]: {escape(str(error))}")
    else:
        body = (data or "").encode()
    who = identity(actor, principal, CliSettings())

    async def work(client: PortfolioClient) -> bytes:
        return await client.send_raw(command, body, timeout)

    raw = run(work, url, who=who, timeout=timeout)
    try:
        reply = REPLY.validate_json(raw)
    except ValidationError:
        fail(EXIT_UNREACHABLE, f"[red]unreadable answer[/]: {escape(repr(raw[:200]))}")
    if as_json:
        console.print_json(raw.decode())
    else:
        print_reply(reply)
    raise typer.Exit(EXIT_OK if isinstance(reply, CommandAccepted) else EXIT_REJECTED)


def print_reply(reply: CommandAccepted | CommandRejected) -> None:
    if isinstance(reply, CommandRejected):
        console.print(f"[bold red]rejected[/] ({reply.error.code}): {escape(reply.error.message)}")
        for detail in reply.error.details:
            console.print(
                f"  - {detail.field}: {detail.message} (got {detail.input!r})", markup=False
            )
        return
    note = " [yellow](duplicate: the original answer)[/]" if reply.duplicate else ""
    console.print(f"[bold green]accepted[/] command {escape(reply.command_id)}{note}")
    table = Table("position", "event", "aggregate", "version")
    for event in reply.events:
        table.add_row(
            str(event.position),
            event.event_type,
            f"{event.aggregate_type}/{event.aggregate_id}",
            str(event.version),
        )
    console.print(table)


def import_(
    file: Annotated[Path, typer.Argument(help="A .csv (header row) or .jsonl/.ndjson file")],
    command: Annotated[
        str | None, typer.Option(help="The command of rows that name none, e.g. ProposeProject")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Requests in flight")] = 64,
    as_json: JsonFlag = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer")] = 30.0,
    actor: ActorOption = None,
    principal: PrincipalOption = None,
    url: UrlOption = None,
) -> None:
    """Submit many commands from a file; re-importing the same file appends nothing.

    One aggregate's rows are decided in file order; a summary lists every rejected row.
    Rows that name no actor are recorded as acted by --actor (else PORTFOLIO_ACTOR, else
    your login)."""
    try:
        loaded = importer.read_file(file, command)
    except importer.ImportFileError as error:
        fail(EXIT_USAGE, f"[red]{escape(str(error))}[/]")
    who = identity(actor, principal, CliSettings())

    async def work(client: PortfolioClient) -> importer.Summary:
        async def send_one(name: str, body: bytes) -> bytes:
            return await client.send_raw(name, body, timeout)

        with importer.progress(errors, loaded) as advance:
            outcomes, seconds = await importer.submit(loaded.rows, send_one, concurrency, advance)
        return importer.Summary(loaded, outcomes, seconds)

    summary = run(work, url, who=who, timeout=timeout)
    if as_json:
        print(json.dumps(summary.as_json(), indent=2))
    else:
        importer.print_summary(console, summary)
    raise typer.Exit(EXIT_REJECTED if summary.rejected else EXIT_OK)
