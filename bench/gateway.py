"""Bench group `gateway`: commands over HTTP through the gateway, beside the same commands
as NATS request/reply to the same intake in the same run.

Intake and the gateway each run in their own process (`portfolio serve intake`,
`python -m services.gateway`), as `portfolio up` runs them. Throughput keeps 64 requests in
flight; latency sends at a fixed 500/s (open loop: a slow answer delays no later send) and
reports p50 and p99 from the moment each request was due."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import aiohttp

from bench.benchmarks import ROOT, SUBJECTS, Context, Service, _accepted, _bodies, _quiet
from bench.measure import Run, in_flight, open_loop
from bench.report import Row
from services.cli.supervisor import free_port

IN_FLIGHT = 64
RATE = 500.0
COMMAND = "ProposeProject"


class GatewayProcess:
    """`python -m services.gateway` on a free loopback port, logging to a file."""

    def __init__(self, ctx: Context) -> None:
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ctx.work / "gateway.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTFOLIO_")}
        env |= {
            "PORTFOLIO_NATS_URL": ctx.url,
            "PORTFOLIO_GATEWAY_PORT": str(self.port),
            "PORTFOLIO_LOG_LEVEL": "WARNING",
        }
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.gateway"],
                env=env,
                cwd=ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the gateway exited with {self.process.returncode}: {tail}")
            try:
                async with http.get(f"{self.url}/v1/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("the gateway did not answer /v1/health")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _http_sender(http: aiohttp.ClientSession, url: str, bodies: list[bytes]) -> Any:
    target = f"{url}/v1/commands/{COMMAND}"
    headers = {"Content-Type": "application/json"}

    async def send(index: int) -> bool:
        async with http.post(target, data=bodies[index], headers=headers) as response:
            data = await response.read()
            return response.status == 200 and _accepted(data)

    return send


def _nats_sender(ctx: Context, bodies: list[bytes]) -> Any:
    # The same subject the gateway uses (`local`, its principal when open on loopback).
    subject = f"{SUBJECTS.command(COMMAND)}.local"

    async def send(index: int) -> bool:
        msg = await ctx.nc.request(subject, bodies[index], timeout=10)
        return _accepted(msg.data)

    return send


def _bodies_as_local(ctx: Context, prefix: str, count: int) -> list[bytes]:
    """Proposals without an actor: they act as the principal `local`."""
    bodies = []
    for raw in _bodies(ctx.seed, prefix, count):
        body = json.loads(raw)
        body.pop("actor", None)
        bodies.append(json.dumps(body).encode())
    return bodies


async def gateway_benchmarks(ctx: Context, progress: Any) -> list[Row]:
    intake = Service("intake", ctx.url, ctx.work / "gateway-intake")
    intake.start()
    gateway: GatewayProcess | None = None
    rows: list[Row] = []
    try:
        await intake.wait_until(ctx.nc, lambda s: s["state"] == "running", timeout=60)
        gateway = GatewayProcess(ctx)
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT * 2)
        async with aiohttp.ClientSession(connector=connector) as http:
            await gateway.wait_ready(http)
            warm = ctx.sizes.warmup
            await in_flight(
                _http_sender(http, gateway.url, _bodies_as_local(ctx, "GWW", warm)), warm, IN_FLIGHT
            )
            await in_flight(_nats_sender(ctx, _bodies_as_local(ctx, "GNW", warm)), warm, IN_FLIGHT)

            count = ctx.sizes.intake_requests
            await _quiet(ctx, intake)
            nats_run = await in_flight(
                _nats_sender(ctx, _bodies_as_local(ctx, "GNT", count)), count, IN_FLIGHT
            )
            await _quiet(ctx, intake)
            http_run = await in_flight(
                _http_sender(http, gateway.url, _bodies_as_local(ctx, "GHT", count)),
                count,
                IN_FLIGHT,
            )
            rows.append(_throughput_row(http_run, nats_run))
            progress(rows[-1])

            latency_count = max(1, int(RATE * ctx.sizes.latency_seconds))
            await _quiet(ctx, intake)
            nats_latency = await open_loop(
                _nats_sender(ctx, _bodies_as_local(ctx, "GNL", latency_count)),
                latency_count,
                RATE,
            )
            await _quiet(ctx, intake)
            http_latency = await open_loop(
                _http_sender(http, gateway.url, _bodies_as_local(ctx, "GHL", latency_count)),
                latency_count,
                RATE,
            )
            for q in (0.50, 0.99):
                rows.append(_latency_row(q, http_latency, nats_latency))
                progress(rows[-1])
    finally:
        if gateway is not None:
            gateway.stop()
        intake.stop()
    return rows


def _note(run: Run) -> str:
    return f"{run.failures} of {run.count} not accepted" if run.failures else ""


def _throughput_row(http_run: Run, nats_run: Run) -> Row:
    return Row(
        "gateway-throughput",
        f"gateway HTTP commands, {IN_FLIGHT} in flight",
        "cmd/s",
        http_run.rate,
        f"NATS request/reply to the same intake, {IN_FLIGHT} in flight",
        nats_run.rate,
        note=_note(http_run) or _note(nats_run),
        details={
            "commands": http_run.count,
            "http_failures": http_run.failures,
            "nats_failures": nats_run.failures,
        },
    )


def _latency_row(q: float, http_run: Run, nats_run: Run) -> Row:
    label = f"p{round(q * 100)}"
    return Row(
        f"gateway-latency-{label}",
        f"gateway HTTP command {label} at {RATE:,.0f}/s",
        "ms",
        http_run.percentile_ms(q),
        f"NATS request/reply {label} at {RATE:,.0f}/s, same intake",
        nats_run.percentile_ms(q),
        higher_is_better=False,
        note=_note(http_run) or _note(nats_run),
        details={"commands": http_run.count, "rate": RATE},
    )
