"""Reports at any point in time: parsing and checking the point, reading the log up to it
and folding it into a `PortfolioReport`.

- `--as-of T` (recorded time): the log as read up to T (`EventLog.read(until_time=T)`),
  i.e. what the portfolio looked like to anyone asking at T.
- `--occurred-as-of T` (business time): the whole log (or up to `as_of` when both are
  given), keeping only the events whose `occurred_at` is at or before T, so a fact
  recorded late counts from when it happened.

Refused with `BadCut`: a point in the future, an as-of before the first event, an empty log,
a business time before anything occurred, a diff whose FROM lies after its TO.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.base import RecordedEvent
from contracts.projects import AGGREGATE as PROJECT
from contracts.subjects import LOG_STREAM
from services.reporting import documents
from services.reporting.diff import diff_report
from services.reporting.facts import Cut
from services.reporting.report import PortfolioReport

if TYPE_CHECKING:
    from services.reporting.snapshots import SnapshotStore
    from shared.eventlog import EventLog

#: What a report answer may take of one NATS message (the rest: headers and slack).
MESSAGE_HEADROOM = 4096


class BadCut(ValueError):
    """A point in time a report cannot be built at; the message says why."""


def check_cut(cut: Cut, first_recorded_at: datetime | None, now: datetime) -> None:
    for name, moment in (("as-of", cut.as_of), ("occurred-as-of", cut.occurred_as_of)):
        if moment is not None and moment > now:
            raise BadCut(f"--{name} {moment.isoformat()} is in the future (now: {now.isoformat()})")
    if cut.as_of is None and cut.occurred_as_of is None:
        return
    if first_recorded_at is None:
        raise BadCut("the log is empty: there is no past to report on")
    if cut.as_of is not None and cut.as_of < first_recorded_at:
        raise BadCut(
            f"--as-of {cut.as_of.isoformat()} is before the first event "
            f"(recorded at {first_recorded_at.isoformat()})"
        )


async def first_recorded_at(log: EventLog) -> datetime | None:
    """When the log's first event was recorded; None for an empty log."""
    info = await log.js.stream_info(LOG_STREAM)
    if not info.state.messages:
        return None
    first = await log.get(int(info.state.first_seq or 1))
    return first.envelope.recorded_at


async def position_at(log: EventLog, moment: datetime) -> int:
    """The last position recorded at or before `moment` (0: none), asked of the server
    (a consumer starting at that time) rather than found by reading the log."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=moment.astimezone(UTC),
        ack_policy=AckPolicy.NONE,
        filter_subject=log.subjects.events_all,
        inactive_threshold=30.0,
        mem_storage=True,
        num_replicas=1,
    )
    sub = await log.js.pull_subscribe(log.subjects.events_all, stream=LOG_STREAM, config=config)
    try:
        while True:
            try:
                msgs = await sub.fetch(16, timeout=1.0)
            except TimeoutError:
                return await log.last_position()
            for msg in msgs:
                if msg.metadata.timestamp > moment:
                    return int(msg.metadata.sequence.stream) - 1
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def fold(
    log: EventLog,
    cut: Cut,
    focus: str | None = None,
    snapshots: SnapshotStore | None = None,
) -> PortfolioReport:
    """The report folded from the log as `cut` bounds it: from the nearest snapshot when
    there is one (not for business time, where a late fact may belong anywhere, nor for a
    scorecard, which keeps history the snapshots don't), else from the start."""
    report = PortfolioReport(cut=cut, focus=focus)
    start, end = 1, None
    if snapshots is not None and focus is None and cut.occurred_as_of is None:
        end = await (position_at(log, cut.as_of) if cut.as_of else log.last_position())
        found = await snapshots.latest(end)
        if found is not None:
            report, start = found.report, found.position + 1
            report.cut = cut
    async for event in log.read(start, until_position=end, until_time=cut.as_of):
        report.apply(event)
    if cut.occurred_as_of is not None and report.events == 0:
        earliest = report.earliest_occurred_at
        raise BadCut(
            f"nothing had occurred by --occurred-as-of {cut.occurred_as_of.isoformat()}"
            + (f" (the earliest event occurred at {earliest.isoformat()})" if earliest else "")
        )
    return report


def previous_day(cut: Cut, now: datetime) -> Cut:
    """The cut one day earlier: what changes are measured from when nothing was published."""
    day = timedelta(days=1)
    if cut.occurred_as_of is not None and cut.as_of is None:
        return Cut(occurred_as_of=cut.occurred_as_of - day)
    return Cut(
        as_of=(cut.as_of or now) - day,
        occurred_as_of=None if cut.occurred_as_of is None else cut.occurred_as_of - day,
    )


async def portfolio_report(
    log: EventLog, cut: Cut, now: datetime, snapshots: SnapshotStore | None = None
) -> tuple[PortfolioReport, dict[str, Any]]:
    """The fold and the portfolio report, with its changes since the last published report
    (else since the day before, else since the start)."""
    first = await first_recorded_at(log)
    check_cut(cut, first, now)
    earlier = previous_day(cut, now)
    if first is None or (earlier.as_of is not None and earlier.as_of < first):
        report = await fold(log, cut, snapshots=snapshots)
        return report, documents.portfolio(report, now)
    passed = await _fold_through(log, earlier, cut, snapshots)
    if passed is not None:
        report, before = passed
        if report.published is not None or before is None:
            return report, documents.portfolio(report, now)
        summary, position = before
    else:
        report = await fold(log, cut, snapshots=snapshots)
        if report.published is not None:
            return report, documents.portfolio(report, now)
        try:
            folded = await fold(log, earlier, snapshots=snapshots)
        except BadCut:
            return report, documents.portfolio(report, now)
        summary, position = folded.summary(), folded.position
    since = {"kind": "previous_day", **earlier.as_json(), "position": position}
    return report, documents.portfolio(report, now, summary, since)


async def _fold_through(
    log: EventLog, earlier: Cut, cut: Cut, snapshots: SnapshotStore | None
) -> tuple[PortfolioReport, tuple[dict[str, Any], int] | None] | None:
    """The report at `cut` and the summary of the report at `earlier` (with its position),
    in one pass over the log, the summary taken on the way: one snapshot loaded and its
    events folded once instead of twice. Only for cuts by recorded time with no snapshot
    between them; None when they cannot be folded so (the caller folds each cut), and no
    summary when a report is published by then (none is needed)."""
    if cut.occurred_as_of is not None or earlier.occurred_as_of is not None:
        return None
    assert earlier.as_of is not None
    end = await (position_at(log, cut.as_of) if cut.as_of else log.last_position())
    middle = await position_at(log, earlier.as_of)
    if snapshots is not None and await snapshots.any_between(middle, end):
        return None  # the later cut loads that snapshot: cheaper than folding up to it
    report, start = PortfolioReport(cut=earlier), 1
    if snapshots is not None:
        found = await snapshots.latest(middle)
        if found is not None:
            report, start = found.report, found.position + 1
            report.cut = earlier
    before: tuple[dict[str, Any], int] | None = None
    passed = False
    async for event in log.read(start, until_position=end, until_time=cut.as_of):
        if not passed and event.position > middle:
            passed, before = True, _summary(report)
            report.cut = cut
        if not report.apply(event) and not passed and cut.includes(event.envelope):
            # Stored by the earlier cut but recorded after it (a clock ahead of the
            # server's): the later cut folds it and the earlier does not. Each folds alone.
            return None
    if not passed:
        before = _summary(report)
        report.cut = cut
    return report, before


def _summary(report: PortfolioReport) -> tuple[dict[str, Any], int] | None:
    """What the report's changes are measured from; None once a report is published (it
    is measured from that instead)."""
    return None if report.published is not None else (report.summary(), report.position)


async def scorecard(log: EventLog, cut: Cut, project_id: str, now: datetime) -> dict[str, Any]:
    check_cut(cut, await first_recorded_at(log), now)
    report = await fold(log, cut, focus=project_id)
    return documents.scorecard(report, project_id, now)


async def diff(
    log: EventLog, start: Cut, end: Cut, now: datetime, snapshots: SnapshotStore | None = None
) -> dict[str, Any]:
    for name in ("as_of", "occurred_as_of"):
        a, b = getattr(start, name), getattr(end, name)
        if a is not None and b is not None and a > b:
            raise BadCut(f"--diff FROM {a.isoformat()} is after TO {b.isoformat()}")
    first = await first_recorded_at(log)
    check_cut(start, first, now)
    check_cut(end, first, now)
    before = await fold(log, start, snapshots=snapshots)
    after = await fold(log, end, snapshots=snapshots)
    return diff_report(before, after, now, await _between(log, start, end, after.position))


async def _between(log: EventLog, start: Cut, end: Cut, last: int) -> list[RecordedEvent]:
    """The project events the later cut folds and the earlier does not, in log order: by
    recorded time, those recorded in between; by business time, those that occurred in
    between (read up to the later cut's position)."""
    subject = log.subjects.events(PROJECT, "*")
    if start.occurred_as_of is None:
        first = await position_at(log, start.as_of) + 1 if start.as_of else 1
        return [e async for e in log.read(first, filter_subject=subject, until_position=last)]
    low, high = start.occurred_as_of, end.occurred_as_of
    return [
        e
        async for e in log.read(filter_subject=subject, until_position=last)
        if low < e.envelope.occurred_at and (high is None or e.envelope.occurred_at <= high)
    ]


def fit(report: Any, limit: int) -> bytes:
    """The answer as JSON if it fits in one message of `limit` bytes, else an error that
    says how to narrow the question."""
    data = json.dumps(report).encode()
    if len(data) <= limit:
        return data
    return json.dumps(
        {
            "error": f"the report is {len(data)} bytes, more than one message holds ({limit}): "
            "narrow it, e.g. one project (--project ID) or an earlier point (--as-of)",
            "code": "too_large",
        }
    ).encode()
