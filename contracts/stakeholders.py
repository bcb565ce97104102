"""Stakeholders: who they are, how much they matter (power/interest), how engaged they are
against how engaged they need to be, what they care about, their feedback and whether it
was answered, and what they are sent (the communication plan)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from contracts.base import EMAIL, URL, AggregateKey, Command, FrozenModel, Identifier, Name, Title

AGGREGATE = "stakeholder"

Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


#: Power/interest grid axes: 1 (low) to 5 (high).
Level = Annotated[int, Field(ge=1, le=5, strict=True)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]


class Engagement(StrEnum):
    """The stakeholder engagement assessment matrix's levels, least to most engaged."""

    UNAWARE = "unaware"
    RESISTANT = "resistant"
    NEUTRAL = "neutral"
    SUPPORTIVE = "supportive"
    LEADING = "leading"

    @property
    def rank(self) -> int:
        return list(Engagement).index(self)


class InterestKind(StrEnum):
    OBJECTIVE = "objective"
    PROGRAMME = "programme"
    PROJECT = "project"


class Interest(FrozenModel):
    """Something a stakeholder cares about (a programme is named by the projects in it)."""

    kind: InterestKind
    id: Identifier

    def aggregate(self) -> AggregateKey | None:
        """The aggregate that must exist for this to be named, if it is one."""
        return None if self.kind == InterestKind.PROGRAMME else (self.kind.value, self.id)


class Channel(StrEnum):
    EMAIL = "email"
    SLACK = "slack"
    TEAMS = "teams"
    WEBHOOK = "webhook"


class Content(StrEnum):
    REPORT = "report"
    ALERT_DIGEST = "alert_digest"


class Frequency(StrEnum):
    ON_PUBLISH = "on_publish"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class StakeholderCommand(Command):
    aggregate_type = AGGREGATE
    id_field = "stakeholder_id"
    stakeholder_id: Identifier


class RegisterStakeholder(StakeholderCommand):
    name: Title
    role: Name
    email: Email | None = None


class AssessStakeholder(StakeholderCommand):
    """Where the stakeholder stands on the power/interest grid and the engagement matrix."""

    influence: Level
    interest: Level
    current_engagement: Engagement
    desired_engagement: Engagement
    cares_about: tuple[Interest, ...] = Field(default=(), max_length=200)

    def references(self) -> tuple[AggregateKey, ...]:
        return tuple(key for i in self.cares_about if (key := i.aggregate()) is not None)


class GiveFeedback(StakeholderCommand):
    """Feedback on a decision or a thing in the portfolio: open until answered."""

    feedback_id: Identifier
    concerns: Interest
    #: The decision it is about, by the event id of that decision when known.
    decision_event_id: Identifier | None = None
    text: Text

    def references(self) -> tuple[AggregateKey, ...]:
        key = self.concerns.aggregate()
        return () if key is None else (key,)


class RespondToFeedback(StakeholderCommand):
    feedback_id: Identifier
    response: Text


class PlanCommunication(StakeholderCommand):
    """What the stakeholder is sent, how often, and through which channel (a channel of
    the alert subscriptions: e-mail, Slack, Teams or a webhook)."""

    plan_id: Identifier
    content: Content
    frequency: Frequency
    channel: Channel
    #: Where to: an e-mail address, or a webhook URL (http or https).
    target: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]

    @model_validator(mode="after")
    def _target_fits_channel(self) -> PlanCommunication:
        if self.channel == Channel.EMAIL and not EMAIL.fullmatch(self.target):
            raise ValueError("an e-mail plan needs an e-mail address as target")
        if self.channel != Channel.EMAIL and not URL.fullmatch(self.target):
            raise ValueError(f"a {self.channel} plan needs an http(s) URL as target")
        return self


class StopCommunication(StakeholderCommand):
    plan_id: Identifier


class StakeholderRegistered(FrozenModel):
    stakeholder_id: str
    name: str
    role: str
    email: str | None


class StakeholderAssessed(FrozenModel):
    stakeholder_id: str
    influence: int
    interest: int
    current_engagement: Engagement
    desired_engagement: Engagement
    cares_about: tuple[Interest, ...] = ()


class FeedbackGiven(FrozenModel):
    stakeholder_id: str
    feedback_id: str
    concerns: Interest
    decision_event_id: str | None = None
    text: str


class FeedbackResponded(FrozenModel):
    stakeholder_id: str
    feedback_id: str
    response: str


class CommunicationPlanned(FrozenModel):
    stakeholder_id: str
    plan_id: str
    content: Content
    frequency: Frequency
    channel: Channel
    target: str


class CommunicationStopped(FrozenModel):
    stakeholder_id: str
    plan_id: str


COMMANDS: tuple[type[Command], ...] = (
    RegisterStakeholder,
    AssessStakeholder,
    GiveFeedback,
    RespondToFeedback,
    PlanCommunication,
    StopCommunication,
)
EVENTS: tuple[type[FrozenModel], ...] = (
    StakeholderRegistered,
    StakeholderAssessed,
    FeedbackGiven,
    FeedbackResponded,
    CommunicationPlanned,
    CommunicationStopped,
)
