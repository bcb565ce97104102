"""Inbound webhooks: which deliveries of a source become which command, as data.

One file per source in the webhooks folder (the shipped ones: deploy/webhooks/): its
secret's variable, the header carrying the delivery id, and rules. The first rule whose
`when` (a JMESPath expression) holds for the payload names the command; each field of the
command is picked from the payload with JMESPath (`jmespath` library), optionally
converted, or is a constant:

    source: finance
    secret_env: PORTFOLIO_WEBHOOK_SECRET_FINANCE
    delivery_header: X-Delivery-Id
    rules:
      - name: invoice posted
        when: "event == 'invoice.posted'"
        command: RecordActualCost
        fields:
          pool_id: invoice.budget_pool
          amount: {path: invoice.total.amount, as: decimal}
          period: {path: invoice.posting_date, as: month}
          source: {value: finance}

The signature (GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`)
is checked with a constant-time compare before anything parses the body. The command id
is a digest of the signed body, so a redelivery, or a captured delivery replayed under
another delivery id, is answered as a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import jmespath
import jmespath.exceptions
import jmespath.parser
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.registry import COMMANDS

SIGNATURE_HEADER = "X-Hub-Signature-256"
SOURCE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")
_COMMAND_ID = re.compile(r"^[A-Za-z0-9_\-:]{1,80}$")
#: Where the shipped mappings live in a checkout.
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "webhooks"


class MappingError(ValueError):
    """A mapping file that cannot be used; the gateway refuses to start with it."""


class Refused(Exception):
    """A delivery that cannot become a command: the HTTP status, code and reason."""

    def __init__(
        self, status: int, code: str, message: str, details: tuple[dict[str, Any], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


# --- the file format ----------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


Conversion = Literal["string", "decimal", "month", "date", "datetime"]


class FieldSpec(_Strict):
    path: str | None = None
    value: Any = None
    convert: Conversion | None = Field(default=None, alias="as")


class RuleSpec(_Strict):
    name: str = Field(min_length=1, max_length=100)
    when: str
    command: str
    fields: dict[str, str | FieldSpec]


class SourceSpec(_Strict):
    source: str
    secret_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    delivery_header: str = Field(pattern=r"^[A-Za-z0-9\-]{1,64}$")
    #: Who the commands come from (bound to actors like a NATS user); default webhook-<source>.
    principal: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    rules: list[RuleSpec] = Field(min_length=1)

    @field_validator("source")
    @classmethod
    def _source_name(cls, value: str) -> str:
        if not SOURCE.fullmatch(value):
            raise ValueError("lower-case letters, digits, '_' or '-', at most 32")
        return value


# --- compiled ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Field_:
    name: str
    expression: jmespath.parser.ParsedResult | None
    constant: Any
    convert: Conversion | None


@dataclass(frozen=True)
class Rule:
    name: str
    when: jmespath.parser.ParsedResult
    command: str
    fields: tuple[Field_, ...]


@dataclass(frozen=True)
class Source:
    name: str
    secret: bytes | None
    secret_env: str
    delivery_header: str
    principal: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Mapped:
    command: str
    body: dict[str, Any]
    rule: str


def load_sources(directory: Path, env: Mapping[str, str]) -> dict[str, Source]:
    """Every `<source>.yaml` (or `.yml`, `.json`) in `directory`, compiled and checked: the
    commands exist, the fields are fields of the command, the expressions parse."""
    if not directory.is_dir():
        raise MappingError(f"no webhook mappings folder at {directory}")
    sources: dict[str, Source] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        source = load_source(path, env)
        if source.name in sources:
            raise MappingError(f"{path.name}: source {source.name!r} is mapped twice")
        sources[source.name] = source
    return sources


def load_source(path: Path, env: Mapping[str, str]) -> Source:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = SourceSpec.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise MappingError(f"{path.name}: {error}") from error
    if path.stem != spec.source:
        raise MappingError(f"{path.name}: names source {spec.source!r}; name the file after it")
    rules = tuple(_compile_rule(path.name, rule) for rule in spec.rules)
    secret = env.get(spec.secret_env) or None
    return Source(
        name=spec.source,
        secret=secret.encode("utf-8") if secret else None,
        secret_env=spec.secret_env,
        delivery_header=spec.delivery_header,
        principal=spec.principal or f"webhook-{spec.source}",
        rules=rules,
    )


def _compile_rule(file: str, rule: RuleSpec) -> Rule:
    where = f"{file}, rule {rule.name!r}"
    model = COMMANDS.get(rule.command)
    if model is None:
        raise MappingError(f"{where}: unknown command {rule.command!r}")
    fields = []
    for name, spec in rule.fields.items():
        if name not in model.model_fields:
            raise MappingError(f"{where}: {rule.command} has no field {name!r}")
        if isinstance(spec, str):
            spec = FieldSpec(path=spec)
        if (spec.path is None) == (spec.value is None):
            raise MappingError(f"{where}, field {name}: give exactly one of path and value")
        expression = _compile(where, spec.path) if spec.path is not None else None
        fields.append(Field_(name, expression, spec.value, spec.convert))
    if "command_id" in rule.fields:
        raise MappingError(f"{where}: command_id derives from the delivery id, not the payload")
    return Rule(rule.name, _compile(where, rule.when), rule.command, tuple(fields))


def _compile(where: str, expression: str) -> jmespath.parser.ParsedResult:
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as error:
        raise MappingError(f"{where}: {expression!r} is not JMESPath: {error}") from error


# --- a delivery ----------------------------------------------------------------------------


def verify_signature(source: Source, body: bytes, header: str | None) -> None:
    """HMAC-SHA256 of the raw bytes, compared in constant time, before any parsing."""
    if source.secret is None:
        raise Refused(
            401, "forbidden", f"no secret is configured for {source.name} ({source.secret_env})"
        )
    if not header:
        raise Refused(401, "forbidden", f"unsigned: no {SIGNATURE_HEADER} header")
    scheme, _, given = header.strip().partition("=")
    expected = hmac.new(source.secret, body, hashlib.sha256).hexdigest()
    if scheme != "sha256" or not hmac.compare_digest(given.lower().encode(), expected.encode()):
        raise Refused(401, "forbidden", f"{SIGNATURE_HEADER} does not match the body")


def command_id(source: Source, delivery_id: str | None, body: bytes) -> str:
    """The command id is a digest of the signed body: a redelivery, and a captured delivery
    replayed under any other delivery id, is answered as a duplicate (the delivery id is
    not covered by the signature, so it cannot be what identifies the fact)."""
    if not delivery_id or len(delivery_id) > 200:
        raise Refused(
            400,
            "malformed",
            f"the delivery id header {source.delivery_header} is missing or too long",
            ({"field": source.delivery_header, "message": "required, at most 200 characters"},),
        )
    return f"wh-{source.name}-{hashlib.sha256(body).hexdigest()[:48]}"


def parse_payload(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as error:
        raise Refused(400, "malformed", f"body is not UTF-8: {error}") from error
    except RecursionError as error:
        raise Refused(400, "malformed", "body is nested too deeply") from error
    except ValueError as error:
        raise Refused(400, "malformed", f"body is not JSON: {error}") from error


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def map_payload(source: Source, payload: Any) -> Mapped:
    """The first rule that holds, applied; `Refused` (422) when none does or a field fails."""
    if not isinstance(payload, dict):
        raise Refused(422, "validation_failed", "the payload is not a JSON object")
    for rule in source.rules:
        try:
            holds = rule.when.search(payload)
        except (jmespath.exceptions.JMESPathError, RecursionError):
            holds = False
        if not holds:
            continue
        body: dict[str, Any] = {}
        for field in rule.fields:
            value = _value(rule, field, payload)
            if value is not None:
                body[field.name] = value
        return Mapped(rule.command, body, rule.name)
    names = ", ".join(repr(rule.name) for rule in source.rules)
    raise Refused(
        422, "validation_failed", f"unmappable: no rule of {source.name} matches ({names})"
    )


def _value(rule: Rule, field: Field_, payload: Any) -> Any:
    if field.expression is None:
        return field.constant
    try:
        found = field.expression.search(payload)
    except (jmespath.exceptions.JMESPathError, RecursionError) as error:
        raise _field_refused(rule, field, f"cannot be picked: {error}") from error
    if found is None or field.convert is None:
        return found
    try:
        return _convert(found, field.convert)
    except (ValueError, TypeError, OverflowError, InvalidOperation) as error:
        raise _field_refused(rule, field, f"{found!r:.100} is not a {field.convert}") from error


def _field_refused(rule: Rule, field: Field_, message: str) -> Refused:
    return Refused(
        422,
        "validation_failed",
        f"unmappable: rule {rule.name!r}, field {field.name}: {message}",
        ({"field": field.name, "message": message},),
    )


def _convert(value: Any, kind: Conversion) -> str:
    if isinstance(value, bool | dict | list):
        raise TypeError(kind)
    if kind == "string":
        return str(value)
    if kind == "decimal":
        number = Decimal(str(value))
        if not number.is_finite():
            raise ValueError(kind)
        return str(number)
    moment = _moment(value)
    if kind == "month":
        return moment.strftime("%Y-%m")
    if kind == "date":
        return moment.date().isoformat()
    return moment.isoformat()


def _moment(value: Any) -> datetime:
    """Epoch milliseconds (Jira's `timestamp`), an ISO date or an ISO date-time."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    text = str(value).strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    # Jira writes offsets without a colon (+0000), which fromisoformat reads since 3.11.
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
