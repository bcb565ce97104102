"""The projection runner reads a message's stream sequence from its reply subject itself;
nats-py's own parser is the oracle, for both reply forms the server sends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError

from shared.pull import position_of, stored_at

NUMBER = st.integers(min_value=0, max_value=2**63 - 1)
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=20)


def _msg(reply: str) -> Msg:
    return Msg(_client=None, subject="portfolio.events.x", reply=reply)  # type: ignore[arg-type]


@given(NAME, NAME, NUMBER, NUMBER, NUMBER, NUMBER, NUMBER)
def test_plain_reply_matches_nats_py(
    stream: str, consumer: str, delivered: int, seq: int, cseq: int, ts: int, pending: int
) -> None:
    msg = _msg(f"$JS.ACK.{stream}.{consumer}.{delivered}.{seq}.{cseq}.{ts}.{pending}")
    assert position_of(msg) == seq == _msg(msg.reply).metadata.sequence.stream
    assert stored_at(msg) == _msg(msg.reply).metadata.timestamp


@given(NAME, NAME, NUMBER, NUMBER, NUMBER, NUMBER, NUMBER, st.sampled_from(["_", "hub"]))
def test_domain_reply_goes_to_nats_py(
    stream: str,
    consumer: str,
    delivered: int,
    seq: int,
    cseq: int,
    ts: int,
    pending: int,
    domain: str,
) -> None:
    reply = (
        f"$JS.ACK.{domain}.ACCHASH.{stream}.{consumer}.{delivered}.{seq}.{cseq}.{ts}.{pending}.r"
    )
    assert position_of(_msg(reply)) == seq == _msg(reply).metadata.sequence.stream
    assert stored_at(_msg(reply)) == _msg(reply).metadata.timestamp


@pytest.mark.parametrize("reply", ["", "inbox.x", "$JS.NAK.a.b.1.2.3.4.5", "$JS.ACK.a.b.1.x.3.4.5"])
def test_anything_else_fails_as_nats_py_does(reply: str) -> None:
    with pytest.raises((NotJSMessageError, ValueError)):
        position_of(_msg(reply))
