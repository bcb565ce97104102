"""The dashboard follows the gateway's rule (shared/httpauth.py): open on loopback; beyond
it, reporting refuses to start without a login configured, and with one every page and the
event stream ask for it: a bearer token, the token as a browser's Basic password, or the
user a trusted authenticating proxy names (only from the proxy's address)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client

from services.reporting.app import create_app
from shared.httpauth import UnsafeBinding
from shared.settings import ReportingSettings
from tests.integration.gateway_support import TOKEN, bearer, tokens
from tests.integration.helpers import query, running


@pytest.fixture(autouse=True)
def database() -> str:
    return "sqlite"


async def dashboard_url(nc: Client) -> str:
    url: str = json.loads(await query(nc, "reporting", "dashboard"))["url"]
    return url.rstrip("/")


async def status_of(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers=headers or {}, allow_redirects=False) as response,
    ):
        return response.status, response.headers.get("WWW-Authenticate", "")


def basic(password: str, user: str = "anyone") -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


async def test_beyond_loopback_without_a_login_reporting_does_not_start(
    nats_url: str, tmp_path: Path
) -> None:
    settings = ReportingSettings(
        nats_url=nats_url, data_dir=tmp_path, dashboard_host="0.0.0.0", dashboard_port=0
    )
    with pytest.raises(UnsafeBinding, match="without a login"):
        await asyncio.wait_for(create_app(settings).run(), 60)


async def test_on_loopback_it_stays_open(nc: Client, nats_url: str, tmp_path: Path) -> None:
    async with running(nc, "reporting", nats_url, tmp_path):
        url = await dashboard_url(nc)
        assert url.startswith("http://127.0.0.1:")
        assert (await status_of(f"{url}/overview"))[0] == 200


async def test_beyond_loopback_tokens_log_in(nc: Client, nats_url: str, tmp_path: Path) -> None:
    async with running(
        nc,
        "reporting",
        nats_url,
        tmp_path,
        dashboard_host="0.0.0.0",
        http_tokens=tokens(viewer=TOKEN),
    ):
        url = await dashboard_url(nc)
        for path in ("/overview", "/fragment/overview", "/events", "/static/dashboard.css", "/"):
            status, challenge = await status_of(f"{url}{path}")
            assert status == 401 and challenge.startswith("Basic"), path
        assert (await status_of(f"{url}/overview", bearer("nope")))[0] == 401
        assert (await status_of(f"{url}/overview", basic("nope")))[0] == 401
        assert (await status_of(f"{url}/overview", {"X-Forwarded-User": "viewer"}))[0] == 401
        assert (await status_of(f"{url}/overview", bearer()))[0] == 200
        assert (await status_of(f"{url}/overview", basic(TOKEN)))[0] == 200
        assert (await status_of(f"{url}/", bearer()))[0] == 302


@pytest.mark.parametrize(("proxies", "trusted"), [(["127.0.0.0/8"], True), (["10.0.0.0/8"], False)])
async def test_a_trusted_proxy_header_logs_in_only_from_the_proxy(
    nc: Client, nats_url: str, tmp_path: Path, proxies: list[str], trusted: bool
) -> None:
    async with running(
        nc,
        "reporting",
        nats_url,
        tmp_path,
        dashboard_host="0.0.0.0",
        trusted_proxy_header="X-Forwarded-User",
        trusted_proxies=proxies,
    ):
        url = await dashboard_url(nc)
        status, _ = await status_of(f"{url}/overview", {"X-Forwarded-User": "alice"})
        assert status == (200 if trusted else 401)
        assert (await status_of(f"{url}/overview"))[0] == 401
        bad_user = {"X-Forwarded-User": "alice smith"}  # not a principal: no login
        assert (await status_of(f"{url}/overview", bad_user))[0] == 401
