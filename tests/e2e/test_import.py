"""`portfolio import` against `portfolio up`: the example portfolio, idempotent re-runs,
CSV files, bad rows reported by line and kept as rejections, usage errors.

The first tests read files only (no backend): how rows, ids and the sending order come out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services import importer
from tests.e2e.test_cli import Backend

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PORTFOLIO_FILE = EXAMPLES / "portfolio.jsonl"
PROPOSALS_FILE = EXAMPLES / "proposals.csv"
BAD_ROWS_FILE = EXAMPLES / "bad_rows.csv"


# --- reading files (no backend) ---------------------------------------------------------


def test_csv_cells_become_typed_nested_commands(tmp_path: Path) -> None:
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text(
        "command,project_id,name,description,mandatory,dependencies,objectives,"
        "scoring.business_value,scoring.npv,capex\n"
        'ProposeProject,P-1,One,"two\nlines",yes,A-1; B-2,'
        '"[{""objective_id"": ""O-1"", ""contribution"": 4}]",8,-1000,\n'
        "\n"
        "SubmitProjectForReview,P-1,,,,,,,,\n"
    )
    rows = importer.read_file(csv_file).rows
    assert [(r.line, r.command) for r in rows] == [
        (2, "ProposeProject"),
        (5, "SubmitProjectForReview"),
    ]
    assert rows[0].data == {
        "project_id": "P-1",
        "name": "One",
        "description": "two\nlines",
        "mandatory": True,
        "dependencies": ["A-1", "B-2"],
        "objectives": [{"objective_id": "O-1", "contribution": 4}],
        "scoring": {"business_value": 8, "npv": "-1000"},
    }
    assert rows[1].data == {"project_id": "P-1"}


def test_csv_without_a_command_column_takes_the_option(tmp_path: Path) -> None:
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("project_id,rationale\nP-1,fits the strategy\n")
    with pytest.raises(importer.ImportFileError, match="no `command` column"):
        importer.read_file(csv_file)
    [row] = importer.read_file(csv_file, "ApproveProject").rows
    assert (row.command, row.data) == (
        "ApproveProject",
        {"project_id": "P-1", "rationale": "fits the strategy"},
    )


def test_unreadable_rows_keep_their_line_and_raw_text(tmp_path: Path) -> None:
    lines = [
        '{"command": "DefineObjective", "data": {"objective_id": "O-1"}}',
        "{oops",
        '{"command": "RegisterStakeholder", "stakeholder_id": "S-1"}',
        '{"stakeholder_id": "S-2"}',
    ]
    jsonl = tmp_path / "rows.ndjson"
    jsonl.write_text("\n".join(lines) + "\n")
    rows = importer.read_file(jsonl).rows
    assert [r.line for r in rows] == [1, 2, 3, 4]
    assert rows[0].data == {"objective_id": "O-1"}
    assert rows[2].data == {"stakeholder_id": "S-1"}
    assert rows[1].data is None and rows[1].raw == b"{oops"
    assert rows[1].problem is not None and rows[1].problem.code == "malformed"
    assert rows[1].subject_command() == "ProposeProject"  # intake keeps it as a rejection
    assert rows[3].problem is not None and rows[3].problem.code == "unknown_command"


def test_a_bad_json_cell_is_a_problem_of_that_row_and_column(tmp_path: Path) -> None:
    rows = importer.read_file(BAD_ROWS_FILE).rows
    broken = next(r for r in rows if r.problem is not None)
    assert broken.line == 8
    assert broken.problem is not None
    assert [d.field for d in broken.problem.details] == ["objectives"]
    assert broken.raw.decode() == BAD_ROWS_FILE.read_text().splitlines()[7]


def test_command_ids_derive_from_the_content() -> None:
    first = importer.Row(1, "SubmitProjectForReview", {"project_id": "P-1"}, b"")
    again = importer.Row(9, "SubmitProjectForReview", {"project_id": "P-1"}, b"")
    other = importer.Row(1, "SubmitProjectForReview", {"project_id": "P-2"}, b"")
    given = importer.Row(1, "SubmitProjectForReview", {"project_id": "P-1", "command_id": "x"}, b"")
    assert first.command_id == again.command_id != other.command_id
    assert first.command_id is not None and first.command_id.startswith("import-")
    assert given.command_id == "x"
    assert json.loads(first.body()) == {
        "project_id": "P-1",
        "command_id": first.command_id,
        "source": "import",
    }


def test_rows_wait_only_for_earlier_rows_on_the_aggregates_they_touch() -> None:
    def row(command: str, **data: Any) -> importer.Row:
        return importer.Row(0, command, data, b"")

    proposal = {
        "name": "n",
        "sponsor": "s",
        "planned_start": "2027-01-01",
        "planned_end": "2027-06-30",
    }
    serves = [{"objective_id": "O-1", "contribution": 3}]
    rows = [
        row("DefineObjective", objective_id="O-1", name="o", owner="x", weight="10"),  # 0
        row("RegisterStakeholder", stakeholder_id="S-1", name="Dana", role="cfo"),  # 1
        row("ProposeProject", project_id="P-1", objectives=serves, **proposal),  # 2
        row("ProposeProject", project_id="P-2", objectives=serves, **proposal),  # 3
        row("ProposeProject", project_id="P-3", dependencies=["P-1"], **proposal),  # 4
        row("CommentOnProposal", project_id="P-2", stakeholder_id="S-1", comment="ok"),  # 5
        row("RetireObjective", objective_id="O-1", rationale="done with it"),  # 6
        row("SubmitProjectForReview", project_id="P-1"),  # 7
    ]
    assert importer.plan(rows) == [set(), set(), {0}, {0}, {2}, {1, 3}, {0, 2, 3}, {2, 4}]


def test_usage_errors_exit_2_without_a_backend(tmp_path: Path) -> None:
    unknown = tmp_path / "notes.txt"
    unknown.write_text("just some notes\n")
    nothing_running = Backend(tmp_path / "data")
    for args in (
        ["/nonexistent"],
        [str(tmp_path)],
        [str(unknown)],
        [str(PROPOSALS_FILE), "--command", "FundEverything"],
    ):
        done = nothing_running.cli("import", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)


# --- against `portfolio up` -------------------------------------------------------------


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    running = Backend(tmp_path / "data")
    running.up()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.down()


def imported(backend: Backend, path: Path, expect: int = 0) -> dict[str, Any]:
    done = backend.cli("import", str(path), "--json")
    assert done.returncode == expect, done.stdout + done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def log_position(backend: Backend) -> int:
    """Events in the log that commands caused (prioritization's own rankings aside)."""
    return len(
        [e for e in backend.json("audit", "--limit", "100000") if e["source"] != "prioritization"]
    )


def test_import_the_example_portfolio_and_bad_rows(backend: Backend) -> None:
    rows = len(PORTFOLIO_FILE.read_text().splitlines())
    first = imported(backend, PORTFOLIO_FILE)
    assert (first["rows"], first["accepted"], first["duplicates"], first["rejected"]) == (
        rows,
        rows,
        0,
        0,
    )
    assert first["rejections"] == [] and first["rows_per_second"] > 0
    backend.wait_until(
        lambda: backend.caught_up(int(backend.json("status")["intake"]["log_position"])),
        "projections caught up",
    )
    position = log_position(backend)
    assert position == rows  # one event per command

    again = imported(backend, PORTFOLIO_FILE)
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, rows, 0)
    assert log_position(backend) == position

    backend.wait_until(lambda: backend.caught_up(position), "projections caught up")
    events = Counter(
        e["event_type"]
        for e in backend.json("audit", "--limit", "5000")
        if e["source"] != "prioritization"
    )
    assert events == {
        "ObjectiveDefined": 6,
        "StakeholderRegistered": 8,
        "ProjectProposed": 40,
        "ProposalCommented": 7,
        "StakeholderStanceRecorded": 11,
        "ProjectSubmittedForReview": 34,
        "ProjectApproved": 15,
        "ProjectRejected": 2,
        "ProjectCancelled": 1,
        "ProjectStarted": 8,
        "ProjectCompleted": 2,
        "ProjectPutOnHold": 1,
    }
    history = backend.json("audit", "--project", "IAM-MFA")
    assert [e["event_type"] for e in history][-1] == "ProjectCompleted"
    assert {e["source"] for e in history} == {"import"}

    proposals = imported(backend, PROPOSALS_FILE)
    assert (proposals["rows"], proposals["accepted"], proposals["rejected"]) == (10, 10, 0)

    bad = imported(backend, BAD_ROWS_FILE, expect=1)
    assert (bad["accepted"], bad["rejected"]) == (2, 6)
    reported = {(r["line"], r["code"], tuple(r["fields"])) for r in bad["rejections"]}
    assert reported == {
        (3, "validation_failed", ("capex",)),
        (4, "validation_failed", ("planned_end",)),
        (5, "not_found", ("objectives.0.objective_id",)),
        (6, "validation_failed", ("name",)),
        (7, "validation_failed", ("project_id",)),
        (8, "malformed", ("objectives",)),
    }

    text = backend.cli("import", str(BAD_ROWS_FILE))
    assert text.returncode == 1
    assert "line 5: ProposeProject not_found [objectives.0.objective_id]" in text.stdout
    assert "line 8: ProposeProject malformed [objectives]" in text.stdout

    kept = backend.json("audit", "--rejections")
    kept_ids = {r["command_id"] for r in kept}
    assert {r["command_id"] for r in bad["rejections"] if r["command_id"]} <= kept_ids
    broken_line = BAD_ROWS_FILE.read_text().splitlines()[7]
    assert any(r["error"]["code"] == "malformed" and r["raw"] == broken_line for r in kept)


def test_import_exits_3_when_nothing_answers(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "data")
    backend.env["PORTFOLIO_NATS_URL"] = "nats://127.0.0.1:1"
    done = backend.cli("import", str(PROPOSALS_FILE))
    assert done.returncode == 3, done.stderr
    assert "cannot reach NATS" in done.stderr
