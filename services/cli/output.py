"""What every verb shares: the exit codes, the consoles, the common options."""

from __future__ import annotations

import os
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

#: Columns of a table printed to a pipe or a file: whole lines, never cut at 80.
PIPE_WIDTH = 10_000


def make_console(stderr: bool = False) -> Console:
    """A console as wide as the terminal; on a pipe or a file, as wide as the longest line
    (an explicit COLUMNS still wins)."""
    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(stderr=stderr, width=PIPE_WIDTH)


console = make_console()
errors = make_console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="NATS URL(s) of the backend, comma-separated for a cluster "
        "(else PORTFOLIO_NATS_URL, else the running `portfolio up`)",
        show_default=False,
    ),
]
ActorOption = Annotated[
    str | None,
    typer.Option(
        help="Who acts, recorded on the event (else PORTFOLIO_ACTOR, else your login)",
        show_default=False,
    ),
]
PrincipalOption = Annotated[
    str | None,
    typer.Option(
        help="The NATS user sending, named in the subject (else PORTFOLIO_PRINCIPAL, "
        "else PORTFOLIO_NATS_USER)",
        show_default=False,
    ),
]


def fail(code: int, message: str) -> NoReturn:
    """Print a (markup) message on stderr and exit with `code`."""
    errors.print(message)
    raise typer.Exit(code)


def refused(answer: Any) -> None:
    """A read-side refusal (an object with an `error` field) is printed and exits 1."""
    if not isinstance(answer, dict) or "error" not in answer:
        return
    errors.print(f"[red]{escape(str(answer['error']))}[/]")
    for detail in answer.get("details", ()):
        if isinstance(detail, dict):
            errors.print(f"  - {detail.get('field')}: {detail.get('message')}", markup=False)
        else:
            errors.print(f"  - {detail}", markup=False)
    raise typer.Exit(EXIT_REJECTED)
