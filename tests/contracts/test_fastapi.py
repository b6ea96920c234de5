"""Contract: what fastapi-offload uses of FastAPI that is not public API.

- The request's two exit stacks, `scope["fastapi_inner_astack"]` and
  `scope["fastapi_function_astack"]` (FastAPI 0.121+): `OffloadTasks` registers its
  commit and start on them (`web/dependency.py`, `_provide`).
- The dependency solver, `fastapi.dependencies.utils.get_dependant` and
  `solve_dependencies`, and the `Dependant` fields that mark what only a request has
  (`_task_deps.py`): a task's own `Depends(...)` parameters.
- `scope["route"].dependant` and `.endpoint` (`_task_deps.refuse_request_objects`).

A failure here means a FastAPI release changed one of them: read the failing message,
then adapt the module it names, and the verified versions in docs/quickstart.md.
"""

from __future__ import annotations

import inspect
from collections.abc import MutableMapping
from contextlib import AsyncExitStack
from importlib.metadata import version
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant, solve_dependencies
from fastapi.routing import APIRoute

FASTAPI = version("fastapi")


def changed(api: str, used_by: str) -> str:
    return (
        f"FastAPI {FASTAPI} changed {api}, which is not public API; fastapi-offload uses it "
        f"in {used_by}. Adapt that code to this FastAPI (or bound `fastapi` below "
        f"{FASTAPI} in pyproject.toml until it is), and update the verified versions in "
        "docs/quickstart.md (Install)."
    )


async def _call(app: FastAPI, log: list[str]) -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [],
        "server": ("test", 80),
        "client": ("test", 1),
        "root_path": "",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            log.append("response started")
        elif not message.get("more_body"):
            log.append("response sent")

    await app(scope, receive, send)


@pytest.mark.anyio
async def test_a_request_runs_inside_fastapi_s_two_exit_stacks() -> None:
    log: list[str] = []
    found: dict[str, object] = {}

    async def hooks(request: Request) -> None:
        for key in ("fastapi_inner_astack", "fastapi_function_astack"):
            found[key] = request.scope.get(key)
        found["route"] = request.scope.get("route")
        for key, stack in found.items():
            if isinstance(stack, AsyncExitStack):
                stack.callback(log.append, f"{key} closed")

    app = FastAPI()

    @app.get("/", dependencies=[Depends(hooks)])
    async def endpoint() -> dict[str, str]:
        log.append("endpoint returned")
        return {}

    await _call(app, log)
    used_by = "web/dependency.py (`_provide`: where OffloadTasks commits and starts tasks)"
    for key in ("fastapi_inner_astack", "fastapi_function_astack"):
        assert isinstance(found[key], AsyncExitStack), changed(f'scope["{key}"]', used_by)
    # Where `OffloadTasks` finds the endpoint's `yield` dependencies (Starlette sets it).
    assert isinstance(found["route"], APIRoute), changed('scope["route"]', used_by)
    # The function stack closes before the response (tasks are committed there), the
    # request stack after it (tasks start there).
    assert log == [
        "endpoint returned",
        "fastapi_function_astack closed",
        "response started",
        "response sent",
        "fastapi_inner_astack closed",
    ], changed("when the request's exit stacks close", used_by)


def test_the_dependency_solver_takes_what_task_dependencies_pass() -> None:
    used_by = "_task_deps.py (a task's own Depends(...) parameters)"
    solve = inspect.signature(solve_dependencies).parameters
    passed = (
        "request",
        "dependant",
        "dependency_overrides_provider",
        "dependency_cache",
        "async_exit_stack",
        "embed_body_fields",
    )
    for name in passed:
        assert name in solve, changed(f"solve_dependencies(): no `{name}` parameter", used_by)
    required = [
        name
        for name, parameter in solve.items()
        if parameter.default is inspect.Parameter.empty and name not in passed
    ]
    assert not required, changed(f"solve_dependencies(): new required {required}", used_by)
    dependant = inspect.signature(get_dependant).parameters
    assert {"path", "call"} <= dependant.keys(), changed("get_dependant(path=, call=)", used_by)
    fields = (
        *("request_param_name", "websocket_param_name", "http_connection_param_name"),
        *("response_param_name", "background_tasks_param_name", "path_params"),
        *("query_params", "header_params", "cookie_params", "body_params"),
        *("dependencies", "call", "name"),
    )
    missing = [name for name in fields if not hasattr(Dependant(call=None), name)]
    assert not missing, changed(f"Dependant: no {missing}", used_by)


@pytest.mark.anyio
async def test_a_task_s_dependency_is_solved_and_exited_by_fastapi() -> None:
    from fastapi_offload._task_deps import dependencies_of

    log: list[str] = []

    async def session() -> Any:
        log.append("open")
        yield "a session"
        log.append("close")

    def task(x: int, db: str = Depends(session)) -> None: ...

    plan = dependencies_of(task, "task")
    assert plan is not None and plan.names == ("db",)
    used_by = "_task_deps.py (TaskDependencies.solve)"
    async with AsyncExitStack() as stack:
        values = await plan.solve(stack, None)
        assert values == {"db": "a session"}, changed("solve_dependencies()'s result", used_by)
    assert log == ["open", "close"], changed("where `yield` dependencies exit", used_by)


def test_the_route_in_the_scope_names_its_endpoint_and_dependencies() -> None:
    def yields() -> Any:
        yield 1

    app = FastAPI()

    @app.get("/")
    def endpoint(value: int = Depends(yields)) -> None: ...

    [route] = [r for r in app.routes if isinstance(r, APIRoute)]
    used_by = "_task_deps.refuse_request_objects"
    assert route.endpoint is endpoint, changed("APIRoute.endpoint", used_by)
    subs = [(sub.name, sub.call) for sub in route.dependant.dependencies]
    assert subs == [("value", yields)], changed("APIRoute.dependant.dependencies", used_by)
