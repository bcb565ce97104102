"""The README's "Reports and time travel" commands, pasted after its imports, against
`portfolio up`: every one exits 0, business time shows the example portfolio's history,
the exports are files a spreadsheet opens; and `scenario --commit` names what it commits
and records a repeat once."""

from __future__ import annotations

import csv
import json
import re
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path

from openpyxl import load_workbook

from tests.e2e.test_cli import Backend

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"


def readme_block(heading: str) -> list[list[str]]:
    """The `portfolio ...` commands of the first sh block under `heading`, as argv lists
    (comments dropped, continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(f"## {heading}\n") :]
    block = section[section.index("```sh\n") + 6 :]
    block = block[: block.index("```")].replace("\\\n", " ")
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "portfolio":
            commands.append(words[1:])
    return commands


def test_the_readme_time_travel_commands_work_after_the_imports(tmp_path: Path) -> None:
    commands = readme_block("Reports and time travel")
    imports = [c for c in commands if c[0] == "import"]
    assert [Path(c[1]).name for c in imports] == ["portfolio.jsonl", "ledger_and_risks.jsonl"]
    backend = Backend(tmp_path / "data")
    backend.up()
    work = tmp_path / "work"
    work.mkdir()
    try:
        first = backend.cli(*imports[0], cwd=ROOT)
        assert first.returncode == 0, first.stdout + first.stderr
        time.sleep(1.5)
        between, between_wall = time.monotonic(), datetime.now(UTC)
        time.sleep(1.5)
        second = backend.cli(*imports[1], cwd=ROOT)
        assert second.returncode == 0, second.stdout + second.stderr

        # "-5m" in the README means "between the imports": here that is a few seconds ago.
        done = {}
        for args in commands[2:]:
            ago = f"-{round(time.monotonic() - between)}s"
            argv = [ago if a == "-5m" else a for a in args]
            result = backend.cli(*argv, cwd=work)
            assert result.returncode == 0, (argv, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr and "None" not in result.stdout, argv
            done[" ".join(args)] = result

        # Business time: the portfolio as it stood on 31 March 2026, and since.
        then = backend.json("report", "--occurred-as-of", "2026-03-31")
        now = backend.json("report")
        assert then["projects"]["by_status"]["approved"] == 15
        assert then["risks"]["open"] == 0 and now["risks"]["open"] == 6
        assert [t["actual"] for t in then["budget"]["totals"]] == ["0.00"]
        assert now["budget"]["totals"][0]["actual"] != "0.00"
        diff = backend.json("report", "--diff", "2026-01-01", "2026-09-30", "--business-time")
        assert len(diff["changes"]["approvals"]) == 15 and len(diff["changes"]["new_risks"]) == 6
        end_2025 = backend.json("audit", "--occurred-as-of", "2025-12-31")
        types = {e["event_type"] for e in end_2025}
        assert "ProjectProposed" in types and "ProjectApproved" not in types

        # Recorded time: before the second import there was no ledger and no risk.
        earlier = backend.json("report", "--as-of", between_wall.isoformat())
        assert earlier["projects"]["total"] == 40 and earlier["budget"]["pools"] == []
        recorded = done["report --diff -5m now"].stdout
        assert "new risks" in recorded and "R-VENDOR" in recorded

        # The exports: a workbook with numbers as numbers, a folder of plain csv tables.
        book = load_workbook(work / "board.xlsx")
        assert "budget" in book.sheetnames and "health" in book.sheetnames
        budget = book["budget"]
        allocated = [c.value for c in budget[1]].index("allocated") + 1
        assert isinstance(budget.cell(row=2, column=allocated).value, int | float)
        with (work / "board" / "budget.csv").open() as found:
            pools = {row["pool"] for row in csv.DictReader(found)}
        assert pools == {"CAPEX-2027", "OPEX-2027"}
        assert '<svg id="budget-burn"' in (work / "board.html").read_text()
        md = done["report --format md"].stdout
        assert re.search(r"\| budget EUR \| allocated \d{1,3}(,\d{3})+", md)
    finally:
        backend.down()


def test_scenario_commit_names_the_scenario_and_records_a_repeat_once(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "data")
    backend.env |= {"PORTFOLIO_REPRIORITIZE_QUIET_SECONDS": "0.5"}
    backend.up()
    try:
        imported = backend.cli("import", str(EXAMPLES / "portfolio.jsonl"))
        assert imported.returncode == 0, imported.stdout + imported.stderr
        backend.wait_until(
            lambda: backend.cli("ranking", "--json").returncode == 0, "a ranking to select from"
        )
        scenarios = str(EXAMPLES / "scenarios.json")
        several = backend.cli("scenario", scenarios, "--commit", "--rationale", "board")
        assert several.returncode == 2 and "--scenario" in several.stderr
        assert "budget cut 20%" in several.stderr  # the names to choose from
        unknown = backend.cli(
            "scenario", scenarios, "--commit", "--scenario", "nope", "--rationale", "board"
        )
        assert unknown.returncode == 2 and "no scenario named 'nope'" in unknown.stderr

        args = ("scenario", scenarios, "--commit", "--scenario", "budget cut 20%")
        first = backend.cli(*args, "--rationale", "board decision")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "committed scenario budget cut 20% at log position" in first.stdout

        def decisions() -> list[dict[str, object]]:
            found = backend.json("audit", "--type", "SelectionDecided")
            return list(found)

        backend.wait_until(lambda: len(decisions()) == 1, "the decision in the audit trail")
        again = backend.cli(*args, "--rationale", "board decision")
        assert again.returncode == 0 and "already committed" in again.stdout, again.stdout
        other = backend.cli(*args, "--rationale", "a second board decision", "--json")
        assert other.returncode == 0, other.stderr
        outcomes = json.loads(other.stdout[other.stdout.index("[") :])
        assert outcomes[0]["scenario"]["name"] == "budget cut 20%"
        backend.wait_until(lambda: len(decisions()) == 2, "the second decision")
        time.sleep(0.5)
        entries = decisions()
        assert len(entries) == 2, entries  # the repeat appended nothing
    finally:
        backend.down()
