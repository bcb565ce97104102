"""The public language of the portfolio: commands, events, replies, errors and subjects.

Everything that crosses NATS is one of these frozen pydantic models.
"""
