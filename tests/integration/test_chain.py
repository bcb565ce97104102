"""The hash chain (shared/chain.py) on a real nats-server: what the writer seals, what
`verify_chain` recomputes, and the first position where a tampered log breaks."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from contracts.subjects import Subjects
from shared import chain
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import EventLog
from tests.integration.helpers import SUBJECTS, caught_up, fill_log, proposed_envelope, running


@pytest.fixture(autouse=True)
def database() -> str:
    """About the log, not the projections' database."""
    return "sqlite"


async def test_the_writer_seals_every_event_and_the_log_verifies(event_log: EventLog) -> None:
    end = await fill_log(event_log, 50)
    seen: list[tuple[int, int]] = []
    verified = await verify(event_log, seen)
    assert verified.broken is None
    assert (verified.checked, verified.end, verified.pre_chain) == (end, end, 0)
    assert seen[-1] == (end, end)
    # Each event names its aggregate's previous one: a second event on P-00001 links to the
    # first one's hash.
    first = await event_log.get(2)
    assert first.envelope.chain_hash is not None
    command = proposed_envelope("P-00001").model_copy(
        update={"event_id": "second", "event_type": "ProjectSubmittedForReview"}
    )
    appended = await event_log.append(command, expected_last_position=2)
    second = await event_log.get(appended.position)
    document = second.envelope.model_dump(mode="json", exclude={"chain_hash"})
    assert second.envelope.chain_hash == chain.link(first.envelope.chain_hash, document)
    again = await verify(event_log)
    assert again.broken is None and again.head != verified.head


FORGED = proposed_envelope("P-FORGED")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (FORGED.model_dump_json(), "no chain hash"),
        (FORGED.model_copy(update={"chain_hash": "0" * 64}).model_dump_json(), "does not match"),
        ("not json", "not an event envelope"),
    ],
    ids=["no-hash", "wrong-hash", "not-an-envelope"],
)
async def test_a_raw_publish_breaks_the_chain_at_its_position(
    event_log: EventLog, nc: Client, data: str, reason: str
) -> None:
    """Anything but the portfolio's writer (here a plain JetStream publish, as anyone may on
    the embedded server, which has no authentication) breaks the chain where it landed."""
    await fill_log(event_log, 20)
    ack = await nc.jetstream().publish("portfolio.events.project.P-FORGED", data.encode())
    await fill_log(event_log, 5, start=100)
    verified = await verify(event_log)
    assert verified.broken is not None and verified.broken.position == ack.seq == 21
    assert reason in verified.broken.reason
    assert verified.checked == 20


async def test_an_event_on_another_aggregates_subject_breaks_the_chain(
    event_log: EventLog, nc: Client
) -> None:
    await fill_log(event_log, 3)
    # A correctly sealed event of P-00000, stored under P-00001's subject.
    data, _ = chain.seal(
        proposed_envelope("P-00000").model_dump_json(exclude={"chain_hash"}).encode(), ""
    )
    ack = await nc.jetstream().publish("portfolio.events.project.P-00001", data)
    result = await verify(event_log)
    assert result.broken is not None and result.broken.position == ack.seq
    assert "stored on portfolio.events.project.P-00001" in result.broken.reason


async def test_events_from_before_the_chain_still_fold_and_verify(
    event_log: EventLog, nc: Client
) -> None:
    """A log written before the chain existed: its events carry no hash. They verify as
    pre-chain (and load, and decide) and the first sealed event links to them."""
    js = nc.jetstream()
    old = proposed_envelope("P-OLD")
    await js.publish("portfolio.events.project.P-OLD", old.model_dump_json().encode())
    (loaded,) = await event_log.read_aggregate("project", "P-OLD")
    assert loaded.envelope.chain_hash is None
    # The writer chains the next event of P-OLD to the old one's digest.
    nxt = old.model_copy(update={"event_id": "next", "event_type": "ProjectSubmittedForReview"})
    appended = await event_log.append(nxt, expected_last_position=1)
    stored = (await event_log.get(appended.position)).envelope
    document = stored.model_dump(mode="json", exclude={"chain_hash"})
    assert stored.chain_hash == chain.link(chain.pre_chain_link(old), document)
    verified = await verify(event_log)
    assert verified.broken is None and verified.pre_chain == 1 and verified.checked == 2


async def test_an_event_changed_in_a_copied_store_breaks_the_chain(tmp_path: Path) -> None:
    """Stop the server, copy its store, change one event's bytes in the copy (same length,
    so the file stays well-formed), start a server on the copy: verification names that
    event's position."""
    original = EmbeddedNats(tmp_path / "original")
    nc = await nats.connect(original.start())
    log = EventLog(nc.jetstream(), Subjects())
    await log.ensure_streams()
    end = await fill_log(log, 30)
    target = await log.get(17)
    assert (await verify(log)).broken is None
    await nc.close()
    original.stop()

    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    if (tmp_path / "copy" / "ports").exists():
        shutil.rmtree(tmp_path / "copy" / "ports")
    name = f'"name":"Project {target.envelope.aggregate_id}"'.encode()
    changed = name.replace(b"Project", b"Pr0ject")
    blocks = list((tmp_path / "copy" / "jetstream").rglob("*.blk"))
    hits = [b for b in blocks if name in b.read_bytes()]
    assert len(hits) == 1
    hits[0].write_bytes(hits[0].read_bytes().replace(name, changed))

    copy = EmbeddedNats(tmp_path / "copy")
    nc = await nats.connect(copy.start())
    try:
        copied = EventLog(nc.jetstream(), Subjects())
        result = await verify(copied)
        assert result.broken is not None and result.broken.position == 17, result
        assert result.checked == 16
        # The server itself checks each stored message's checksum and no longer serves the
        # changed one: the log has a hole there, which breaks the chain.
        assert "missing" in result.broken.reason
        assert await copied.last_position() in (end, 16)
    finally:
        await nc.close()
        copy.stop()


async def verify(
    log: EventLog, seen: list[tuple[int, int]] | None = None
) -> chain.ChainVerification:
    return await chain.verify_chain(
        log,
        progress=(lambda at, end: seen.append((at, end))) if seen is not None else None,
        every=10,
    )


async def test_an_event_changed_in_a_restored_copy_breaks_the_chain(
    event_log: EventLog, tmp_path: Path
) -> None:
    """A copy made message by message (as a restore from an edited backup would be), with
    one event's payload changed and everything else, headers and order, as stored: the
    changed event's hash no longer matches."""
    end = await fill_log(event_log, 40)
    copy_server = EmbeddedNats(tmp_path / "copy")
    nc = await nats.connect(copy_server.start())
    try:
        copied = EventLog(nc.jetstream(), Subjects())
        await copied.ensure_streams()
        async for position, subject, data in event_log.read_raw():
            if position == 23:
                data = data.replace(b'"capex":"100000.00"', b'"capex":"900000.00"')
                assert b"900000.00" in data
            ack = await nc.jetstream().publish(subject, data)
            assert ack.seq == position
        assert await copied.last_position() == end
        result = await verify(copied)
        assert result.broken is not None and result.broken.position == 23
        assert "does not match" in result.broken.reason
    finally:
        await nc.close()
        copy_server.stop()


async def test_a_published_report_pins_the_head_and_verify_checks_it(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    """The report carries the log-wide head at the position it was computed at; a copy
    whose history before it was rewritten with every hash recomputed (so each aggregate's
    chain holds) still fails, at the report."""
    await fill_log(event_log, 12)
    async with running(nc, "reporting", nats_url, tmp_path):
        await caught_up(nc, "reporting", 12)
        msg = await nc.request(
            SUBJECTS.control("reporting", "publish"),
            json.dumps({"rationale": "board pack", "actor": "cfo"}).encode(),
            timeout=20,
        )
    published = json.loads(msg.data)["appended"]["position"]
    report = await event_log.get(published)
    pinned = report.envelope.payload["chain_head"]
    assert pinned["position"] == 12
    verified = await verify(event_log)
    assert verified.broken is None and verified.reports_checked == 1
    # The head the report pinned is the one recomputed at that position.
    walked = await chain.verify_chain(event_log)
    assert walked.checked == published

    # A copy with event 5 changed and resealed (its aggregate has no later event, so no
    # per-aggregate link notices): only the pinned head does.
    copy_server = EmbeddedNats(tmp_path / "copy")
    copy_nc = await nats.connect(copy_server.start())
    try:
        copied = EventLog(copy_nc.jetstream(), Subjects())
        await copied.ensure_streams()
        async for position, subject, data in event_log.read_raw():
            if position == 5:
                document = json.loads(data)
                del document["chain_hash"]
                document["payload"]["capex"] = "1.00"
                data, _ = chain.seal(json.dumps(document).encode(), chain.GENESIS)
            await copy_nc.jetstream().publish(subject, data)
        result = await verify(copied)
        assert result.broken is not None and result.broken.position == published
        assert "history up to 12 was rewritten" in result.broken.reason
    finally:
        await copy_nc.close()
        copy_server.stop()


def portfolio(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTFOLIO_")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "portfolio"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


async def test_portfolio_audit_verify(event_log: EventLog, nc: Client, nats_url: str) -> None:
    """The CLI verb: exit 0 with the head on a sound log; exit 1 naming the first position
    where the chain breaks."""
    end = await fill_log(event_log, 30)
    sound = await asyncio.to_thread(portfolio, "audit", "--verify", "--json", "--url", nats_url)
    assert sound.returncode == 0, sound.stderr
    found = json.loads(sound.stdout)
    assert found["ok"] and found["checked"] == end and found["broken_at"] is None
    assert found["head"] == (await verify(event_log)).head

    ack = await nc.jetstream().publish("portfolio.events.project.X", b'{"forged": true}')
    await fill_log(event_log, 3, start=500)
    broken = await asyncio.to_thread(portfolio, "audit", "--verify", "--url", nats_url)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"breaks at position {ack.seq}" in " ".join(broken.stdout.split())
