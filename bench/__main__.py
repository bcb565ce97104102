"""`python -m bench [--quick] [--only NAME] [--json PATH]`

Starts its own nats-server (free port, temporary folder), measures the raw baselines and
the backend on it, prints one table and writes the same to JSON. Targets are reported,
never enforced: the exit code is 1 only when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from rich.console import Console

from bench import alert_delivery, chain_verify, decisions, forecast, gateway, ledger_replay, million
from bench import baselines as raw
from bench.benchmarks import (
    FULL,
    QUICK,
    SMOKE,
    Context,
    intake_benchmarks,
    proposed_envelope,
    replay_benchmarks,
)
from bench.generator import Generator
from bench.report import Baseline, Row, document, print_tables, write_json
from shared.embedded_nats import EmbeddedNats

GROUPS = (
    "eventsourcing",
    "intake-throughput",
    "intake-latency",
    "inbox",
    "replay",
    "prioritization",
    "alert-latency",
    "alert-delivery",
    "gateway",
    "ledger-replay",
    "big-log",
    "verify",
    "forecast",
)
INTAKE = {"intake-throughput", "intake-latency", "inbox"}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Every backend figure beside a raw baseline measured in the same run "
        "on its own nats-server; results also go to JSON.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, about a minute")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        action="append",
        choices=GROUPS,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(GROUPS)}; "
        "the raw publish and fetch baselines always run",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, metavar="PATH", help="default: %(default)s"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the command generator")
    parser.add_argument(
        "--repeat",
        type=int,
        default=decisions.ALERT_RUNS,
        metavar="N",
        help="consecutive alert-latency runs, each p99 reported (default: %(default)s)",
    )
    parser.add_argument(
        "--big-log-scaling",
        action="store_true",
        help="big-log: also replay logs of a quarter and a half of its size, for the "
        "peak-memory scaling table",
    )
    parser.add_argument(
        "--big-log-events",
        type=int,
        metavar="N",
        help="size of the big log (default: 1,000,000; --quick 30,000)",
    )
    return parser.parse_args(argv)


async def measure(
    args: argparse.Namespace, console: Console
) -> tuple[list[Baseline], list[Row], dict[str, int]]:
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    decisions.ALERT_RUNS = max(1, args.repeat)
    million.SCALING = args.big_log_scaling
    selected = set(args.only or GROUPS)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        server = EmbeddedNats(work / "nats", port=0)
        url = server.start()
        try:
            nc = await nats.connect(url)
            try:
                ctx = Context(url, nc, nc.jetstream(timeout=10), work, sizes, args.seed)
                return await _measure(ctx, selected, console, args.big_log_events)
            finally:
                await nc.close()
        finally:
            server.stop()


async def _measure(
    ctx: Context, selected: set[str], console: Console, big_log_events: int | None = None
) -> tuple[list[Baseline], list[Row], dict[str, int]]:
    sizes, js = ctx.sizes, ctx.js
    sample = Generator(ctx.seed, "SIZE").proposal(0)
    payload = proposed_envelope(sample).model_dump_json().encode()
    payload_bytes = {"event": len(payload), "command": len(json.dumps(sample).encode())}

    def measured(key: str, baseline: Baseline) -> None:
        ctx.baselines[key] = baseline
        console.log(f"  {baseline.name}: {baseline.value:,.2f} {baseline.unit}")

    def progress(row: Row) -> None:
        figure = "—" if row.figure is None else f"{row.figure:,.2f} {row.unit}"
        console.log(f"  {row.name}: {figure} {row.note}")

    console.log(f"[bold]baselines[/] (payload {payload_bytes['event']} bytes)")
    await raw.create_raw_stream(js)
    measured("publish_awaited", await raw.publish_awaited(js, payload, sizes.publish_awaited))
    measured("publish_async", await raw.publish_async(js, payload, sizes.publish_async))
    measured("fetch", await raw.fetch_raw(js, sizes.publish_async))
    if selected & {"intake-latency", "alert-latency", "alert-delivery"}:
        count = int(sizes.latency_rate * sizes.latency_seconds)
        p50, p99 = await raw.publish_latency(js, payload, count, sizes.latency_rate)
        measured("latency_p50", p50)
        measured("latency_p99", p99)
    if "eventsourcing" in selected:
        generated = Generator(ctx.seed, "ES").proposals(sizes.eventsourcing)
        payloads = [proposed_envelope(data).payload for data in generated]
        write, read = await asyncio.to_thread(
            raw.eventsourcing_baselines, payloads, ctx.work / "eventsourcing.sqlite"
        )
        measured("eventsourcing_write", write)
        measured("eventsourcing_read", read)

    rows: list[Row] = []
    if selected & INTAKE:
        console.log("[bold]intake[/] (own process)")
        rows += await _guarded("intake", intake_benchmarks(ctx, selected & INTAKE, progress))
    if "replay" in selected:
        console.log(f"[bold]replay[/] (reporting, own process, {sizes.replay:,} events)")
        rows += await _guarded("replay", replay_benchmarks(ctx, progress))
    if "prioritization" in selected:
        console.log("[bold]prioritization[/] (ranking, MILP selection, frontier)")
        rows += await _guarded(
            "prioritization", asyncio.to_thread(decisions.prioritization_benchmarks, ctx, progress)
        )
    if "ledger-replay" in selected:
        console.log("[bold]ledger replay[/] (own process, SQLite and PostgreSQL)")
        rows += await _guarded("ledger-replay", ledger_replay.ledger_replay(ctx, progress))
    if "big-log" in selected:
        size = big_log_events or million.BIG_LOG[sizes]
        console.log(f"[bold]big log[/] ({size:,} events, every service, own nats-server)")
        rows += await _guarded("big-log", million.big_log(ctx, size, progress, console.log))
    if "verify" in selected:
        size = chain_verify.VERIFY_LOG[sizes]
        console.log(f"[bold]verify[/] (audit --verify over {size:,} events, own nats-server)")
        rows += await _guarded("verify", chain_verify.verify_benchmarks(ctx, size, progress))
    if "alert-latency" in selected:
        console.log("[bold]alert latency[/] (intake and risk monitor, own processes)")
        rows += await _guarded("alert-latency", decisions.alert_latency(ctx, progress))
    if "alert-delivery" in selected:
        console.log("[bold]alert delivery[/] (intake, risk monitor, notify; webhook receiver)")
        rows += await _guarded("alert-delivery", alert_delivery.alert_delivery(ctx, progress))
    if "gateway" in selected:
        console.log("[bold]gateway[/] (HTTP commands beside NATS request/reply, own processes)")
        rows += await _guarded("gateway", gateway.gateway_benchmarks(ctx, progress))
    if "forecast" in selected:
        console.log("[bold]forecast[/] (Monte Carlo, 10,000 iterations x 3,000 projects)")
        rows += await _guarded(
            "forecast",
            asyncio.to_thread(forecast.forecast_benchmarks, ctx.seed, progress, sizes is not FULL),
        )
    return list(ctx.baselines.values()), rows, payload_bytes


async def _guarded(group: str, work: Any) -> list[Row]:
    """A benchmark that breaks becomes a row saying why; the others still run."""
    try:
        result: list[Row] = await work
    except Exception as error:  # noqa: BLE001 - reported in the table and the exit code
        note = f"failed: {type(error).__name__}: {error}"
        return [Row(group, group, "", None, "", None, note=note, details={"failed": True})]
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console = Console(stderr=True, log_path=False)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    found, rows, payload_bytes = asyncio.run(measure(args, console))
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    doc = document(mode, time.perf_counter() - started, started_at, found, rows, payload_bytes)
    write_json(doc, args.json)
    # Not on a terminal rich would wrap at 80 columns; a log file or CI page is wider.
    out = Console() if sys.stdout.isatty() else Console(width=160)
    print_tables(out, doc, rows)
    out.print(f"[dim]written to {args.json}[/]")
    return 1 if any(row.details.get("failed") for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
