"""A large, realistic log built deterministically from a seed: thousands of projects over
three years (2024-2026) with their objectives, business cases, budget pools and
allocations, monthly invoices and timesheets, demand by role, baselines and progress, and
risks.

Every event is decided by intake's own domains (`decide`/`evolve`, `envelope_for`), so the
services fold it exactly as they fold what intake appends; a command the domains refuse
is a bug here and stops the build. Business time (`occurred_at`) runs over the three
years; recorded time is when the log is written, as when a history is imported. The
events go straight into the log stream, many in flight (far faster than through intake),
with the same headers `EventLog.append` sets.

    python -m bench.biglog --events 1000000 --seed 7 --out log.jsonl   # envelopes, JSON Lines
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from contracts import ledger as lg
from contracts import objectives as ob
from contracts import projects as p
from contracts import risks as rk
from contracts.base import Command, EventEnvelope
from contracts.subjects import LOG_STREAM, Subjects
from domain.deciders import decide, evolve
from domain.kernel import Rejected
from shared import chain
from shared.commands import envelope_for
from shared.eventlog import append_headers

YEARS = (2024, 2025, 2026)
MONTHS = [(year, month) for year in YEARS for month in range(1, 13)]
SPONSORS = ("cio", "cfo", "coo", "ciso", "cmo", "head-of-sales", "head-of-hr", "head-of-ops")
CATEGORIES = ("infrastructure", "security", "customer", "compliance", "analytics", "workplace")
ROLES = (
    "architect",
    "backend-dev",
    "frontend-dev",
    "data-engineer",
    "tester",
    "project-manager",
    "business-analyst",
    "security-engineer",
    "sre",
    "ux-designer",
    "dba",
    "network-engineer",
)
OBJECTIVES = (
    "Grow digital revenue",
    "Cut run costs",
    "Pass every audit",
    "Zero critical incidents",
    "Faster time to market",
    "Better employee experience",
    "Data-driven decisions",
    "Exit legacy platforms",
    "Customer self-service",
    "Sustainable IT",
)
VENDORS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka")
#: Events per project over its life is about this many; sets the project count.
EVENTS_PER_PROJECT = 330
ZERO = Decimal(0)
CENT = Decimal("0.01")


def period(year: int, month: int) -> str:
    return f"{year}-{month:02d}"


def month_end(year: int, month: int) -> datetime:
    first_next = date(year + month // 12, month % 12 + 1, 1)
    return datetime.combine(first_next - timedelta(days=1), datetime.min.time(), UTC).replace(
        hour=18
    )


@dataclass
class Plan:
    """One project's draws, fixed by the seed."""

    index: int
    project_id: str
    sponsor: str
    category: str
    proposed: int  # month index
    start: int
    months: int
    capex: int
    opex: int
    fate: str  # "rejected" | "cancelled-early" | "cancelled" | "run"
    overrun: float
    roles: tuple[str, str]
    invoices: int = 1
    pools: dict[tuple[int, str], str] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + self.months - 1

    def monthly_cost(self) -> Decimal:
        return Decimal(self.capex + self.opex) / self.months


class LogBuilder:
    """Decides generated commands with intake's domains, in memory."""

    def __init__(self, recorded_at: datetime) -> None:
        self.states: dict[tuple[str, str], Any] = {}
        self.recorded_at = recorded_at
        self.commands = 0

    def send(self, command: Command, now: datetime) -> list[EventEnvelope]:
        key = command.aggregate_key()
        refs = {ref: self.states.get(ref) for ref in command.references()}
        state = self.states.get(key)
        try:
            events = decide(command, state, now, refs)
        except Rejected as refused:
            raise RuntimeError(
                f"generated {type(command).__name__} refused: {refused.code} {refused.message}"
            ) from refused
        envelopes = []
        for index, event in enumerate(events):
            envelopes.append(envelope_for(command, event, key, index, self.recorded_at))
            state = evolve(state, event)
        self.states[key] = state
        self.commands += 1
        return envelopes


class BigLog:
    """`events()` yields about `target` envelopes (then stops exactly at it)."""

    def __init__(self, target: int, seed: int = 7, recorded_at: datetime | None = None) -> None:
        self.target = target
        self.seed = seed
        self.builder = LogBuilder(recorded_at or datetime.now(UTC))
        self.projects = max(20, target // EVENTS_PER_PROJECT)
        self.plans = [self._plan(i) for i in range(self.projects)]
        # Invoices per project-month fill the log up to its target size.
        project_months = sum(_months_run(x) for x in self.plans)
        fixed = 12 * self.projects + 5 * project_months + 16 * len(YEARS) + 12 * len(MONTHS)
        per_month = max(1, -(-(target - fixed) // max(1, project_months)))
        for plan in self.plans:
            plan.invoices = per_month
        # Each sponsor's pools hold what its projects are allocated, and some slack.
        self.pool_amounts: dict[str, Decimal] = {}
        for plan in self.plans:
            if plan.fate in ("run", "cancelled"):
                for _, pool_id, amount in self._shares(plan):
                    self.pool_amounts[pool_id] = self.pool_amounts.get(pool_id, ZERO) + amount

    def _plan(self, index: int) -> Plan:
        r = random.Random(f"{self.seed}:big:{index}")
        proposed = r.randrange(0, len(MONTHS) - 6)
        months = r.randrange(6, 25)
        roll = r.random()
        fate = (
            "rejected"
            if roll < 0.12
            else "cancelled-early"
            if roll < 0.15
            else "cancelled"
            if roll < 0.22
            else "run"
        )
        roles = tuple(r.sample(ROLES, 2))
        return Plan(
            index=index,
            project_id=f"BIG-{index:05d}",
            sponsor=r.choice(SPONSORS),
            category=r.choice(CATEGORIES),
            proposed=proposed,
            start=proposed + r.randrange(1, 4),
            months=months,
            capex=r.randrange(50, 3000) * 1000,
            opex=r.randrange(10, 600) * 1000,
            fate=fate,
            overrun=r.uniform(0.85, 1.35),
            roles=(roles[0], roles[1]),
        )

    # --- the commands, month by month ------------------------------------------------

    def events(self) -> Iterator[EventEnvelope]:
        for produced, envelope in enumerate(self._all(), start=1):
            yield envelope
            if produced >= self.target:
                return

    def _all(self) -> Iterator[EventEnvelope]:
        by_month: dict[int, list[Plan]] = {}
        for plan in self.plans:
            by_month.setdefault(plan.proposed, []).append(plan)
        active: list[Plan] = []
        for m, (year, month) in enumerate(MONTHS):
            now = month_end(year, month)
            send = self._sender(now)
            if m == 0:
                yield from self._objectives(send)
            if month == 1:
                yield from self._year(send, year)
            for plan in by_month.get(m, []):
                yield from self._propose(send, plan)
            for plan in self.plans:
                if plan.proposed == m - 1 or (plan.start == m and plan.fate != "rejected"):
                    yield from self._decision(send, plan, m)
                    if plan.start == m and plan.fate in ("run", "cancelled"):
                        active.append(plan)
            still: list[Plan] = []
            for plan in active:
                yield from self._month(send, plan, m, year, month)
                if plan.fate == "cancelled" and m == plan.start + plan.months // 2:
                    yield from send(p.CancelProject, plan, reason="Strategy changed")
                elif m == plan.end:
                    yield from send(p.CompleteProject, plan, completed_on=now.date())
                    yield from self._close_risks(send, plan)
                else:
                    still.append(plan)
            active = still

    def _sender(self, now: datetime) -> Callable[..., list[EventEnvelope]]:
        def send(kind: type[Command], plan: Plan | None = None, **data: Any) -> list[EventEnvelope]:
            self._n = getattr(self, "_n", 0) + 1
            if plan is not None and "project_id" not in data and kind.id_field == "project_id":
                data["project_id"] = plan.project_id
            command = kind(
                command_id=f"big-{self.seed}-{self._n}",
                actor=plan.sponsor if plan is not None else "portfolio-office",
                source="bench-biglog",
                occurred_at=now,
                **data,
            )
            return self.builder.send(command, now)

        return send

    def _objectives(self, send: Callable[..., list[EventEnvelope]]) -> Iterator[EventEnvelope]:
        for i, name in enumerate(OBJECTIVES):
            yield from send(
                ob.DefineObjective,
                objective_id=f"OBJ-{i + 1:02d}",
                name=name,
                owner=SPONSORS[i % len(SPONSORS)],
                weight=Decimal(1 + i % 3),
            )

    def _year(self, send: Callable[..., list[EventEnvelope]], year: int) -> Iterator[EventEnvelope]:
        for sponsor in SPONSORS:
            for category in lg.BudgetCategory:
                yield from send(
                    lg.DefineBudgetPool,
                    pool_id=f"POOL-{year}-{sponsor}-{category.value}",
                    name=f"{sponsor} {category.value} {year}",
                    fiscal_year=year,
                    category=category,
                    amount=self._pool_amount(f"POOL-{year}-{sponsor}-{category.value}"),
                    currency="EUR",
                    owner=sponsor,
                )
        for role in ROLES:
            for month in range(1, 13):
                yield from send(
                    lg.SetCapacity,
                    role=role,
                    period=period(year, month),
                    amount=Decimal(3000),
                    unit=lg.CapacityUnit.HOURS,
                    time_off=Decimal(150 if month in (7, 8, 12) else 40),
                )

    def _propose(
        self, send: Callable[..., list[EventEnvelope]], plan: Plan
    ) -> Iterator[EventEnvelope]:
        r = random.Random(f"{self.seed}:proposal:{plan.index}")
        start_year, start_month = MONTHS[plan.start]
        starts = date(start_year, start_month, 1)
        end_year, end_month = _month_at(plan.end)
        ends = month_end(end_year, end_month).date()
        objectives = r.sample(range(1, len(OBJECTIVES) + 1), r.randrange(1, 4))
        yield from send(
            p.ProposeProject,
            plan,
            name=f"{r.choice(('Replace', 'Upgrade', 'Migrate', 'Automate'))} "
            f"{r.choice(('the CRM', 'the ERP', 'payroll', 'the data platform', 'identity'))}"
            f" #{plan.index}",
            description="Generated for the million-event benchmark.",
            sponsor=plan.sponsor,
            category=plan.category,
            capex=Decimal(plan.capex),
            opex=Decimal(plan.opex),
            planned_start=starts,
            planned_end=ends,
            objectives=[
                p.ObjectiveContribution(objective_id=f"OBJ-{o:02d}", contribution=r.randint(1, 5))
                for o in objectives
            ],
            expected_benefits=[
                p.YearlyBenefit(year=end_year + k, amount=Decimal(r.randrange(50, 2000) * 1000))
                for k in range(1, 4)
            ],
            scoring=p.ScoringInputs(
                business_value=r.choice((1, 2, 3, 5, 8, 13, 20)),
                time_criticality=r.choice((1, 2, 3, 5, 8, 13)),
                risk_reduction=r.choice((1, 2, 3, 5, 8)),
                job_size=r.choice((1, 2, 3, 5, 8, 13)),
                risk=r.randint(1, 5),
                urgency=r.randint(1, 5),
            ),
        )
        yield from send(p.SubmitProjectForReview, plan)

    def _decision(
        self, send: Callable[..., list[EventEnvelope]], plan: Plan, m: int
    ) -> Iterator[EventEnvelope]:
        if plan.proposed == m - 1:
            if plan.fate == "rejected":
                yield from send(p.RejectProject, plan, rationale="Benefits not demonstrated")
                return
            if plan.fate == "cancelled-early":
                yield from send(p.CancelProject, plan, reason="Merged into another project")
                return
            yield from send(p.ApproveProject, plan, rationale="Fits the strategy and the budget")
        if plan.start != m or plan.fate not in ("run", "cancelled"):
            return
        year, month = MONTHS[m]
        yield from send(p.StartProject, plan, started_on=date(year, month, 1))
        bac = Decimal(plan.capex + plan.opex)
        curve = []
        for k in range(plan.months):
            y, mo = _month_at(m + k)
            curve.append(
                rk.PlannedValue(
                    period=period(y, mo),
                    planned_value=(bac * (k + 1) / plan.months).quantize(Decimal("0.01")),
                )
            )
        curve[-1] = rk.PlannedValue(period=curve[-1].period, planned_value=bac)
        yield from send(
            rk.SetProjectBaseline, plan, budget_at_completion=bac, planned_value_by_period=curve
        )
        r = random.Random(f"{self.seed}:risks:{plan.index}")
        for k in range(2):
            yield from send(
                rk.IdentifyRisk,
                plan,
                risk_id=f"{plan.project_id}-R{k + 1}",
                project_id=plan.project_id,
                title=r.choice(("Key supplier late", "Data migration defects", "Skills gap")),
                owner=plan.sponsor,
                probability=r.randint(1, 5),
                impact=r.randint(1, 5),
                monetary_impact=Decimal(r.randrange(10, 500) * 1000),
            )

    def _pool(self, plan: Plan, year: int, category: lg.BudgetCategory) -> str:
        """The sponsor's pool for the year and category."""
        return f"POOL-{year}-{plan.sponsor}-{category.value}"

    def _pool_amount(self, pool_id: str) -> Decimal:
        return (self.pool_amounts.get(pool_id, ZERO) * Decimal("1.15") + 1_000_000).quantize(CENT)

    def _shares(self, plan: Plan) -> Iterator[tuple[int, str, Decimal]]:
        """(month index, pool, amount): the project's allocation at its start and at each
        January, for the months it runs that year."""
        for m in range(plan.start, min(plan.end + 1, len(MONTHS))):
            year, month = MONTHS[m]
            if m != plan.start and month != 1:
                continue
            left = min(12 - month + 1, plan.end - m + 1)
            for category, total in (
                (lg.BudgetCategory.CAPEX, plan.capex),
                (lg.BudgetCategory.OPEX, plan.opex),
            ):
                share = (Decimal(total) * left / plan.months).quantize(CENT)
                yield m, self._pool(plan, year, category), share

    def _month(
        self,
        send: Callable[..., list[EventEnvelope]],
        plan: Plan,
        m: int,
        year: int,
        month: int,
    ) -> Iterator[EventEnvelope]:
        r = random.Random(f"{self.seed}:month:{plan.index}:{m}")
        for at, pool_id, share in self._shares(plan):
            if at == m:
                yield from send(
                    lg.AllocateBudget,
                    plan,
                    pool_id=pool_id,
                    project_id=plan.project_id,
                    amount=share,
                    rationale=f"{year} share of the approved business case",
                )
        spend = plan.monthly_cost() * Decimal(str(plan.overrun))
        for k in range(plan.invoices):
            category = lg.BudgetCategory.CAPEX if k % 3 else lg.BudgetCategory.OPEX
            amount = (spend / plan.invoices * Decimal(str(r.uniform(0.6, 1.4)))).quantize(
                Decimal("0.01")
            )
            yield from send(
                lg.RecordActualCost,
                plan,
                pool_id=self._pool(plan, year, category),
                project_id=plan.project_id,
                amount=max(amount, Decimal("1.00")),
                external_ref=f"INV-{r.choice(VENDORS)}-{plan.index}-{m}-{k}",
                period=period(year, month),
            )
        for role in plan.roles:
            hours = Decimal(r.randrange(40, 400))
            yield from send(
                lg.AssignDemand,
                plan,
                role=role,
                project_id=plan.project_id,
                period=period(year, month),
                amount=hours,
            )
            yield from send(
                lg.RecordActualHours,
                plan,
                role=role,
                project_id=plan.project_id,
                period=period(year, month),
                hours=(hours * Decimal(str(r.uniform(0.7, 1.3)))).quantize(Decimal("0.1")),
                external_ref=f"TS-{plan.index}-{m}-{role}",
            )
        elapsed = m - plan.start + 1
        percent = min(
            Decimal(100), Decimal(100 * elapsed) / plan.months / Decimal(str(plan.overrun))
        )
        if m == plan.end:
            percent = Decimal(100)
        yield from send(
            rk.ReportProgress,
            plan,
            period=period(year, month),
            percent_complete=percent.quantize(Decimal("0.1")),
        )
        if elapsed == 3:
            yield from send(
                rk.AssessRisk,
                plan,
                risk_id=f"{plan.project_id}-R1",
                probability=r.randint(1, 5),
                impact=r.randint(1, 5),
                rationale="Quarterly review",
            )

    def _close_risks(
        self, send: Callable[..., list[EventEnvelope]], plan: Plan
    ) -> Iterator[EventEnvelope]:
        for k in range(2):
            yield from send(
                rk.CloseRisk,
                plan,
                risk_id=f"{plan.project_id}-R{k + 1}",
                rationale="Project completed",
            )


def _months_run(plan: Plan) -> int:
    """Months with facts within the generated years (a cancelled project stops halfway)."""
    if plan.fate not in ("run", "cancelled"):
        return 0
    last = plan.start + plan.months // 2 if plan.fate == "cancelled" else plan.end
    return max(0, min(last, len(MONTHS) - 1) - plan.start + 1)


def _month_at(index: int) -> tuple[int, int]:
    """Year and month of a month index, also beyond the generated years."""
    year, month = divmod(index, 12)
    return YEARS[0] + year, month + 1


async def publish(
    js: JetStreamContext,
    envelopes: Iterator[EventEnvelope],
    progress: Callable[[int], None] | None = None,
    window: int = 512,
    subjects: Subjects | None = None,
) -> int:
    """Write the envelopes to the log, `window` in flight, with the headers an append
    carries (message id, expected last sequence of the aggregate's subject). The builder
    is the only writer, so each aggregate's last position is known without asking."""
    subjects = subjects or Subjects()
    info = await js.stream_info(LOG_STREAM)
    position = int(info.state.last_seq or 0)
    last: dict[str, int] = {}
    links: dict[str, str] = {}
    pending: list[asyncio.Future[Any]] = []
    written = 0
    for envelope in envelopes:
        subject = subjects.events(envelope.aggregate_type, envelope.aggregate_id)
        headers = append_headers(envelope, last.get(subject, 0))
        position += 1
        last[subject] = position
        # Sealed into the hash chain as the portfolio's writers seal it (shared/chain.py).
        unsealed = envelope.model_dump_json(exclude={chain.FIELD}).encode()
        data, links[subject] = chain.seal(unsealed, links.get(subject, chain.GENESIS))
        pending.append(await js.publish_async(subject, data, headers=headers))
        if len(pending) >= window:
            await _settle(pending)
            written += len(pending)
            pending = []
            if progress is not None:
                progress(written)
    await _settle(pending)
    written += len(pending)
    if progress is not None:
        progress(written)
    return written


async def _settle(pending: list[asyncio.Future[Any]]) -> None:
    for ack in await asyncio.gather(*pending):
        if getattr(ack, "duplicate", False):
            raise RuntimeError(f"the log already held event at {ack.seq}: use a fresh log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.biglog", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True, help="JSON Lines of envelopes")
    args = parser.parse_args(argv)
    count = 0
    with args.out.open("w") as out:
        for envelope in BigLog(args.events, args.seed).events():
            out.write(envelope.model_dump_json() + "\n")
            count += 1
    print(f"{count:,} events to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
