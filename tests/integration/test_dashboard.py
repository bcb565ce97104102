"""The dashboard over plain HTTP: every page from the running services, a change pushed
over server-sent events at most about once a second, and bad requests answered with a
clear page (404, 400), never a stack trace."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
from nats.aio.client import Client

from tests.integration.helpers import (
    accepted,
    budget_pool,
    caught_up,
    project_risk,
    proposal,
    query,
    running,
)

SERVICES = ("intake", "prioritization", "ledger", "risk", "reporting")


@asynccontextmanager
async def dashboard(
    nc: Client, nats_url: str, data_dir: Path, services: tuple[str, ...] = SERVICES
) -> AsyncIterator[str]:
    """The services running in this test's loop; yields the dashboard's address."""
    async with AsyncExitStack() as stack:
        for name in services:
            overrides = {"dashboard_port": 0} if name == "reporting" else {}
            await stack.enter_async_context(running(nc, name, nats_url, data_dir, **overrides))
        url: str = json.loads(await query(nc, "reporting", "dashboard"))["url"]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        yield url.rstrip("/")


async def fill(nc: Client) -> None:
    """A small portfolio: an objective, two projects, a pool and an allocation, capacity
    and demand beyond it (an alert), a risk."""
    await accepted(
        nc,
        "DefineObjective",
        {"objective_id": "OBJ-A", "name": "Growth", "owner": "ceo", "weight": "60"},
    )
    serving = {"objectives": [{"objective_id": "OBJ-A", "contribution": 3}]}
    await accepted(nc, "ProposeProject", proposal("P-1", **serving))
    await accepted(nc, "ProposeProject", proposal("P-2", name="<script>x()</script> & co"))
    await accepted(nc, "DefineBudgetPool", budget_pool())
    await accepted(
        nc,
        "AllocateBudget",
        {"pool_id": "CAPEX-27", "project_id": "P-1", "amount": "250000", "rationale": "tranche"},
    )
    await accepted(
        nc,
        "SetCapacity",
        {"role": "developer", "period": "2027-01", "amount": "2", "unit": "fte"},
    )
    await accepted(
        nc,
        "AssignDemand",
        {"role": "developer", "project_id": "P-1", "period": "2027-01", "amount": "3"},
    )
    await accepted(nc, "IdentifyRisk", project_risk("R-1", "P-1"))


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


async def changes(response: aiohttp.ClientResponse, wanted: int, seconds: float) -> list[float]:
    """When the stream delivered `changed` events (monotonic times): the first `wanted`, or
    as many as came within `seconds`."""
    times: list[float] = []
    deadline = time.monotonic() + seconds
    while len(times) < wanted and (left := deadline - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(response.content.readline(), left)
        except TimeoutError:
            break
        if line == b"event: changed\n":
            times.append(time.monotonic())
    return times


async def test_pages_show_the_portfolio_and_change_live(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    async with (
        dashboard(nc, nats_url, tmp_path) as base,
        aiohttp.ClientSession() as http,
    ):
        await fill(nc)
        last = await nc.jetstream().stream_info("PORTFOLIO")
        for service in ("ledger", "risk", "reporting"):
            await caught_up(nc, service, last.state.last_seq)

        expected = {
            "overview": ("RiskIdentified", 'id="risk-heat-map"', 'id="budget-burn"'),
            "ranking": ("P-1", "&lt;script&gt;x()&lt;/script&gt; &amp; co", 'id="value-vs-cost"'),
            "risks": ("R-1", "Vendor late", 'id="risk-heat-map"'),
            "budget": ("CAPEX-27", "250,000", 'id="budget-burn"'),
            "capacity": ("developer", "150%", 'id="capacity"'),
            "alerts": ("over_allocation", "developer/2027-01"),
            "audit?project=P-1&type=ProjectProposed": ("project/P-1", "Project P-1"),
        }
        for page, needles in expected.items():
            status, text = await get(http, f"{base}/{page}")
            assert status == 200, text
            assert "Traceback" not in text and "/static/dashboard.js" in text
            assert "<script>x()" not in text  # every value is escaped
            for needle in needles:
                assert needle in text, (page, needle)
        status, home = await get(http, base)
        assert status == 200 and 'data-page="overview"' in home

        # One command: the stream says "changed" and the fragment shows it.
        async with http.get(f"{base}/events") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert await stream.content.readline() == b"retry: 2000\n"
            await accepted(nc, "ProposeProject", proposal("P-NEW"))
            assert await changes(stream, 1, 3)
            status, fragment = await get(http, f"{base}/fragment/overview")
            assert status == 200 and fragment.startswith('<section class="page"')
            assert "project/P-NEW" in fragment and "<html" not in fragment

            # A burst of commands (and the ranking they cause): one change a second at most.
            burst = asyncio.gather(
                *(accepted(nc, "ProposeProject", proposal(f"B-{n:02d}")) for n in range(60))
            )
            told = await changes(stream, 2, 5)
            await burst
            assert len(told) == 2 and told[1] - told[0] > 0.9, told
            status, fragment = await get(http, f"{base}/fragment/audit?type=ProjectProposed")
            assert status == 200 and "project/B-29" in fragment


async def test_bad_requests_get_a_clear_answer(nc: Client, nats_url: str, tmp_path: Path) -> None:
    async with (
        dashboard(nc, nats_url, tmp_path, services=("reporting",)) as base,
        aiohttp.ClientSession() as http,
    ):
        status, text = await get(http, f"{base}/nope")
        assert status == 404 and "there is no page &#x27;nope&#x27;" in text
        assert "Audit search" in text  # the navigation, to go on from there
        for missing in ("/static/nope.js", "/fragment/nope", "/a/b/c"):
            status, text = await get(http, base + missing)
            assert status == 404 and "Traceback" not in text, missing

        bad = {
            "since=yesterday": "since: &#x27;yesterday&#x27; is not a time",
            "until=2027-13-45": "until: &#x27;2027-13-45&#x27; is not a time",
            "limit=0": "limit: 0 is out of range (from 1 to 500)",
            "limit=501": "limit: 501 is out of range (from 1 to 500)",
            "limit=ten": "limit: &#x27;ten&#x27; is not a whole number",
            "after=-1": "after: -1 is out of range (at least 0)",
            "projet=P-1": "unknown parameter projet",
        }
        for params, message in bad.items():
            for path in ("/audit", "/fragment/audit"):
                status, text = await get(http, f"{base}{path}?{params}")
                assert status == 400, (path, params, text)
                assert message in text and "Traceback" not in text, (params, text)
        status, text = await get(http, f"{base}/budget?by=colour")
        assert status == 400 and "by=&#x27;colour&#x27; is not a grouping" in text

        # An empty log is a portfolio too; a page whose service is not running says so.
        status, text = await get(http, f"{base}/overview")
        assert status == 200 and "no events yet" in text and 'id="risk-heat-map"' in text
        status, text = await get(http, f"{base}/ranking")
        assert status == 200 and "prioritization is not running" in text
        status, text = await get(http, f"{base}/audit?since=-1h&limit=5")
        assert status == 200 and "no matching entries" in text


async def test_stopping_reporting_ends_open_streams(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    """A browser left open must not hold the service's shutdown: the stream is ended
    properly (a stream cut off at the shutdown timeout fails to read to its end)."""
    async with aiohttp.ClientSession() as http:
        async with dashboard(nc, nats_url, tmp_path, services=("reporting",)) as base:
            stream = await http.get(f"{base}/events")
            assert await stream.content.readline() == b"retry: 2000\n"
        assert await asyncio.wait_for(stream.content.read(), 5) == b"\n"
        stream.close()
