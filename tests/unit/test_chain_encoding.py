"""The hash chain's canonical JSON and the writer's event ids are defined by the standard
library (`json.dumps`, `json.loads`, `uuid.uuid5`); the fast paths must give exactly
their bytes, or every verification after them would report a break."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import chain
from shared.commands import EVENT_ID_NAMESPACE, event_id_for


def reference(document: Any) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


#: Every code point but the surrogates (no UTF-8 for those), control characters included.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=30,
)
anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(text, anything, max_size=8))
def test_canonical_is_the_standard_librarys(document: dict[str, Any]) -> None:
    assert chain.canonical(document) == reference(document)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(text, plain, max_size=8))
def test_sealing_reads_what_json_reads(document: dict[str, Any]) -> None:
    document.pop(chain.FIELD, None)
    document["event_id"] = "e-1"  # an envelope: never empty, never sealed yet
    data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    assert chain._parse(data)[0] == json.loads(data)
    sealed, hashed = chain.seal(data, "previous")
    assert hashed == chain.link("previous", json.loads(data))
    assert json.loads(sealed) == {**json.loads(data), chain.FIELD: hashed}


@pytest.mark.parametrize(
    "document",
    [
        {"x": 1e16, "y": 1e-05, "z": [0.1, -0.0, 2.5e300]},  # floats: json's own repr
        {"big": 2**70, "small": -(2**64)},  # beyond orjson's integers
        {"keys": {"b": 1, "a": 2, "é": 3, "\U0001f600": 4, "\uffff": 5, "\x00": 6}},
        {"text": '\x00\x1f\x7f\u2028\u2029"\\/\ud7ff\ue000'},
        {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
    ],
)
def test_canonical_edge_cases(document: dict[str, Any]) -> None:
    assert chain.canonical(document) == reference(document)
    data = json.dumps(document, ensure_ascii=False).encode()
    assert chain._parse(data)[0] == json.loads(data)


def test_a_lone_surrogate_fails_as_json_fails() -> None:
    with pytest.raises(UnicodeEncodeError):
        chain.canonical({"text": "\ud800"})
    data = b'{"text":"\\ud800"}'
    assert chain._parse(data) == (json.loads(data), False)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=150), st.integers(0, 99))
def test_event_ids_are_uuid5(command_id: str, index: int) -> None:
    expected = str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{command_id}/{index}"))
    assert event_id_for(command_id, index) == expected
