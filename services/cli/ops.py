"""Running the backend: `up` (everything, supervised), `serve` (one service alone, what a
container runs) and `replay` (rebuild a projection from the log)."""

from __future__ import annotations

import asyncio
import importlib
import os
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from contracts.subjects import SERVICES
from shared.client import PortfolioClient
from shared.settings import CliSettings, SupervisorSettings

from .connection import locate, run
from .output import EXIT_USAGE, UrlOption, console, fail

#: What `serve` runs: the services, and the stateless HTTP gateway (no projection).
SERVABLE = (*SERVICES, "gateway")
ServiceArgument = Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVABLE)}")]


def _known(service: str, known: tuple[str, ...] = SERVICES) -> None:
    if service not in known:
        fail(
            EXIT_USAGE,
            f"[red]unknown service {escape(repr(service))}[/]; one of {', '.join(known)}",
        )


def up(
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Use this NATS (comma-separated for a cluster) and start none "
            "(else PORTFOLIO_NATS_URL, else an embedded nats-server)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the whole backend: embedded NATS and SQLite under the data folder, unless
    PORTFOLIO_NATS_URL / PORTFOLIO_DATABASE_URL point elsewhere. One `up` per data folder:
    a second one names the running one and exits 2."""
    from .supervisor import Supervisor

    if url is not None:
        os.environ["PORTFOLIO_NATS_URL"] = url
    raise typer.Exit(asyncio.run(Supervisor(SupervisorSettings(), console).run()))


def serve(service: ServiceArgument, url: UrlOption = None) -> None:
    """Run one service alone (what a container runs), or the HTTP gateway."""
    _known(service, SERVABLE)
    # The service reads PORTFOLIO_NATS_URL: found as every verb finds it, never guessed.
    os.environ["PORTFOLIO_NATS_URL"] = locate(url, CliSettings()).url
    module = importlib.import_module(f"services.{service}.app")
    if service == "gateway":
        raise typer.Exit(module.main())
    asyncio.run(module.create_app().run())


def replay(service: ServiceArgument, url: UrlOption = None) -> None:
    """Rebuild a service's projection from the whole log, with a progress bar."""
    _known(service)

    async def work(client: PortfolioClient) -> int:
        started = await client.replay(service)
        with Progress(
            TextColumn(f"replaying {service}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("replay", total=started.target_position)
            while True:
                now = (await client.statuses())[service]
                if now is not None:
                    progress.update(task, completed=min(now.position, started.target_position))
                    if now.position >= started.target_position and now.state == "running":
                        break
                await asyncio.sleep(0.2)
        return started.target_position

    target = run(work, url)
    console.print(f"{service} rebuilt up to position {target}")
