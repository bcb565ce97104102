"""`alert-delivery`: from sending the command that crosses a threshold to a webhook receiver
getting the signed alert (intake -> log -> risk monitor -> log and PORTFOLIO_ALERTS ->
notify -> HTTP), while background commands flow at `latency_rate` a second; beside the raw
JetStream publish latency measured in the same run at the same rate."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from bench import baselines as raw
from bench.benchmarks import Context, Service, _bodies, _requester, proposed_envelope
from bench.generator import Generator
from bench.measure import open_loop
from bench.report import Row

SECRET = "bench-secret"


async def alert_delivery(ctx: Context, progress: Any) -> list[Row]:
    arrived: dict[str, float] = {}

    async def receive(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        arrived.setdefault(body["alert"]["subject_id"], time.perf_counter())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    env = {"PORTFOLIO_NOTIFY_WEBHOOK_SECRETS": json.dumps({"bench": SECRET})}
    services = [
        Service("intake", ctx.url, ctx.work / "delivery-intake"),
        Service("risk", ctx.url, ctx.work / "delivery-risk"),
        Service("notify", ctx.url, ctx.work / "delivery-notify", env),
    ]
    for service in services:
        service.start()
    try:
        for service in services:
            await service.wait_until(ctx.nc, lambda s: s["state"] == "running", timeout=60)
        project = json.loads(_bodies(ctx.seed, "DELIVERYP", 1)[0])
        await ctx.nc.request(
            "portfolio.cmd.ProposeProject", json.dumps(project).encode(), timeout=10
        )
        subscribe = {
            "subscription_id": "bench-hook",
            "channel": "webhook",
            "target": f"http://127.0.0.1:{port}/hook",
            "secret_ref": "bench",
            "metrics": ["risk_score"],
        }
        await ctx.nc.request("portfolio.cmd.Subscribe", json.dumps(subscribe).encode(), timeout=10)
        await asyncio.sleep(2.0)  # the notify service starts the subscription's consumer
        samples = max(5, int(ctx.sizes.latency_seconds * 10))
        rate = ctx.sizes.latency_rate
        background_count = int(rate * samples / 10)
        load = asyncio.create_task(
            open_loop(
                _requester(ctx.nc, _bodies(ctx.seed, "DBG", background_count)),
                background_count,
                rate,
            )
        )
        sent: dict[str, float] = {}
        for i in range(samples):
            risk_id = f"R-DELIVERY-{i}"
            body = {
                "risk_id": risk_id,
                "project_id": project["project_id"],
                "title": "bench",
                "owner": "bench",
                "probability": 4,
                "impact": 4,
            }
            sent[risk_id] = time.perf_counter()
            await ctx.nc.request(
                "portfolio.cmd.IdentifyRisk", json.dumps(body).encode(), timeout=10
            )
            await asyncio.sleep(0.1)
        await load
        for _ in range(600):  # at most 30 s for the last deliveries
            if len(arrived) >= samples:
                break
            await asyncio.sleep(0.05)
        latencies = sorted((arrived[k] - t) * 1000 for k, t in sent.items() if k in arrived)
        # The raw baseline of the same run: plain JetStream publish-and-ack latency.
        payload = proposed_envelope(Generator(ctx.seed, "DRAW").proposal(0)).model_dump_json()
        count = max(1, int(rate * ctx.sizes.latency_seconds))
        p50_raw, p99_raw = await raw.publish_latency(ctx.js, payload.encode(), count, rate)
    finally:
        for service in services:
            service.stop()
        await runner.cleanup()
    if not latencies:
        return [Row("alert-delivery", "alert delivery", "ms", None, "", None, note="none arrived")]
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    details = {"delivered": len(latencies), "sent": len(sent), "background_rate": rate}
    rows = [
        Row(
            "alert-delivery-p50",
            f"command to webhook receiver p50 at {rate:,.0f} cmd/s background",
            "ms",
            p50,
            p50_raw.name,
            p50_raw.value,
            higher_is_better=False,
            details=details,
        ),
        Row(
            "alert-delivery-p99",
            f"command to webhook receiver p99 at {rate:,.0f} cmd/s background",
            "ms",
            p99,
            p99_raw.name,
            p99_raw.value,
            higher_is_better=False,
            details=details,
        ),
    ]
    for row in rows:
        progress(row)
    return rows
