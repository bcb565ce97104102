"""The published JSON Schemas and AsyncAPI document must match the models they describe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contracts import export
from contracts.registry import COMMANDS, EVENTS
from contracts.subjects import Subjects


def _asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((export.ROOT / export.ASYNCAPI_FILE).read_text())
    return document


def test_exported_files_are_up_to_date() -> None:
    problems = export.check()
    assert not problems, "contract files are out of date; run `make schemas`:\n" + "\n".join(
        problems
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_schema_file(name: str) -> None:
    schema = json.loads((export.ROOT / "schemas" / "commands" / f"{name}.json").read_text())
    assert schema["title"] == name


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_every_event_has_a_schema_file(name: str) -> None:
    schema = json.loads((export.ROOT / "schemas" / "events" / f"{name}.json").read_text())
    assert schema["title"] == name


def test_asyncapi_has_a_channel_for_every_command_subject() -> None:
    addresses = {channel["address"] for channel in _asyncapi()["channels"].values()}
    missing = {Subjects().command(name) for name in COMMANDS} - addresses
    assert not missing


def test_asyncapi_has_a_message_for_every_event() -> None:
    events_channel = _asyncapi()["channels"]["events"]
    assert set(events_channel["messages"]) == set(EVENTS)


def test_asyncapi_references_all_resolve() -> None:
    """A dangling `$ref` would only show up in a client's code generator."""
    document = _asyncapi()

    def resolve(pointer: str) -> Any:
        node: Any = document
        for part in pointer.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                assert node["$ref"].startswith("#/"), node["$ref"]
                resolve(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


def test_rendering_is_deterministic() -> None:
    assert export.render() == export.render()


def test_check_reports_stale_missing_and_extra_files(tmp_path: Path) -> None:
    export.write(tmp_path)
    assert export.check(tmp_path) == []

    (tmp_path / "schemas" / "commands" / "ProposeProject.json").write_text("{}\n")
    (tmp_path / "schemas" / "events" / "ProjectProposed.json").unlink()
    (tmp_path / "schemas" / "events" / "ProjectRenamed.json").write_text("{}\n")
    root = tmp_path.name
    assert export.check(tmp_path) == [
        f"stale: {root}/schemas/commands/ProposeProject.json",
        f"missing: {root}/schemas/events/ProjectProposed.json",
        f"extra: {root}/schemas/events/ProjectRenamed.json",
    ]

    export.write(tmp_path)
    assert export.check(tmp_path) == []
    assert not (tmp_path / "schemas" / "events" / "ProjectRenamed.json").exists()
