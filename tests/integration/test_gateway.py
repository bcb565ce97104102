"""The HTTP gateway against a real nats-server and the real services: commands through
intake with the same answers as over NATS (HTTP statuses for the codes), the
Idempotency-Key as command id, bearer tokens bound to actors like NATS principals, 429
and 503, the read side, and the OpenAPI document it serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client

from contracts import export
from services.gateway.app import GatewayServer
from shared.httpauth import UnsafeBinding
from shared.settings import GatewaySettings
from tests.integration.gateway_support import (
    TOKEN,
    bearer,
    gateway,
    get,
    log_position,
    post,
    rejections,
    tokens,
)
from tests.integration.helpers import accepted, caught_up, proposal, running


@pytest.fixture(autouse=True)
def database() -> str:
    """The gateway keeps no database; the services behind it run on SQLite, once."""
    return "sqlite"


def ours(project_id: str, **overrides: object) -> dict[str, object]:
    """A proposal that names no actor: it acts as the principal (`local` when open)."""
    body = {k: v for k, v in proposal(project_id, **overrides).items() if k != "actor"}
    return body


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_command_over_http_is_accepted_once_per_idempotency_key(
    nc: Client, nats_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running(nc, "intake", nats_url, tmp_path), gateway(nats_url) as url:
        before = await log_position(nc)
        body = ours("HTTP-1")  # open on loopback: acts as `local`
        headers = {"Idempotency-Key": "http-key-1"}
        status, first, _ = await post(http, f"{url}/v1/commands/ProposeProject", body, headers)
        assert status == 200, first
        assert first["status"] == "accepted" and first["command_id"] == "http-key-1"
        (event,) = first["events"]
        assert event["event_type"] == "ProjectProposed" and event["position"] == before + 1
        stored = await nc.jetstream().get_msg("PORTFOLIO", event["position"])
        assert b'"actor":"local"' in (stored.data or b"")

        status, again, _ = await post(http, f"{url}/v1/commands/ProposeProject", body, headers)
        assert status == 200 and again["duplicate"] is True
        assert again["events"] == first["events"]
        assert await log_position(nc) == before + 1

        # The body's own command_id may repeat the key, never contradict it.
        same = {**body, "command_id": "http-key-1"}
        status, third, _ = await post(http, f"{url}/v1/commands/ProposeProject", same, headers)
        assert status == 200 and third["duplicate"] is True
        other = {**body, "command_id": "another"}
        status, refused, _ = await post(http, f"{url}/v1/commands/ProposeProject", other, headers)
        assert status == 422 and refused["error"]["details"][0]["field"] == "Idempotency-Key"
        assert await log_position(nc) == before + 1


async def test_refusals_carry_the_nats_codes_as_http_statuses_and_are_kept(
    nc: Client, nats_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running(nc, "intake", nats_url, tmp_path), gateway(nats_url) as url:
        command = f"{url}/v1/commands"
        await accepted(nc, "ProposeProject", proposal("HTTP-2"))
        before = await log_position(nc)
        kept_before = len(await rejections(nc))
        cases = [
            ("ProposeProject", b"{oops", {}, 400, "malformed"),
            ("ProposeProject", b"[1, 2]", {}, 400, "malformed"),
            ("ProposeProject", b"\xff\xfe", {}, 400, "malformed"),
            ("NoSuchCommand", b"{}", {}, 404, "unknown_command"),
            ("Propose.Project", b"{}", {}, 404, "unknown_command"),
            ("ProposeProject", b'{"project_id": "has space"}', {}, 422, "validation_failed"),
            ("ProposeProject", ours("HTTP-2"), {}, 409, "already_exists"),
            ("CompleteProject", {"project_id": "HTTP-2"}, {}, 409, "illegal_transition"),
            ("StartProject", {"project_id": "NOPE-1"}, {}, 404, "not_found"),
            (
                "SubmitProjectForReview",
                {"project_id": "HTTP-2", "expected_version": 7},
                {},
                409,
                "conflict",
            ),
            ("ProposeProject", b'{"name": "' + b"x" * 70_000 + b'"}', {}, 413, "payload_too_large"),
            (
                "ProposeProject",
                ours("HTTP-3"),
                {"Idempotency-Key": "has space"},
                422,
                "validation_failed",
            ),
        ]
        for name, body, headers, status, code in cases:
            got, answer, _ = await post(http, f"{command}/{name}", body, headers)
            assert (got, answer["error"]["code"]) == (status, code), (name, body, answer)
            assert answer["status"] == "rejected" and answer["error"]["message"]
        assert await log_position(nc) == before, "a refused command appended something"
        kept = (await rejections(nc))[kept_before:]
        assert len(kept) == len(cases)
        assert {r.error.code for r in kept} == {code for *_, code in cases}

        got, answer, _ = await post(http, f"{url}/v1/nowhere", b"{}")
        assert got == 404 and answer["error"]["code"] == "not_found"
        got, answer, _ = await get(http, f"{command}/ProposeProject")
        assert got == 405 and answer["status"] == "rejected"


async def test_bearer_tokens_are_principals_bound_to_actors(
    nc: Client, nats_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    bindings = {"tracker": ["tracker-bot"]}
    async with (
        running(nc, "intake", nats_url, tmp_path, actor_bindings=bindings),
        gateway(nats_url, http_tokens=tokens(tracker=TOKEN)) as url,
    ):
        target = f"{url}/v1/commands/ProposeProject"
        before = await log_position(nc)
        kept_before = len(await rejections(nc))
        body = ours("TOK-1")
        for headers in ({}, bearer("wrong-token"), {"Authorization": "Basic !!"}):
            status, answer, reply_headers = await post(http, target, body, headers)
            assert status == 401 and answer["error"]["code"] == "forbidden", headers
            assert reply_headers["WWW-Authenticate"].startswith("Bearer")
        status, answer, _ = await get(http, f"{url}/v1/projects")
        assert status == 401
        assert await log_position(nc) == before
        assert len(await rejections(nc)) == kept_before + 3

        claimed = {**body, "actor": "cfo"}
        status, answer, _ = await post(http, target, claimed, bearer())
        assert status == 403 and answer["error"]["code"] == "forbidden"
        assert "'tracker' may not act for 'cfo'" in answer["error"]["message"]

        status, answer, _ = await post(http, target, {**body, "actor": "tracker-bot"}, bearer())
        assert status == 200, answer
        status, answer, _ = await post(
            http, f"{url}/v1/commands/SubmitProjectForReview", {"project_id": "TOK-1"}, bearer()
        )
        assert status == 200
        position = answer["events"][0]["position"]
        stored = await nc.jetstream().get_msg("PORTFOLIO", position)
        assert b'"actor":"tracker"' in (stored.data or b"")  # the principal by default
        assert await log_position(nc) == before + 2


async def test_it_refuses_to_listen_beyond_loopback_without_logins(nats_url: str) -> None:
    with pytest.raises(UnsafeBinding, match="without a login"):
        await GatewayServer(
            GatewaySettings(nats_url=nats_url, gateway_host="0.0.0.0", gateway_port=0)
        ).start()
    with pytest.raises(UnsafeBinding, match="SHA-256"):
        await GatewayServer(
            GatewaySettings(nats_url=nats_url, gateway_port=0, http_tokens={"abc": "x"})
        ).start()
    # With tokens it listens on every interface, and asks for them.
    async with (
        gateway(nats_url, gateway_host="0.0.0.0", http_tokens=tokens(ops=TOKEN)) as url,
        aiohttp.ClientSession() as http,
    ):
        status, _, _ = await get(http, f"{url}/v1/status")
        assert status == 401
        status, answer, _ = await get(http, f"{url}/v1/status", bearer())
        assert status == 200 and answer["services"]["intake"] is None


async def test_503_with_retry_after_while_intake_is_down_then_the_same_key_works(
    nc: Client, nats_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with gateway(nats_url, gateway_command_timeout_seconds=1.0) as url:
        target = f"{url}/v1/commands/ProposeProject"
        headers = {"Idempotency-Key": "while-down"}
        status, answer, reply_headers = await post(http, target, ours("DOWN-1"), headers)
        assert status == 503 and answer["error"]["code"] == "unavailable"
        assert reply_headers["Retry-After"] == "1" and answer["command_id"] == "while-down"
        status, answer, _ = await get(http, f"{url}/v1/report")
        assert status == 503
        status, answer, _ = await get(http, f"{url}/v1/health")
        assert status == 200
        async with running(nc, "intake", nats_url, tmp_path):
            status, answer, _ = await post(http, target, ours("DOWN-1"), headers)
            assert status == 200 and answer["command_id"] == "while-down"


async def test_429_when_a_principal_sends_too_fast(
    nc: Client, nats_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        gateway(nats_url, gateway_rate_per_second=0.001, gateway_burst=2) as url,
    ):
        target = f"{url}/v1/commands/ProposeProject"
        statuses = []
        for n in range(4):
            status, answer, headers = await post(http, target, ours(f"RATE-{n}"))
            statuses.append(status)
            if status == 429:
                assert answer["error"]["code"] == "rate_limited"
                assert headers["Retry-After"] == "1"
        assert statuses == [200, 200, 429, 429]


async def test_the_read_side_over_http(
    nc: Client, nats_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with AsyncExitStack() as stack:
        for name in ("intake", "prioritization", "risk", "reporting"):
            await stack.enter_async_context(running(nc, name, nats_url, tmp_path))
        url = await stack.enter_async_context(gateway(nats_url))
        await accepted(nc, "ProposeProject", proposal("READ-1", name="Read me"))
        last = await accepted(nc, "ProposeProject", proposal("READ-2"))
        await caught_up(nc, "reporting", last.events[-1].position)

        status, answer, _ = await get(http, f"{url}/v1/projects?limit=1")
        assert status == 200 and [p["project_id"] for p in answer["projects"]] == ["READ-1"]
        status, answer, _ = await get(
            http, f"{url}/v1/projects?after_project_id={answer['next_after_project_id']}"
        )
        assert [p["project_id"] for p in answer["projects"]] == ["READ-2"]

        status, card, _ = await get(http, f"{url}/v1/projects/READ-1")
        assert status == 200 and "Read me" in str(card)
        status, answer, _ = await get(http, f"{url}/v1/projects/NOPE-9")
        assert status == 404 and answer["error"]["code"] == "not_found"

        status, report, _ = await get(http, f"{url}/v1/report")
        assert status == 200 and isinstance(report, dict)
        for fmt, kind in (("csv", "text/csv"), ("md", "text/markdown"), ("html", "text/html")):
            async with http.get(f"{url}/v1/report?format={fmt}&as_of=now") as response:
                assert response.status == 200 and response.content_type == kind
                assert "READ-1" in await response.text()
        for bad in ("format=xml", "as_of=2027-02-30", "as_of=yesterday", "occurred_as_of=%00"):
            status, answer, _ = await get(http, f"{url}/v1/report?{bad}")
            assert status == 400 and answer["error"]["code"] == "validation_failed", bad

        status, audit, _ = await get(http, f"{url}/v1/audit?project=READ-1&as_of=now")
        assert status == 200 and [e["aggregate_id"] for e in audit["entries"]] == ["READ-1"]
        for bad in ("limit=0", "limit=abc", "after_position=-1", "since=soon"):
            status, answer, _ = await get(http, f"{url}/v1/audit?{bad}")
            assert status == 400, bad

        status, alerts, _ = await get(http, f"{url}/v1/alerts")
        assert status == 200 and alerts == {"open": []}
        status, ranking, _ = await get(http, f"{url}/v1/ranking")
        assert status == 200 and "ranking" in ranking
        status, answer, _ = await get(http, f"{url}/v1/ranking?model=has%20space")
        assert status == 400

        status, answer, _ = await get(http, f"{url}/v1/status")
        assert status == 200 and answer["services"]["ledger"] is None
        assert answer["services"]["intake"]["state"] == "running"


async def test_it_serves_the_generated_openapi_document(nats_url: str) -> None:
    async with (
        gateway(nats_url) as url,
        aiohttp.ClientSession() as http,
        http.get(f"{url}/v1/openapi.json") as response,
    ):
        assert response.status == 200
        served = await response.read()
    assert served == (export.ROOT / export.OPENAPI_FILE).read_bytes()
    assert served.decode() == export.render()[export.OPENAPI_FILE]


async def test_many_commands_at_once_each_answered(
    nc: Client, nats_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running(nc, "intake", nats_url, tmp_path), gateway(nats_url) as url:
        target = f"{url}/v1/commands/ProposeProject"
        before = await log_position(nc)
        answers = await asyncio.gather(*(post(http, target, ours(f"MANY-{n}")) for n in range(100)))
        assert [status for status, _, _ in answers] == [200] * 100
        assert await log_position(nc) == before + 100
