"""Per-call settings (`_settings.py`): validated like the configuration."""

from __future__ import annotations

from typing import Any

import pytest

from fastapi_offload import ConfigError
from fastapi_offload._settings import TaskSettings


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("timeout", True),
        ("timeout", "5"),
        ("timeout", 0),
        ("timeout", float("nan")),
        ("retries", 1.5),
        ("retries", True),
        ("retry_delay", "1"),
        ("lane", "threads"),
    ],
)
def test_per_call_settings_are_validated_like_config(setting: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"^{setting}="):
        TaskSettings(**{setting: value})
