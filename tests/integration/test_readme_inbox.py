"""The README's inbox snippet ("Publishing from another tool"), run as written: it waits
for its outcome instead of reading the results stream before intake has answered. And
PortfolioClient's inbox helper, as the README shows it."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from contracts.projects import ProposeProject
from shared.client import PortfolioClient
from shared.eventlog import EventLog
from tests.integration.helpers import proposal, running

README = Path(__file__).resolve().parents[2] / "README.md"


def inbox_snippet() -> str:
    """The Python block after "**Fire-and-forget**" in the README."""
    text = README.read_text()
    start = text.index("**Fire-and-forget**")
    block = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert block is not None, "the README lost its inbox snippet"
    return block.group(1)


async def run_snippet(nc: Client, body: bytes) -> dict[str, Any]:
    source = "async def snippet(nc, body, json):\n" + textwrap.indent(inbox_snippet(), "    ")
    source += "\n    return locals()\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    result: dict[str, Any] = await namespace["snippet"](nc, body, json)
    return result


async def test_the_readme_inbox_snippet_gets_its_outcome(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    body = json.dumps(proposal("ERP-7")).encode()  # no command_id: the Nats-Msg-Id stands in
    async with running(nc, "intake", nats_url, tmp_path):
        done = await run_snippet(nc, body)
    assert done["result"]["status"] == "accepted"
    assert done["result"]["command_id"] == "tracker-4712"
    assert json.loads(done["stored"].data) == done["result"]
    assert await event_log.last_position() == 1


async def test_the_client_inbox_helper_waits_for_the_outcome(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with running(nc, "intake", nats_url, tmp_path):
        client = PortfolioClient(nc, source="tracker")
        command = ProposeProject.model_validate(proposal("ERP-8"))
        command_id = await client.send_to_inbox(command)
        outcome = await client.result(command_id)
    assert outcome.status == "accepted" and outcome.command_id == command_id
    assert await event_log.last_position() == 1
