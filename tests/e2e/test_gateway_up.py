"""`portfolio up` runs the HTTP gateway and prints its address; the README's calls work
against it: a command, a query (a scorecard as Markdown), a signed finance webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

PORTFOLIO = str(Path(sys.executable).parent / "portfolio")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SECRET = "finance-e2e-secret"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status = response.status
            kind = response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        raw, status, kind = error.read(), error.code, error.headers.get_content_type()
    return status, (json.loads(raw) if kind == "application/json" else raw.decode())


def test_up_runs_the_gateway_and_the_readme_calls_work(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTFOLIO_")}
    env |= {
        "PORTFOLIO_DATA_DIR": str(tmp_path / "data"),
        "PORTFOLIO_NATS_PORT": "0",
        "PORTFOLIO_DASHBOARD_PORT": "0",
        "PORTFOLIO_GATEWAY_PORT": "0",
        "PORTFOLIO_WEBHOOK_SECRET_FINANCE": SECRET,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "COLUMNS": "200",
    }
    process = subprocess.Popen(
        [PORTFOLIO, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def forward() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=forward, daemon=True).start()
    try:
        api = None
        deadline = time.monotonic() + 60
        while api is None and time.monotonic() < deadline:
            found = re.search(r"HTTP API:\s+(http://\S+/v1/)", lines.get(timeout=60))
            api = found.group(1) if found else None
        assert api is not None, "portfolio up printed no gateway address"

        def up() -> bool:
            try:
                status, answer = call("GET", f"{api}status")
            except OSError:
                return False
            return status == 200 and all(
                s is not None and s["state"] == "running" for s in answer["services"].values()
            )

        while not up():
            assert time.monotonic() < deadline + 60, "the services never all ran"
            assert process.poll() is None, "portfolio up died"
            time.sleep(0.3)

        proposal = {
            "project_id": "CRM-2027",
            "name": "Replace the CRM",
            "sponsor": "head-of-sales",
            "capex": "250000",
            "planned_start": "2027-01-01",
            "planned_end": "2027-12-31",
        }
        key = {"Idempotency-Key": "tracker-4711", "Content-Type": "application/json"}
        status, answer = call("POST", f"{api}commands/ProposeProject", proposal, key)
        assert status == 200 and answer["command_id"] == "tracker-4711", answer
        status, again = call("POST", f"{api}commands/ProposeProject", proposal, key)
        assert status == 200 and again["duplicate"] is True
        pool = {
            "pool_id": "CAPEX-27",
            "name": "IT capex 2027",
            "fiscal_year": 2027,
            "category": "capex",
            "amount": "1000000",
            "currency": "EUR",
            "owner": "cfo",
        }
        status, _ = call("POST", f"{api}commands/DefineBudgetPool", pool)
        assert status == 200

        invoice = (FIXTURES / "finance_invoice_posted.json").read_bytes()
        signature = hmac.new(SECRET.encode(), invoice, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": f"sha256={signature}", "X-Delivery-Id": "d-1"}
        status, answer = call("POST", f"{api}webhooks/finance", invoice, headers)
        assert status == 200 and answer["events"][0]["event_type"] == "ActualCostRecorded"

        def recorded() -> list[str]:
            status, trail = call("GET", f"{api}audit?project=CRM-2027")
            assert status == 200, trail
            return [entry["event_type"] for entry in trail["entries"]]

        while "ActualCostRecorded" not in recorded():
            assert time.monotonic() < deadline + 120, "the cost never reached the audit trail"
            time.sleep(0.3)
        status, card = call("GET", f"{api}projects/CRM-2027?format=md")
        assert status == 200 and "Replace the CRM" in card and "CAPEX-27" in card, card
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    assert process.returncode == 0
