"""Composition root of the prioritization service."""

from __future__ import annotations

from faststream import FastStream

from services.prioritization.projection import NAME, PrioritizationProjection
from shared.service import ServiceRuntime, build_app
from shared.settings import PrioritizationSettings


def create_app(settings: PrioritizationSettings | None = None) -> FastStream:
    return build_app(
        ServiceRuntime(NAME, settings or PrioritizationSettings(), PrioritizationProjection())
    )
