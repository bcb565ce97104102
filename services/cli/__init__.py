"""The `portfolio` command line, one module per group of verbs:

- ops.py: `up`, `serve`, `replay`
- commands.py: `send`, `import`
- audit.py: `audit`
- reports.py: `report`, `lessons`
- forecast.py: `forecast`
- monitor.py: `status`, `alerts`, `risks`, `budget`, `capacity`, `backtest`
- ranking.py: `ranking`, `scenario`, `frontier`

Every verb reaches the backend through `shared.client.PortfolioClient` (connection.py
finds it: `--url`, `PORTFOLIO_NATS_URL`, or the running `portfolio up`). Exit codes: 0 ok,
1 rejected or conflict, 2 usage (and a second `up` on a data folder in use), 3 the backend
cannot be found or reached.
"""

from __future__ import annotations

import typer

from . import audit, commands, forecast, monitor, ops, ranking, reports

app = typer.Typer(
    name="portfolio",
    help="Event-sourced IT portfolio backend.",
    no_args_is_help=True,
    add_completion=False,
)

for verb in (
    ops.up,
    ops.serve,
    commands.send,
    audit.audit,
    monitor.status,
    ops.replay,
    ranking.ranking,
    ranking.scenario,
    ranking.frontier,
    monitor.alerts,
    monitor.budget,
    monitor.capacity,
    monitor.risks,
    reports.report,
    reports.lessons,
    forecast.forecast,
    monitor.backtest,
):
    app.command()(verb)
app.command("import")(commands.import_)


def main() -> None:
    app()
