"""Operators see it on the embedded default: `portfolio up` gives every service a free
metrics port, `portfolio status` says where, each `/metrics` answers with the same figures
`portfolio status` prints."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.subjects import SERVICES
from tests.e2e.test_cli import PROPOSAL, Backend


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    running = Backend(tmp_path / "data")
    running.env.pop("PORTFOLIO_METRICS_PORT", None)  # the shipped default: free ports
    running.up()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.down()


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def test_every_service_serves_metrics_where_status_says(backend: Backend) -> None:
    for n in range(3):
        sent = backend.cli(
            "send", "ProposeProject", "--data", json.dumps(PROPOSAL | {"project_id": f"OPS-{n}"})
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
    refused = backend.cli("send", "ProposeProject", "--data", '{"project_id": "OPS-x"}')
    assert refused.returncode == 1

    statuses = backend.json("status")
    end = statuses["intake"]["log_position"]
    backend.wait_until(lambda: backend.caught_up(end), "every service caught up")
    statuses = backend.json("status")
    urls = {name: statuses[name]["metrics_url"] for name in SERVICES}
    assert all(url and url.startswith("http://127.0.0.1:") for url in urls.values()), urls
    assert len(set(urls.values())) == len(SERVICES)  # a port of its own each

    for name, url in urls.items():
        found = scrape(url)
        assert found[f'portfolio_projection_position{{service="{name}"}}'] >= end, name
        assert f'portfolio_projection_events_applied_total{{service="{name}"}}' in found
        assert found["process_resident_memory_bytes"] > 0
    intake = scrape(urls["intake"])
    accepted = 'portfolio_intake_commands_total{outcome="accepted",via="request"}'
    assert intake[accepted] == 3
    assert intake['portfolio_intake_commands_total{outcome="validation_failed",via="request"}'] == 1

    table = backend.cli("status")
    assert table.returncode == 0, table.stderr
    for url in urls.values():
        assert url in table.stdout
    assert "commands outcome=accepted via=request" in table.stdout
    assert "inbox pending" in table.stdout
