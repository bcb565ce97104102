"""Composition root of the risk service."""

from __future__ import annotations

from faststream import FastStream

from services.risk.projection import NAME, RiskProjection
from shared.service import ServiceRuntime, build_app
from shared.settings import RiskSettings


def create_app(settings: RiskSettings | None = None) -> FastStream:
    return build_app(ServiceRuntime(NAME, settings or RiskSettings(), RiskProjection()))
