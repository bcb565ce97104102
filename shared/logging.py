"""structlog, configured once per process: JSON when not on a terminal, pretty when it is."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

#: The message being handled: (correlation id, causation id). One variable set per message
#: (structlog's own context variables cost a variable per key, bound and unbound each time).
_MESSAGE: ContextVar[tuple[str | None, str | None] | None] = ContextVar(
    "portfolio_message", default=None
)


def merge_message_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Adds the ids `bind_message_context` bound, as `merge_contextvars` adds its own."""
    ids = _MESSAGE.get()
    if ids is not None:
        event_dict.setdefault("correlation_id", ids[0])
        event_dict.setdefault("causation_id", ids[1])
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    renderer: structlog.typing.Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            merge_message_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries that use the standard logging module go to stderr at WARNING and above.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")


def bind_message_context(correlation_id: str | None, causation_id: str | None) -> None:
    """Every log line while handling one message names its correlation and causation ids."""
    _MESSAGE.set((correlation_id, causation_id))


def clear_message_context() -> None:
    _MESSAGE.set(None)
