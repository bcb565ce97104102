"""One hostile generator for every entry point (request/reply, the inbox, import files, HTTP,
webhooks): what users and their tools actually send, as bytes.

API (small on purpose; every entry point's fuzz test uses the same cases):

- `RAW_CASES: list[bytes]`: whole bodies that break parsers (not UTF-8, nested thousands
  deep, 1e309, NaN, a null byte, over the size limit, duplicate keys, not an object...),
  each also in `NAMED_CASES` under a short name for test ids.
- `BAD_IDS: list[str]`: ids that must never reach a subject, a file name or a log key
  (space, dot, `*`, `>`, newline, empty, too long, non-ASCII, a lone surrogate...).
- `hostile_values()`: strategy of raw JSON *tokens* (text) to put in place of one field:
  1e309, 40-digit numbers, NaN, `"\\u0000"`, a 100 kB string, wrong types, dates that do
  not exist (2027-02-30), zone-less timestamps, bad ids.
- `hostile_bodies(command_names)`: strategy of bytes bodies for those commands: a raw
  case, random bytes, random JSON, or a valid body (`seed`) with one field replaced by a
  hostile value, removed, duplicated with another value, or an unknown field added. Some
  bodies are valid on purpose (a fuzz test must tell accepted from refused).
- `hostile_commands(command_names)`: strategy of `(command name, body)`, the name
  sometimes unknown (`NoSuchCommand`, lower case, a subject-breaking name for HTTP paths
  and import cells).
- `seed(command, key)`: a valid body for the commands the fuzzers aim at most, keyed so
  that accepted seeds create distinct aggregates; `{}` for the others.

Everything yields `bytes`; the caller decides where they go (a subject, a POST body, a
JSON Lines row).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

#: Marks the field to replace by a raw token in a JSON text (never appears in real input).
_HOLE = "\u0001HOLE\u0001"
_HOLE_JSON = json.dumps(_HOLE)

DEEP = 5000
BIG = 100 * 1024

BAD_IDS: list[str] = [
    "has space",
    "has.dot",
    "*",
    ">",
    "a.>",
    "new\nline",
    "tab\there",
    "",
    " ",
    "x" * 200,
    "é-accent",
    "null\u0000byte",
    "../../etc/passwd",
    "semi;colon",
    "quote'\"",
    "\ud800",  # a lone surrogate: valid in JSON text, not encodable as UTF-8
]

#: Raw JSON tokens (text) that replace one field's value.
_TOKENS: list[str] = [
    "1e309",
    "-1e309",
    "NaN",
    "Infinity",
    "-Infinity",
    "1234567890123456789012345678901234567890",
    "-1234567890123456789012345678901234567890",
    "1e-400",
    "0.1234567890123456789012345678901234567890",
    '"1e309"',
    '"NaN"',
    '"1234567890123456789012345678901234567890"',
    '"\\u0000"',
    '"a\\u0000b"',
    '"\\ud800"',
    json.dumps("x" * BIG),
    "null",
    "true",
    "false",
    "0",
    "-1",
    "[]",
    "{}",
    '[{"a": 1}]',
    '""',
    '"   "',
    '"2027-02-30"',
    '"2027-13-01"',
    '"2027-00-10"',
    '"0000-01-01"',
    '"10000-01-01"',
    '"2027-03-01T10:00:00"',  # zone-less
    '"2027-03-01 10:00"',
    '"2027-02-30T10:00:00+00:00"',
    '"2027-03-01T10:00:00+25:00"',
    '"9999-12-31T23:59:59-14:00"',
    '"yesterday"',
    "[" * 50 + "]" * 50,
    *(json.dumps(bad) for bad in BAD_IDS),
]

NAMED_CASES: dict[str, bytes] = {
    "empty": b"",
    "space": b" ",
    "not-utf8": b"\xff\xfe\xfd",
    "latin1": '{"name": "caf\xe9"}'.encode("latin-1"),
    "utf16": '{"project_id": "P-1"}'.encode("utf-16"),
    "bom": b"\xef\xbb\xbf{}",
    "null-byte": b"\x00",
    "null-in-json": b'{"project_id": "P\x00-1"}',
    "null": b"null",
    "true": b"true",
    "number": b"42",
    "string": b'"ProposeProject"',
    "array": b"[]",
    "array-of-object": b'[{"project_id": "P-1"}]',
    "huge-number": b"1e309",
    "nan": b"NaN",
    "forty-digits": b"1234567890123456789012345678901234567890",
    "deep-array": b"[" * DEEP + b"]" * DEEP,
    "deep-object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep-unclosed": b"[" * (DEEP * 4),
    "truncated": b'{"project_id": "P-1", "name": ',
    "trailing-garbage": b'{"project_id": "P-1"} trailing',
    "two-objects": b'{"a": 1}{"b": 2}',
    "single-quotes": b"{'project_id': 'P-1'}",
    "comment": b'{"project_id": "P-1" /* hi */}',
    "duplicate-keys": b'{"project_id": "P-1", "project_id": "P-2"}',
    "big-field": b'{"name": "' + b"x" * BIG + b'"}',
    "over-limit": b'{"description": "' + b"y" * (70 * 1024) + b'"}',
    "lone-surrogate": b'{"project_id": "\\ud800"}',
    "control-chars": b'{"project_id": "\x01\x02"}',
    "crlf": b'{\r\n"project_id":\r\n"P-1"\r\n}',
}
RAW_CASES: list[bytes] = list(NAMED_CASES.values())


def seed(command: str, key: str = "1") -> dict[str, Any]:
    """A valid body of `command` whose aggregate id contains `key`, or `{}` when no seed is
    known (the body is then refused as incomplete, which is hostile enough)."""
    seeds: dict[str, dict[str, Any]] = {
        "ProposeProject": {
            "project_id": f"FZ-{key}",
            "name": f"Fuzzed {key}",
            "sponsor": "cio",
            "capex": "1000.00",
            "opex": "10.50",
            "planned_start": "2027-01-01",
            "planned_end": "2027-06-30",
            "actor": "fuzz",
            "source": "fuzz",
        },
        "DefineObjective": {
            "objective_id": f"FZO-{key}",
            "name": "Fuzz objective",
            "owner": "cio",
            "weight": 10,
        },
        "DefineBudgetPool": {
            "pool_id": f"FZB-{key}",
            "name": "Fuzz pool",
            "fiscal_year": 2027,
            "category": "capex",
            "amount": "100000",
            "currency": "EUR",
            "owner": "cfo",
        },
        "SubmitProjectForReview": {"project_id": f"FZ-{key}"},
        "ReportProgress": {
            "project_id": f"FZ-{key}",
            "period": "2027-02",
            "percent_complete": 10,
        },
        "RegisterStakeholder": {
            "stakeholder_id": f"FZS-{key}",
            "name": "Fuzz stakeholder",
            "role": "sponsor",
        },
    }
    return dict(seeds.get(command, {}))


def hostile_values() -> st.SearchStrategy[str]:
    """Raw JSON tokens (text), for one field's value."""
    return st.sampled_from(_TOKENS) | st.integers().map(str) | st.text(max_size=30).map(json.dumps)


_ids = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _mutated(draw: st.DrawFn, command_names: Sequence[str]) -> bytes:
    """A seed body with one field made hostile."""
    body = seed(draw(st.sampled_from(list(command_names))), draw(_ids))
    fields = [*body, "command_id", "actor", "source", "occurred_at", "expected_version"]
    field = draw(st.sampled_from([*fields, "unexpected"]))
    how = draw(st.sampled_from(["replace", "replace", "replace", "drop", "duplicate", "keep"]))
    if how == "drop":
        body.pop(field, None)
        return json.dumps(body).encode()
    if how == "keep":  # valid unless the seed is empty: some input must be accepted
        return json.dumps(body).encode()
    token = draw(hostile_values())
    if how == "duplicate":
        text = json.dumps(body)
        inner = text[1:-1]
        joiner = ", " if inner else ""
        text = "{" + inner + joiner + f"{json.dumps(field)}: {_HOLE_JSON}" + "}"
    else:
        body[field] = _HOLE
        text = json.dumps(body)
    return text.replace(_HOLE_JSON, token).encode("utf-8", "surrogatepass")


def hostile_bodies(command_names: Sequence[str]) -> st.SearchStrategy[bytes]:
    """Bodies for commands among `command_names` (see the module docstring)."""
    kinds = [
        st.sampled_from(RAW_CASES),
        st.binary(max_size=300),
        _json.map(lambda value: json.dumps(value).encode()),
        _mutated(command_names),
    ]
    # one in ten a raw case, one in ten random bytes, two random JSON, six a mutated seed
    weights = [0, 1, 2, 2, 3, 3, 3, 3, 3, 3]
    return st.sampled_from(weights).flatmap(lambda kind: kinds[kind])


#: Names a sender may put where a command name goes (a path segment, a CSV cell).
BAD_COMMAND_NAMES: list[str] = [
    "NoSuchCommand",
    "proposeproject",
    "ProposeProject ",
    "Propose.Project",
    "*",
    ">",
    "",
    "x" * 300,
]


def hostile_commands(command_names: Sequence[str]) -> st.SearchStrategy[tuple[str, bytes]]:
    """`(command name, body)`: mostly known names, sometimes a name that is not one."""
    known, bad = st.sampled_from(list(command_names)), st.sampled_from(BAD_COMMAND_NAMES)
    names = st.integers(0, 9).flatmap(lambda n: bad if n == 0 else known)
    return st.tuples(names, hostile_bodies(command_names))
