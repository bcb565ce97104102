"""Who is asking over HTTP: the gateway and the dashboard share one rule.

On a loopback address either may run open (everyone on the machine can use the CLI
anyway): every request then acts as the principal `local`. On any other address it refuses
to start unless logins are configured, and then every request must bring one of:

- `Authorization: Bearer <token>`, a token whose SHA-256 hex digest is a key of
  `PORTFOLIO_HTTP_TOKENS` (tokens are data: the settings hold hashes, never tokens);
- `Authorization: Basic ...` with that token as the password (what a browser asks for);
- the header `PORTFOLIO_TRUSTED_PROXY_HEADER` (e.g. `X-Forwarded-User`), believed only on
  a connection from an address in `PORTFOLIO_TRUSTED_PROXIES` (an authenticating proxy).

The principal found is bound to actors exactly like a NATS principal: the gateway names
it in the command's subject and intake checks the binding (services/intake/principals.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from shared.settings import HttpAccessSettings

#: Who acts when the server runs open on loopback.
LOCAL = "local"
#: A principal ends up in a NATS subject token: letters, digits, `_` and `-` only.
PRINCIPAL = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9\-]{1,64}$")
PRINCIPAL_KEY = web.RequestKey("principal", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Refusal = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


class UnsafeBinding(ValueError):
    """The settings would expose the server without a login, or cannot be used."""


def token_hash(token: str) -> str:
    """What `PORTFOLIO_HTTP_TOKENS` keeps of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _nothing(_: str) -> bool:
    return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name or "" (every interface): not loopback


@dataclass(frozen=True)
class HttpAuth:
    tokens: dict[str, str]
    proxy_header: str | None
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def from_settings(cls, settings: HttpAccessSettings, host: str) -> HttpAuth:
        """Checked before listening: bad entries or an exposed open server stop the start."""
        problems = []
        tokens = {}
        for digest, principal in settings.http_tokens.items():
            if not _HASH.fullmatch(digest.lower()):
                problems.append(f"PORTFOLIO_HTTP_TOKENS: {digest[:12]!r}... is not a SHA-256 hex")
            elif not PRINCIPAL.fullmatch(principal):
                problems.append(
                    f"PORTFOLIO_HTTP_TOKENS: principal {principal!r} must be letters, digits, "
                    "'_' or '-'"
                )
            else:
                tokens[digest.lower()] = principal
        header = settings.trusted_proxy_header
        if header is not None and not _HEADER_NAME.fullmatch(header):
            problems.append(f"PORTFOLIO_TRUSTED_PROXY_HEADER: {header!r} is not a header name")
        proxies = []
        for network in settings.trusted_proxies:
            try:
                proxies.append(ipaddress.ip_network(network, strict=False))
            except ValueError:
                problems.append(f"PORTFOLIO_TRUSTED_PROXIES: {network!r} is not an address")
        if (header is None) != (not proxies):
            problems.append(
                "PORTFOLIO_TRUSTED_PROXY_HEADER and PORTFOLIO_TRUSTED_PROXIES go together"
            )
        auth = cls(tokens, header, tuple(proxies))
        if not problems and auth.open and not is_loopback(host):
            problems.append(
                f"refusing to listen on {host!r} without a login: set PORTFOLIO_HTTP_TOKENS "
                "(or PORTFOLIO_TRUSTED_PROXY_HEADER with PORTFOLIO_TRUSTED_PROXIES), or "
                "listen on 127.0.0.1"
            )
        if problems:
            raise UnsafeBinding("; ".join(problems))
        return auth

    @property
    def open(self) -> bool:
        """No login configured: allowed on loopback only, everyone is `local`."""
        return not self.tokens and self.proxy_header is None

    def principal(self, request: web.Request) -> str | None:
        """The principal the request proves, `local` when open, None when it proves none."""
        if self.open:
            return LOCAL
        if self.proxy_header is not None and self._from_proxy(request):
            user = request.headers.get(self.proxy_header, "")
            if PRINCIPAL.fullmatch(user):
                return user
        token = _presented_token(request.headers.get("Authorization", ""))
        if token is None:
            return None
        return self.tokens.get(token_hash(token))

    def _from_proxy(self, request: web.Request) -> bool:
        peer = request.remote
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.proxies)

    def middleware(self, refuse: Refusal, public: Callable[[str], bool] = _nothing) -> Middleware:
        """Sets `request[PRINCIPAL_KEY]`, or answers `await refuse(request, why)` (a 401).
        Paths for which `public(path)` holds need no login (they check their own, like a
        webhook's signature, or reveal nothing)."""

        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            if public(request.path):
                return await handler(request)
            principal = self.principal(request)
            if principal is None:
                why = (
                    "a valid bearer token is required (Authorization: Bearer <token>)"
                    if "Authorization" in request.headers or self.proxy_header is None
                    else "log in: a bearer token, or through the authenticating proxy"
                )
                return await refuse(request, why)
            request[PRINCIPAL_KEY] = principal
            return await handler(request)

        return authenticate


def _presented_token(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if not value:
        return None
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None
