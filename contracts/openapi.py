"""The OpenAPI 3.1 document of the HTTP gateway, generated from the contracts.

`make schemas` writes it to contracts/openapi.json (contracts/export.py), the gateway
serves that file at `/v1/openapi.json`, and a unit test fails when it is stale. One path
per command, so a client generator gets one typed operation each; every refusal has the
shape of `CommandRejected`, whichever status carries it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from contracts import queries
from contracts.base import CommandAccepted, CommandRejected
from contracts.prioritization import RankingAnswer
from contracts.registry import COMMANDS

#: Where `portfolio up` serves it by default (PORTFOLIO_GATEWAY_PORT).
DEFAULT_SERVER = "http://127.0.0.1:8430"
REF = "#/components/schemas/{model}"

#: What each refusal status means; the error `code` says precisely why.
REFUSALS: dict[str, str] = {
    "400": "malformed: not JSON, not an object, or not UTF-8 (`malformed`)",
    "401": "no valid bearer token (`forbidden`)",
    "403": "the principal may not act for the command's actor (`forbidden`)",
    "404": "unknown command, or an aggregate that does not exist (`unknown_command`, `not_found`)",
    "409": "`already_exists`, `illegal_transition` or `conflict` (expected_version)",
    "413": "larger than PORTFOLIO_MAX_COMMAND_BYTES (`payload_too_large`)",
    "422": "a field is invalid, or the Idempotency-Key differs from the body's command_id "
    "(`validation_failed`)",
    "429": "the principal sends too fast (`rate_limited`); retry with the same key",
    "503": "intake did not answer (`unavailable`); retry with the same key after Retry-After",
}
QUERY_REFUSALS = {
    "400": "a parameter cannot be used (`validation_failed`)",
    "401": REFUSALS["401"],
    "404": "unknown project (`not_found`)",
    "503": "the service did not answer (`unavailable`)",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
TIME_HELP = (
    "ISO 8601 (a date: its start; no zone: the gateway's local time), `now`, or an offset "
    "into the past such as `-2h`, `-7d`."
)


def _refusals(which: dict[str, str]) -> dict[str, Any]:
    responses = {}
    for status, description in which.items():
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Refusal")}}},
        }
        if status in ("429", "503"):
            response["headers"] = RETRY_AFTER
        responses[status] = response
    return responses


def _json(ref: str | None, description: str) -> dict[str, Any]:
    schema = {"$ref": REF.format(model=ref)} if ref else {"type": "object"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, where: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _report_params() -> list[dict[str, Any]]:
    return [
        _param("as_of", "query", f"As recorded by then. {TIME_HELP}"),
        _param("occurred_as_of", "query", f"Facts that had occurred by then. {TIME_HELP}"),
        _param(
            "format",
            "query",
            "json (default), csv, md or html.",
            type="string",
            enum=["json", "csv", "md", "html"],
        ),
    ]


def _report_answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/csv": {"schema": {"type": "string"}},
            "text/markdown": {"schema": {"type": "string"}},
            "text/html": {"schema": {"type": "string"}},
        },
    }


def document(api_version: str) -> dict[str, Any]:
    inputs: list[tuple[type[BaseModel], Any]] = [(m, "validation") for m in COMMANDS.values()]
    outputs: list[type[BaseModel]] = [
        CommandAccepted,
        CommandRejected,
        queries.ProjectsAnswer,
        queries.AuditAnswer,
        queries.ServiceStatus,
        RankingAnswer,
    ]
    refs, defs = models_json_schema(
        [*inputs, *((m, "serialization") for m in outputs)], ref_template=REF
    )
    schemas: dict[str, Any] = dict(defs["$defs"])
    schemas["Refusal"] = {
        "$ref": refs[(CommandRejected, "serialization")]["$ref"],
        "description": "Every refusal: the same code, message and fields as over NATS.",
    }

    paths: dict[str, Any] = {}
    for name, model in COMMANDS.items():
        paths[f"/v1/commands/{name}"] = {
            "post": {
                "operationId": f"send{name}",
                "tags": ["commands"],
                "summary": (model.__doc__ or name).strip().splitlines()[0],
                "parameters": [
                    _param(
                        "Idempotency-Key",
                        "header",
                        "The command id: a repeat returns the first answer (`duplicate`), "
                        "however much later.",
                        type="string",
                        pattern=r"^[A-Za-z0-9_\-:]{1,128}$",
                    )
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": refs[(model, "validation")]}},
                },
                "responses": {
                    "200": _json(
                        "CommandAccepted", "Accepted: the events and their log positions."
                    ),
                    **_refusals(REFUSALS),
                },
            }
        }
    paths["/v1/projects"] = {
        "get": {
            "operationId": "listProjects",
            "tags": ["queries"],
            "summary": "Every project, a page at a time.",
            "parameters": [
                _param("after_project_id", "query", "The page after this project."),
                _param(
                    "limit",
                    "query",
                    "Projects per page.",
                    type="integer",
                    minimum=1,
                    maximum=queries.PAGE_SIZE,
                ),
            ],
            "responses": {
                "200": _json("ProjectsAnswer", "A page of projects."),
                **_refusals(QUERY_REFUSALS),
            },
        }
    }
    paths["/v1/projects/{project_id}"] = {
        "get": {
            "operationId": "projectScorecard",
            "tags": ["queries"],
            "summary": "One project's scorecard, at any point in time.",
            "parameters": [_param("project_id", "path", "The project."), *_report_params()],
            "responses": {
                "200": _report_answer("The scorecard."),
                **_refusals(QUERY_REFUSALS),
            },
        }
    }
    paths["/v1/report"] = {
        "get": {
            "operationId": "portfolioReport",
            "tags": ["queries"],
            "summary": "The portfolio report, or what changed between two times.",
            "parameters": [
                *_report_params(),
                _param("diff_from", "query", f"With diff_to: what changed. {TIME_HELP}"),
                _param("diff_to", "query", TIME_HELP),
                _param(
                    "diff_by",
                    "query",
                    "Whether the diff's times are recorded or business times.",
                    type="string",
                    enum=["recorded", "occurred"],
                ),
            ],
            "responses": {
                "200": _report_answer("The report."),
                **_refusals(QUERY_REFUSALS),
            },
        }
    }
    audit_params = [
        _param("project", "query", "Everything about this project, on any aggregate."),
        *(
            _param(name, "query", f"Only this {name.replace('_', ' ')}.")
            for name in ("aggregate_type", "aggregate_id", "actor", "event_type", "correlation_id")
        ),
        _param("since", "query", f"Recorded at or after. {TIME_HELP}"),
        _param("as_of", "query", f"Recorded at or before: the trail as it stood. {TIME_HELP}"),
        _param("occurred_as_of", "query", f"Business time at or before. {TIME_HELP}"),
        _param("after_position", "query", "The page after this position.", type="integer"),
        _param(
            "limit",
            "query",
            "Entries per page.",
            type="integer",
            minimum=1,
            maximum=queries.PAGE_SIZE,
        ),
    ]
    paths["/v1/audit"] = {
        "get": {
            "operationId": "auditTrail",
            "tags": ["queries"],
            "summary": "The decision history: who did what, when, why.",
            "parameters": audit_params,
            "responses": {
                "200": _json("AuditAnswer", "A page of the trail."),
                **_refusals(QUERY_REFUSALS),
            },
        }
    }
    paths["/v1/alerts"] = {
        "get": {
            "operationId": "openAlerts",
            "tags": ["queries"],
            "summary": "The open alerts, each with the indicators that raised it.",
            "responses": {"200": _json(None, '`{"open": [...]}`'), **_refusals(QUERY_REFUSALS)},
        }
    }
    paths["/v1/ranking"] = {
        "get": {
            "operationId": "ranking",
            "tags": ["queries"],
            "summary": "The latest ranking, with every score's breakdown.",
            "parameters": [_param("model", "query", "Scoring model id (default: default).")],
            "responses": {
                "200": _json("RankingAnswer", "The ranking."),
                **_refusals(QUERY_REFUSALS),
            },
        }
    }
    paths["/v1/forecast"] = {
        "get": {
            "operationId": "portfolioForecast",
            "tags": ["queries"],
            "summary": "The seeded Monte Carlo forecast: P10/P50/P80/P90 of cost, the chance "
            "of staying within each pool and objective's funding, the reserve at P80.",
            "parameters": [
                _param("seed", "query", "Seed (default 0): the same seed, the same answer.",
                       type="integer", minimum=0),
                _param("iterations", "query", "Iterations (default 10,000).", type="integer",
                       minimum=100, maximum=200_000),
                _param("project", "query", "One project."),
                _param("programme", "query", "One programme."),
                _param("include_pipeline", "query", "Also proposed and under-review projects.",
                       type="boolean"),
                *_report_params()[::2],
            ],
            "responses": {
                "200": _report_answer("The forecast."),
                **_refusals(QUERY_REFUSALS),
            },
        }
    }  # fmt: skip
    paths["/v1/status"] = {
        "get": {
            "operationId": "status",
            "tags": ["queries"],
            "summary": "Every service's health, log position and lag (null: not answering).",
            "responses": {
                "200": {
                    "description": "The gateway and each service.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "gateway": {"type": "object"},
                                    "services": {
                                        "type": "object",
                                        "additionalProperties": {
                                            "anyOf": [
                                                {"$ref": REF.format(model="ServiceStatus")},
                                                {"type": "null"},
                                            ]
                                        },
                                    },
                                },
                            }
                        }
                    },
                },
                "401": _refusals(QUERY_REFUSALS)["401"],
            },
        }
    }
    paths["/v1/webhooks/{source}"] = {
        "post": {
            "operationId": "webhook",
            "tags": ["webhooks"],
            "summary": "A signed delivery from another tool, mapped to a command.",
            "description": (
                "The source's mapping file (deploy/webhooks/<source>.yaml) says which payloads "
                "become which command and picks the fields with JMESPath. The body must be "
                "signed: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` with "
                "the source's secret. The delivery id header the mapping names is the "
                "idempotency key: a redelivery is answered as a duplicate."
            ),
            "security": [{"webhookSignature": []}],
            "parameters": [
                _param("source", "path", "The source, e.g. jira or finance."),
                {
                    "name": "X-Hub-Signature-256",
                    "in": "header",
                    "required": True,
                    "description": "sha256=<hex HMAC-SHA256 of the raw body>",
                    "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": _json("CommandAccepted", "The mapped command was accepted."),
                **_refusals(
                    REFUSALS
                    | {
                        "401": "unsigned, or the signature does not match (`forbidden`)",
                        "404": "no such source (`not_found`)",
                        "422": "no rule maps this payload, or a mapped field is invalid "
                        "(`validation_failed`)",
                    }
                ),
            },
        }
    }
    paths["/v1/health"] = {
        "get": {
            "operationId": "health",
            "tags": ["operations"],
            "summary": "Up and connected to NATS (no login needed).",
            "security": [],
            "responses": {
                "200": _json(None, '`{"status": "ok"}`'),
                "503": _refusals({"503": "not connected to NATS"})["503"],
            },
        }
    }
    paths["/v1/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "tags": ["operations"],
            "summary": "This document (no login needed).",
            "security": [],
            "responses": {"200": _json(None, "OpenAPI 3.1")},
        }
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "IT portfolio backend: HTTP gateway",
            "version": api_version,
            "description": (
                "HTTP and webhooks for tools that do not speak NATS: the same commands and "
                "queries as over NATS (portfolio.cmd.<Command>.<principal>, "
                "portfolio.query.<service>.<name>). Generated by `python -m contracts.export`; "
                "do not edit."
            ),
        },
        "servers": [{"url": DEFAULT_SERVER, "description": "`portfolio up` on this machine"}],
        "security": [{"bearerToken": []}],
        "tags": [
            {"name": "commands", "description": "Request/reply commands through intake."},
            {"name": "queries", "description": "The read side."},
            {"name": "webhooks", "description": "Signed deliveries from other tools."},
            {"name": "operations", "description": "Health and this document."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "A token whose SHA-256 is listed in PORTFOLIO_HTTP_TOKENS; it names "
                        "the principal the command acts as. On loopback without tokens, "
                        "every request acts as `local`."
                    ),
                },
                "webhookSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Hub-Signature-256",
                    "description": "sha256=<hex HMAC-SHA256 of the raw body with the secret>",
                },
            },
        },
    }
