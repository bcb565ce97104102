"""The reporting service's live dashboard (HTTP, server-rendered pages, server-sent events)."""

from services.reporting.dashboard.server import Dashboard

__all__ = ["Dashboard"]
