"""Rows, the printed table and the JSON file: every figure beside its baseline and target."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from shared.embedded_nats import nats_server_binary


@dataclass
class Baseline:
    """A reference figure: plain nats-py or another library, same run, same payload size."""

    name: str
    value: float
    unit: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    """One backend figure, the baseline it is compared with, and the issue's target.

    `higher_is_better` says which way the ratio reads (latency and memory: lower).
    A skipped row has no figure and says why in `note`.
    """

    key: str
    name: str
    unit: str
    figure: float | None
    baseline_name: str
    baseline: float | None
    target: str = "—"
    met: bool | None = None
    higher_is_better: bool = True
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.figure is None or not self.baseline:
            return None
        return self.figure / self.baseline

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio}


def skipped(key: str, name: str, unit: str, baseline: Baseline, target: str, note: str) -> Row:
    return Row(key, name, unit, None, baseline.name, baseline.value, target=target, note=note)


def machine_info() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(_memory_kib() / 1024 / 1024, 1),
        "python": platform.python_version(),
        "nats_server": _nats_server_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


def _memory_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _nats_server_version() -> str:
    try:
        out = subprocess.run(
            [nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    return out.stdout.strip() or out.stderr.strip()


def _git_commit() -> str | None:
    """Which code was measured; `+dirty` when the work tree had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def document(
    mode: str,
    seconds: float,
    started: datetime,
    baselines: list[Baseline],
    rows: list[Row],
    payload_bytes: dict[str, int],
) -> dict[str, Any]:
    return {
        "date": started.astimezone(UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "duration_seconds": round(seconds, 1),
        "machine": machine_info(),
        "payload_bytes": payload_bytes,
        "baselines": [asdict(b) for b in baselines],
        "benchmarks": [row.as_json() for row in rows],
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("ms", "x", "s"):
        return f"{value:,.2f} {unit}"
    return f"{value:,.0f} {unit}"


def print_tables(console: Console, doc: dict[str, Any], rows: list[Row]) -> None:
    machine = doc["machine"]
    console.print(
        f"[bold]bench[/] {doc['mode']} · {doc['date']} · {machine['cores']} cores · "
        f"{machine['memory_gib']} GiB · Python {machine['python']} · {machine['nats_server']} · "
        f"{doc['duration_seconds']} s"
    )
    table = Table(title="Backend figures beside raw baselines (same run, same server)")
    for column in ("benchmark", "ours", "baseline", "ratio", "target", "met"):
        table.add_column(column, justify="right" if column in ("ours", "ratio") else "left")
    for row in rows:
        ratio = row.ratio
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "—"}[row.met]
        base = f"{_number(row.baseline, row.unit)}  {row.baseline_name}"
        ours = _number(row.figure, row.unit) if row.figure is not None else row.note
        table.add_row(
            row.name,
            ours,
            base,
            "—" if ratio is None else f"{ratio:.2f}x",
            row.target,
            met,
        )
    console.print(table)
    refs = Table(title="Baselines")
    refs.add_column("baseline")
    refs.add_column("figure", justify="right")
    refs.add_column("details")
    for b in doc["baselines"]:
        details = ", ".join(f"{k}={v}" for k, v in b["details"].items())
        refs.add_row(b["name"], _number(b["value"], b["unit"]), details)
    console.print(refs)
    for row in rows:
        if row.note and row.figure is not None:
            console.print(f"[dim]{row.name}: {row.note}[/]")
