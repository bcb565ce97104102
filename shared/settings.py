"""Settings from `PORTFOLIO_*` environment variables; each service extends the base class."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.subjects import Subjects

RUNTIME_FILE = "runtime.json"


class PortfolioSettings(BaseSettings):
    """What every process needs: where NATS and the database are, and where data lives."""

    model_config = SettingsConfigDict(env_prefix="PORTFOLIO_", extra="ignore", frozen=True)

    data_dir: Path = Path(".portfolio")
    nats_url: str | None = None
    database_url: str | None = None
    subject_prefix: str = "portfolio"
    log_level: str = "INFO"
    duplicate_window_seconds: float = 120.0
    request_timeout_seconds: float = 5.0

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.subject_prefix)

    def resolved_nats_url(self) -> str:
        """The configured URL(s), else the one `portfolio up` recorded in the data folder."""
        if self.nats_url:
            return self.nats_url
        runtime = self.data_dir / RUNTIME_FILE
        if runtime.exists():
            return str(json.loads(runtime.read_text())["nats_url"])
        return "nats://127.0.0.1:4222"

    def nats_servers(self) -> list[str]:
        """`PORTFOLIO_NATS_URL` may list a cluster's nodes separated by commas."""
        return [url.strip() for url in self.resolved_nats_url().split(",") if url.strip()]

    def database_url_for(self, service: str) -> str:
        if self.database_url:
            return self.database_url
        path = (self.data_dir / f"{service}.db").resolve()
        return f"sqlite:///{path}"


class ServiceSettings(PortfolioSettings):
    """Settings of a service process that keeps a projection."""

    projection_batch_size: int = 500
    projection_retry_delay_seconds: float = 2.0


class IntakeSettings(ServiceSettings):
    max_command_bytes: int = 64 * 1024
    rejection_raw_limit_bytes: int = 16 * 1024
    conflict_retries: int = 3
    #: Request/reply commands one source may send per second (the inbox is its own buffer).
    source_rate_per_second: float = 5000.0
    source_burst: float = 10000.0
    inbox_batch_size: int = 256
    max_in_flight: int = 64


class PrioritizationSettings(ServiceSettings):
    reprioritize_quiet_seconds: float = 1.0
    reprioritize_longest_seconds: float = 30.0


class LedgerSettings(ServiceSettings):
    #: A role is over-allocated in a month when demand exceeds capacity by more than this.
    over_allocation_tolerance_percent: Decimal = Decimal(0)


class RiskSettings(ServiceSettings):
    pass


class ReportingSettings(ServiceSettings):
    pass


class SupervisorSettings(PortfolioSettings):
    """`portfolio up`: the embedded nats-server's port (0 picks a free one)."""

    nats_port: int = 4222
    nats_host: str = "127.0.0.1"
    restart_backoff_seconds: float = 1.0
