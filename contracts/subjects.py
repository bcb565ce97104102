"""Subject and stream names. The prefix is configurable; everything else derives from it."""

from __future__ import annotations

from dataclasses import dataclass

LOG_STREAM = "PORTFOLIO"
INBOX_STREAM = "PORTFOLIO_INBOX"
REJECTIONS_STREAM = "PORTFOLIO_REJECTIONS"
RESULTS_STREAM = "PORTFOLIO_RESULTS"
ALERTS_STREAM = "PORTFOLIO_ALERTS"

SERVICES = ("intake", "prioritization", "ledger", "risk", "reporting", "notify")


@dataclass(frozen=True)
class Subjects:
    prefix: str = "portfolio"

    @property
    def events_all(self) -> str:
        return f"{self.prefix}.events.>"

    def events(self, aggregate_type: str, aggregate_id: str) -> str:
        return f"{self.prefix}.events.{aggregate_type}.{aggregate_id}"

    @property
    def commands_all(self) -> str:
        return f"{self.prefix}.cmd.*"

    def command(self, name: str) -> str:
        return f"{self.prefix}.cmd.{name}"

    def command_name(self, subject: str) -> str:
        return subject.rsplit(".", 1)[-1]

    @property
    def inbox_all(self) -> str:
        return f"{self.prefix}.inbox.*"

    def inbox(self, name: str) -> str:
        return f"{self.prefix}.inbox.{name}"

    @property
    def results_all(self) -> str:
        return f"{self.prefix}.results.*"

    def result(self, command_id: str) -> str:
        return f"{self.prefix}.results.{command_id}"

    @property
    def alerts_all(self) -> str:
        return f"{self.prefix}.alerts.>"

    def alert(self, severity: str, kind: str) -> str:
        return f"{self.prefix}.alerts.{severity}.{kind}"

    @property
    def rejections_all(self) -> str:
        return f"{self.prefix}.rejections.>"

    def rejection(self, command_type: str | None) -> str:
        return f"{self.prefix}.rejections.{command_type or '_unparsed'}"

    def query(self, service: str, name: str) -> str:
        return f"{self.prefix}.query.{service}.{name}"

    def control(self, service: str, name: str) -> str:
        return f"{self.prefix}.control.{service}.{name}"
