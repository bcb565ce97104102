"""Deterministic, realistic portfolio commands, so benchmark figures are reproducible.

    python -m bench.generator --seed 7 --projects 1000 --out commands.jsonl

writes JSON Lines of {"command": NAME, "data": {...}}: each project is proposed, then most
go through review, approval, start, holds and completion, interleaved across projects but
always in a legal order for each project.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

Command = tuple[str, dict[str, Any]]

SPONSORS = ("cio", "cfo", "coo", "ciso", "cmo", "head-of-sales", "head-of-hr", "head-of-ops")
CATEGORIES = (
    "infrastructure",
    "security",
    "customer",
    "compliance",
    "analytics",
    "workplace",
    "finance",
    "operations",
)
VERBS = ("Replace", "Upgrade", "Migrate", "Consolidate", "Automate", "Modernise", "Introduce")
SYSTEMS = (
    "the CRM",
    "the ERP",
    "payroll",
    "the data warehouse",
    "identity management",
    "the service desk",
    "the intranet",
    "e-invoicing",
    "the mobile app",
    "backup and recovery",
    "network access control",
    "the HR portal",
    "demand planning",
    "the billing engine",
)
QUALIFIERS = ("", " in the cloud", " for EMEA", " for retail", " on Kubernetes", " (phase 2)")
ACTORS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
RATIONALES = (
    "Supports the 2027 growth strategy",
    "Business case reviewed by the board",
    "Reduces operating risk at acceptable cost",
    "Mandatory for the new regulation",
    "Frees capacity in the service desk",
)
REJECTIONS = ("Benefits not demonstrated", "Overlaps with an approved project", "No budget left")
HOLD_REASONS = ("Key supplier delayed", "Team moved to an incident", "Awaiting budget review")
CANCEL_REASONS = ("Strategy changed", "Vendor discontinued the product", "Merged into another")


class Generator:
    """Seeded: the same seed and prefix always yield the same commands in the same order."""

    def __init__(self, seed: int = 7, prefix: str = "PRJ") -> None:
        self.seed = seed
        self.prefix = prefix
        self.random = random.Random(seed)

    def project_id(self, index: int) -> str:
        return f"{self.prefix}-{index:06d}"

    def _random(self, index: int) -> random.Random:
        """Each project draws from its own stream: project N is the same whatever else is asked."""
        return random.Random(f"{self.seed}:{self.prefix}:{index}")

    def _common(self, r: random.Random, project_id: str, step: int) -> dict[str, Any]:
        return {
            "command_id": f"bench-{self.seed}-{project_id}-{step}",
            "project_id": project_id,
            "actor": r.choice(ACTORS),
            "source": "bench",
        }

    def proposal(self, index: int) -> dict[str, Any]:
        """ProposeProject data: a plausible name, sponsor, category, budget and dates."""
        return self._proposal(self._random(index), index)

    def _proposal(self, r: random.Random, index: int) -> dict[str, Any]:
        project_id = self.project_id(index)
        start = date(2027, 1, 1) + timedelta(days=r.randrange(0, 540))
        name = f"{r.choice(VERBS)} {r.choice(SYSTEMS)}{r.choice(QUALIFIERS)}"
        return self._common(r, project_id, 0) | {
            "name": name,
            "description": f"{name}: sponsored by the business, delivered by IT.",
            "sponsor": r.choice(SPONSORS),
            "category": r.choice(CATEGORIES),
            "capex": f"{r.randrange(20, 2000) * 1000}.00",
            "opex": f"{r.randrange(5, 400) * 500}.00",
            "currency": "EUR",
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(days=r.randrange(60, 720))).isoformat(),
        }

    def proposals(self, count: int) -> Iterator[dict[str, Any]]:
        for index in range(count):
            yield self.proposal(index)

    def lifecycle(self, index: int) -> list[Command]:
        """One project's commands, in a legal order (see the README's lifecycle)."""
        r = self._random(index)
        proposal = self._proposal(r, index)
        project_id = proposal["project_id"]
        commands: list[Command] = [("ProposeProject", proposal)]

        def add(name: str, **fields: Any) -> None:
            commands.append((name, self._common(r, project_id, len(commands)) | fields))

        if r.random() < 0.15:
            capex = f"{int(float(proposal['capex']) * r.uniform(0.8, 1.4))}.00"
            add("UpdateProjectEstimate", capex=capex, opex=proposal["opex"], reason="Re-quoted")
        if r.random() < 0.05:
            add("CancelProject", reason=r.choice(CANCEL_REASONS))
            return commands
        add("SubmitProjectForReview")
        if r.random() < 0.2:
            add("RejectProject", rationale=r.choice(REJECTIONS))
            return commands
        add("ApproveProject", rationale=r.choice(RATIONALES))
        if r.random() < 0.1:
            add("PutProjectOnHold", reason=r.choice(HOLD_REASONS))
            add("ResumeProject")
        add("StartProject", started_on=proposal["planned_start"])
        if r.random() < 0.15:
            add("PutProjectOnHold", reason=r.choice(HOLD_REASONS))
            add("ResumeProject")
        if r.random() < 0.08:
            add("CancelProject", reason=r.choice(CANCEL_REASONS))
        elif r.random() < 0.6:
            add("CompleteProject", completed_on=proposal["planned_end"])
        return commands

    def portfolio(self, projects: int) -> Iterator[Command]:
        """Every project's lifecycle, interleaved as independent tools would send them."""
        queues = [self.lifecycle(index) for index in range(projects)]
        cursors = [0] * projects
        open_ = list(range(projects))
        while open_:
            slot = self.random.randrange(len(open_))
            project = open_[slot]
            yield queues[project][cursors[project]]
            cursors[project] += 1
            if cursors[project] == len(queues[project]):
                open_[slot] = open_[-1]
                open_.pop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generator", description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--prefix", default="PRJ", help="project id prefix")
    parser.add_argument("--out", default="-", help="JSON Lines file (default: stdout)")
    args = parser.parse_args(argv)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for name, data in Generator(args.seed, args.prefix).portfolio(args.projects):
            out.write(json.dumps({"command": name, "data": data}) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
