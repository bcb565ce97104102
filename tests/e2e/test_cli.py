"""The installed `portfolio` CLI against `portfolio up` in a subprocess, as a newcomer would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PORTFOLIO = str(Path(sys.executable).parent / "portfolio")
PROPOSAL = {
    "project_id": "CRM-1",
    "name": "Replace the CRM",
    "sponsor": "head-of-sales",
    "capex": "250000",
    "opex": "40000",
    "planned_start": "2027-01-01",
    "planned_end": "2027-12-31",
    "actor": "alice",
    "source": "cli",
}


class Backend:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = os.environ | {
            "PORTFOLIO_DATA_DIR": str(data_dir),
            "PORTFOLIO_NATS_PORT": "0",
            "PORTFOLIO_DASHBOARD_PORT": "0",
            "COLUMNS": "200",
        }
        self.process: subprocess.Popen[str] | None = None

    def up(self) -> None:
        self.process = subprocess.Popen(
            [PORTFOLIO, "up"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.wait_until(lambda: self.cli("status").returncode == 0, "all services up")

    def down(self) -> str:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        output, _ = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, output
        return output

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PORTFOLIO, *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def wait_until(self, condition: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is None or self.process.poll() is None, "portfolio up died"
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def caught_up(self, position: int) -> bool:
        statuses = self.json("status")
        return all(s and s["position"] >= position for s in statuses.values())


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    running = Backend(tmp_path / "data")
    running.up()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.down()


def test_walkthrough_from_proposal_to_audit(backend: Backend, tmp_path: Path) -> None:
    proposed = backend.cli("send", "ProposeProject", "--data", json.dumps(PROPOSAL))
    assert proposed.returncode == 0, proposed.stdout + proposed.stderr
    assert "accepted" in proposed.stdout and "ProjectProposed" in proposed.stdout

    command = tmp_path / "submit.json"
    command.write_text(json.dumps({"project_id": "CRM-1", "command_id": "submit-1"}))
    submitted = backend.json("send", "SubmitProjectForReview", "--file", str(command))
    assert submitted["status"] == "accepted" and submitted["events"][0]["position"] == 2
    again = backend.json("send", "SubmitProjectForReview", "--file", str(command))
    assert again["duplicate"] is True and again["events"] == submitted["events"]

    approve = {"project_id": "CRM-1", "rationale": "Sales strategy 2027", "actor": "cfo"}
    approved = backend.cli("send", "ApproveProject", "--data", json.dumps(approve))
    assert approved.returncode == 0, approved.stdout

    no_rationale = backend.cli("send", "ApproveProject", "--data", '{"project_id": "CRM-1"}')
    assert no_rationale.returncode == 1 and "rationale" in no_rationale.stdout
    illegal = backend.cli("send", "CompleteProject", "--data", '{"project_id": "CRM-1"}')
    assert illegal.returncode == 1 and "illegal_transition" in illegal.stdout
    malformed = backend.cli("send", "ProposeProject", "--data", "{oops")
    assert malformed.returncode == 1 and "malformed" in malformed.stdout
    unknown = backend.cli("send", "FundEverything", "--data", "{}")
    assert unknown.returncode == 1 and "unknown_command" in unknown.stdout
    assert backend.cli("send", "ProposeProject").returncode == 2
    assert backend.cli("send", "ProposeProject", "--file", "/nonexistent").returncode == 2

    backend.wait_until(lambda: backend.caught_up(3), "projections at position 3")
    history = backend.json("audit", "--project", "CRM-1")
    assert [e["event_type"] for e in history] == [
        "ProjectProposed",
        "ProjectSubmittedForReview",
        "ProjectApproved",
    ]
    assert history[2]["actor"] == "cfo" and history[2]["payload"]["rationale"]
    assert history[1]["causation_id"] == "submit-1"
    table = backend.cli("audit", "--project", "CRM-1")
    assert "ProjectApproved" in table.stdout and "Sales strategy 2027" in table.stdout

    refused = backend.json("audit", "--rejections")
    assert [r["error"]["code"] for r in refused] == [
        "validation_failed",
        "illegal_transition",
        "malformed",
        "unknown_command",
    ]
    assert refused[2]["raw"] == "{oops"

    replayed = backend.cli("replay", "reporting")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert backend.json("audit", "--project", "CRM-1") == history
    assert backend.cli("replay", "nonsense").returncode == 2


def test_stop_and_start_again_resumes_with_nothing_lost(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "data")
    backend.up()
    assert backend.cli("send", "ProposeProject", "--data", json.dumps(PROPOSAL)).returncode == 0
    backend.wait_until(lambda: backend.caught_up(1), "projections at position 1")
    pids = json.loads((backend.data_dir / "runtime.json").read_text())["services"]
    output = backend.down()
    assert "stopped" in output
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert backend.cli("status").returncode == 3  # nothing is listening any more

    backend.up()
    try:
        statuses = backend.json("status")
        # The proposal, and prioritization's ranking of it: nothing lost, nothing replayed.
        assert {s["position"] for s in statuses.values()} == {statuses["intake"]["log_position"]}
        assert all(s["applied_since_start"] < s["log_position"] for s in statuses.values())
        assert [e["aggregate_id"] for e in backend.json("audit", "--type", "ProjectProposed")] == [
            "CRM-1"
        ]
        duplicate = backend.cli("send", "ProposeProject", "--data", json.dumps(PROPOSAL))
        assert duplicate.returncode == 1 and "already_exists" in duplicate.stdout
    finally:
        backend.down()


def test_a_killed_service_is_restarted_while_the_others_keep_serving(backend: Backend) -> None:
    pids = json.loads((backend.data_dir / "runtime.json").read_text())["services"]
    os.kill(pids["ledger"], signal.SIGKILL)
    # The front door keeps working while ledger is down and coming back.
    assert backend.cli("send", "ProposeProject", "--data", json.dumps(PROPOSAL)).returncode == 0

    def ledger_restarted() -> bool:
        statuses = backend.json("status") if backend.cli("status").returncode == 0 else {}
        ledger = statuses.get("ledger")
        return (
            bool(ledger)
            and ledger["pid"] != pids["ledger"]
            and ledger["position"] >= 1
            and ledger["lag"] == 0
        )

    backend.wait_until(ledger_restarted, "ledger restarted and caught up")


def test_up_uses_a_configured_nats_and_starts_none(tmp_path: Path, nats_url: str) -> None:
    backend = Backend(tmp_path / "data")
    backend.env["PORTFOLIO_NATS_URL"] = nats_url
    backend.up()
    try:
        runtime = json.loads((backend.data_dir / "runtime.json").read_text())
        assert runtime["nats_url"] == nats_url
        assert not (backend.data_dir / "nats").exists()
        assert backend.cli("send", "ProposeProject", "--data", json.dumps(PROPOSAL)).returncode == 0
    finally:
        backend.down()
