"""Alert delivery to people and tools: subscriptions as data, and what became of each
delivery.

A **subscription** (`subscription`, id `subscription_id`) names a channel and a target, for
a stakeholder or for a tool, and filters: severities, metrics, programmes, projects, pools
(each empty list: any). Channels:

- `webhook`: JSON POSTed to `target`, signed with HMAC-SHA256 over the raw body in
  `X-Hub-Signature-256: sha256=<hex>` (the secret is named by `secret_ref`, configured in
  `PORTFOLIO_NOTIFY_WEBHOOK_SECRETS`: never in the log), with `X-Portfolio-Delivery` (the
  delivery id, the same on every retry) and `X-Portfolio-Timestamp` (unix seconds);
- `slack`: a Slack incoming webhook (`{"text", "blocks"}`), `target` the hook URL;
- `teams`: a Microsoft Teams Workflows webhook taking an Adaptive Card;
- `email`: a mail over SMTP to `target` (the server in `PORTFOLIO_SMTP_*`).

Delivery outcomes are appended by the notify service under the `delivery` aggregate (id:
the subscription id): `AlertDelivered`, or `AlertDeadLettered` with the reason once the
retries are spent.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from contracts.base import EMAIL, URL, AggregateKey, Command, FrozenModel, Identifier, Name
from contracts.risks import Metric, Severity
from contracts.stakeholders import AGGREGATE as STAKEHOLDER

SUBSCRIPTION = "subscription"
DELIVERY = "delivery"
AGGREGATE = SUBSCRIPTION

Filter = Annotated[tuple[Identifier, ...], Field(max_length=100)]


class Channel(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    TEAMS = "teams"
    EMAIL = "email"


class SubscriptionCommand(Command):
    aggregate_type = SUBSCRIPTION
    id_field = "subscription_id"
    subscription_id: Identifier


class Subscribe(SubscriptionCommand):
    """Deliver the alerts that pass the filters (an empty filter lets everything through)
    from now on, over one channel. Subscribing again under the same id replaces it."""

    channel: Channel
    #: A URL for webhook, slack and teams; an e-mail address for email.
    target: str = Field(max_length=2000)
    stakeholder_id: Identifier | None = None
    #: The name of the webhook's signing secret in PORTFOLIO_NOTIFY_WEBHOOK_SECRETS.
    secret_ref: Name | None = None
    severities: tuple[Severity, ...] = Field(default=(), max_length=3)
    metrics: tuple[Metric, ...] = Field(default=(), max_length=20)
    programmes: Filter = ()
    projects: Filter = ()
    pools: Filter = ()

    @model_validator(mode="after")
    def _target_fits_the_channel(self) -> Self:
        if self.channel == Channel.EMAIL:
            if not EMAIL.fullmatch(self.target):
                raise ValueError("an email subscription's target is an e-mail address")
        elif not URL.fullmatch(self.target):
            raise ValueError(f"a {self.channel} subscription's target is an http(s) URL")
        if self.channel == Channel.WEBHOOK and self.secret_ref is None:
            raise ValueError("a webhook subscription needs a secret_ref to sign with")
        return self

    def references(self) -> tuple[AggregateKey, ...]:
        if self.stakeholder_id is not None:
            return ((STAKEHOLDER, self.stakeholder_id),)
        return ()


class Unsubscribe(SubscriptionCommand):
    """Stop delivering; what is queued for the subscription is dropped."""


class Subscribed(FrozenModel):
    subscription_id: str
    channel: Channel
    target: str
    stakeholder_id: str | None = None
    secret_ref: str | None = None
    severities: tuple[Severity, ...] = ()
    metrics: tuple[Metric, ...] = ()
    programmes: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()
    #: 1 for a new subscription, then +1 each time it is replaced.
    revision: int = 1


class Unsubscribed(FrozenModel):
    subscription_id: str


class AlertDelivered(FrozenModel):
    """An alert event reached the subscription's target."""

    subscription_id: str
    delivery_id: str
    alert_event_id: str
    alert_id: str
    event_type: str
    channel: Channel
    attempts: int
    #: The HTTP status, or 250 for a mail the SMTP server accepted.
    status: int


class AlertDeadLettered(FrozenModel):
    """An alert event could not be delivered: retries spent, or refused for good."""

    subscription_id: str
    delivery_id: str
    alert_event_id: str
    alert_id: str
    event_type: str
    channel: Channel
    attempts: int
    reason: str


COMMANDS: tuple[type[Command], ...] = (Subscribe, Unsubscribe)
SUBSCRIPTION_EVENTS: tuple[type[FrozenModel], ...] = (Subscribed, Unsubscribed)
DELIVERY_EVENTS: tuple[type[FrozenModel], ...] = (AlertDelivered, AlertDeadLettered)
EVENTS: tuple[type[FrozenModel], ...] = SUBSCRIPTION_EVENTS + DELIVERY_EVENTS
EVENT_AGGREGATE: dict[type[FrozenModel], str] = {
    **dict.fromkeys(SUBSCRIPTION_EVENTS, SUBSCRIPTION),
    **dict.fromkeys(DELIVERY_EVENTS, DELIVERY),
}
