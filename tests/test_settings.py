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


def test_an_unknown_setting_names_the_closest_one_wherever_it_is_given() -> None:
    from fastapi_offload import Offload, cpu_bound, task

    with pytest.raises(ConfigError, match=r"^task\(\) got timout=.*did you mean timeout=\?"):
        task(timout=5)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match=r"^cpu_bound\(\) got lane=, which is not a task"):
        cpu_bound(lane="thread")  # type: ignore[call-overload]  # its name says the lane
    with pytest.raises(ConfigError, match=r"^offload.options\(\) got retrys=.*retries=\?"):
        Offload().options(retrys=3)  # type: ignore[call-arg]


def test_the_decorators_and_options_give_one_kind_of_value() -> None:
    from fastapi_offload import TaskDefaults, cpu_bound, io_bound, task
    from fastapi_offload._decorators import declared

    @cpu_bound(retries=2)
    def crunch() -> None: ...

    @io_bound
    def fetch() -> None: ...

    @task(lane="loop", keep_result=True, retry_on=OSError)
    async def poll() -> None: ...

    assert declared(crunch) == TaskSettings(lane="process", retries=2)
    assert declared(fetch) == TaskSettings(lane="thread")
    assert declared(poll) == TaskSettings(lane="loop", keep_result=True, retry_on=(OSError,))
    assert TaskDefaults is TaskSettings


def test_options_seen_before_are_checked_once_and_still_refused_when_bad() -> None:
    # `tasks.options(...)` runs on every request: the same settings come back as one
    # object, but a value that only equals a good one is still checked (True == 1).
    first = TaskSettings.of_call("tasks.options", {"lane": "thread", "retries": 1})
    assert TaskSettings.of_call("tasks.options", {"lane": "thread", "retries": 1}) is first
    with pytest.raises(ConfigError, match=r"^retries=True"):
        TaskSettings.of_call("tasks.options", {"lane": "thread", "retries": True})
    with pytest.raises(ConfigError, match="not a task setting"):
        TaskSettings.of_call("tasks.options", {"lanes": "thread"})
    # Per-call values are new on most calls: built each time, never kept.
    keyed = TaskSettings.of_call("tasks.options", {"key": "order-1"})
    assert keyed.key == "order-1"
    assert TaskSettings.of_call("tasks.options", {"key": "order-1"}) is not keyed
    # An unhashable value is checked and built as any other.
    listed = TaskSettings.of_call("tasks.options", {"retry_on": [ValueError]})
    assert listed.retry_on == (ValueError,)
