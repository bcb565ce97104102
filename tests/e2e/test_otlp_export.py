"""Traces leave a real service process over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is
set: `portfolio serve intake` and `portfolio serve ledger` export their spans to a local
receiver standing in for a collector, in the caller's trace."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from nats.aio.client import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.integration.helpers import caught_up, proposal, send, wait_for_status

CALLER_TRACE = "e" * 32
CALLER = f"00-{CALLER_TRACE}-{'f' * 16}-01"


@dataclass
class Collector:
    """Receives OTLP/HTTP protobuf exports: (service.name, span name, trace id hex)."""

    url: str = ""
    spans: list[tuple[str, str, str]] = field(default_factory=list)

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            names = [
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            ]
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append((names[0], span.name, span.trace_id.hex()))
        return web.Response(status=200)


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    found = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", found.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}"
    yield found
    await runner.cleanup()


def serve(service: str, nats_url: str, data_dir: Path, endpoint: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTFOLIO_", "OTEL_"))}
    env |= {
        "PORTFOLIO_NATS_URL": nats_url,
        "PORTFOLIO_DATA_DIR": str(data_dir),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second
    }
    log_file = (data_dir / f"{service}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", service],
        env=env,
        stdout=log_file,
        stderr=log_file,
    )


async def test_services_export_the_callers_trace_over_otlp(
    nc: Client, nats_url: str, tmp_path: Path, collector: Collector
) -> None:
    processes = [serve(name, nats_url, tmp_path, collector.url) for name in ("intake", "ledger")]
    try:
        for name in ("intake", "ledger"):
            await wait_for_status(nc, name, lambda s: s.state == "running", timeout=60)
        msg = await nc.request(
            "portfolio.cmd.ProposeProject",
            json.dumps(proposal("X-1")).encode(),
            timeout=10,
            headers={"traceparent": CALLER},
        )
        assert b'"accepted"' in msg.data
        await caught_up(nc, "ledger", 1)
        wanted = {("portfolio-intake", "intake command"), ("portfolio-ledger", "projection ledger")}
        for _ in range(200):
            got = {(s, n) for s, n, t in collector.spans if t == CALLER_TRACE}
            if wanted <= got:
                break
            await asyncio.sleep(0.05)
        assert wanted <= got, collector.spans
        assert await send(nc, "ProposeProject", b"{") is not None  # still answering
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(20)
