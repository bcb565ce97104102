"""Closure on the example portfolio through the CLI: `examples/closure.jsonl` records past
projects' actual costs, progress, realised benefits and lessons; the report shows what they
teach and `portfolio lessons` searches the lessons."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import Backend

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_closure_of_the_example_portfolio(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "data")
    backend.up()
    try:
        for name in ("portfolio.jsonl", "closure.jsonl"):
            done = backend.cli("import", str(EXAMPLES / name))
            assert done.returncode == 0, done.stdout + done.stderr
        again = backend.json("import", str(EXAMPLES / "closure.jsonl"))
        assert again["accepted"] == 0 and again["duplicates"] == again["rows"] == 99

        improvement = backend.json("report")["improvement"]
        accuracy = improvement["estimate_accuracy"]
        assert [x["project_id"] for x in accuracy["projects"]] == [
            "DWH-CLOUD",
            "EDR-ROLL",
            "HR-ATS",
            "IAM-MFA",
            "WIFI-6",
        ]
        assert accuracy["without_actuals"] == ["EDR-ROLL", "IAM-MFA"]
        [total] = accuracy["totals"]
        # 205,000 + 214,000 + 1,410,000 against 180,000 + 230,000 + 1,200,000.
        assert (total["planned_cost"], total["actual_cost"], total["cost_variance_percent"]) == (
            "1610000.00",
            "1829000.00",
            "13.6",
        )
        by_size = {x["size"]: x["cost_variance_percent"] for x in accuracy["by_size"]}
        assert by_size["large"] == "17.5" and by_size["medium"] is None
        # Errors at 25/50/75% of the life: DWH-CLOUD 33.0, 6.4, 3.0; WIFI-6 2.4 each;
        # HR-ATS none yet, 9.0, 3.2.
        summary = improvement["eac_convergence"]["summary"]
        assert [(x["projects"], x["mean_abs_error_percent"]) for x in summary] == [
            (2, "17.7"),
            (3, "5.9"),
            (3, "2.9"),
        ]
        [benefits] = improvement["benefits"]["totals"]
        assert (benefits["realised_total"], benefits["expected_to_date"]) == (
            "453000.00",
            "550000.00",
        )
        assert benefits["realisation_percent"] == "82.4"
        assert improvement["lessons"]["total"] == 7

        page = tmp_path / "report.html"
        written = backend.cli("report", "--format", "html", "--output", str(page))
        assert written.returncode == 0, written.stderr
        html = page.read_text()
        assert '<svg id="estimate-accuracy"' in html and '<svg id="eac-convergence"' in html
        card = backend.cli("report", "--project", "DWH-CLOUD", "--format", "md").stdout
        assert "## Benefit realisation" in card and "Data quality work" in card

        found = backend.json("lessons", "--search", "data quality")
        assert [(x["project_id"], x["lesson_id"]) for x in found["lessons"]] == [
            ("DWH-CLOUD", "L1")
        ]
        planning = backend.json("lessons", "--category", "Planning")
        assert [x["project_id"] for x in planning["lessons"]] == ["WIFI-6", "DWH-CLOUD"]
        table = backend.cli("lessons", "--project", "RPA-AP")
        assert table.returncode == 0 and "Check that the process" in table.stdout
        unknown = backend.cli("lessons", "--project", "NOPE")
        assert unknown.returncode == 1 and "unknown project NOPE" in unknown.stderr

        # A lesson for a project still running is refused, and says why.
        early = backend.cli(
            "send",
            "RecordLessonLearned",
            "--data",
            json.dumps({"project_id": "CLOUD-LZ", "title": "Too early", "description": "x"}),
        )
        assert early.returncode == 1 and "illegal_transition" in early.stdout + early.stderr
    finally:
        backend.down()
