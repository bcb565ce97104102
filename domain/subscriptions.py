"""Alert subscriptions, pure: the aggregate (subscribe, replace, unsubscribe), which alert
events a subscription takes, and each channel's message. No I/O: the notify service sends.

A message names the project (or the pool, the role and month, the risk), the figures, the
rule (its id, revision, threshold and clear level), and links to the dashboard page that
shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import notify as n
from contracts.base import Command, ErrorCode, FrozenModel
from domain.kernel import Refs, Rejected, refuse, require

DELIVERY_NAMESPACE = uuid.UUID("0b6f6f0e-4c1e-4d59-9a55-3f0f1c1e7a16")


@dataclass(frozen=True)
class SubscriptionState:
    subscribed: n.Subscribed
    active: bool = True
    version: int = 1


def evolve_subscription(state: SubscriptionState | None, event: FrozenModel) -> SubscriptionState:
    match event:
        case n.Subscribed():
            return SubscriptionState(event, True, 1 if state is None else state.version + 1)
    if state is None:
        raise ValueError(f"{type(event).__name__} before Subscribed")
    match event:
        case n.Unsubscribed():
            return SubscriptionState(state.subscribed, False, state.version + 1)
    return SubscriptionState(state.subscribed, state.active, state.version + 1)


def decide_subscription(
    command: Command, state: SubscriptionState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    match command:
        case n.Subscribe():
            if command.stakeholder_id is not None:
                require(refs, ("stakeholder", command.stakeholder_id), "stakeholder_id")
            fields = command.model_dump(
                include={
                    "subscription_id",
                    "channel",
                    "target",
                    "stakeholder_id",
                    "secret_ref",
                    "severities",
                    "metrics",
                    "programmes",
                    "projects",
                    "pools",
                }
            )
            revision = 1 if state is None else state.subscribed.revision + 1
            return [n.Subscribed(**fields, revision=revision)]
        case n.Unsubscribe():
            if state is None or not state.active:
                raise refuse(
                    ErrorCode.NOT_FOUND,
                    f"no active subscription {command.subscription_id}",
                    "subscription_id",
                    command.subscription_id,
                )
            return [n.Unsubscribed(subscription_id=command.subscription_id)]
    raise Rejected(
        ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not a subscription command"
    )


# --- which alerts a subscription takes ------------------------------------------------------


def matches(subscription: n.Subscribed, alert: Mapping[str, Any]) -> bool:
    """An alert event (as published on the alerts stream) passes every non-empty filter."""

    def passes(wanted: tuple[Any, ...], value: Any) -> bool:
        return not wanted or (value is not None and str(value) in {str(w) for w in wanted})

    return (
        passes(subscription.severities, alert.get("severity"))
        and passes(subscription.metrics, alert.get("metric"))
        and passes(subscription.programmes, alert.get("programme_id"))
        and passes(subscription.projects, alert.get("project_id"))
        and passes(subscription.pools, alert.get("pool_id"))
    )


def delivery_id(subscription_id: str, alert_event_id: str) -> str:
    """The same for every attempt at one alert event for one subscription (receivers drop
    repeats by it)."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{subscription_id}/{alert_event_id}"))


# --- messages --------------------------------------------------------------------------------

VERB = {"AlertRaised": "RAISED", "AlertCleared": "cleared", "AlertRevised": "revised"}


def link(base_url: str, alert: Mapping[str, Any]) -> str:
    """The dashboard page that shows the alert: its project's page, else the alerts page."""
    base = base_url.rstrip("/")
    project = alert.get("project_id")
    if project:
        return f"{base}/projects?project={project}"
    return f"{base}/alerts"


def headline(alert: Mapping[str, Any]) -> str:
    verb = VERB.get(str(alert.get("event")), str(alert.get("event")))
    about = alert.get("project_id") or alert.get("subject_id")
    return f"[{str(alert.get('severity', '')).upper()}] {verb}: {alert.get('metric')} on {about}"


def summary(alert: Mapping[str, Any]) -> str:
    """The message line, the rule and the subject, with the value shown exactly."""
    parts = [str(alert.get("message") or "")]
    rule = f"rule {alert.get('rule_id')}"
    if alert.get("rule_revision") is not None:
        rule += f" revision {alert.get('rule_revision')}"
    parts.append(rule)
    if alert.get("reason"):
        parts.append(f"reason: {alert['reason']}")
    return " | ".join(p for p in parts if p)


def facts(alert: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Name/value pairs: subject, project, value, threshold, clear level, figures."""
    found: list[tuple[str, str]] = [("subject", str(alert.get("subject_id")))]
    for name in ("project_id", "programme_id", "pool_id"):
        if alert.get(name):
            found.append((name.removesuffix("_id"), str(alert[name])))
    value = alert.get("value_shown") or alert.get("value")
    found.append(("value", "n/a" if value in (None, "") else str(value)))
    for name in ("threshold", "clear_at"):
        if alert.get(name) is not None:
            found.append(
                (name, f"{alert[name]:g}" if isinstance(alert[name], float) else str(alert[name]))
            )
    figures = alert.get("figures") or {}
    found += [(str(k), str(v)) for k, v in sorted(figures.items()) if v is not None][:20]
    return found


def webhook_body(
    subscription_id: str, delivery: str, alert: Mapping[str, Any], base_url: str
) -> bytes:
    body = {
        "delivery_id": delivery,
        "subscription_id": subscription_id,
        "event": alert.get("event"),
        "headline": headline(alert),
        "text": summary(alert),
        "link": link(base_url, alert),
        "alert": dict(alert),
    }
    return json.dumps(body, sort_keys=True).encode()


def signature(secret: str, body: bytes) -> str:
    """GitHub's convention: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def slack_body(alert: Mapping[str, Any], base_url: str) -> bytes:
    url = link(base_url, alert)
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in facts(alert)[:10]]
    body = {
        "text": f"{headline(alert)}: {summary(alert)} <{url}|open>",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline(alert)[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": summary(alert)[:3000]}},
            {"type": "section", "fields": fields},
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": url}
                ],
            },
        ],
    }
    return json.dumps(body).encode()


def teams_body(alert: Mapping[str, Any], base_url: str) -> bytes:
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": headline(alert), "weight": "Bolder", "wrap": True},
            {"type": "TextBlock", "text": summary(alert), "wrap": True},
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts(alert)]},
        ],
        "actions": [
            {
                "type": "Action.OpenUrl",
                "title": "Open in the dashboard",
                "url": link(base_url, alert),
            }
        ],
    }
    body = {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }
    return json.dumps(body).encode()


def email_text(alert: Mapping[str, Any], base_url: str) -> tuple[str, str]:
    """(subject, plain-text body)."""
    lines = [summary(alert), ""]
    lines += [f"{k}: {v}" for k, v in facts(alert)]
    lines += ["", f"Dashboard: {link(base_url, alert)}"]
    if alert.get("audit_link"):
        lines.append(f"Decision history: {alert['audit_link']}")
    return headline(alert), "\n".join(lines) + "\n"
