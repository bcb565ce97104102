"""Every verb of `portfolio` can be pointed at a backend (`--url`), a verb added later too."""

from __future__ import annotations

import io
from typing import Any

import pytest
import typer.core
import typer.main

from services.cli import app


def test_every_verb_takes_url() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    missing = [
        name
        for name, command in group.commands.items()
        if not any("--url" in getattr(p, "opts", ()) for p in command.params)
    ]
    assert len(group.commands) >= 17 and missing == []


@pytest.mark.parametrize(
    "alert",
    [
        {"event": "AlertRaised", "message": "CPI low", "severity": "warning", "audit_link": "x"},
        {"event": "Unreadable", "raw": "\\xff[red]"},
        {},
        {"event": ["x"], "message": None, "alert_id": 7, "severity": {"a": 1}},
        {"event": "AlertCleared", "message": "[bold]x[/] \ud800", "severity": "[/]"},
    ],
)
def test_a_followed_alert_of_any_shape_is_one_printable_line(alert: dict[str, Any]) -> None:
    from rich.console import Console

    from services.cli.monitor import _alert_line

    console = Console(file=io.StringIO(), width=200)
    console.print(_alert_line(alert))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert shown.count("\n") == 1
    if "message" in alert and isinstance(alert["message"], str):
        assert alert["message"].split(" ")[0] in shown  # markup shown as text, not applied
