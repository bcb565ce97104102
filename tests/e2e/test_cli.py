"""The installed `portfolio` CLI against `portfolio up` in a subprocess, as a newcomer would."""

from __future__ import annotations

import getpass
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
    """`portfolio up` on its own data folder, recorded in its own per-user state folder
    (XDG_STATE_HOME beside the data): nothing of the machine's user is read or written.
    Output goes to pipes, as wide as it needs (no COLUMNS)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.state_home = data_dir.parent / "state"
        environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        self.env = environ | {
            "PORTFOLIO_DATA_DIR": str(data_dir),
            "PORTFOLIO_NATS_PORT": "0",
            "PORTFOLIO_DASHBOARD_PORT": "0",
            "XDG_STATE_HOME": str(self.state_home),
        }
        for name in (
            "PORTFOLIO_NATS_URL",
            "PORTFOLIO_NATS_USER",
            "PORTFOLIO_ACTOR",
            "PORTFOLIO_PRINCIPAL",
        ):
            self.env.pop(name, None)
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

    def cli(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PORTFOLIO, *args],
            env=env or self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    @property
    def url(self) -> str:
        return str(json.loads((self.data_dir / "runtime.json").read_text())["nats_url"])

    def json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def wait_until(self, condition: Any, what: str, timeout: float = 120) -> None:
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
    # Position 2, unless prioritization's ranking of the proposal came first.
    assert submitted["status"] == "accepted" and submitted["events"][0]["position"] >= 2
    again = backend.json("send", "SubmitProjectForReview", "--file", str(command))
    assert again["duplicate"] is True and again["events"] == submitted["events"]

    approve = {"project_id": "CRM-1", "rationale": "Sales strategy 2027", "actor": "cfo"}
    approved = backend.json("send", "ApproveProject", "--data", json.dumps(approve))
    approved_at = approved["events"][0]["position"]

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

    backend.wait_until(lambda: backend.caught_up(approved_at), "projections caught up")
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
            ledger is not None
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


def proposal(project_id: str, **extra: str) -> str:
    """A proposal that names no actor and no source: the CLI must say who sent it."""
    fields = {k: v for k, v in PROPOSAL.items() if k not in ("actor", "source")}
    return json.dumps(fields | {"project_id": project_id} | extra)


def test_send_and_import_record_who_sent_them(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "data")
    # The NATS user `ops` may act for bob (not for anyone else): intake's actor binding.
    backend.env["PORTFOLIO_ACTOR_BINDINGS"] = '{"ops": ["bob"]}'
    backend.up()
    try:
        login = getpass.getuser()
        assert backend.cli("send", "ProposeProject", "--data", proposal("ID-1")).returncode == 0
        as_carol = backend.env | {"PORTFOLIO_ACTOR": "carol"}
        sent = backend.cli("send", "ProposeProject", "--data", proposal("ID-2"), env=as_carol)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        flagged = backend.cli(
            "send", "ProposeProject", "--actor", "dave", "--data", proposal("ID-3")
        )
        assert flagged.returncode == 0, flagged.stdout + flagged.stderr
        # What the sender wrote itself is kept (an explicit actor, a tool's source).
        given = proposal("ID-4", actor="erin", source="tracker")
        assert backend.cli("send", "ProposeProject", "--data", given, env=as_carol).returncode == 0

        # The principal is named in the subject: intake holds `ops` to its bindings.
        bound = backend.cli(
            "send", "ProposeProject", "--principal", "ops", "--actor", "bob",
            "--data", proposal("ID-5"),
        )  # fmt: skip
        assert bound.returncode == 0, bound.stdout + bound.stderr
        as_ops = backend.env | {"PORTFOLIO_PRINCIPAL": "ops", "PORTFOLIO_ACTOR": "mallory"}
        refused = backend.cli("send", "ProposeProject", "--data", proposal("ID-6"), env=as_ops)
        assert refused.returncode == 1 and "forbidden" in refused.stdout, refused.stdout
        assert "'ops' may not act for 'mallory'" in refused.stdout
        bad = backend.cli("send", "ProposeProject", "--principal", "a.b", "--data", "{}")
        assert bad.returncode == 2 and "subject token" in bad.stderr

        rows = tmp_path / "rows.jsonl"
        rows.write_text(json.dumps({"command": "ProposeProject", **json.loads(proposal("ID-7"))}))
        imported = backend.cli("import", str(rows), "--json")
        assert imported.returncode == 0, imported.stdout + imported.stderr
        rows.write_text(json.dumps({"command": "ProposeProject", **json.loads(proposal("ID-8"))}))
        assert backend.cli("import", str(rows), "--actor", "frank").returncode == 0

        end = backend.json("status")["intake"]["log_position"]
        backend.wait_until(lambda: backend.caught_up(end), "projections caught up")
        history = backend.json("audit", "--type", "ProjectProposed")
        who = {e["aggregate_id"]: (e["actor"], e["source"]) for e in history}
        assert who == {
            "ID-1": (login, "cli"),
            "ID-2": ("carol", "cli"),
            "ID-3": ("dave", "cli"),
            "ID-4": ("erin", "tracker"),
            "ID-5": ("bob", "cli"),
            "ID-7": (login, "import"),
            "ID-8": ("frank", "import"),
        }
        assert not [e for e in backend.json("audit") if e["actor"] == "anonymous"]
        table = backend.cli("audit", "--type", "ProjectProposed").stdout
        assert f"{login} via cli" in table and "bob via cli" in table
    finally:
        backend.down()


def test_the_cli_finds_the_backend_from_any_folder_and_never_guesses(
    backend: Backend, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # No data folder named: the per-user state file says where the backend runs.
    anywhere = {k: v for k, v in backend.env.items() if k != "PORTFOLIO_DATA_DIR"}
    found = backend.cli("status", "--json", cwd=elsewhere, env=anywhere)
    assert found.returncode == 0, found.stderr
    state = json.loads((backend.state_home / "portfolio" / "runtime.json").read_text())
    [entry] = state["backends"].values()
    assert entry["nats_url"] == backend.url and entry["data_dir"] == str(backend.data_dir)

    # Nothing recorded: said so, exit 3, no port tried.
    nowhere = anywhere | {"XDG_STATE_HOME": str(tmp_path / "empty-state")}
    lost = backend.cli("status", cwd=elsewhere, env=nowhere)
    assert lost.returncode == 3 and "no running backend found" in lost.stderr
    assert "4222" not in lost.stderr + lost.stdout
    for verb in (("audit",), ("alerts",), ("report",), ("send", "ProposeProject", "--data", "{}")):
        assert backend.cli(*verb, cwd=elsewhere, env=nowhere).returncode == 3, verb

    # --url, then PORTFOLIO_NATS_URL, reach it with no record at all.
    assert backend.cli("status", "--url", backend.url, cwd=elsewhere, env=nowhere).returncode == 0
    by_env = nowhere | {"PORTFOLIO_NATS_URL": backend.url}
    assert backend.cli("status", cwd=elsewhere, env=by_env).returncode == 0
    sent = backend.cli(
        "send", "ProposeProject", "--url", backend.url, "--data", json.dumps(PROPOSAL),
        cwd=elsewhere, env=nowhere,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    # A URL where nothing listens: unreachable, named, exit 3.
    dead = backend.cli("audit", "--url", "nats://127.0.0.1:1", cwd=elsewhere, env=nowhere)
    assert dead.returncode == 3 and "cannot reach NATS at nats://127.0.0.1:1" in dead.stderr
    assert backend.cli("status", "--url", " ", env=nowhere).returncode == 2


def test_a_second_up_on_the_same_data_folder_names_the_first_and_leaves_it_alone(
    backend: Backend,
) -> None:
    runtime_file = backend.data_dir / "runtime.json"
    before = runtime_file.read_text()
    first = json.loads(before)
    second = subprocess.run(
        [PORTFOLIO, "up"], env=backend.env, capture_output=True, text=True, timeout=60
    )
    output = " ".join((second.stdout + second.stderr).split())  # unwrapped
    assert second.returncode == 2, output
    assert f"pid {first['supervisor_pid']}" in output and first["nats_url"] in output
    # It started nothing and removed nothing: the first one's records and services stay.
    assert runtime_file.read_text() == before
    assert (backend.state_home / "portfolio" / "runtime.json").exists()
    anywhere = {k: v for k, v in backend.env.items() if k != "PORTFOLIO_DATA_DIR"}
    assert backend.cli("status", env=anywhere).returncode == 0
    assert backend.cli("send", "ProposeProject", "--data", json.dumps(PROPOSAL)).returncode == 0

    # Stopped, the first one takes its records with it, and the folder is free again.
    backend.down()
    assert not runtime_file.exists()
    state = json.loads((backend.state_home / "portfolio" / "runtime.json").read_text())
    assert state["backends"] == {}
    assert backend.cli("status", env=anywhere).returncode == 3
    backend.up()
    assert json.loads(runtime_file.read_text())["supervisor_pid"] != first["supervisor_pid"]


def test_tables_sent_to_a_pipe_are_never_cut(backend: Backend) -> None:
    rationale = "Approved because " + " ".join(f"reason-{n}" for n in range(40))
    assert backend.cli("send", "ProposeProject", "--data", json.dumps(PROPOSAL)).returncode == 0
    submit = {"project_id": "CRM-1"}
    assert (
        backend.cli("send", "SubmitProjectForReview", "--data", json.dumps(submit)).returncode == 0
    )
    approve = json.dumps({"project_id": "CRM-1", "rationale": rationale})
    approved = backend.json("send", "ApproveProject", "--data", approve)["events"][0]["position"]
    backend.wait_until(lambda: backend.caught_up(approved), "projections caught up")
    table = backend.cli("audit", "--project", "CRM-1")
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if "ProjectApproved" in line]
    assert len(rows) == 1 and rationale in rows[0], table.stdout  # one line, whole
    assert "SubmittedForReview" in table.stdout and "…" not in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) > 80
