"""`portfolio forecast` against `portfolio up` (every service its own process): the
forecast of a small portfolio imported through the CLI, reproducible by seed, narrowed to
a project or a programme, in every format, and its usage errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.test_cli import Backend

COMMANDS: list[dict[str, Any]] = [
    {
        "command": "DefineObjective",
        "data": {"objective_id": "OBJ-1", "name": "Grow", "owner": "ceo", "weight": "10"},
    },
    *(
        {
            "command": "ProposeProject",
            "data": {
                "project_id": pid,
                "name": f"Project {pid}",
                "sponsor": "cio",
                "category": "infrastructure",
                "capex": "200000",
                "opex": "50000",
                "planned_start": "2027-01-01",
                "planned_end": "2027-12-31",
                "programme": "PRG-1",
                "objectives": [{"objective_id": "OBJ-1", "contribution": 2}],
            },
        }
        for pid in ("P-1", "P-2")
    ),
    *({"command": "SubmitProjectForReview", "data": {"project_id": p}} for p in ("P-1", "P-2")),
    *(
        {"command": "ApproveProject", "data": {"project_id": p, "rationale": "board"}}
        for p in ("P-1", "P-2")
    ),
    {
        "command": "DefineBudgetPool",
        "data": {
            "pool_id": "CAPEX-27",
            "name": "IT capex 2027",
            "fiscal_year": 2027,
            "category": "capex",
            "amount": "520000",
            "currency": "EUR",
            "owner": "cfo",
        },
    },
    *(
        {
            "command": "AllocateBudget",
            "data": {
                "pool_id": "CAPEX-27",
                "project_id": p,
                "amount": "250000",
                "rationale": "tranche",
            },
        }
        for p in ("P-1", "P-2")
    ),
    {
        "command": "IdentifyRisk",
        "data": {
            "risk_id": "R-1",
            "project_id": "P-1",
            "title": "Vendor late",
            "owner": "pmo",
            "probability": 4,
            "impact": 4,
            "impact_range": {"minimum": "20000", "most_likely": "50000", "maximum": "140000"},
            "delay_days": 45,
        },
    },
]


def test_portfolio_forecast_from_the_cli(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "data")
    backend.up()
    try:
        rows = tmp_path / "portfolio.jsonl"
        rows.write_text("".join(json.dumps(c) + "\n" for c in COMMANDS))
        done = backend.cli("import", str(rows))
        assert done.returncode == 0, done.stdout + done.stderr

        # The risk monitor appends its alert (R-1 scores 16) after the import: the same
        # seed gives the same forecast at the same log position.
        for _ in range(50):
            first = backend.json("forecast", "--seed", "7", "--iterations", "3000")
            again = backend.json("forecast", "--seed", "7", "--iterations", "3000")
            if first["cut"]["position"] == again["cut"]["position"]:
                break
        for answer in (first, again):
            answer.pop("generated_at")
        assert first == again
        assert (first["seed"], first["iterations"]) == (7, 3000)
        assert first["scope"]["projects"] == 2 and first["scope"]["risks"] == 1
        # 70% x the range's mean 70,000 = 49,000.
        assert first["emv_reserve"] == "49000.00"
        pool = next(b for b in first["budgets"] if b["id"] == "CAPEX-27")
        # 500,000 allocated of 520,000: a 4% margin against a default spread up to +30%.
        assert 0.0 < pool["probability_within"] < 1.0
        q = [float(first["total_cost"][k]) for k in ("p10", "p50", "p80", "p90")]
        assert q == sorted(q) and q[0] >= 500_000 * 0.95 and q[-1] <= 500_000 * 1.3 + 140_000

        table = backend.cli("forecast", "--seed", "7", "--iterations", "3000")
        assert table.returncode == 0, table.stderr
        assert "P10 / P50 / P80 / P90" in table.stdout and "CAPEX-27" in table.stdout
        assert "reserve needed at P80" in table.stdout
        assert "seed 7, 3,000 iterations" in table.stderr
        one = backend.json("forecast", "--project", "P-1", "--iterations", "500")
        assert [x["project_id"] for x in one["projects"]] == ["P-1"]
        programme = backend.json("forecast", "--programme", "PRG-1", "--iterations", "500")
        assert programme["scope"]["projects"] == 2
        md = backend.cli("forecast", "--format", "md", "--iterations", "500")
        assert md.returncode == 0 and "## Portfolio forecast" in md.stdout
        html = backend.cli("forecast", "--format", "html", "--iterations", "500")
        assert '<svg id="forecast-s-curve"' in html.stdout

        unknown = backend.cli("forecast", "--project", "NOPE")
        assert unknown.returncode == 1 and "unknown project NOPE" in unknown.stderr
        for usage in (
            ("--project", "P-1", "--programme", "PRG-1"),
            ("--iterations", "5"),
            ("--seed", "-1"),
            ("--format", "pdf"),
            ("--as-of", "not a time"),
        ):
            refused = backend.cli("forecast", *usage)
            assert refused.returncode == 2, (usage, refused.stdout, refused.stderr)

        report = backend.json("report")
        assert report["forecast"]["scope"]["projects"] == 2
    finally:
        backend.down()


def test_the_readme_forecast_and_stakeholder_commands_work_on_the_examples(
    tmp_path: Path,
) -> None:
    from tests.e2e.test_readme_time_travel import EXAMPLES, ROOT, readme_block

    forecast_block = readme_block("Portfolio forecast")
    people_block = readme_block("Stakeholder engagement: who needs what, and what they are sent")
    assert [c[0] for c in forecast_block] == ["forecast"] * 4
    backend = Backend(tmp_path / "data")
    backend.up()
    try:
        for name in ("portfolio.jsonl", "ledger_and_risks.jsonl"):
            done = backend.cli("import", str(EXAMPLES / name))
            assert done.returncode == 0, done.stdout + done.stderr
        for args in [*forecast_block, *people_block]:
            argv = args[: args.index("|")] if "|" in args else args
            result = backend.cli(*argv, cwd=ROOT)
            assert result.returncode == 0, (argv, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr, argv
        found = backend.json("forecast", "--seed", "42", "--iterations", "2000")
        assert found["scope"]["projects"] > 10 and found["scope"]["risks"] > 0
        assert {b["kind"] for b in found["budgets"]} == {"pool", "objective"}
        people = backend.json("report")["stakeholders"]
        cfo = next(x for x in people["items"] if x["stakeholder_id"] == "CFO")
        assert (cfo["quadrant"], cfo["engagement_gap"], cfo["open_feedback"]) == (
            "manage closely",
            1,
            0,
        )
        # The publication goes to the plan's address: no mail server here, so after its
        # attempts it is a dead letter with the reason, recorded.
        deliveries = backend.json("alerts", "--deliveries")
        assert deliveries["reports_owed"] + len(deliveries["report_deliveries"]) == 1
        table = backend.cli("alerts", "--deliveries")
        assert table.returncode == 0 and "report deliveries" in table.stdout
    finally:
        backend.down()
