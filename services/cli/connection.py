"""Finding the backend, connecting, and who the CLI acts as.

The backend: `--url`, else `PORTFOLIO_NATS_URL`, else the `portfolio up` running on this
folder's data (`PORTFOLIO_DATA_DIR`), else the one running backend in the per-user state
file (shared/runtime.py). Nothing found exits 3: no port is guessed, since any other NATS
there would be talked to as if it were the portfolio.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import nats
import typer
from rich.markup import escape

from shared import runtime
from shared.client import NoAnswer, PortfolioClient
from shared.settings import RUNTIME_FILE, CliSettings

from .output import EXIT_UNREACHABLE, EXIT_USAGE, errors, fail

T = TypeVar("T")
#: A principal is a subject token.
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
#: What the CLI records as the source of what a person sends with it.
SOURCE = "cli"


@dataclass(frozen=True)
class Target:
    url: str
    #: How it was found, for the message when it does not answer.
    found_by: str

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]


def locate(url: str | None, settings: CliSettings) -> Target:
    if url is not None:
        if not url.strip():
            fail(EXIT_USAGE, "[red]--url is empty[/]")
        return Target(url, "--url")
    if settings.nats_url:
        return Target(settings.nats_url, "PORTFOLIO_NATS_URL")
    here = settings.data_dir.resolve()
    local = runtime.read_runtime(here / RUNTIME_FILE)
    if local is not None and runtime.alive(local.supervisor_pid):
        return Target(local.nats_url, f"`portfolio up` on {here} (pid {local.supervisor_pid})")
    found = runtime.running()
    if len(found) == 1:
        only = found[0]
        return Target(
            only.nats_url, f"`portfolio up` on {only.data_dir} (pid {only.supervisor_pid})"
        )
    if not found:
        fail(
            EXIT_UNREACHABLE,
            f"[red]no running backend found[/]: none in {escape(str(runtime.state_file()))}"
            " nor in this folder's data. Start one with `portfolio up`, or name one with "
            "--url or PORTFOLIO_NATS_URL.",
        )
    listed = "; ".join(f"{r.data_dir} (pid {r.supervisor_pid}, {r.nats_url})" for r in found)
    fail(
        EXIT_USAGE,
        f"[red]{len(found)} backends are running[/]: {escape(listed)}. "
        "Name one with --url, or PORTFOLIO_DATA_DIR.",
    )


@dataclass(frozen=True)
class Identity:
    actor: str
    principal: str | None


def login() -> str:
    """The operating-system user (uid-N when the system knows no name for it)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid-{os.getuid()}"


def identity(actor: str | None, principal: str | None, settings: CliSettings) -> Identity:
    """`--actor`, else PORTFOLIO_ACTOR, else the login; `--principal`, else
    PORTFOLIO_PRINCIPAL, else the NATS user (none: the plain subject)."""
    who = (actor or settings.actor or login()).strip()
    if not who or len(who) > 128:
        fail(EXIT_USAGE, "[red]the actor must be 1 to 128 characters[/]")
    sender = principal or settings.principal or settings.nats_user
    if sender is not None and not _TOKEN.match(sender):
        fail(
            EXIT_USAGE,
            f"[red]principal {escape(repr(sender))} is not a NATS subject token[/] "
            "(letters, digits, - and _)",
        )
    return Identity(who, sender)


async def _quiet(_: Exception) -> None:
    """nats-py prints every connection error by default; the CLI reports its own."""


def run(
    work: Callable[[PortfolioClient], Awaitable[T]],
    url: str | None,
    *,
    who: Identity | None = None,
    timeout: float = 10.0,
) -> T:
    """Connect to the backend, do `work` with a client, close. Unreachable exits 3."""
    settings = CliSettings()
    target = locate(url, settings)

    async def go() -> T:
        try:
            # nats-py retries forever with 0 attempts; 1 attempt and a short wait fail fast.
            nc = await asyncio.wait_for(
                nats.connect(
                    target.servers,
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
                f"[red]cannot reach NATS at {escape(target.url)}[/] "
                f"(from {escape(target.found_by)}): {escape(str(error) or type(error).__name__)}"
            )
            raise typer.Exit(EXIT_UNREACHABLE) from error
        client = PortfolioClient(
            nc,
            subjects=settings.subjects,
            timeout=timeout,
            actor=who.actor if who else None,
            source=SOURCE if who else None,
            principal=who.principal if who else None,
        )
        try:
            return await work(client)
        except NoAnswer as error:
            fail(EXIT_UNREACHABLE, f"[red]{escape(str(error))}[/]")
        finally:
            await nc.close()

    return asyncio.run(go())
