"""Composition root of the ledger service."""

from __future__ import annotations

from faststream import FastStream

from services.ledger.projection import NAME, LedgerProjection
from shared.service import ServiceRuntime, build_app
from shared.settings import LedgerSettings


def create_app(settings: LedgerSettings | None = None) -> FastStream:
    return build_app(ServiceRuntime(NAME, settings or LedgerSettings(), LedgerProjection()))
