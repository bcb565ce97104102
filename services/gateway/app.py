"""Composition root of the HTTP gateway: settings, the login rule, the webhook mappings,
one NATS connection and the aiohttp server. `python -m services.gateway` runs it.

It refuses to start when it would listen beyond loopback without logins, or when a webhook
mapping cannot be used: a mistake in the configuration stops it, it never serves half."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import nats
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from nats.aio.client import Client
from opentelemetry.trace import SpanKind

import contracts
from contracts.base import ErrorCode
from services.gateway import webhooks
from services.gateway.errors import rejected
from services.gateway.handlers import Gateway, read_capped
from shared import tracing
from shared.httpauth import HttpAuth, UnsafeBinding
from shared.logging import configure_logging
from shared.rejections import keep_rejection, make_rejection
from shared.service import RECONNECT
from shared.settings import GatewaySettings

log = structlog.get_logger(__name__)

OPENAPI_FILE = Path(contracts.__file__).resolve().parent / "openapi.json"
#: Paths that need no login: webhooks prove themselves by their signature; the others
#: reveal nothing but that the gateway is up and what its API is.
PUBLIC = ("/v1/health", "/v1/openapi.json")


def is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith("/v1/webhooks/")


class GatewayServer:
    """`start()` checks the configuration, connects and listens; `url` says where."""

    def __init__(self, settings: GatewaySettings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env = os.environ if env is None else env
        self.url: str | None = None
        self.gateway: Gateway | None = None
        self._nc: Client | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        settings = self.settings
        auth = HttpAuth.from_settings(settings, settings.gateway_host)
        sources = webhooks.load_sources(settings.webhooks_dir or webhooks.SHIPPED, self.env)
        for source in sources.values():
            if source.secret is None:
                log.warning("webhook.no_secret", source=source.name, variable=source.secret_env)
        tracing.configure("gateway")
        self._nc = await nats.connect(
            settings.nats_servers(),
            name="portfolio-gateway",
            **RECONNECT,
            **settings.nats_options(),
        )
        self.gateway = Gateway(
            settings,
            self._nc,
            self._nc.jetstream(timeout=settings.request_timeout_seconds),
            sources,
            OPENAPI_FILE.read_bytes(),
        )
        app = build_app(self.gateway, auth)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        host, port = settings.gateway_host, settings.gateway_port
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as error:
            if port == 0:
                raise
            log.warning("gateway.port_taken", port=port, error=str(error))
            await web.TCPSite(self._runner, host, 0).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        shown = "127.0.0.1" if bound_host in ("0.0.0.0", "::") else bound_host
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"http://{shown}:{bound_port}"
        log.info(
            "gateway.listening",
            url=self.url,
            login="none (loopback)" if auth.open else "required",
            webhook_sources=sorted(sources),
        )
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()


def build_app(gateway: Gateway, auth: HttpAuth) -> web.Application:
    async def unauthorized(request: web.Request, why: str) -> web.StreamResponse:
        """401, and a command or webhook refused this way is kept like any refusal."""
        headers = {"WWW-Authenticate": 'Bearer realm="portfolio"'}
        if request.method == "POST":
            body, _ = await read_capped(request, gateway.settings.max_command_bytes)
            error_info = rejected_info(why)
            rejection = make_rejection(
                f"http POST {request.path[:200]}",
                body,
                error_info,
                None,
                None,
                None,
                gateway.settings.rejection_raw_limit_bytes,
            )
            await keep_rejection(gateway.js, gateway.subjects, rejection)
        return rejected(401, ErrorCode.FORBIDDEN, why, headers=headers)

    app = web.Application(
        middlewares=[traced, errors, auth.middleware(unauthorized, is_public)],
        # Bodies are read in bounded chunks by the handlers (413 with the rejection kept).
        client_max_size=max(gateway.settings.max_command_bytes, gateway.settings.webhook_max_bytes)
        * 4,
    )
    gateway.routes(app)
    return app


def rejected_info(why: str) -> contracts.base.ErrorInfo:
    return contracts.base.ErrorInfo(code=ErrorCode.FORBIDDEN, message=why)


@web.middleware
async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A span per request, in the caller's trace (its `traceparent` header): the commands
    and queries it sends over NATS carry it on. Nothing at all when tracing is off."""
    if not tracing.enabled():
        return await handler(request)
    route = request.match_info.route.resource
    name = f"http {request.method} {route.canonical if route is not None else 'unmatched'}"
    with tracing.span(name, request.headers, SpanKind.SERVER) as span:
        response = await handler(request)
        tracing.set_attributes(span, {"http.response.status_code": response.status})
        return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is JSON, a failure here included (logged, never a trace to the client)."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return rejected(404, ErrorCode.NOT_FOUND, f"nothing at {request.path[:200]}")
    except web.HTTPMethodNotAllowed as error:
        allowed = ", ".join(sorted(error.allowed_methods))
        return rejected(
            405, ErrorCode.MALFORMED, f"{request.method} is not allowed here; use {allowed}"
        )
    except web.HTTPRequestEntityTooLarge:
        return rejected(413, ErrorCode.PAYLOAD_TOO_LARGE, "the request body is too large")
    except web.HTTPException as error:
        if error.status >= 400:
            return rejected(error.status, ErrorCode.MALFORMED, error.reason)
        raise
    except Exception as error:
        log.exception("gateway.failed", path=request.path[:200])
        return rejected(500, ErrorCode.INTERNAL, f"the gateway failed: {type(error).__name__}")


async def serve(settings: GatewaySettings) -> int:
    server = GatewayServer(settings)
    try:
        url = await server.start()
    except (UnsafeBinding, webhooks.MappingError) as error:
        log.error("gateway.refused_to_start", reason=str(error))
        print(f"gateway: {error}", file=sys.stderr)
        return 2
    print(f"gateway listening on {url}", file=sys.stderr)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        with contextlib.suppress(Exception):
            await server.stop()
    return 0


def main() -> int:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    return asyncio.run(serve(settings))
