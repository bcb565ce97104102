"""The benchmark harness runs end to end in its tiny mode and reports every row.

Speed is never asserted here (DESIGN: figures come from `make bench`, not from tests);
only that each benchmark produced a figure beside a baseline measured in the same run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.biglog import BigLog
from bench.generator import Generator
from contracts.registry import COMMANDS
from contracts.subjects import SERVICES
from domain.deciders import decide, evolve

ROOT = Path(__file__).resolve().parents[2]
ROWS = {
    "intake-throughput",
    "intake-latency-p50",
    "intake-latency-p99",
    "inbox",
    "replay",
    "replay-rss",
    "rank",
    "select",
    "frontier",
    "alert-latency-p50",
    *(f"alert-latency-p99-run{n}" for n in (1, 2, 3)),
    "ledger-replay-sqlite",
    "ledger-replay-postgresql",
    *(f"big-replay-{name}-sqlite" for name in SERVICES),
    *(f"big-rss-{name}" for name in SERVICES),
    "big-replay-ledger-pg",
    "big-report-as-of",
    "big-snapshots",
    "big-audit-project",
    "forecast",
    "verify-chain",
    "alert-delivery-p50",
    "alert-delivery-p99",
    "gateway-throughput",
    "gateway-latency-p50",
    "gateway-latency-p99",
}
#: Pure computations with no messaging to compare with; they report against their target.
NO_BASELINE = {"rank", "frontier"}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_smoke_run_reports_every_benchmark_beside_a_baseline(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())

    assert doc["mode"] == "smoke"
    assert {"cores", "memory_gib", "python", "nats_server", "platform"} <= set(doc["machine"])
    assert "nats-server" in doc["machine"]["nats_server"]
    assert doc["payload_bytes"]["event"] > doc["payload_bytes"]["command"] > 0
    rows = {row["key"]: row for row in doc["benchmarks"]}
    assert set(rows) == ROWS
    for key, row in rows.items():
        if key == "inbox" and row["figure"] is None:
            assert "inbox not available" in row["note"]
            continue
        assert _number(row["figure"]), row
        if key in NO_BASELINE:
            assert row["target"] != "—", row
            continue
        assert _number(row["baseline"]), row
        assert _number(row["ratio"]), row
        assert row["met"] in (True, False, None)
    assert rows["intake-latency-p99"]["met"] is not None
    assert rows["replay"]["met"] is not None
    names = [b["name"] for b in doc["baselines"]]
    assert any(name.startswith("eventsourcing") for name in names)
    assert all(_number(b["value"]) for b in doc["baselines"]), doc["baselines"]
    assert "intake request/reply" in done.stdout  # the table was printed


def test_generator_is_deterministic_and_every_command_is_legal(tmp_path: Path) -> None:
    out = tmp_path / "commands.jsonl"
    for _ in range(2):
        with out.open("a") as sink:
            subprocess.run(
                [sys.executable, "-m", "bench.generator", "--seed", "3", "--projects", "50"],
                cwd=ROOT,
                check=True,
                stdout=sink,
                timeout=60,
            )
    lines = out.read_text().splitlines()
    half = len(lines) // 2
    assert lines[:half] == lines[half:]
    assert Generator(3).proposal(7) == Generator(3).proposal(7)

    states: dict[str, object] = {}
    seen = set()
    for line in lines[:half]:
        item = json.loads(line)
        command = COMMANDS[item["command"]].model_validate(item["data"])
        project = item["data"]["project_id"]
        for event in decide(command, states.get(project), datetime.now(UTC)):
            states[project] = evolve(states.get(project), event)
        seen.add(item["command"])
    assert len(states) == 50
    assert {"ProposeProject", "ApproveProject", "StartProject", "CompleteProject"} <= seen


def test_big_log_is_deterministic_and_decided_by_the_domains() -> None:
    """The same seed gives the same log (event ids included); every event was decided by
    intake's domains, which refuse anything illegal (the builder stops on a refusal)."""
    first = [e.model_dump_json() for e in BigLog(1500, seed=11).events()]
    again = [e.model_dump_json() for e in BigLog(1500, seed=11).events()]
    assert len(first) == 1500
    assert [json.loads(x)["event_id"] for x in first] == [json.loads(x)["event_id"] for x in again]
    assert [json.loads(x)["payload"] for x in first] == [json.loads(x)["payload"] for x in again]
    kinds = {json.loads(x)["event_type"] for x in first}
    assert {"ProjectProposed", "BudgetAllocated", "ActualCostRecorded"} <= kinds
    assert {"ActualHoursRecorded", "ProgressReported", "RiskIdentified"} <= kinds
