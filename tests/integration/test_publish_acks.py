"""Appends through the log's own ack subscription (`PublishAcks`, what every service uses)
keep every promise of `js.publish`: one writer per aggregate, a retry stored once, the
server's errors raised as they are, patience when the server does not answer."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.errors import APIError, NoStreamResponseError

from contracts.subjects import Subjects
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import ConcurrencyConflict, EventLog, LogUnavailable, PublishAcks
from tests.integration.test_eventlog import envelope, pause


async def acked_log(nc: Client, patience: float = 20.0) -> EventLog:
    log = EventLog(nc.jetstream(timeout=1.0), Subjects(), patience=patience, nc=nc)
    await log.ensure_streams()
    assert log.acks is not None
    return log


async def test_appends_conflict_and_deduplicate_as_before(nc: Client) -> None:
    log = await acked_log(nc)
    first = await log.append(envelope("P-1", 1), expected_last_position=0)
    assert (first.position, first.duplicate) == (1, False) and first.link
    again = envelope("P-1", 2)
    second = await log.append(again, expected_last_position=1, previous_link=first.link)
    assert (second.position, second.duplicate) == (2, False)
    retried = await log.append(again, expected_last_position=1, previous_link=first.link)
    assert (retried.position, retried.duplicate) == (2, True)  # our earlier attempt landed
    with pytest.raises(ConcurrencyConflict):
        await log.append(envelope("P-1", 3), expected_last_position=1, previous_link=first.link)
    assert await log.last_position() == 2
    assert [e.position for e in await log.read_aggregate("project", "P-1")] == [1, 2]


async def test_the_servers_answers_are_raised_as_they_are(nc: Client) -> None:
    acks = PublishAcks(nc)
    with pytest.raises(NoStreamResponseError):  # no stream takes the subject
        await acks.publish("nowhere.at.all", b"{}", None, timeout=2.0)
    log = await acked_log(nc)
    subject = log.subjects.events("project", "P-9")
    with pytest.raises(APIError) as raised:  # wrong expected stream: the server refuses
        await acks.publish(subject, b"{}", {"Nats-Expected-Stream": "OTHER"}, timeout=2.0)
    assert raised.value.err_code is not None
    seq, duplicate = await acks.publish(subject, b"{}", {"Nats-Msg-Id": "m-1"}, timeout=2.0)
    assert (seq, duplicate) == (await log.last_position(), False)
    assert await acks.publish(subject, b"{}", {"Nats-Msg-Id": "m-1"}, timeout=2.0) == (seq, True)


async def test_an_unanswered_publish_times_out_and_is_forgotten(
    nc: Client, nats_server: EmbeddedNats
) -> None:
    acks = PublishAcks(nc)
    with pytest.raises(NoStreamResponseError):  # subscribed before the server stops answering
        await acks.publish("warm.up", b"", None, timeout=2.0)
    pause(nats_server, 1.5)
    await asyncio.sleep(0.05)  # the stop in effect: a server mid-read may still answer
    with pytest.raises(nats.errors.TimeoutError):
        await acks.publish("anything", b"{}", None, timeout=0.3)
    await asyncio.sleep(1.5)
    assert not acks._waiting  # no future left behind


async def test_an_append_gives_up_after_its_patience(nc: Client, nats_server: EmbeddedNats) -> None:
    log = await acked_log(nc, patience=1.5)
    await log.append(envelope("P-1"), expected_last_position=0)
    pause(nats_server, 4.0)
    late = envelope("P-2")
    with pytest.raises(LogUnavailable):
        await log.append(late, expected_last_position=0)
    await asyncio.sleep(3.0)
    log.patience = 20.0
    retried = await log.append(late, expected_last_position=0)  # stored once either way
    assert retried.position == 2 == await log.last_position()
