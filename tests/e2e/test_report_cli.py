"""`portfolio report` on the example portfolio: every format, time travel between the two
imports, a scorecard, a diff, a publication, and the bad inputs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from tests.e2e.test_cli import Backend

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_all(backend: Backend, *calls: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Independent CLI calls side by side (each is mostly the interpreter starting)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda args: backend.cli("report", *args), calls))


def test_report_the_example_portfolio(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "data")
    backend.up()
    try:
        first = backend.cli("import", str(EXAMPLES / "portfolio.jsonl"))
        assert first.returncode == 0, first.stdout + first.stderr
        time.sleep(0.1)
        between = datetime.now(UTC).isoformat()
        time.sleep(0.1)
        second = backend.cli("import", str(EXAMPLES / "ledger_and_risks.jsonl"))
        assert second.returncode == 0, second.stdout + second.stderr

        report = backend.json("report")
        assert report["projects"]["total"] == 40
        assert {p["pool_id"] for p in report["budget"]["pools"]} == {"CAPEX-2027", "OPEX-2027"}
        assert report["risks"]["open"] == 6 and len(report["health"]["projects"]) == 6
        assert report["capacity"]["roles"] and report["ranking"]["top"]

        # As of a time between the two imports: the portfolio, none of the ledger or risks.
        then = backend.json("report", "--as-of", between)
        assert then["projects"]["total"] == 40
        assert then["budget"]["pools"] == [] and then["risks"]["open"] == 0
        assert then["health"]["projects"] == [] and then["capacity"]["roles"] == []

        page = tmp_path / "report.html"
        table, as_csv, md, written = run_all(
            backend,
            (),
            ("--format", "csv"),
            ("--format", "md"),
            ("--format", "html", "--output", str(page)),
        )
        assert table.returncode == 0, table.stderr
        assert "Budget by pool" in table.stdout and "CAPEX-2027" in table.stdout

        assert as_csv.returncode == 0, as_csv.stderr
        rows = [row for row in csv.reader(io.StringIO(as_csv.stdout)) if row]
        sections = {row[0] for row in rows} - {"section"}
        assert {"overview", "budget", "coverage", "risks", "health", "capacity"} <= sections
        assert {"ranking", "alerts", "changes", "risk_heat_map"} <= sections

        assert md.returncode == 0 and "## Budget by pool" in md.stdout
        assert "| CAPEX-2027 |" in md.stdout

        assert written.returncode == 0, written.stderr
        html = page.read_text()
        for chart in ("risk-heat-map", "budget-burn", "value-vs-cost", "capacity"):
            assert f'<svg id="{chart}"' in html
        assert "<script" not in html and "CRM-2027" in html

        card = backend.json("report", "--project", "CRM-2027")
        assert card["kind"] == "project" and card["project"]["project_id"] == "CRM-2027"
        assert {r["risk_id"] for r in card["risks"]["items"]} >= {"R-VENDOR", "R-DATA-MIG"}
        assert card["budget"]["totals"] and card["audit"]

        diff = backend.json("report", "--diff", between, "now")
        assert diff["kind"] == "diff" and len(diff["changes"]["new_risks"]) == 6
        assert diff["changes"]["new_proposals"] == []

        published = backend.cli("report", "--publish", "--rationale", "March board pack")
        assert published.returncode == 0 and "published" in published.stderr

        bad = {
            ("--as-of", "last tuesday"): (2, "not a time"),
            ("--as-of", "2999-01-01"): (1, "in the future"),
            ("--as-of", "2000-01-01"): (1, "before the first event"),
            ("--occurred-as-of", "2000-01-01"): (1, "nothing had occurred"),
            ("--format", "pdf"): (2, "unsupported format"),
            ("--project", "NOPE"): (1, "unknown project NOPE"),
            ("--diff", "now", "-1d"): (1, "is after"),
            ("--publish",): (2, "--rationale"),
            ("--format", "html", "--output", str(tmp_path / "no" / "such" / "dir.html")): (
                2,
                "cannot write",
            ),
        }
        for (args, (code, message)), done in zip(bad.items(), run_all(backend, *bad), strict=True):
            assert done.returncode == code, (args, done.stdout, done.stderr)
            assert message in " ".join(done.stderr.split()), (args, done.stderr)
            assert "Traceback" not in done.stderr
        assert json.loads(backend.cli("report", "--json").stdout)["changes"]["since"]["kind"] == (
            "published"
        )
    finally:
        backend.down()
