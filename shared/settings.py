"""Settings from `PORTFOLIO_*` environment variables; each service extends the base class."""

from __future__ import annotations

import json
import ssl
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.subjects import SERVICES, Subjects

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
    #: Replicas of the log stream: 3 on a cluster (a log found with fewer stops the start).
    log_replicas: int = 1
    request_timeout_seconds: float = 5.0
    #: NATS user and password (deploy/nats/auth.conf), or a credentials file (needs `nkeys`).
    nats_user: str | None = None
    nats_password: str | None = None
    nats_creds_file: Path | None = None
    #: Where replies to this process's requests arrive: `_INBOX.<nats_user>` by default when
    #: a user is set, the subjects deploy/nats/auth.conf lets only that user read.
    nats_inbox_prefix: str | None = None
    #: How long a log append or read waits out a server that does not answer (a leader
    #: election takes 4-9 s) before giving up: `unavailable` / `log_unavailable`.
    log_patience_seconds: float = Field(default=20.0, gt=0)
    #: TLS: the CA that signed the server's certificate; a client certificate and key when
    #: the server verifies clients.
    nats_tls_ca_file: Path | None = None
    nats_tls_cert_file: Path | None = None
    nats_tls_key_file: Path | None = None

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

    def nats_options(self) -> dict[str, Any]:
        """Keyword arguments for `nats.connect`: the credentials and TLS configured, if any."""
        options: dict[str, Any] = {}
        if self.nats_user is not None:
            options["user"] = self.nats_user
            options["password"] = self.nats_password or ""
        if self.nats_creds_file is not None:
            options["user_credentials"] = str(self.nats_creds_file)
        inbox = self.nats_inbox_prefix or (f"_INBOX.{self.nats_user}" if self.nats_user else None)
        if inbox is not None:
            options["inbox_prefix"] = inbox
        if self.nats_tls_ca_file is not None or self.nats_tls_cert_file is not None:
            ca = self.nats_tls_ca_file
            context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
            if self.nats_tls_cert_file is not None:
                context.load_cert_chain(self.nats_tls_cert_file, self.nats_tls_key_file)
            options["tls"] = context
        return options

    def database_url_for(self, service: str) -> str:
        if self.database_url:
            return self.database_url
        path = (self.data_dir / f"{service}.db").resolve()
        return f"sqlite:///{path}"


class ServiceSettings(PortfolioSettings):
    """Settings of a service process that keeps a projection."""

    projection_batch_size: int = 500
    #: Seconds a crashed active instance keeps its lease; 0 runs without one (a single
    #: instance that nothing else may start beside).
    lease_ttl_seconds: float = 3.0
    projection_retry_delay_seconds: float = 2.0
    #: Prometheus `/metrics` (shared/metrics.py). 0: a free port, shown by `portfolio
    #: status`; a base port N: each service listens on N + its place in `SERVICES`
    #: (intake N, prioritization N+1, ledger N+2, risk N+3, reporting N+4, notify N+5),
    #: a free one when that is taken; -1: not served.
    metrics_port: int = Field(default=0, ge=-1, le=65535)
    #: The address `/metrics` listens on (0.0.0.0 in a container, for a scraper beside it).
    metrics_host: str = "127.0.0.1"

    def metrics_port_for(self, service: str) -> int | None:
        """The port `service` serves its metrics on (0: any free one), None when off."""
        if self.metrics_port < 0:
            return None
        if self.metrics_port == 0:
            return 0
        offset = SERVICES.index(service) if service in SERVICES else len(SERVICES)
        return min(65535, self.metrics_port + offset)


class IntakeSettings(ServiceSettings):
    max_command_bytes: int = 64 * 1024
    rejection_raw_limit_bytes: int = 16 * 1024
    #: Decisions of a command that lost the append's check to another writer, before it
    #: is refused `conflict` (a command without expected_version only).
    conflict_retries: int = 8
    #: Request/reply commands one source may send per second (the inbox is its own buffer).
    source_rate_per_second: float = 5000.0
    source_burst: float = 10000.0
    inbox_batch_size: int = 256
    #: Failed attempts of an inbox message's own before it is a dead letter: answered
    #: `internal`, kept in rejections, removed from the inbox (services/intake/inbox.py).
    inbox_max_deliveries: int = 5
    max_in_flight: int = 64
    #: Actor binding. A command sent on `<prefix>.cmd.<Command>.<principal>` (or
    #: `.inbox.<Command>.<principal>`) comes from `principal`: NATS lets each user publish
    #: only under its own name (deploy/nats/auth.conf). It may act as the principal itself
    #: (the default actor and source) or as the actors listed here for it ("*": any), e.g.
    #: PORTFOLIO_ACTOR_BINDINGS='{"finance-sync": ["finance-bot"], "cli": ["*"]}'.
    actor_bindings: dict[str, list[str]] = {}
    #: Refuse commands sent without a principal (once every sender has a NATS user of its
    #: own). Off: a command on `<prefix>.cmd.<Command>` may claim any actor, as before auth.
    require_principal: bool = False


class PrioritizationSettings(ServiceSettings):
    reprioritize_quiet_seconds: float = 1.0
    reprioritize_longest_seconds: float = 30.0
    #: Seconds the selection solver may take per scenario (and per frontier level); at the
    #: limit the answer is the best selection found, with its proven gap and a note saying so.
    selection_time_limit_seconds: float = Field(default=2.0, gt=0, le=3600)


class LedgerSettings(ServiceSettings):
    #: A role is over-allocated in a month when demand exceeds capacity by more than this.
    over_allocation_tolerance_percent: Decimal = Decimal(0)


class RiskSettings(ServiceSettings):
    pass


class NotifySettings(ServiceSettings):
    """Alert delivery (services/notify): where links point, how to sign and send."""

    #: Links in alert messages point here (`PORTFOLIO_DASHBOARD_BASE_URL`).
    dashboard_base_url: str = "http://127.0.0.1:8420"
    #: Webhook signing secrets by name (a subscription's `secret_ref`), e.g.
    #: PORTFOLIO_NOTIFY_WEBHOOK_SECRETS='{"ops-hook": "s3cret"}'. Never in the log.
    notify_webhook_secrets: dict[str, str] = {}
    #: Attempts per alert and subscription before the dead letter; the wait between them
    #: doubles from `notify_backoff_seconds` up to `notify_backoff_max_seconds`.
    notify_max_attempts: int = Field(default=8, ge=1, le=1000)
    notify_backoff_seconds: float = Field(default=1.0, gt=0)
    notify_backoff_max_seconds: float = Field(default=60.0, gt=0)
    notify_timeout_seconds: float = Field(default=10.0, gt=0)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_from: str = "portfolio@localhost"


class HttpAccessSettings(PortfolioSettings):
    """Who may use the HTTP gateway and the dashboard (shared/httpauth.py). On a loopback
    address both may run open; on any other address they refuse to start without one of
    these, and then ask every request for a login."""

    #: Bearer tokens as data: the SHA-256 hex digest of each token -> the principal it
    #: authenticates (a NATS-principal-like name, bound to actors by
    #: PORTFOLIO_ACTOR_BINDINGS), e.g. PORTFOLIO_HTTP_TOKENS='{"9f86d0...": "tracker"}'.
    http_tokens: dict[str, str] = {}
    #: A header an authenticating proxy sets to the logged-in user (e.g. X-Forwarded-User),
    #: trusted only from the addresses in `trusted_proxies` (IPs or CIDR networks).
    trusted_proxy_header: str | None = None
    trusted_proxies: list[str] = []


class ReportingSettings(ServiceSettings, HttpAccessSettings):
    report_publish_every_seconds: float = 0.0
    #: A snapshot of the report fold every this many events, so a report at any point
    #: reads at most this many from the log (0: no snapshots, every report reads it all).
    report_snapshot_every: int = Field(default=10_000, ge=0)
    #: The dashboard's address (`PORTFOLIO_DASHBOARD_HOST`, `PORTFOLIO_DASHBOARD_PORT`); port
    #: 0 picks a free one, and a taken port falls back to a free one.
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8420
    #: The pages refresh at most this often while events flow.
    dashboard_refresh_seconds: float = 1.0


class GatewaySettings(HttpAccessSettings):
    """The HTTP gateway (services/gateway): stateless, as many instances as wanted."""

    gateway_host: str = "127.0.0.1"
    #: 0 picks a free port; `portfolio up` picks a free one when this one is taken.
    gateway_port: int = 8430
    #: Larger command bodies are refused with 413 (the same limit as intake's).
    max_command_bytes: int = 64 * 1024
    #: Larger webhook deliveries are refused with 413 before their signature is checked.
    webhook_max_bytes: int = 256 * 1024
    rejection_raw_limit_bytes: int = 16 * 1024
    #: Requests one principal (a token's, a webhook source's) may send per second here.
    gateway_rate_per_second: float = 5000.0
    gateway_burst: float = 10000.0
    #: How long a command waits for intake's answer before 503 (Retry-After).
    gateway_command_timeout_seconds: float = 10.0
    #: How long a query waits for its service (a report of a large log takes seconds).
    gateway_query_timeout_seconds: float = 60.0
    #: The webhook mappings, one file per source (`<source>.yaml`); default: the shipped
    #: deploy/webhooks of this checkout.
    webhooks_dir: Path | None = None


class SupervisorSettings(PortfolioSettings):
    """`portfolio up`: the embedded nats-server's port (0 picks a free one)."""

    nats_port: int = 4222
    nats_host: str = "127.0.0.1"
    restart_backoff_seconds: float = 1.0


class CliSettings(PortfolioSettings):
    """The `portfolio` command's identity: who acts (`PORTFOLIO_ACTOR`, else the login) and
    the NATS user it sends as (`PORTFOLIO_PRINCIPAL`, else `PORTFOLIO_NATS_USER`), named in
    the subject of its commands (`<prefix>.cmd.<Command>.<principal>`)."""

    actor: str | None = None
    principal: str | None = None
