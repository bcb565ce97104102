"""The example portfolio through the CLI: ranked, compared in scenarios, on a frontier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.test_cli import Backend

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_rank_compare_and_commit_the_example_portfolio(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "data")
    backend.env |= {"PORTFOLIO_REPRIORITIZE_QUIET_SECONDS": "0.5"}
    backend.up()
    try:
        imported = backend.cli("import", str(EXAMPLES / "portfolio.jsonl"))
        assert imported.returncode == 0, imported.stdout + imported.stderr

        def ranked() -> bool:
            done = backend.cli("ranking", "--json")
            return done.returncode == 0 and json.loads(done.stdout)["ranking"]["model_version"] == 0

        backend.wait_until(ranked, "a ranking of the example portfolio")
        table = backend.cli("ranking")
        assert table.returncode == 0 and "strategic_alignment" in table.stdout

        compared = backend.cli("scenario", str(EXAMPLES / "scenarios.json"))
        assert compared.returncode == 0, compared.stdout + compared.stderr
        assert "budget cut 20%" in compared.stdout and "not selected" in compared.stdout

        chart = backend.cli("frontier", "--from", "0", "--to", "20000000", "--steps", "5")
        assert chart.returncode == 0 and "█" in chart.stdout

        scenario = tmp_path / "cut.json"
        scenario.write_text(json.dumps({"name": "cut", "budgets": {"2027/capex": "1000"}}))
        assert backend.cli("scenario", str(scenario), "--commit").returncode == 2
        committed = backend.cli(
            "scenario", str(scenario), "--commit", "--rationale", "board decision", "--json"
        )
        # A budget that cannot even fund the mandatory projects is refused with its cause.
        assert committed.returncode == 1 and "mandatory" in committed.stderr
        scenario.write_text(json.dumps({"name": "cut", "budgets": {"2027/capex": "9000000"}}))
        committed = backend.cli(
            "scenario", str(scenario), "--commit", "--rationale", "board decision"
        )
        assert committed.returncode == 0 and "committed" in committed.stdout
        backend.wait_until(
            lambda: "SelectionDecided" in backend.cli("audit", "--type", "SelectionDecided").stdout,
            "the decision in the audit trail",
        )

        # The README's capacity example: from ledger commands alone, SHOP-CHATBOT is left out
        # for developers in 2027-09 (6 FTE, 1 off, 2 held by the running ERP-UPGRADE).
        imported = backend.cli("import", str(EXAMPLES / "ledger_capacity.jsonl"))
        assert imported.returncode == 0, imported.stdout + imported.stderr

        def staffed() -> dict[str, Any]:
            done = backend.cli("scenario", str(EXAMPLES / "ledger_capacity.json"), "--json")
            assert done.returncode == 0, done.stdout + done.stderr
            outcomes: list[dict[str, Any]] = json.loads(done.stdout)
            return outcomes[0]

        backend.wait_until(
            lambda: "developer/2027-09" in staffed()["capacity"],
            "the ledger's capacity in prioritization",
        )
        baseline = staffed()
        assert baseline["capacity"] == {"developer/2027-09": 3.0}
        assert "FIELD-APP" in baseline["selected"]
        missed = {m["project_id"]: m["reason"] for m in baseline["not_selected"]}
        assert missed["SHOP-CHATBOT"] == "capacity developer/2027-09"
        shown = backend.cli("scenario", str(EXAMPLES / "ledger_capacity.json"))
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "capacity developer/2027-09" in shown.stdout
        assert "2 of 3" in shown.stdout and "4 of 4" in shown.stdout  # used of available
    finally:
        backend.down()
