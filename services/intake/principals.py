"""Who sent a command, and which actors it may claim.

NATS does not tell a subscriber who published, but it does enforce, per user, the subjects
that user may publish on. So a sender names itself in the subject,
`<prefix>.cmd.<Command>.<principal>` or `<prefix>.inbox.<Command>.<principal>`, and the
server's permissions let each user publish only under its own name: the principal is one
the server vouches for. A command may claim that principal as its actor, or an actor the
settings bind to it. Without auth (the embedded default) the plain `<prefix>.cmd.<Command>`
still takes any actor, unless `require_principal` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.base import Command, ErrorCode, ErrorInfo, FieldError
from shared.commands import InvalidInput
from shared.settings import IntakeSettings


@dataclass(frozen=True)
class Address:
    command: str
    principal: str | None


def address_of(prefix: str, subject: str) -> Address:
    """`<prefix>.<cmd|inbox>.<Command>[.<principal>]`; the prefix may hold dots."""
    tokens = subject.split(".")
    first = prefix.count(".") + 2
    command = tokens[first] if len(tokens) > first else ""
    principal = tokens[first + 1] if len(tokens) == first + 2 else None
    return Address(command, principal)


def bind(command: Command, principal: str | None, settings: IntakeSettings) -> Command:
    """The command as its principal may send it: actor and source default to the principal,
    and an actor it is not bound to is refused (`forbidden`)."""
    if principal is None:
        if settings.require_principal:
            raise _forbidden(
                command,
                "commands must name their sender: send on <prefix>.cmd.<Command>.<user> "
                "(or .inbox.<Command>.<user>) as the NATS user <user>",
            )
        return command
    missing = {
        name: principal for name in ("actor", "source") if name not in command.model_fields_set
    }
    if missing:
        command = command.model_copy(update=missing)
    allowed = settings.actor_bindings.get(principal, [])
    if command.actor != principal and command.actor not in allowed and "*" not in allowed:
        may = ", ".join(repr(actor) for actor in [principal, *allowed])
        raise _forbidden(
            command, f"{principal!r} may not act for {command.actor!r}; it may act for {may}"
        )
    return command


def _forbidden(command: Command, message: str) -> InvalidInput:
    detail = FieldError(field="actor", message=message, input=command.actor)
    error = ErrorInfo(code=ErrorCode.FORBIDDEN, message=message, details=(detail,))
    return InvalidInput(error, command_id=command.command_id, actor=command.actor)
