"""Who started a task: `tasks.options(owner=user.id)`, recorded with the task, and the
check a status router makes with `status_router(owner=Depends(current_user_id))`."""

from __future__ import annotations

from typing import Any

from ._errors import ConfigError

__all__ = ["OWNER_MAX", "check_owner", "owns"]

OWNER_MAX = 200  # characters: an id, not a document; every row of the store carries it


def check_owner(value: Any) -> str:
    """The owner as it is stored (text); `ConfigError` for anything but a short string or
    a whole number."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"owner={value!r} must be a non-empty string or a whole number: the id of the "
            "user who starts the task, e.g. tasks.options(owner=user.id)"
        )
    if len(value) > OWNER_MAX:
        raise ConfigError(
            f"owner= is {len(value)} characters long, more than {OWNER_MAX}: record an id "
            "(the user's id), not a name or a document"
        )
    return value


def owns(recorded: str | None, caller: Any) -> bool:
    """Whether `caller` (what the router's `owner=` dependency returned) may see a task
    recorded with `recorded`. A task without an owner, or a caller who is nobody
    (`None`), is refused: closed unless both are known and equal."""
    if recorded is None or caller is None or isinstance(caller, bool):
        return False
    return recorded == (str(caller) if isinstance(caller, int) else caller)
