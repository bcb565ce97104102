"""Reading the state of things: `status`, `alerts`, `risks`, `budget`, `capacity` and
`backtest` (how often an alert rule would have fired)."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from contracts.queries import ServiceStatus
from shared import formatting
from shared.client import PortfolioClient
from shared.commands import printable

from .connection import run
from .output import EXIT_OK, EXIT_REJECTED, JsonFlag, UrlOption, console, errors, refused


def ask(service: str, name: str, body: dict[str, Any] | None, url: str | None) -> Any:
    """A read-side query; a refusal (an `error` field) is printed and exits 1."""

    async def work(client: PortfolioClient) -> Any:
        return await client.query(service, name, body, timeout=60)

    answer = run(work, url)
    refused(answer)
    return answer


def status(as_json: JsonFlag = False, url: UrlOption = None) -> None:
    """Health, projection position and lag of every service, its batches and where its
    Prometheus metrics are; intake's commands by outcome and inbox, notify's deliveries."""

    async def work(client: PortfolioClient) -> dict[str, ServiceStatus | None]:
        return await client.statuses()

    statuses = run(work, url)
    if as_json:
        print(
            json.dumps(
                {n: (s.model_dump(mode="json") if s else None) for n, s in statuses.items()},
                indent=2,
            )
        )
    else:
        console.print(_status_table(statuses))
        details = _details_table(statuses)
        if details.row_count:
            console.print(details)
    raise typer.Exit(EXIT_OK if all(statuses.values()) else EXIT_REJECTED)


def _status_table(statuses: dict[str, ServiceStatus | None]) -> Table:
    table = Table(
        "service",
        "state",
        "position",
        "log",
        "lag",
        "applied",
        "skipped",
        "rebuilds",
        "batches",
        "events/batch",
        "ms/batch",
        "metrics",
        "pid",
    )
    for name, s in statuses.items():
        if s is None:
            table.add_row(name, "[red]down[/]", *[""] * 11)
            continue
        state = s.state if s.last_error is None else f"{s.state}: {s.last_error}"
        figures = s.metrics
        batches = figures.get("portfolio_projection_batch_duration_seconds_count", 0.0)
        seconds = figures.get("portfolio_projection_batch_duration_seconds_sum", 0.0)
        events = figures.get("portfolio_projection_batch_events_sum", 0.0)
        table.add_row(
            name,
            escape(state),
            str(s.position),
            str(s.log_position),
            str(s.lag),
            str(s.applied_since_start),
            str(s.skipped_events),
            str(s.rebuilds_since_start),
            _number(batches),
            f"{events / batches:.1f}" if batches else "",
            f"{1000 * seconds / batches:.1f}" if batches else "",
            escape(s.metrics_url or "off"),
            str(s.pid),
        )
    return table


def _details_table(statuses: dict[str, ServiceStatus | None]) -> Table:
    """The figures of one service's own: intake's commands by path and outcome and its
    inbox, notify's deliveries by channel and outcome (as `/metrics` serves them)."""
    table = Table("service", "figure", "value", title="service figures")
    for name, s in statuses.items():
        if s is None:
            continue
        own = f"portfolio_{name}_"
        for key, value in sorted(s.metrics.items()):
            family = key.split("{")[0]
            if not key.startswith(own) or family.startswith(f"{own}inbox_"):
                continue  # the inbox's are shown below, with what only the inbox knows
            if family.endswith("_sum"):  # a histogram: its count and mean
                base, labels = family.removesuffix("_sum"), key[len(family) :]
                count = s.metrics.get(f"{base}_count{labels}", 0.0)
                shown = _figure(base + labels, own)
                table.add_row(name, escape(f"{shown} (count)"), _number(count))
                if count:
                    table.add_row(name, escape(f"{shown} (mean)"), f"{value / count:.6f}")
            elif not family.endswith("_count"):
                table.add_row(name, escape(_figure(key, own)), _number(value))
        inbox = s.inbox
        if inbox is not None:
            for label, shown in (
                ("inbox running", "yes" if inbox.running else "[red]no[/]"),
                ("inbox pending", _maybe(inbox.pending)),
                ("inbox waiting for ack", _maybe(inbox.waiting_for_ack)),
                ("inbox redelivered", _maybe(inbox.redelivered)),
                ("inbox answered since start", str(inbox.answered_since_start)),
                ("inbox dead letters since start", str(inbox.dead_letters_since_start)),
            ):
                table.add_row(name, label, shown)
            if inbox.last_error is not None:
                when = f" at {inbox.last_error_at:%Y-%m-%d %H:%M:%S}" if inbox.last_error_at else ""
                table.add_row(name, "inbox last error", escape(inbox.last_error + when))
    return table


def _figure(key: str, own: str) -> str:
    """`portfolio_intake_commands_total{outcome="accepted",via="request"}` -> `commands
    outcome=accepted via=request`."""
    name, _, labels = key.removeprefix(own).partition("{")
    words = name.removesuffix("_total").replace("_", " ")
    pairs = [pair.replace('"', "") for pair in labels.rstrip("}").split(",") if pair]
    return " ".join([words, *pairs])


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}"


def _maybe(value: int | None) -> str:
    return "?" if value is None else str(value)


def alerts(
    follow: Annotated[bool, typer.Option(help="Keep printing alerts as they arrive")] = False,
    deliveries: Annotated[
        bool, typer.Option(help="Delivery outcomes per subscription (notify service)")
    ] = False,
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """Open alerts; with --follow, every alert raised or cleared from now on; with
    --deliveries, what was delivered to subscribers and what was dead-lettered, and why."""
    if follow:
        _follow_alerts(as_json, url)
        return
    if deliveries:
        _deliveries(as_json, url)
        return
    found = ask("risk", "alerts", None, url)["open"]
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("severity", "metric", "subject", "value", "threshold", "rule", "why / audit")
    for alert in found:
        table.add_row(
            _severity(alert["severity"]),
            alert["metric"],
            escape(alert["subject_id"]),
            f"{alert.get('value_shown') or alert['value']}"
            + (f"\n[dim]raised at {alert['raised_value']:g}[/]" if "raised_value" in alert else ""),
            f"{alert['threshold']:g}",
            escape(alert["rule_id"]),
            f"{escape(alert['message'])}\n[dim]{escape(alert['audit_link'])}[/]",
        )
    console.print(table)
    console.print(f"{len(found)} open alerts")


def _deliveries(as_json: bool, url: str | None) -> None:
    found = ask("notify", "deliveries", None, url)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("subscription", "outcome", "alert", "event", "attempts", "detail")
    for x in found["deliveries"]:
        ok = x["outcome"] == "delivered"
        table.add_row(
            escape(x["subscription_id"]),
            "[green]delivered[/]" if ok else "[red]dead letter[/]",
            escape(x["alert_id"]),
            escape(x["event_type"]),
            str(x["attempts"]),
            str(x.get("status")) if ok else escape(str(x.get("reason"))),
        )
    console.print(table)
    console.print(
        f"{len(found['subscriptions'])} subscriptions, {len(found['deliveries'])} outcomes"
    )
    reports = found.get("report_deliveries") or []
    if reports or found.get("reports_owed"):
        sent = Table("report", "stakeholder", "plan", "channel", "outcome", "attempts", "detail")
        for x in reports:
            ok = x["outcome"] == "delivered"
            sent.add_row(
                escape(x["report_id"]),
                escape(x["stakeholder_id"]),
                escape(x["plan_id"]),
                escape(x["channel"]),
                "[green]delivered[/]" if ok else "[red]dead letter[/]",
                str(x["attempts"]),
                str(x.get("status")) if ok else escape(str(x.get("reason"))),
            )
        console.print(sent)
        console.print(
            f"{len(reports)} report deliveries, {found.get('reports_owed', 0)} still to send"
        )


def _alert_line(alert: dict[str, Any]) -> str:
    """One line of `alerts --follow`, from whatever the alert holds (the stream is open to
    any publisher on the embedded server): a field missing or of another type is shown as
    it is, never a crash of the feed."""

    def shown(key: str) -> str:
        value = alert.get(key)
        return escape(printable(value if isinstance(value, str) else str(value or "")))

    event = alert.get("event")
    if event == "Unreadable":
        return f"[red]unreadable message on the alerts stream[/]  [dim]{shown('raw')}[/]"
    verb = {"AlertRaised": "[red]RAISED[/]", "AlertCleared": "[green]cleared[/]"}.get(
        str(event), escape(printable(str(event)))
    )
    what = shown("message") or shown("alert_id") or "?"
    return f"{what}  {verb} {_severity(shown('severity'))}  [dim]{shown('audit_link')}[/]"


def _severity(severity: str) -> str:
    colour = {"critical": "bold red", "warning": "yellow"}.get(severity, "cyan")
    return f"[{colour}]{escape(severity)}[/]"


def _follow_alerts(as_json: bool, url: str | None) -> None:
    async def work(client: PortfolioClient) -> None:
        feed = client.follow_alerts()
        errors.print("following alerts (Ctrl-C to stop)")
        async for alert in feed:
            if as_json:
                print(json.dumps(alert), flush=True)
                continue
            console.print(_alert_line(alert))

    with contextlib.suppress(KeyboardInterrupt):
        run(work, url)


def budget(
    by: Annotated[
        str, typer.Option(help="pool, project, pool_project, category, fiscal_period")
    ] = "pool",
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """Allocated, committed, actual, remaining, forecast and burn rate from the ledger."""
    rows = ask("ledger", "budget", {"by": by}, url)
    if as_json:
        print(json.dumps(formatting.tidy_json(rows), indent=2))
        return
    table = Table(
        by, "amount", "allocated", "committed", "actual", "remaining", "forecast", "burn/month", ""
    )
    for key, row in rows.items():
        amount = row["amount"]
        used = float(row["actual"]) / float(amount) if amount and float(amount) else 0.0
        bar = "█" * min(20, round(20 * used))
        currency = row.get("currency")
        table.add_row(
            escape(key),
            *(
                formatting.money_text(row[name], currency)
                for name in (
                    "amount",
                    "allocated",
                    "committed",
                    "actual",
                    "remaining",
                    "forecast_at_completion",
                    "burn_rate",
                )
            ),
            f"[{'red' if used > 1 else 'cyan'}]{bar}[/]",
        )
    console.print(table)


def capacity(
    over: Annotated[bool, typer.Option(help="Only over-allocated role-months")] = False,
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """Capacity against demand by role and month, with utilisation."""
    cells = ask("ledger", "capacity", {"over_allocated_only": over}, url)
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
            escape(cell["role"]),
            cell["period"],
            cell["net_capacity"],
            cell["demand"],
            shown,
            f"[{colour}]{bar}[/]",
        )
    console.print(table)


def risks(as_json: JsonFlag = False, url: UrlOption = None) -> None:
    """The risk register with scores, zones and expected monetary value; project health."""
    register = ask("risk", "register", None, url)
    health = ask("risk", "health", None, url)
    if as_json:
        print(json.dumps(formatting.tidy_json({"register": register, "health": health}), indent=2))
        return
    table = Table("risk", "project", "title", "kind", "score", "zone", "EMV", "open")
    for risk in register["risks"]:
        table.add_row(
            escape(risk["risk_id"]),
            escape(risk["project_id"] or "portfolio"),
            escape(risk["title"]),
            risk["kind"],
            str(risk["current_score"]),
            risk["zone"],
            formatting.money_text(risk["emv"]),
            "yes" if risk["open"] else "closed",
        )
    console.print(table)
    reserve = formatting.money_text(register["contingency"]["reserve"])
    console.print(f"contingency reserve (open threats): {reserve}")
    console.print(escape(health["portfolio"]["explain"]))
    for project_id, found in health["projects"].items():
        console.print(f"  {escape(project_id)}: {escape(found['explain'])}")


def backtest(
    metric: Annotated[str, typer.Option(help="cpi, spi, risk_score, budget_consumption, ...")],
    comparison: Annotated[str, typer.Option(help="lt, le, gt or ge")],
    threshold: Annotated[float, typer.Option()],
    clear_at: Annotated[float, typer.Option(help="Where an open alert would clear")],
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """How often a rule would have fired over the whole history, and when (by the facts'
    business time; --json also gives the recorded times)."""
    rule = {
        "metric": metric,
        "comparison": comparison,
        "threshold": threshold,
        "clear_at": clear_at,
    }
    found = ask("risk", "backtest", rule, url)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("subject", "raised (business time)", "cleared (business time)")
    for episode in found["episodes"]:
        table.add_row(
            escape(episode["subject_id"]),
            episode["raised_at"],
            episode["cleared_at"] or "still open",
        )
    console.print(table)
    console.print(f"would have fired {found['fired']} times")
