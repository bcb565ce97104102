"""Every setting a service reads from the environment is in the README's configuration
table: what an operator can set is what they can find."""

from __future__ import annotations

import inspect
from pathlib import Path

from pydantic_settings import BaseSettings

from shared import settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_configuration_table() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[
        text.index("## Configuration") : text.index("\n## ", text.index("## Configuration") + 1)
    ]
    classes = [
        cls
        for _, cls in inspect.getmembers(settings, inspect.isclass)
        if issubclass(cls, BaseSettings) and cls.__module__ == settings.__name__
    ]
    assert len(classes) > 5
    variables = {f"PORTFOLIO_{field.upper()}" for cls in classes for field in cls.model_fields}
    missing = sorted(v for v in variables if f"| `{v}`" not in table and f", `{v}`" not in table)
    assert not missing, missing
