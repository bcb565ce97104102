"""Raw bytes from the wire become a typed command or a precise, field-level error.

Senders fix their input from these errors alone, so each one must name the offending field.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings

from contracts import projects as p
from contracts.base import CommandRejected, ErrorCode, ErrorInfo
from contracts.registry import CURRENT_VERSION
from shared.commands import InvalidInput, envelope_for, parse_command
from tests.hostile import NAMED_CASES, hostile_commands

LIMIT = 64 * 1024
PROPOSAL: dict[str, Any] = {
    "project_id": "crm-2025",
    "name": "New CRM",
    "sponsor": "sales",
    "capex": "100000.00",
    "opex": 20000,
    "planned_start": "2025-04-01",
    "planned_end": "2025-12-31",
}


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def proposal(**changes: Any) -> bytes:
    return body({**PROPOSAL, **changes})


def refused(name: str, raw: bytes, limit: int = LIMIT) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_command(name, raw, limit)
    return caught.value


def error_of(name: str, raw: bytes, limit: int = LIMIT) -> ErrorInfo:
    return refused(name, raw, limit).error


def fields(error: ErrorInfo) -> list[str]:
    return [d.field for d in error.details]


def test_a_valid_proposal_parses_to_its_type() -> None:
    command = parse_command("ProposeProject", proposal(), LIMIT)
    assert isinstance(command, p.ProposeProject)
    assert command.capex == Decimal("100000.00")
    assert command.opex == Decimal(20000)


# --- the body as a whole --------------------------------------------------------------


def test_body_that_is_not_utf8_is_malformed() -> None:
    error = error_of("ProposeProject", b'{"name": "\xff\xfe"}')
    assert error.code == ErrorCode.MALFORMED
    assert "UTF-8" in error.message
    assert error.details == ()


@pytest.mark.parametrize("raw", [b"", b"{", b'{"project_id": }', b"{'a': 1}", b"nope"])
def test_body_that_is_not_json_is_malformed(raw: bytes) -> None:
    error = error_of("ProposeProject", raw)
    assert error.code == ErrorCode.MALFORMED
    assert "not JSON" in error.message


@pytest.mark.parametrize("raw", [b"[]", b'[{"project_id": "x"}]', b'"text"', b"42", b"null"])
def test_body_that_is_not_an_object_is_malformed(raw: bytes) -> None:
    error = error_of("SubmitProjectForReview", raw)
    assert error.code == ErrorCode.MALFORMED
    assert "JSON object" in error.message


def test_deeply_nested_json_is_malformed() -> None:
    error = error_of("SubmitProjectForReview", b"[" * 30_000)
    assert error.code == ErrorCode.MALFORMED


def test_unknown_command_is_named_with_the_known_ones() -> None:
    error = error_of("LaunchRocket", b"{}")
    assert error.code == ErrorCode.UNKNOWN_COMMAND
    assert "'LaunchRocket'" in error.message
    assert "ProposeProject" in error.message
    assert fields(error) == ["command"]


def test_payload_over_the_limit_is_too_large() -> None:
    raw = proposal(description="x" * LIMIT)
    error = error_of("ProposeProject", raw)
    assert error.code == ErrorCode.PAYLOAD_TOO_LARGE
    assert str(len(raw)) in error.message
    assert str(LIMIT) in error.message
    assert fields(error) == ["description"]


def test_payload_over_the_limit_names_the_largest_nested_field() -> None:
    raw = proposal(scoring={"business_value": 8, "notes": "x" * LIMIT})
    assert fields(error_of("ProposeProject", raw)) == ["scoring.notes"]
    assert fields(error_of("ProposeProject", b"[" + b" " * LIMIT)) == ["(body)"]


def test_payload_exactly_at_the_limit_is_read() -> None:
    raw = proposal()
    padded = raw + b" " * (LIMIT - len(raw))
    assert isinstance(parse_command("ProposeProject", padded, LIMIT), p.ProposeProject)


# --- fields ---------------------------------------------------------------------------


def test_missing_fields_are_each_named() -> None:
    error = error_of("ProposeProject", body({"project_id": "crm-2025"}))
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert sorted(fields(error)) == ["name", "planned_end", "planned_start", "sponsor"]
    assert {d.message for d in error.details} == {"Field required"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("capex", "lots"),
        ("capex", [1]),
        ("mandatory", "maybe"),
        ("planned_start", "next spring"),
        ("name", 42),
        ("dependencies", "crm-2024"),
        ("expected_version", "three"),
        ("occurred_at", "2025-03-14T09:30:00"),  # no time zone
    ],
)
def test_wrong_types_name_the_field(field: str, value: Any) -> None:
    error = error_of("ProposeProject", proposal(**{field: value}))
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == [field]


def test_unknown_fields_are_refused_by_name() -> None:
    error = error_of("ProposeProject", proposal(colour="red", priority=1))
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert sorted(fields(error)) == ["colour", "priority"]
    assert all("not permitted" in d.message for d in error.details)


@pytest.mark.parametrize("field", ["capex", "opex"])
def test_negative_money_is_refused(field: str) -> None:
    error = error_of("ProposeProject", proposal(**{field: -1}))
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == [field]
    assert error.details[0].input == -1


@pytest.mark.parametrize("value", ["1.005", 0.125, "12.3456"])
def test_money_with_more_than_two_decimals_is_refused(value: Any) -> None:
    error = error_of("ProposeProject", proposal(capex=value))
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == ["capex"]
    assert "decimal places" in error.details[0].message


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("ProposeProject", proposal(planned_start="2025-12-31", planned_end="2025-04-01")),
        (
            "UpdateProjectEstimate",
            body(
                {
                    "project_id": "crm-2025",
                    "capex": 1,
                    "opex": 1,
                    "reason": "re-planned",
                    "planned_start": "2025-12-31",
                    "planned_end": "2025-04-01",
                }
            ),
        ),
    ],
)
def test_end_before_start_is_refused(name: str, raw: bytes) -> None:
    error = error_of(name, raw)
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert len(error.details) == 1
    # The model-level validator cannot point at one field, so it names it in the message.
    assert "planned_end" in error.details[0].message


def test_end_before_start_names_planned_end_as_the_field() -> None:
    error = error_of(
        "ProposeProject", proposal(planned_start="2025-12-31", planned_end="2025-04-01")
    )
    assert fields(error) == ["planned_end"]


@pytest.mark.parametrize("project_id", ["a.b", "a b", "*", ">", "a\n", "", "x" * 65, "ü"])
def test_project_id_must_be_a_subject_token(project_id: str) -> None:
    error = error_of("SubmitProjectForReview", body({"project_id": project_id}))
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == ["project_id"]


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("ApproveProject", "rationale"),
        ("RejectProject", "rationale"),
        ("PutProjectOnHold", "reason"),
        ("CancelProject", "reason"),
        ("UpdateProjectEstimate", "reason"),
    ],
)
@pytest.mark.parametrize("blank", ["", "   ", "\n\t "])
def test_blank_rationale_is_refused(name: str, field: str, blank: str) -> None:
    data: dict[str, object] = {"project_id": "crm-2025", field: blank}
    if name == "UpdateProjectEstimate":
        data |= {"capex": 1, "opex": 1}
    error = error_of(name, body(data))
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == [field]


def test_invalid_command_keeps_its_command_id_for_the_reply() -> None:
    invalid = refused("SubmitProjectForReview", body({"command_id": "c-1", "project_id": "a.b"}))
    assert invalid.command_id == "c-1"
    assert refused("SubmitProjectForReview", body({"project_id": "a.b"})).command_id is None


# --- envelopes ------------------------------------------------------------------------

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
AGGREGATE = ("project", "crm-2025")


def _command(command_id: str) -> p.ProjectCommand:
    return p.SubmitProjectForReview(command_id=command_id, project_id="crm-2025", actor="ana")


def test_event_ids_are_derived_from_command_id_and_index() -> None:
    """A retried command must produce the same message ids, so JetStream drops the copy."""
    event = p.ProjectSubmittedForReview(project_id="crm-2025")
    first = envelope_for(_command("c-1"), event, AGGREGATE, 0, NOW)
    assert envelope_for(_command("c-1"), event, AGGREGATE, 0, NOW).event_id == first.event_id
    assert envelope_for(_command("c-1"), event, AGGREGATE, 1, NOW).event_id != first.event_id
    assert envelope_for(_command("c-2"), event, AGGREGATE, 0, NOW).event_id != first.event_id


def test_envelope_carries_the_command_context() -> None:
    event = p.ProjectEstimateUpdated(
        project_id="crm-2025",
        capex=Decimal("1.50"),
        opex=Decimal(0),
        planned_start=NOW.date(),
        planned_end=NOW.date(),
        reason="re-quoted",
    )
    envelope = envelope_for(_command("c-1"), event, AGGREGATE, 0, NOW)
    assert envelope.event_type == "ProjectEstimateUpdated"
    assert envelope.schema_version == CURRENT_VERSION["ProjectEstimateUpdated"]
    assert (envelope.aggregate_type, envelope.aggregate_id) == AGGREGATE
    assert (envelope.actor, envelope.causation_id, envelope.correlation_id) == ("ana", "c-1", "c-1")
    assert envelope.occurred_at == envelope.recorded_at == NOW
    assert envelope.payload["capex"] == "1.50"


# --- hostile input (tests/hostile.py) -------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"project_id": "a", "project_id": "b"}',
        proposal()[:-1] + b', "sponsor": "someone else"}',
    ],
)
def test_a_key_given_twice_is_refused_by_name(raw: bytes) -> None:
    invalid = refused("ProposeProject", raw)
    assert invalid.command_id is None  # none given: not the default's fresh UUID
    error = invalid.error
    assert error.code == ErrorCode.MALFORMED
    assert "given twice" in error.message
    assert fields(error)[0] in ("project_id", "sponsor")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "a\u0000b"}, "name"),
        ({"objectives": [{"objective_id": "O-1", "contribution": 3, "x\u0000": 1}]}, None),
        ({"sponsor": "\u0000"}, "sponsor"),
    ],
)
def test_a_null_character_is_refused_by_field(changes: dict[str, Any], field: str | None) -> None:
    raw = proposal(**changes)
    error = error_of("ProposeProject", raw)
    assert "\\u0000" in raw.decode()
    assert error.code in (ErrorCode.MALFORMED, ErrorCode.VALIDATION_FAILED)
    if field is not None:
        assert fields(error) == [field]


def test_a_lone_surrogate_is_refused_and_the_refusal_can_be_sent() -> None:
    raw = proposal(name="\ud800")
    invalid = refused("ProposeProject", raw)
    assert fields(invalid.error) == ["name"]
    reply = CommandRejected(command_id=invalid.command_id, error=invalid.error)
    assert json.loads(reply.model_dump_json())["error"]["details"][0]["input"] == "\\ud800"


@pytest.mark.parametrize("name", sorted(NAMED_CASES))
def test_every_raw_hostile_case_is_refused_with_a_sendable_reason(name: str) -> None:
    invalid = refused("ProposeProject", NAMED_CASES[name])
    assert invalid.error.message
    CommandRejected(command_id=invalid.command_id, error=invalid.error).model_dump_json()


@settings(max_examples=500, deadline=None, database=None)
@given(
    hostile_commands(["ProposeProject", "DefineObjective", "DefineBudgetPool", "ApproveProject"])
)
def test_hostile_bodies_parse_or_are_refused_with_a_sendable_reason(
    case: tuple[str, bytes],
) -> None:
    name, raw = case
    try:
        command = parse_command(name, raw, LIMIT)
    except InvalidInput as invalid:
        CommandRejected(command_id=invalid.command_id, error=invalid.error).model_dump_json()
        return
    dumped = command.model_dump_json()
    assert "\\u0000" not in dumped
    assert type(command).model_validate_json(dumped) == command


@pytest.mark.parametrize(
    "moment",
    ["9999-12-31T23:59:59-14:00", "9999-12-31T20:00:00-05:00", "0001-01-01T00:00:00+01:00"],
)
def test_a_business_time_beyond_the_utc_calendar_is_refused_by_name(moment: str) -> None:
    """Valid with its offset, but after 9999-12-31 or before 0001-01-01 in UTC, where every
    projection keeps its times: appended, it stalled the reporting projection."""
    error = error_of("ProposeProject", proposal(occurred_at=moment))
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == ["occurred_at"]
    assert "UTC" in error.details[0].message


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:59:59+00:00", "9999-12-31T10:00:00-05:00", "0001-01-01T00:00:00Z"]
)
def test_a_business_time_at_the_edges_of_the_utc_calendar_is_taken(moment: str) -> None:
    command = parse_command("ProposeProject", proposal(occurred_at=moment), LIMIT)
    assert command.occurred_at == datetime.fromisoformat(moment)
