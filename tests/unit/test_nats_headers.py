"""The faster header parse gives nats-py's own result for any bytes (the oracle is the
library's parser itself), and stands in for nats-py's once installed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from shared import nats_headers

# Names and values from the bytes that matter to the parse: separators, the whitespace
# both `bytes.strip` and `str.isspace` know (and those only one knows), non-ASCII, UTF-8
# both valid and broken.
_ALPHABET = st.sampled_from(
    [b"a", b"Z", b"-", b"1", b":", b" ", b"\t", b"\r", b"\n", b"\x0b", b"\x0c", b"\x1c",
     b"\x1f", b"\x85", b"\xc3\xa9", b"\xff", b"\x00", b"\xe2\x80\x83"]
)  # fmt: skip
_PIECE = st.lists(_ALPHABET, max_size=12).map(b"".join)
_NAME = st.one_of(
    _PIECE,
    st.sampled_from(
        [b"Nats-Msg-Id", b"traceparent", b"Portfolio-Link", b" Name ", b"Bad Name", b"N\xc3me"]
    ),
)
_LINE = st.one_of(
    st.tuples(_NAME, st.sampled_from([b":", b": ", b":\t", b""]), _PIECE).map(b"".join),
    st.binary(max_size=40),
)
_BLOCK = st.lists(_LINE, max_size=8).map(lambda lines: b"\r\n".join(lines) + b"\r\n\r\n")


@settings(max_examples=600, deadline=None)
@given(block=st.one_of(_BLOCK, st.binary(max_size=200)))
def test_the_same_headers_as_nats_py_for_any_bytes(block: bytes) -> None:
    expected = nats_headers.original()(block)
    assert nats_headers.parse_header_lines(block) == expected
    assert nats_headers.parse_header_lines(block) == expected  # names remembered


def test_names_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nats_headers, "NAMES_KEPT", 8)
    for index in range(50):
        found = nats_headers.parse_header_lines(f"Name-{index}: {index}\r\n\r\n".encode())
        assert found == {f"Name-{index}": str(index)}
        assert len(nats_headers._NAMES) <= 8


def test_installed_once_in_place_of_nats_pys_own() -> None:
    nats_headers.install()
    nats_headers.install()  # twice: still nats-py's own parser behind it
    assert Client._parse_header_lines is nats_headers.parse_header_lines
    assert nats_headers.original() is not nats_headers.parse_header_lines
    assert Client._parse_header_lines(b"A: 1\r\nB:2\r\n\r\n") == {"A": "1", "B": "2"}
