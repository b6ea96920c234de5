"""The package's log lines: visible, levelled and named under uvicorn's default config;
an app's own logging config applies alone, without a line twice."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fastapi_offload._logging import PackageHandler, show_logs

from .conftest import StartServer

APP = "tests.apps.logging_app:app"
STARTED = "fastapi_offload: started in process"
MISSPELLED = "fastapi_offload: OFFLOAD_STOR is set but is not a fastapi-offload variable"
OURS = re.compile(r"^(INFO|WARNING|ERROR): +fastapi_offload", re.M)  # our handler's lines


def count(log: str, text: str) -> int:
    return sum(text in line for line in log.splitlines())


# -- under a real uvicorn -------------------------------------------------------------


@pytest.mark.server
def test_info_and_warning_lines_show_under_uvicorns_default_config(
    start_server: StartServer,
) -> None:
    server = start_server(APP, env={"OFFLOAD_STOR": "memory", "OFFLOAD_PROCESS_WORKERS": "3"})
    log = server.wait_for_log("Application startup complete")
    # uvicorn's own layout: the level and a colon padded to 9 characters, then our name.
    pid = server.process.pid
    assert re.search(
        rf"^INFO:     {STARTED} {pid}: loop lane up to 1000 tasks at once, thread lane 16 "
        r"threads, process lane 3 worker processes \(process_workers; \d+ CPU cores here\), "
        r"store MemoryStore\(.*\)\. These lanes are per web process: `--workers N` runs N "
        "times as many workers.$",
        log,
        re.M,
    ), log
    assert re.search(
        rf"^WARNING:  {MISSPELLED}, so it is ignored: did you mean OFFLOAD_STORE\? ", log, re.M
    ), log
    assert count(log, STARTED) == 1 and count(log, MISSPELLED) == 1


@pytest.mark.server
def test_each_web_process_logs_its_own_lane_sizes(start_server: StartServer) -> None:
    # The case: `--workers 2` doubles the CPU workers; the log now says so.
    server = start_server(APP, env={"OFFLOAD_PROCESS_WORKERS": "1"}, args=("--workers", "2"))
    deadline = time.monotonic() + 30
    while len(pids := re.findall(rf"^INFO:     {STARTED} (\d+): ", server.log(), re.M)) < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert len(set(pids)) == 2 and str(server.process.pid) not in pids  # the workers'
    assert count(server.log(), "process lane 1 worker processes (process_workers;") == 2


@pytest.mark.server
def test_the_no_lifespan_notice_and_task_errors_show_under_uvicorn(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("tests.apps.dropin_app:app")
    with server.client() as client:
        assert client.post("/work", params={"path": str(tmp_path / "out")}).status_code == 200
    log = server.wait_for_log("ValueError: this one fails")
    assert re.search(r"^INFO:     fastapi_offload: no Offload lifespan found: ", log, re.M), log
    assert re.search(rf"^INFO:     {STARTED} {server.process.pid}: loop lane", log, re.M), log
    assert re.search(r"^ERROR:    fastapi_offload: task tests.apps.jobs.fail \(id ", log, re.M)


@pytest.mark.server
def test_an_app_configured_at_import_gets_its_own_lines_once(start_server: StartServer) -> None:
    server = start_server(APP, env={"APP_LOGGING": "import", "OFFLOAD_STOR": "memory"})
    log = server.wait_for_log("Application startup complete")
    assert count(log, f"APP INFO {STARTED}") == 1 and count(log, STARTED) == 1
    assert count(log, f"APP WARNING {MISSPELLED}") == 1 and count(log, MISSPELLED) == 1
    assert not OURS.search(log), log


@pytest.mark.server
@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_an_app_configured_in_its_lifespan_gets_its_config_alone(
    start_server: StartServer, level: str
) -> None:
    # The Offload exists (at import) before the app's config: what is logged then has
    # nothing else to show it; from the lifespan on, the app's handler and level decide.
    env = {"APP_LOGGING": "lifespan", "APP_LEVEL": level, "OFFLOAD_STOR": "memory"}
    server = start_server(APP, env=env)
    log = server.wait_for_log("Application startup complete")
    assert count(log, f"WARNING:  {MISSPELLED}") == 1 and count(log, MISSPELLED) == 1
    if level == "INFO":
        assert count(log, f"APP INFO {STARTED}") == 1 and count(log, STARTED) == 1
    else:
        assert STARTED not in log  # the app's WARNING level holds for our INFO line too
    assert not re.search(rf"^INFO: +{STARTED}", log, re.M), log


# -- the handler itself ---------------------------------------------------------------


@pytest.fixture
def bare_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """Logging as uvicorn's default config leaves it for us: nothing on the package's
    logger and no root handler. pytest adds its own to the root for the test's call,
    after the fixtures ran: they are taken off for the test body, by `bare_root`."""
    package = logging.getLogger("fastapi_offload")
    monkeypatch.setattr(package, "handlers", [])
    level = package.level
    package.setLevel(logging.NOTSET)
    yield package
    package.setLevel(level)


@contextmanager
def bare_root() -> Iterator[None]:
    saved = list(logging.root.handlers)
    for handler in saved:
        logging.root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in list(logging.root.handlers):
            logging.root.removeHandler(handler)
        for handler in saved:
            logging.root.addHandler(handler)


def written(package: logging.Logger) -> io.StringIO:
    [handler] = [h for h in package.handlers if isinstance(h, PackageHandler)]
    stream = io.StringIO()
    handler.setStream(stream)
    return stream


def test_one_handler_and_the_info_level_when_nothing_is_configured(
    bare_logging: logging.Logger,
) -> None:
    with bare_root():
        show_logs()
        show_logs()  # idempotent: once per process however many runtimes start
        assert len(bare_logging.handlers) == 1 and bare_logging.level == logging.INFO
        stream = written(bare_logging)
        logging.getLogger("fastapi_offload.monitor").info("held the loop")
        logging.getLogger("fastapi_offload").warning("careful")
        assert logging.root.handlers == []  # never touched
    assert stream.getvalue() == (
        "INFO:     fastapi_offload.monitor: held the loop\nWARNING:  fastapi_offload: careful\n"
    )


def test_the_handler_steps_aside_once_the_app_configures_logging(
    bare_logging: logging.Logger,
) -> None:
    apps = io.StringIO()
    with bare_root():
        show_logs()
        stream = written(bare_logging)
        logging.root.addHandler(logging.StreamHandler(apps))  # e.g. basicConfig, later
        bare_logging.warning("once")
        # The level goes back to unset: the app's root level (WARNING) decides again.
        assert bare_logging.level == logging.NOTSET
        bare_logging.info("not shown")
    assert stream.getvalue() == "" and apps.getvalue() == "once\n"


@pytest.mark.parametrize("where", ["root", "package", "child"])
def test_nothing_is_added_to_an_app_that_configured_logging(
    bare_logging: logging.Logger, where: str
) -> None:
    child = logging.getLogger("fastapi_offload.monitor")
    apps = io.StringIO()
    handler = logging.StreamHandler(apps)
    target = {"root": logging.root, "package": bare_logging, "child": child}[where]
    with bare_root():
        target.addHandler(handler)
        try:
            show_logs()
            assert not any(isinstance(h, PackageHandler) for h in bare_logging.handlers)
            assert bare_logging.level == logging.NOTSET
            child.warning("one line")
        finally:
            target.removeHandler(handler)
    assert apps.getvalue() == "one line\n"
