"""Decisions under load: ranking, selection and frontier times (prioritization, pure and in
process), and the alert latency end to end (risk monitor and intake as their own processes)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

from bench.benchmarks import Context, Service, _bodies, _requester
from bench.measure import open_loop
from bench.report import Row
from domain.prioritization import scoring, selection
from shared.settings import PrioritizationSettings

RANK_TARGET_S = 2.0
SELECT_TARGET_S = 2.0
#: Issue 17: five generated instances for each size, the slowest within the target.
SELECT_SIZES = (1000, 2000, 10_000)
SELECT_INSTANCES = 5
SELECT_GAP = 1e-3
FRONTIER_TARGET_S = 5.0
#: Consecutive alert-latency runs (`--repeat`).
ALERT_RUNS = 3
ALERT_P99_TARGET_MS = 50.0


def _greedy(candidates: list[selection.SelectionCandidate], budget: Decimal) -> float:
    """What people do without a solver: take the best value per cost until money runs out."""
    spent, value = Decimal(0), 0.0
    for c in sorted(candidates, key=lambda c: -c.value / float(c.total_cost() or 1)):
        if spent + c.total_cost() <= budget:
            spent += c.total_cost()
            value += c.value
    return value


def prioritization_benchmarks(ctx: Context, progress: Any) -> list[Row]:
    n = 10_000 if ctx.sizes.replay >= 10_000 else 2_000
    instance = selection.synthetic_instance(n, 4, 12, seed=ctx.seed)
    rows = []

    scoring_candidates = [
        scoring.Candidate(
            project_id=c.project_id,
            cost=c.total_cost(),
            business_value=(1, 2, 3, 5, 8, 13, 20)[i % 7],
            npv=Decimal(i % 97 * 1000),
            risk=1 + i % 5,
            urgency=1 + i % 3,
            strategic_alignment=(i % 10) / 10,
        )
        for i, c in enumerate(instance.candidates)
    ]
    weights = dict.fromkeys(("value", "strategic_alignment", "npv", "risk", "urgency", "cost"), 1.0)
    started = time.perf_counter()
    totals = scoring.weighted_scores(scoring_candidates, weights).totals()
    scoring.rank(totals)
    seconds = time.perf_counter() - started
    rows.append(
        Row(
            "rank",
            f"rank {n:,} projects (weighted, 6 criteria)",
            "ms",
            seconds * 1000,
            "—",
            None,
            target=f"≤ {RANK_TARGET_S:g} s",
            met=seconds <= RANK_TARGET_S,
            higher_is_better=False,
        )
    )
    progress(rows[-1])

    rows.append(selection_row(ctx, instance))
    progress(rows[-1])

    total_budget = sum(instance.budgets.values(), Decimal(0))
    subset = list(instance.candidates[:1000])
    levels = [total_budget * Decimal(i) / 20 / 10 for i in range(1, 21)]
    started = time.perf_counter()
    points = selection.efficient_frontier(subset, levels)
    seconds = time.perf_counter() - started
    rows.append(
        Row(
            "frontier",
            "efficient frontier, 20 budget levels x 1,000 projects (exact)",
            "ms",
            seconds * 1000,
            "—",
            None,
            target=f"≤ {FRONTIER_TARGET_S:g} s",
            met=seconds <= FRONTIER_TARGET_S,
            higher_is_better=False,
            details={"optimal": sum(p.status == "optimal" for p in points)},
        )
    )
    progress(rows[-1])
    return rows


def selection_row(ctx: Context, instance: selection.SyntheticInstance) -> Row:
    """Five generated instances for each size (1k, 2k, 10k projects, 4 roles x 12 months),
    solved as the service solves them: its default time limit
    (PORTFOLIO_SELECTION_TIME_LIMIT_SECONDS) and a 0.1% gap. The figure is the slowest of
    all; the note gives each size's slowest, how many stopped at the limit and the worst
    proven gap. Met when the slowest answer is within the target: the issue asks that an
    answer cut by the limit be the best found with its proven gap, which the note shows."""
    smoke = ctx.sizes.replay <= 200
    sizes, count = ((300,), 2) if smoke else (SELECT_SIZES, SELECT_INSTANCES)
    limit = PrioritizationSettings.model_fields["selection_time_limit_seconds"].default
    per_size: dict[int, list[tuple[float, str, float]]] = {}
    slowest, slowest_at = 0.0, ""
    for n in sizes:
        runs = per_size[n] = []
        for k in range(count):
            seed = ctx.seed + k
            generated = selection.synthetic_instance(n, 4, 12, seed=seed)
            started = time.perf_counter()
            result = selection.select(
                generated.candidates,
                generated.budgets,
                generated.capacity,
                mip_rel_gap=SELECT_GAP,
                time_limit=limit,
            )
            seconds = time.perf_counter() - started
            runs.append((seconds, result.status, result.mip_gap))
            if seconds > slowest:
                slowest, slowest_at = seconds, f"{n:,} projects, seed {seed}"
    total_budget = sum(instance.budgets.values(), Decimal(0))
    greedy_started = time.perf_counter()
    _greedy(list(instance.candidates), total_budget)
    greedy_seconds = time.perf_counter() - greedy_started
    notes = []
    for n, runs in per_size.items():
        stopped = sum(status != "optimal" for _, status, _ in runs)
        worst = max(gap for _, _, gap in runs)
        notes.append(
            f"{n:,} projects: slowest "
            f"{max(t for t, _, _ in runs):.2f} s, {stopped}/{len(runs)} at the limit, "
            f"worst gap {worst * 100:.2f}%"
        )
    return Row(
        "select",
        f"select, slowest of {count} instances x {len(sizes)} sizes, 4 roles x 12 months "
        f"(MILP, gap ≤ {SELECT_GAP:.1%}, limit {limit:g} s)",
        "ms",
        slowest * 1000,
        f"greedy value/cost ordering, {len(instance.candidates):,} projects",
        greedy_seconds * 1000,
        target=f"≤ {SELECT_TARGET_S:g} s",
        # The target: the slowest answer within 2 s, one cut by the time limit saying
        # so with its proven gap (the note counts them and gives the worst gap).
        met=slowest <= SELECT_TARGET_S,
        higher_is_better=False,
        note="; ".join(notes),
        details={
            "time_limit_seconds": limit,
            "mip_rel_gap": SELECT_GAP,
            "slowest": slowest_at,
            "runs": {
                str(n): [
                    {"seconds": round(t, 3), "status": status, "mip_gap": gap}
                    for t, status, gap in runs
                ]
                for n, runs in per_size.items()
            },
        },
    )


async def alert_latency(ctx: Context, progress: Any) -> list[Row]:
    """From sending the command that crosses a threshold to the alert reaching a subscriber,
    while other commands flow at a steady rate; `ALERT_RUNS` consecutive runs on the same
    processes, each one's p99 reported (the target holds only if it holds in every run)."""
    intake = Service("intake", ctx.url, ctx.work / "alert-intake")
    risk = Service("risk", ctx.url, ctx.work / "alert-risk")
    intake.start()
    risk.start()
    runs: list[list[float]] = []
    samples = max(5, int(ctx.sizes.latency_seconds * 10))
    rate = ctx.sizes.latency_rate
    try:
        for service in (intake, risk):
            await service.wait_until(ctx.nc, lambda s: s["state"] == "running", timeout=60)
        project = json.loads(_bodies(ctx.seed, "ALERTP", 1)[0])
        await ctx.nc.request(
            "portfolio.cmd.ProposeProject", json.dumps(project).encode(), timeout=10
        )
        for run in range(ALERT_RUNS):
            runs.append(await _alert_run(ctx, project["project_id"], run, samples, rate))
    finally:
        intake.stop()
        risk.stop()
    latencies = sorted(x for run in runs for x in run)
    if not latencies:
        return [
            Row("alert-latency", "alert latency", "ms", None, "", None, note="no alert arrived")
        ]
    raw = ctx.baselines.get("latency_p99")
    p99s = [_p99(run) for run in runs]
    rows = [
        Row(
            "alert-latency-p50",
            f"alert latency p50 at {rate:,.0f} cmd/s background, {len(runs)} runs",
            "ms",
            latencies[len(latencies) // 2],
            raw.name if raw else "",
            raw.value if raw else None,
            higher_is_better=False,
            details={"alerts": len(latencies), "sent": samples * len(runs)},
        )
    ]
    for index, (found, p99) in enumerate(zip(runs, p99s, strict=True), 1):
        rows.append(
            Row(
                f"alert-latency-p99-run{index}",
                f"alert latency p99 at {rate:,.0f} cmd/s background, run {index} of {len(runs)}",
                "ms",
                p99,
                raw.name if raw else "",
                raw.value if raw else None,
                target=f"≤ {ALERT_P99_TARGET_MS:g} ms in each run",
                met=p99 is not None and p99 <= ALERT_P99_TARGET_MS,
                higher_is_better=False,
                note="" if len(found) == samples else f"{samples - len(found)} never arrived",
                details={"alerts": len(found), "sent": samples},
            )
        )
    for row in rows:
        progress(row)
    return rows


def _p99(latencies: list[float]) -> float | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _alert_run(
    ctx: Context, project_id: str, run: int, samples: int, rate: float
) -> list[float]:
    """One run: `samples` risks that each raise an alert, 10 a second, under the background
    load; the latencies (ms) of the alerts that arrived."""
    arrived: dict[str, float] = {}
    sub = await ctx.nc.subscribe("portfolio.alerts.>")

    async def watch() -> None:
        async for msg in sub.messages:
            alert = json.loads(msg.data)
            arrived.setdefault(alert["subject_id"], time.perf_counter())

    watcher = asyncio.create_task(watch())
    count = int(rate * samples / 10)
    background = open_loop(_requester(ctx.nc, _bodies(ctx.seed, f"BG{run}", count)), count, rate)
    load = asyncio.create_task(background)
    sent: dict[str, float] = {}
    for i in range(samples):
        risk_id = f"R-BENCH-{run}-{i}"
        body = {
            "risk_id": risk_id,
            "project_id": project_id,
            "title": "bench",
            "owner": "bench",
            "probability": 4,
            "impact": 4,
        }
        sent[risk_id] = time.perf_counter()
        await ctx.nc.request("portfolio.cmd.IdentifyRisk", json.dumps(body).encode(), timeout=10)
        await asyncio.sleep(0.1)
    await load
    for _ in range(200):  # at most 10 s for the last alerts to arrive
        if len(arrived) >= samples:
            break
        await asyncio.sleep(0.05)
    watcher.cancel()
    await sub.unsubscribe()
    return sorted((arrived[k] - t) * 1000 for k, t in sent.items() if k in arrived)
