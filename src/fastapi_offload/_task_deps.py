"""Dependencies a task declares the way an endpoint does (`db: Session = Depends(get_db)`),
resolved by FastAPI's own solver when each attempt starts and exited when it ends.

A task detached from its request cannot use what the request's `yield` dependencies
produced: FastAPI closes those when the request ends. So the task names what it needs,
and every attempt gets its own: sub-dependencies, per-attempt caching, `Security(...)`
scopes and `app.dependency_overrides` work as in a request. What only a request has
(the `Request`, its headers, query, body, the response) is refused when the task is
added, naming the parameter.

FastAPI's solver (`fastapi.dependencies.utils.solve_dependencies`) is not public API;
what this module uses of it is pinned by tests/test_task_deps.py.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
import weakref
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Annotated, Any, get_origin

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant, solve_dependencies
from starlette.requests import Request

from ._errors import NotOffloadable

__all__ = ["TaskDependencies", "dependencies_of"]

# What only a request has, by the Dependant field that marks it.
_REQUEST_ONLY = {
    "request_param_name": "the Request",
    "websocket_param_name": "the WebSocket",
    "http_connection_param_name": "the connection",
    "response_param_name": "the Response",
    "background_tasks_param_name": "the request's BackgroundTasks",
}
_REQUEST_PARAMS = {
    "path_params": "a path parameter",
    "query_params": "a query parameter",
    "header_params": "a header",
    "cookie_params": "a cookie",
    "body_params": "the request body",
}


class TaskDependencies:
    """The `Depends(...)` parameters of one task function, checked once."""

    __slots__ = ("dependant", "names", "positions", "task")

    def __init__(self, task: str, dependant: Dependant, names: tuple[str, ...], positions: int):
        self.task = task
        self.dependant = dependant
        self.names = names  # the task's parameters that are dependencies
        self.positions = positions  # positional parameters before the first of them

    def check_call(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], lane: str) -> None:
        """In `add_task`: a dependency is resolved where the task runs, never passed."""
        if lane not in ("loop", "thread"):
            raise NotOffloadable(
                f"{self.task} declares dependencies ({', '.join(self.names)}), which are "
                f"resolved in the web process when the task runs; the {lane} lane runs it "
                "elsewhere. Run it on the thread or loop lane, or pass what it needs as "
                "arguments."
            )
        given = [name for name in self.names if name in kwargs]
        if len(args) > self.positions:
            given.append(f"positional argument {self.positions + 1}")
        if given:
            raise NotOffloadable(
                f"{self.task}: {', '.join(given)} is a dependency (Depends(...)), resolved "
                "when the task runs; do not pass it to add_task"
            )

    async def solve(self, stack: AsyncExitStack, app: Any) -> dict[str, Any]:
        """Resolve for one attempt; `yield` dependencies exit when `stack` closes."""
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": [],
            "query_string": b"",
            "state": {},
            # Where FastAPI's solver puts the exits of `yield` dependencies, whatever
            # their scope: this attempt's stack.
            "fastapi_astack": stack,
            "fastapi_inner_astack": stack,
            "fastapi_function_astack": stack,
        }
        if app is not None:
            scope["app"] = app
        solved = await solve_dependencies(
            request=Request(scope),
            dependant=self.dependant,
            dependency_overrides_provider=app,
            dependency_cache={},  # per attempt
            async_exit_stack=stack,
            embed_body_fields=False,
        )
        if solved.errors:
            raise NotOffloadable(f"{self.task}: its dependencies failed: {solved.errors}")
        return {name: solved.values[name] for name in self.names}


_PLANS: weakref.WeakKeyDictionary[Callable[..., Any], TaskDependencies | None] = (
    weakref.WeakKeyDictionary()
)


def dependencies_of(func: Callable[..., Any], name: str) -> TaskDependencies | None:
    """The dependencies `func` declares, or `None` (most tasks: one dict look-up)."""
    try:
        return _PLANS[func]
    except KeyError:
        pass
    except TypeError:  # not weak-referable (a bound method, a builtin): not cached
        return _plan(func, name)
    plan = _PLANS[func] = _plan(func, name)
    return plan


def _plan(func: Callable[..., Any], name: str) -> TaskDependencies | None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    hints: dict[str, Any] | None = None

    def resolved(parameter: inspect.Parameter) -> Any:
        # `from __future__ import annotations` leaves strings: resolve them as FastAPI
        # would, in the function's module.
        nonlocal hints
        if not isinstance(parameter.annotation, str):
            return parameter.annotation
        if hints is None:
            try:
                hints = typing.get_type_hints(func, include_extras=True)
            except Exception:
                hints = {}
        return hints.get(parameter.name, parameter.annotation)

    declared: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        annotation = parameter.annotation
        if isinstance(parameter.default, params.Depends):
            annotation = resolved(parameter)
            if isinstance(annotation, str) and parameter.default.dependency is not None:
                annotation = inspect.Parameter.empty  # only `Depends()` needs the type
            declared.append(parameter.replace(annotation=annotation))
            continue
        if isinstance(annotation, str) and ("Depends" in annotation or "Security" in annotation):
            annotation = resolved(parameter)
        if get_origin(annotation) is Annotated and any(
            isinstance(item, params.Depends) for item in annotation.__metadata__
        ):
            declared.append(parameter.replace(annotation=annotation))
    if not declared:
        return None
    for parameter in declared:
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise NotOffloadable(
                f"{name}: dependency parameter {parameter.name!r} is positional-only; "
                "make it an ordinary or keyword-only parameter"
            )
        if isinstance(parameter.annotation, str):
            raise NotOffloadable(
                f"{name}: the annotation of its dependency parameter {parameter.name!r} "
                f"({parameter.annotation!r}) cannot be resolved (a name defined inside a "
                "function?); define what it names at module level"
            )

    # A stand-in with only the dependency parameters: the task's own arguments are not
    # FastAPI parameters (an image, a model instance), and must not be read as such.
    def stand_in() -> None: ...

    stand_in.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in declared]
    )
    dependant = get_dependant(path="", call=stand_in)
    for sub in dependant.dependencies:
        _refuse_request_parts(sub, name, sub.name or "?")
    names = tuple(parameter.name for parameter in declared)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positions = 0
    for parameter in signature.parameters.values():
        if parameter.name in names or parameter.kind not in positional:
            break
        positions += 1
    return TaskDependencies(name, dependant, names, positions)


def _refuse_request_parts(dependant: Dependant, task: str, parameter: str) -> None:
    # A task runs after its request (and `offload.submit` has none): what only a
    # request has cannot be resolved. Refused once, when the task is first added.
    call = getattr(dependant.call, "__qualname__", repr(dependant.call))
    for field, what in _REQUEST_ONLY.items():
        if (found := getattr(dependant, field)) is not None:
            _refuse(task, parameter, call, f"{what} (parameter {found!r})")
    for field, what in _REQUEST_PARAMS.items():
        for model_field in getattr(dependant, field):
            _refuse(task, parameter, call, f"{what} (parameter {model_field.name!r})")
    for sub in dependant.dependencies:
        _refuse_request_parts(sub, task, parameter)


def _refuse(task: str, parameter: str, call: str, what: str) -> typing.NoReturn:
    raise NotOffloadable(
        f"{task}: its dependency {parameter!r} ({call}) needs {what}, which only a request "
        "has, and a task runs after its request. Pass the value as an argument instead "
        "(e.g. the user's id, not the Request), and let the task's dependency take it "
        "from there."
    )


# Per route, kept on the route object: the endpoint's code and its parameters filled by
# a `yield` dependency. Not in a WeakKeyDictionary: FastAPI's routes are unhashable
# (APIRoute defines __eq__), so such a cache missed on every request, at ~100 us each.
_YIELDED = "_fastapi_offload_yielded"
_FRAMES = 8  # how far up from `add_task` the endpoint's frame is looked for


def _yielded_params(route: Any) -> tuple[Any, tuple[tuple[str, str], ...]]:
    entry: tuple[Any, tuple[tuple[str, str], ...]] | None = getattr(route, _YIELDED, None)
    if entry is not None:
        return entry
    dependant = getattr(route, "dependant", None)
    endpoint = inspect.unwrap(getattr(route, "endpoint", None) or (lambda: None))
    found = [
        (sub.name, getattr(sub.call, "__qualname__", repr(sub.call)))
        for sub in getattr(dependant, "dependencies", ())
        if sub.name and _is_generator(sub.call)
    ]
    entry = (getattr(endpoint, "__code__", None), tuple(found))
    with contextlib.suppress(AttributeError, TypeError):  # a route with __slots__: not kept
        setattr(route, _YIELDED, entry)
    return entry


def _is_generator(call: Any) -> bool:
    # As FastAPI tells a `yield` dependency: the callable, or a callable object's method.
    return any(
        inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)
        for target in (call, vars(type(call)).get("__call__"))
    )


def refuse_request_objects(
    route: Any, task: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    """In `add_task` of a detached task: an argument that is the value of one of the
    endpoint's `yield` dependencies (a DB session) is closed when the request ends,
    while the task may still run. Found by identity in the endpoint's frame."""
    code, yielded = _yielded_params(route)
    if not yielded or code is None or not (args or kwargs):
        return
    frame = inspect.currentframe()
    for _ in range(_FRAMES):
        if frame is None or frame.f_code is code:
            break
        frame = frame.f_back
    if frame is None or frame.f_code is not code:
        return  # added from elsewhere (a sync endpoint's helper thread): not checked
    local = frame.f_locals
    del frame
    values = (*args, *kwargs.values())
    for parameter, dependency in yielded:
        value = local.get(parameter, _MISSING)
        if value is not _MISSING and any(item is value for item in values):
            raise NotOffloadable(
                f"{task} is given {parameter!r}, the value of the endpoint's yield "
                f"dependency {dependency}, which FastAPI closes when the request ends; this "
                "task is detached from the request (the Offload lifespan) and may run after "
                f"that. Let the task declare it instead: a parameter "
                f"`{parameter}=Depends({dependency.rsplit('.', 1)[-1]})` of the task is "
                "resolved when it runs (docs: Dependencies in tasks)."
            )


_MISSING = object()
