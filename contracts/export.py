"""Write the JSON Schemas, the AsyncAPI document of every contract and the gateway's
OpenAPI document (`make schemas`).

Clients in other languages code against these files, not against our Python models, so the
files are generated from the registry and a unit test fails when they drift.

Inputs (commands, AuditQuery) are described as they are validated on the way in
(`mode="validation"`: defaults make fields optional, money may be a number or a string);
everything the backend emits (events, envelope, replies, rejections, answers) as it is
serialized (`mode="serialization"`: money is a string).

    python -m contracts.export            # (re)write schemas/, asyncapi.json, openapi.json
    python -m contracts.export --check    # exit 1 listing stale, missing or extra files
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from contracts import openapi, queries
from contracts.base import CommandAccepted, CommandRejected, EventEnvelope, FrozenModel, Rejection
from contracts.registry import COMMAND_AGGREGATE, COMMANDS, CURRENT_VERSION, EVENTS
from contracts.subjects import SERVICES, Subjects

ROOT = Path(__file__).resolve().parent
SCHEMA_DIR = "schemas"
ASYNCAPI_FILE = "asyncapi.json"
OPENAPI_FILE = "openapi.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Bump when a contract changes in a way existing clients would notice.
API_VERSION = "0.1.0"
#: Services whose projection keeps a `projects` table and so answer the projects query
#: (see shared.service.build_app).
PROJECTS_SERVICES = ("intake", "reporting")
#: What clients send; everything else is something the backend emits.
QUERY_INPUTS: tuple[type[BaseModel], ...] = (
    queries.AuditQuery,
    queries.LessonsQuery,
    queries.ProjectsQuery,
)

Mode = Literal["validation", "serialization"]


@dataclass(frozen=True)
class Contract:
    kind: str  # the folder under schemas/
    model: type[BaseModel]
    mode: Mode

    @property
    def path(self) -> str:
        return f"{SCHEMA_DIR}/{self.kind}/{self.model.__name__}.json"


def query_models() -> list[type[BaseModel]]:
    """Every model defined in contracts.queries, so a new query cannot be forgotten."""
    return [
        obj
        for obj in vars(queries).values()
        if inspect.isclass(obj)
        and issubclass(obj, FrozenModel)
        and obj.__module__ == queries.__name__
    ]


def contracts() -> list[Contract]:
    items = [Contract("commands", m, "validation") for m in COMMANDS.values()]
    items += [Contract("events", m, "serialization") for m in EVENTS.values()]
    items.append(Contract("envelope", EventEnvelope, "serialization"))
    items += [Contract("replies", m, "serialization") for m in (CommandAccepted, CommandRejected)]
    items.append(Contract("rejections", Rejection, "serialization"))
    items += [
        Contract("queries", m, "validation" if m in QUERY_INPUTS else "serialization")
        for m in query_models()
    ]
    items.sort(key=lambda c: c.path)
    paths = [c.path for c in items]
    if len(set(paths)) != len(paths):
        raise ValueError(f"two contracts share a schema file: {paths}")
    return items


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_file(contract: Contract) -> dict[str, Any]:
    return {"$schema": JSON_SCHEMA_DIALECT, **contract.model.model_json_schema(mode=contract.mode)}


# --- AsyncAPI -------------------------------------------------------------------------


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)}


def _message(name: str, payload: dict[str, Any] | None, summary: str = "") -> dict[str, Any]:
    message: dict[str, Any] = {"name": name, "contentType": "application/json"}
    if payload is not None:
        message["payload"] = payload
    if summary:
        message["summary"] = summary
    return message


def _channel(
    address: str | None,
    messages: Sequence[str],
    description: str,
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": address,
        "description": description,
        "messages": {m: _ref("components", "messages", m) for m in messages},
    }
    if parameters:
        channel["parameters"] = parameters
    return channel


def _operation(
    action: Literal["send", "receive"],
    channel: str,
    messages: Sequence[str],
    summary: str,
    reply: tuple[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": _ref("channels", channel),
        "messages": [_ref("channels", channel, "messages", m) for m in messages],
        "summary": summary,
    }
    if reply is not None:
        reply_channel, reply_messages = reply
        operation["reply"] = {
            "channel": _ref("channels", reply_channel),
            "messages": [_ref("channels", reply_channel, "messages", m) for m in reply_messages],
        }
    return operation


def _service_parameter(services: Sequence[str]) -> dict[str, Any]:
    return {"service": {"description": "The service asked.", "enum": list(services)}}


def asyncapi(subjects: Subjects | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document, seen from the backend: it receives commands and queries
    and sends events and rejections. Schemas live in components, so the file stands alone."""
    subjects = subjects or Subjects()
    items = contracts()
    refs, defs = models_json_schema(
        [(c.model, c.mode) for c in items], ref_template="#/components/schemas/{model}"
    )
    schema = {c.model: refs[(c.model, c.mode)] for c in items}

    messages: dict[str, Any] = {"Empty": _message("Empty", None, "The body is ignored.")}
    for name, command in COMMANDS.items():
        messages[name] = _message(name, schema[command])
    envelope = schema[EventEnvelope]
    for name, event in EVENTS.items():
        messages[name] = _message(
            name,
            {
                "allOf": [
                    envelope,
                    {
                        "properties": {
                            "event_type": {"const": name},
                            "schema_version": {"const": CURRENT_VERSION[name]},
                            "payload": schema[event],
                        }
                    },
                ]
            },
            f"The envelope of a {name} event.",
        )
    for model in (
        CommandAccepted,
        CommandRejected,
        Rejection,
        queries.ServiceStatus,
        queries.AuditQuery,
        queries.AuditAnswer,
        queries.QueryError,
        queries.ProjectsAnswer,
        queries.ReplayStarted,
    ):
        messages[model.__name__] = _message(model.__name__, schema[model])

    aggregates = sorted({aggregate for aggregate, _ in COMMAND_AGGREGATE.values()})
    unparsed = subjects.rejection(None).rsplit(".", 1)[-1]
    replies = ["CommandAccepted", "CommandRejected"]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name in COMMANDS:
        channel = f"cmd_{name}"
        channels[channel] = _channel(
            subjects.command(name), [name], f"Request/reply: send {name}, get the outcome."
        )
        operations[f"handle_{name}"] = _operation(
            "receive", channel, [name], f"Decide {name}.", ("cmd_reply", replies)
        )
    channels["cmd_reply"] = _channel(None, replies, "The NATS inbox of a command request.")
    channels["events"] = _channel(
        subjects.events("{aggregate}", "{id}"),
        list(EVENTS),
        "The event log (JetStream): one envelope per message, in order per aggregate.",
        {
            "aggregate": {"description": "The aggregate type.", "enum": aggregates},
            "id": {"description": "The aggregate id (a subject token)."},
        },
    )
    operations["publish_events"] = _operation(
        "send", "events", list(EVENTS), "Append accepted events to the log."
    )
    channels["rejections"] = _channel(
        subjects.rejection("{command}"),
        ["Rejection"],
        "Every refused command, raw, with its reason (JetStream).",
        {
            "command": {
                "description": (
                    f"The command name from the subject, known or not; {unparsed} when none."
                ),
                "examples": [*COMMANDS, unparsed],
            }
        },
    )
    operations["publish_rejections"] = _operation(
        "send", "rejections", ["Rejection"], "Keep a refused command."
    )

    def request_reply(
        channel: str,
        address: str,
        request: str,
        answers: Sequence[str],
        summary: str,
        services: Sequence[str] | None = None,
    ) -> None:
        params = _service_parameter(services) if services else None
        channels[channel] = _channel(address, [request], summary, params)
        channels[f"{channel}_reply"] = _channel(None, answers, f"The NATS inbox of {channel}.")
        operations[f"answer_{channel}"] = _operation(
            "receive", channel, [request], summary, (f"{channel}_reply", answers)
        )

    request_reply(
        "query_status",
        subjects.query("{service}", "status"),
        "Empty",
        ["ServiceStatus"],
        "A service's health and projection position.",
        SERVICES,
    )
    request_reply(
        "query_audit",
        subjects.query("reporting", "audit"),
        "AuditQuery",
        ["AuditAnswer", "QueryError"],
        "The audit trail, filtered.",
    )
    request_reply(
        "query_projects",
        subjects.query("{service}", "projects"),
        "Empty",
        ["ProjectsAnswer"],
        "A service's own view of every project.",
        PROJECTS_SERVICES,
    )
    request_reply(
        "control_replay",
        subjects.control("{service}", "replay"),
        "Empty",
        ["ReplayStarted"],
        "Rebuild a service's projection from the start of the log.",
        SERVICES,
    )

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "IT portfolio backend",
            "version": API_VERSION,
            "description": (
                "Event-sourced IT portfolio on NATS JetStream. Generated by "
                "`python -m contracts.export`; do not edit."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": defs["$defs"], "messages": messages},
    }


# --- files ----------------------------------------------------------------------------


def render() -> dict[str, str]:
    """Every generated file (path relative to the contracts package) and its exact text."""
    files = {c.path: dumps(schema_file(c)) for c in contracts()}
    files[ASYNCAPI_FILE] = dumps(asyncapi())
    files[OPENAPI_FILE] = dumps(openapi.document(API_VERSION))
    return files


def _existing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / SCHEMA_DIR).rglob("*.json"))


def check(root: Path = ROOT) -> list[str]:
    """What differs between the files under `root` and what `render` would write."""
    expected = render()
    problems = []
    for path, text in sorted(expected.items()):
        target = root / path
        if not target.is_file():
            problems.append(f"missing: {root.name}/{path}")
        elif target.read_bytes() != text.encode("utf-8"):
            problems.append(f"stale: {root.name}/{path}")
    problems += [f"extra: {root.name}/{path}" for path in _existing(root) if path not in expected]
    return problems


def write(root: Path = ROOT) -> list[str]:
    """Bring the files up to date, removing schemas of models that no longer exist."""
    expected = render()
    changed = []
    for path, text in sorted(expected.items()):
        target = root / path
        data = text.encode("utf-8")
        if not target.is_file() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            changed.append(f"wrote: {root.name}/{path}")
    for path in _existing(root):
        if path not in expected:
            (root / path).unlink()
            changed.append(f"removed: {root.name}/{path}")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.export", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="only compare; exit 1 if anything is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("contract files are out of date: run `make schemas`", file=sys.stderr)
            return 1
        print("contract files are up to date")
        return 0
    changes = write()
    for change in changes:
        print(change)
    print(f"{len(changes)} file(s) changed" if changes else "contract files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
