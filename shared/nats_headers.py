"""A faster parse of NATS message headers for nats-py, the same result as its own.

Every message a service reads carries headers (message id, trace context, hash-chain
link), and nats-py parses them by testing each character of each name in a generator:
about 4 µs a message, a tenth of what a replay spends per event outside its fold. This
parse gives the same dictionary for every input (a property test holds it to nats-py's
own, on arbitrary bytes) with the checks done by C string methods, and remembers the
names it has seen (a few, in practice; the memory is bounded for hostile senders).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from nats.aio.client import Client

_CRLF = b"\r\n"
#: `str.isspace` as a pattern: \s in a str pattern matches exactly what it accepts.
_SPACE = re.compile(r"\s")
#: Header names seen, as their key (None: a name nats-py skips). Cleared when full.
_NAMES: dict[bytes, str | None] = {}
NAMES_KEPT = 1024

_original: Callable[[bytes], dict[str, str]] | None = None


def _key(name: bytes) -> str | None:
    try:
        key = name.strip().decode("ascii")
    except UnicodeDecodeError:
        return None
    return None if _SPACE.search(key) else key


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """nats-py's `Client._parse_header_lines`, faster (see the module's docstring)."""
    out: dict[str, str] = {}
    names = _NAMES
    for line in raw.split(_CRLF):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = names[name]
        except KeyError:
            key = _key(name)
            if len(names) >= NAMES_KEPT:
                names.clear()
            names[name] = key
        if key is not None:
            out[key] = value.strip().decode("utf-8", "replace")
    return out


def install() -> None:
    """Parse headers with `parse_header_lines` in this process (idempotent). Only where
    nats-py has the parser it replaces; otherwise its own stays."""
    global _original
    if _original is not None:
        return
    found = Client.__dict__.get("_parse_header_lines")
    if not isinstance(found, staticmethod):
        return
    _original = found.__func__
    Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]


def original() -> Callable[[bytes], dict[str, str]]:
    """nats-py's own parser (the oracle of the tests), installed or not."""
    if _original is not None:
        return _original
    found = Client.__dict__["_parse_header_lines"]
    return found.__func__  # type: ignore[no-any-return]
