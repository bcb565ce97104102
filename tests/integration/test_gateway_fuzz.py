"""Thousands of hostile requests at one running gateway and intake (tests/hostile.py, the
generator every entry point's fuzz test shares): HTTP commands with hostile bodies, names
and idempotency keys, and webhook deliveries (unsigned, signed garbage, the Jira sample
with one field made hostile). Every request gets an answer: accepted, or a 4xx JSON
refusal (never a 5xx); nothing refused is appended and every refusal made by the gateway
or intake is kept; the gateway is healthy afterwards."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from contracts.subjects import REJECTIONS_STREAM
from tests import hostile
from tests.integration.gateway_support import SECRETS, fixture, gateway, log_position
from tests.integration.helpers import running

T = TypeVar("T")
COMMANDS = ["ProposeProject", "SubmitProjectForReview", "DefineObjective", "ReportProgress"]
JIRA_SECRET = SECRETS["PORTFOLIO_WEBHOOK_SECRET_JIRA"].encode()
#: The Jira sample's fields a hostile value replaces, as JSON text to find.
JIRA_FIELDS = [
    '"percent": 42',
    '"timestamp": 1805122800000',
    '"customfield_10410": "CRM-2027"',
    '"duedate": "2027-12-15"',
    '"webhookEvent": "jira:issue_updated"',
]


@pytest.fixture(autouse=True)
def database() -> str:
    return "sqlite"


def draw(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """`count` examples of a strategy, the same on every run (no database, derandomized)."""
    found: list[T] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: T) -> None:
        found.append(example)

    collect()
    return found


@st.composite
def hostile_jira(draw_: st.DrawFn) -> bytes:
    """The recorded Jira delivery with one field replaced by a hostile JSON token."""
    text = fixture("jira_issue_updated").decode()
    field = draw_(st.sampled_from(JIRA_FIELDS))
    key = field.split(":", 1)[0]
    token = draw_(hostile.hostile_values())
    return text.replace(field, f"{key}: {token}").encode("utf-8", "surrogatepass")


def _in_a_header(value: str) -> bool:
    """HTTP cannot carry a newline or a lone surrogate in a header: no client sends one."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return value.isprintable()


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(JIRA_SECRET, body, hashlib.sha256).hexdigest()


async def test_hostile_http_commands_and_webhooks_get_4xx_and_append_nothing(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    commands = draw(hostile.hostile_commands(COMMANDS), 1500)
    keys = [key for key in hostile.BAD_IDS if _in_a_header(key)] + ["fz-key-1", "fz-key-2"]
    raw = [("ProposeProject", body) for body in hostile.RAW_CASES]
    bodies = draw(hostile.hostile_bodies(["ReportProgress"]), 300) + draw(hostile_jira(), 400)

    # The seeds act for `fuzz`: the open gateway's principal `local` may act for anyone here.
    bindings = {"local": ["*"]}
    async with (
        running(nc, "intake", nats_url, tmp_path, actor_bindings=bindings),
        gateway(nats_url) as url,
        aiohttp.ClientSession() as http,
    ):
        log_before = await log_position(nc)
        kept_before = (await nc.jetstream().stream_info(REJECTIONS_STREAM)).state.messages
        outcomes: list[tuple[int, dict[str, Any]]] = []
        limit = asyncio.Semaphore(32)

        async def send(path: str, body: bytes, headers: dict[str, str]) -> None:
            async with limit, http.post(f"{url}{path}", data=body, headers=headers) as response:
                text = await response.text()
                status = response.status
            answer = json.loads(text)  # every answer is JSON
            outcomes.append((status, answer))

        sends: list[Callable[[], Any]] = []
        for n, (name, body) in enumerate([*commands, *raw]):
            headers = {"Idempotency-Key": keys[n % len(keys)]} if n % 3 == 0 else {}
            sends.append(partial(send, f"/v1/commands/{name}", body, headers))
        for n, body in enumerate(bodies):
            headers = {"X-Atlassian-Webhook-Identifier": f"fz-{n}"}
            if n % 4 != 0:  # most are signed, so they reach the mapping
                headers["X-Hub-Signature-256"] = sign(body)
            sends.append(partial(send, "/v1/webhooks/jira", body, headers))
        await asyncio.gather(*(one() for one in sends))

        assert len(outcomes) == len(sends)
        server_errors = [(s, a) for s, a in outcomes if s >= 500]
        assert not server_errors, server_errors[:5]
        refused = [a for s, a in outcomes if s != 200]
        assert all(400 <= s < 500 for s, _ in outcomes if s != 200)
        assert all(a["status"] == "rejected" and a["error"]["message"] for a in refused)
        accepted = [a for s, a in outcomes if s == 200]
        assert accepted, "no input was valid: the fuzz cannot tell accepted from refused"
        appended = sum(len(a["events"]) for a in accepted if not a["duplicate"])
        assert await log_position(nc) == log_before + appended

        # Each refusal kept once, by the gateway or by intake; only a path that names no
        # route at all (an empty command name) is not an input to keep.
        routed = [a for a in refused if not a["error"]["message"].startswith("nothing at")]
        kept = (await nc.jetstream().stream_info(REJECTIONS_STREAM)).state.messages
        assert kept - kept_before == len(routed)
        assert {a["error"]["code"] for a in refused} >= {
            "malformed",
            "validation_failed",
            "unknown_command",
            "payload_too_large",
            "forbidden",
        }

        async with http.get(f"{url}/v1/health") as response:
            assert response.status == 200
        probe = hostile.seed("ProposeProject", "after-the-storm")
        async with http.post(f"{url}/v1/commands/ProposeProject", json=probe) as response:
            assert response.status == 200, await response.text()
