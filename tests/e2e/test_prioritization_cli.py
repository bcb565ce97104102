"""The example portfolio through the CLI: ranked, compared in scenarios, on a frontier."""

from __future__ import annotations

import json
from pathlib import Path

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
    finally:
        backend.down()
