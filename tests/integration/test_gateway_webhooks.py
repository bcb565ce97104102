"""Inbound webhooks through the gateway, with the SHIPPED mappings (deploy/webhooks) and
recorded sample payloads (tests/fixtures/webhooks): a Jira issue update becomes
ReportProgress, a finance invoice RecordActualCost; a redelivery is a duplicate; an
unsigned, wrongly signed or unmappable delivery is refused and kept in rejections."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client

from services.gateway import webhooks
from tests.integration.gateway_support import (
    SECRETS,
    fixture,
    gateway,
    log_position,
    post,
    rejections,
    signed,
)
from tests.integration.helpers import accepted, budget_pool, proposal, running

JIRA = SECRETS["PORTFOLIO_WEBHOOK_SECRET_JIRA"]
FINANCE = SECRETS["PORTFOLIO_WEBHOOK_SECRET_FINANCE"]
JIRA_DELIVERY = "X-Atlassian-Webhook-Identifier"


@pytest.fixture(autouse=True)
def database() -> str:
    return "sqlite"


@pytest.fixture
async def backend(nc: Client, nats_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """Intake and a gateway; the project the samples name (CRM-2027) with a baseline and a
    pool. The webhook principals may act for nobody but themselves (no bindings)."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running(nc, "intake", nats_url, tmp_path))
        url = await stack.enter_async_context(gateway(nats_url))
        await accepted(nc, "ProposeProject", proposal("CRM-2027"))
        await accepted(nc, "DefineBudgetPool", budget_pool("CAPEX-27"))
        await accepted(
            nc,
            "SetProjectBaseline",
            {
                "project_id": "CRM-2027",
                "budget_at_completion": "250000",
                "planned_value_by_period": [{"period": "2027-03", "planned_value": "100000"}],
            },
        )
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_the_shipped_mappings_load_and_name_their_secrets() -> None:
    sources = webhooks.load_sources(webhooks.SHIPPED, SECRETS)
    assert {name: s.rules[0].command for name, s in sources.items()} == {
        "jira": "ReportProgress",
        "finance": "RecordActualCost",
    }
    assert {s.secret_env for s in sources.values()} == set(SECRETS)
    assert all(s.secret is None for s in webhooks.load_sources(webhooks.SHIPPED, {}).values())


async def test_a_jira_issue_update_reports_progress_once(
    nc: Client, backend: str, http: aiohttp.ClientSession
) -> None:
    body = fixture("jira_issue_updated")
    headers = signed(body, JIRA, "88213", JIRA_DELIVERY)
    before = await log_position(nc)
    status, answer, _ = await post(http, f"{backend}/v1/webhooks/jira", body, headers)
    assert status == 200, answer
    assert answer["command_id"] == f"wh-jira-{hashlib.sha256(body).hexdigest()[:48]}"
    assert answer["duplicate"] is False
    (event,) = answer["events"]
    assert event["event_type"] == "ProgressReported"
    stored = json.loads((await nc.jetstream().get_msg("PORTFOLIO", event["position"])).data or b"")
    assert stored["payload"]["percent_complete"] == "42"
    assert stored["payload"]["period"] == "2027-03"
    assert stored["payload"]["forecast_end"] == "2027-12-15"
    assert (stored["actor"], stored["source"]) == ("webhook-jira", "webhook-jira")
    assert stored["occurred_at"].startswith("2027-03-15T15:00:00")

    # Jira retries with the same delivery id: the first answer, nothing appended.
    status, again, _ = await post(http, f"{backend}/v1/webhooks/jira", body, headers)
    assert status == 200 and again["duplicate"] is True and again["events"] == answer["events"]
    # A captured delivery replayed under a new delivery id (not covered by the signature):
    # the same signed body, so the same command, answered as a duplicate.
    replayed = signed(body, JIRA, "99999", JIRA_DELIVERY)
    status, replay, _ = await post(http, f"{backend}/v1/webhooks/jira", body, replayed)
    assert status == 200 and replay["duplicate"] is True and replay["events"] == answer["events"]
    assert await log_position(nc) == before + 1


async def test_a_finance_invoice_records_an_actual_cost(
    nc: Client, backend: str, http: aiohttp.ClientSession
) -> None:
    body = fixture("finance_invoice_posted")
    headers = signed(body, FINANCE, "d-7f3a91", "X-Delivery-Id")
    status, answer, _ = await post(http, f"{backend}/v1/webhooks/finance", body, headers)
    assert status == 200, answer
    (event,) = answer["events"]
    assert event["event_type"] == "ActualCostRecorded"
    stored = json.loads((await nc.jetstream().get_msg("PORTFOLIO", event["position"])).data or b"")
    payload = stored["payload"]
    assert (payload["amount"], payload["external_ref"], payload["period"]) == (
        "18450.5",
        "INV-2027-000417",
        "2027-03",
    )
    # The same delivery under another delivery id is the same command: a duplicate.
    again = signed(body, FINANCE, "d-other", "X-Delivery-Id")
    status, repeat, _ = await post(http, f"{backend}/v1/webhooks/finance", body, again)
    assert status == 200 and repeat["duplicate"] is True, repeat
    # The same invoice in another body (re-serialised) is refused by the ledger's rule.
    reposted = json.dumps(json.loads(body), indent=1).encode()
    status, answer, _ = await post(
        http,
        f"{backend}/v1/webhooks/finance",
        reposted,
        signed(reposted, FINANCE, "d-3", "X-Delivery-Id"),
    )
    assert status in (409, 422) and answer["status"] == "rejected", answer


async def test_unsigned_forged_and_unmappable_deliveries_are_refused_and_kept(
    nc: Client, backend: str, http: aiohttp.ClientSession
) -> None:
    body = fixture("jira_issue_updated")
    jira = f"{backend}/v1/webhooks/jira"
    before = await log_position(nc)
    kept_before = len(await rejections(nc))
    tampered = body.replace(b'"percent": 42', b'"percent": 99')
    good = signed(body, JIRA, "1", JIRA_DELIVERY)
    cases = [
        (jira, body, {JIRA_DELIVERY: "1"}, 401, "unsigned"),
        (jira, body, signed(body, "not-the-secret", "1", JIRA_DELIVERY), 401, "does not match"),
        (jira, tampered, good, 401, "does not match"),
        (jira, body, {**good, "X-Hub-Signature-256": "sha1=" + "0" * 40}, 401, "does not match"),
        (jira, body, {**good, "X-Hub-Signature-256": "sha256=zz"}, 401, "does not match"),
        (jira, body, signed(body, FINANCE, "1", JIRA_DELIVERY), 401, "does not match"),
        (
            jira,
            fixture("jira_comment_created"),
            signed(fixture("jira_comment_created"), JIRA, "2", JIRA_DELIVERY),
            422,
            "unmappable",
        ),
        (jira, b"{oops", signed(b"{oops", JIRA, "3", JIRA_DELIVERY), 400, "not JSON"),
        (jira, b"[]", signed(b"[]", JIRA, "4", JIRA_DELIVERY), 422, "not a JSON object"),
        (jira, body, {k: v for k, v in good.items() if k != JIRA_DELIVERY}, 400, "delivery id"),
        (f"{backend}/v1/webhooks/github", body, good, 404, "no webhook source"),
        (f"{backend}/v1/webhooks/..%2Fjira", body, good, 404, "no webhook source"),
    ]
    for url, data, headers, status, reason in cases:
        got, answer, _ = await post(http, url, data, headers)
        assert got == status and reason in answer["error"]["message"], (url, headers, answer)
    assert await log_position(nc) == before
    kept = (await rejections(nc))[kept_before:]
    assert len(kept) == len(cases)
    assert kept[0].error.message.startswith("unsigned")
    assert kept[1].raw == body.decode()


async def test_a_source_without_its_secret_refuses_every_delivery(
    nc: Client, nats_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        gateway(nats_url, env={}) as url,
    ):
        body = fixture("finance_invoice_posted")
        headers = signed(body, "", "d-1", "X-Delivery-Id")
        status, answer, _ = await post(http, f"{url}/v1/webhooks/finance", body, headers)
        assert status == 401
        assert "PORTFOLIO_WEBHOOK_SECRET_FINANCE" in answer["error"]["message"]


async def test_a_mapped_field_the_command_refuses_is_answered_by_intake(
    nc: Client, backend: str, http: aiohttp.ClientSession
) -> None:
    """The mapping picks what it can; intake validates the command and keeps the refusal."""
    payload = json.loads(fixture("jira_issue_updated"))
    payload["issue"]["fields"]["progress"]["percent"] = 250
    payload["issue"]["fields"]["customfield_10410"] = "has space"
    body = json.dumps(payload).encode()
    status, answer, _ = await post(
        http, f"{backend}/v1/webhooks/jira", body, signed(body, JIRA, "5", JIRA_DELIVERY)
    )
    assert status == 422 and answer["error"]["code"] == "validation_failed"
    assert {d["field"] for d in answer["error"]["details"]} == {"project_id", "percent_complete"}
    assert (await rejections(nc))[-1].subject == "portfolio.cmd.ReportProgress.webhook-jira"
