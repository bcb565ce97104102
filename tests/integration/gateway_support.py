"""Running the HTTP gateway in the test's loop, against the test's nats-server, and
signing webhook deliveries as a source would."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from nats.aio.client import Client

from contracts.base import Rejection
from contracts.subjects import LOG_STREAM, REJECTIONS_STREAM
from services.gateway.app import GatewayServer
from shared.httpauth import token_hash
from shared.settings import GatewaySettings
from tests.integration.helpers import SUBJECTS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SECRETS = {
    "PORTFOLIO_WEBHOOK_SECRET_JIRA": "jira-shared-secret",
    "PORTFOLIO_WEBHOOK_SECRET_FINANCE": "finance-shared-secret",
}
TOKEN = "tracker-token-0123456789"


@asynccontextmanager
async def gateway(
    nats_url: str, env: Mapping[str, str] | None = None, **overrides: Any
) -> AsyncIterator[str]:
    """A started gateway on a free loopback port (the shipped webhook mappings); yields its
    base URL."""
    overrides.setdefault("gateway_port", 0)
    settings = GatewaySettings(nats_url=nats_url, **overrides)
    server = GatewayServer(settings, env=SECRETS if env is None else env)
    url = await server.start()
    try:
        yield url
    finally:
        await server.stop()


def tokens(**principals: str) -> dict[str, str]:
    """PORTFOLIO_HTTP_TOKENS for {principal: token}."""
    return {token_hash(token): principal for principal, token in principals.items()}


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed(body: bytes, secret: str, delivery: str, header: str) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={signature}",
        header: delivery,
        "Content-Type": "application/json",
    }


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes | Any, headers: Mapping[str, str] = {}
) -> tuple[int, Any, Mapping[str, str]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(url, data=data, headers=dict(headers)) as response:
        text = await response.text()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = text
        return response.status, answer, response.headers


async def get(
    http: aiohttp.ClientSession, url: str, headers: Mapping[str, str] = {}
) -> tuple[int, Any, Mapping[str, str]]:
    async with http.get(url, headers=dict(headers)) as response:
        text = await response.text()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = text
        return response.status, answer, response.headers


async def log_position(nc: Client) -> int:
    info = await nc.jetstream().stream_info(LOG_STREAM)
    return int(info.state.last_seq)


async def rejections(nc: Client) -> list[Rejection]:
    """Every kept rejection, oldest first."""
    js = nc.jetstream()
    info = await js.stream_info(REJECTIONS_STREAM)
    kept = []
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        if not info.state.messages:
            break
        msg = await js.get_msg(REJECTIONS_STREAM, sequence)
        assert msg.data is not None
        kept.append(Rejection.model_validate_json(msg.data))
    return kept


__all__ = ["SUBJECTS"]
