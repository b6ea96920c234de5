"""Names of options and `OFFLOAD_*` variables: a misspelled one is named with the
closest known one, a renamed one still works for a release with a warning."""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import warnings
from collections.abc import Callable, Collection, Mapping
from typing import Any, ParamSpec, TypeVar, cast

from ._errors import ConfigError

__all__ = ["RENAMED", "RENAMED_ENV", "check_option_names", "checked_options", "warn_unknown_env"]

logger = logging.getLogger("fastapi_offload")

PREFIX = "OFFLOAD_"
WHERE = "every one is listed in the configuration reference (docs/configuration.md)"

#: Old option name -> new one: accepted with a `DeprecationWarning` until the next release.
RENAMED = {"keep_results": "keep_result"}
#: The same for the environment variables.
RENAMED_ENV = {"OFFLOAD_KEEP_RESULTS": "OFFLOAD_KEEP_RESULT"}

# Variables already reported by this process: the default runtime reads the environment
# once per app and event loop, and a warning repeated per request would bury the rest.
_reported: set[str] = set()

P = ParamSpec("P")
R = TypeVar("R")


def closest(name: str, known: Collection[str], prefix: str = "") -> str | None:
    """The known name nearest to `name`, if one is near enough to be a typo of it.

    A shared `prefix` (`OFFLOAD_`) is left out of the comparison: it would make every
    name look close to every other.
    """
    stems = {k.removeprefix(prefix): k for k in known}
    found = difflib.get_close_matches(name.removeprefix(prefix), list(stems), n=1, cutoff=0.6)
    return stems[found[0]] if found else None


def check_option_names(
    options: Mapping[str, Any], known: Collection[str], where: str = "Offload"
) -> dict[str, Any]:
    """`options` with renamed names replaced (and a `DeprecationWarning` each); raises
    `ConfigError` for a name that is not an option, naming the closest one."""
    checked = dict(options)
    for old, new in RENAMED.items():
        if old not in checked:
            continue
        if new in checked:
            raise ConfigError(f"{where}() got both {old}= and {new}=: {old} is {new}'s old name")
        warnings.warn(
            f"{where}({old}=...) is deprecated: write {new}=..., the name the decorators "
            f"and options() use; {old} stops working in the next release",
            DeprecationWarning,
            stacklevel=3,  # the caller of the checked `Offload(...)` or `resolve(...)`
        )
        checked[new] = checked.pop(old)
    unknown = sorted(set(checked) - set(known))
    if unknown:
        parts = []
        for name in unknown:
            near = closest(name, known)
            parts.append(f"{name}" + (f" (did you mean {near}?)" if near else ""))
        raise ConfigError(
            f"{where}() has no option {', '.join(parts)}; {WHERE} and by help({where})"
        )
    return checked


def checked_options(init: Callable[P, R]) -> Callable[P, R]:
    """Wrap `Offload.__init__`: an unknown keyword is a `ConfigError` naming the closest
    option (Python's `TypeError` names only the bad one), an old name is translated.

    Type checkers still see (and check) the real signature.
    """
    known = [
        p.name for p in inspect.signature(init).parameters.values() if p.kind is p.KEYWORD_ONLY
    ]

    @functools.wraps(init)
    def checked(*args: Any, **kwargs: Any) -> R:
        return init(*args, **check_option_names(kwargs, known))

    return cast(Callable[P, R], checked)


def warn_unknown_env(environ: Mapping[str, str], known: Collection[str]) -> None:
    """Log, once per process and name, each `OFFLOAD_*` variable that nothing reads.

    One near a known name is most likely a typo (`OFFLOAD_STOR`): a WARNING naming it.
    Any other gets an INFO line, since an `OFFLOAD_` name may belong to the app.
    """
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in known or name in _reported:
            continue
        _reported.add(name)
        near = closest(name, known, PREFIX)
        if near is not None:
            logger.warning(
                "%s is set but is not a fastapi-offload variable, so it is ignored: did you "
                "mean %s? (%s)",
                name,
                near,
                WHERE,
            )
        else:
            logger.info(
                "%s is set but is not a fastapi-offload variable; it is ignored (%s)", name, WHERE
            )


def renamed_env(environ: Mapping[str, str], env: str) -> tuple[str, str] | None:
    """The deprecated variable that stands for `env`, and its value, when only it is set
    (a `DeprecationWarning`, and a WARNING once per process: operators see no warnings)."""
    old = next((o for o, n in RENAMED_ENV.items() if n == env), None)
    if old is None or not environ.get(old, "").strip() or environ.get(env, "").strip():
        return None
    message = f"{old} is deprecated: rename it {env}; {old} stops working in the next release"
    warnings.warn(message, DeprecationWarning, stacklevel=2)
    if old not in _reported:
        _reported.add(old)
        logger.warning("%s", message)
    return old, environ[old]
