"""Every verb of `portfolio` can be pointed at a backend (`--url`), a verb added later too."""

from __future__ import annotations

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
