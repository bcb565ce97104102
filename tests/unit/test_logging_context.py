"""While one message is handled, every log line names its correlation and causation ids,
and only that message's lines (each task has its own context)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import structlog

from shared.logging import bind_message_context, clear_message_context, configure_logging


@pytest.fixture(autouse=True)
def _structlog_as_before() -> Iterator[None]:
    yield
    clear_message_context()
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def lines(captured: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def test_lines_name_the_message_being_handled(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("intake", "DEBUG")
    log = structlog.get_logger("test")
    log.info("before")
    bind_message_context("corr-1", "cmd-1")
    log.info("during", extra=1)
    clear_message_context()
    log.info("after")
    before, during, after = lines(capsys.readouterr().err)
    assert during["correlation_id"] == "corr-1" and during["causation_id"] == "cmd-1"
    assert during["service"] == "intake" and during["extra"] == 1
    for line in (before, after):
        assert "correlation_id" not in line and "causation_id" not in line
        assert line["service"] == "intake"


def test_each_task_names_its_own_message(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("intake", "INFO")
    log = structlog.get_logger("test")

    async def handle(command_id: str) -> None:
        bind_message_context(f"corr-{command_id}", command_id)
        await asyncio.sleep(0)  # the other task binds its own meanwhile
        log.info("handled", command=command_id)
        clear_message_context()

    async def both() -> None:
        await asyncio.gather(handle("a"), handle("b"))

    asyncio.run(both())
    found = {line["command"]: line for line in lines(capsys.readouterr().err)}
    for command_id in ("a", "b"):
        assert found[command_id]["causation_id"] == command_id
        assert found[command_id]["correlation_id"] == f"corr-{command_id}"


def test_an_id_given_on_the_line_wins(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("intake", "INFO")
    bind_message_context("corr-1", "cmd-1")
    try:
        structlog.get_logger("test").info("explicit", causation_id="own")
    finally:
        clear_message_context()
    (line,) = lines(capsys.readouterr().err)
    assert line["causation_id"] == "own" and line["correlation_id"] == "corr-1"
