"""Choosing a backend by name and configuring it from `OFFLOAD_*` variables."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from fastapi_offload import ConfigError
from fastapi_offload._extras import install_hint
from fastapi_offload._remote_settings import RemoteSettings, safe_url
from fastapi_offload.backends import load_backend
from fastapi_offload.backends.celery import CeleryBackend
from fastapi_offload.backends.rq import RQBackend
from fastapi_offload.testing import InlineBackend, RecordingBackend


def test_an_unknown_name_lists_the_accepted_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        load_backend("dramatiq", environ={})
    message = str(caught.value)
    assert "'dramatiq'" in message and "celery" in message and "rq" in message


def test_celery_is_built_from_the_environment() -> None:
    backend = load_backend(
        "celery",
        environ={
            "OFFLOAD_CELERY_BROKER_URL": "redis://:secret@broker:6380/2",
            "OFFLOAD_CELERY_QUEUE": "heavy",
        },
    )
    assert isinstance(backend, CeleryBackend)
    text = repr(backend)
    assert "secret" not in text and "redis://:***@broker:6380/2" in text
    # The result store defaults to the Redis broker.
    assert "result_backend='redis://:***@broker:6380/2'" in text and "'heavy'" in text


def test_rq_is_built_from_the_environment() -> None:
    backend = load_backend(
        " RQ ", environ={"OFFLOAD_REDIS_URL": "redis://cache:6379/5", "OFFLOAD_RQ_QUEUE": "q"}
    )
    assert isinstance(backend, RQBackend)
    assert repr(backend) == (
        "RQBackend(redis_url='redis://cache:6379/5', queue='q', serializer='json')"
    )


def test_the_test_doubles_load_by_name() -> None:
    assert isinstance(load_backend("inline", environ={}), InlineBackend)
    assert isinstance(load_backend("recording", environ={}), RecordingBackend)


def test_settings_defaults_and_their_errors() -> None:
    settings = RemoteSettings.from_env({})
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.celery_result_backend == settings.celery_broker_url
    assert (settings.serializer, settings.broker_timeout, settings.result_ttl) == (
        "json",
        3.0,
        86400,
    )
    amqp = RemoteSettings.from_env({"OFFLOAD_CELERY_BROKER_URL": "amqp://rabbit//"})
    assert amqp.celery_result_backend is None
    off = RemoteSettings.from_env({"OFFLOAD_CELERY_RESULT_BACKEND": "none"})
    assert off.celery_result_backend is None
    with pytest.raises(ConfigError, match="OFFLOAD_SERIALIZER='yaml'"):
        RemoteSettings.from_env({"OFFLOAD_SERIALIZER": "yaml"})
    with pytest.raises(ConfigError, match="OFFLOAD_BROKER_TIMEOUT='soon'"):
        RemoteSettings.from_env({"OFFLOAD_BROKER_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="OFFLOAD_RESULT_TTL=-1"):
        RemoteSettings.from_env({"OFFLOAD_RESULT_TTL": "-1"})


def test_passwords_never_reach_messages() -> None:
    assert safe_url("redis://user:pw@host:1/0") == "redis://user:***@host:1/0"
    assert safe_url("redis://host/0") == "redis://host/0"


@pytest.mark.parametrize(("name", "library"), [("celery", "celery"), ("rq", "rq")])
def test_a_missing_extra_names_a_pip_command_that_works(
    name: str, library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the library were not installed: a None entry makes its import fail.
    monkeypatch.setitem(sys.modules, library, None)
    monkeypatch.delitem(sys.modules, f"fastapi_offload.backends.{name}")
    # From this checkout, `pip install -e "<checkout>[rq]"` (the package is not on PyPI).
    with pytest.raises(ImportError, match=re.escape(install_hint(name))) as caught:
        load_backend(name, environ={})
    assert str(caught.value).count("pip install") == 1


@pytest.mark.parametrize(
    ("name", "environ", "starts"),
    [
        (
            "rq",
            {"OFFLOAD_REDIS_URL": "http://user:pw@cache:6379/0"},
            "OFFLOAD_REDIS_URL='http://user:***@cache:6379/0' (the redis_url option): ",
        ),
        (
            "celery",
            {"OFFLOAD_CELERY_BROKER_URL": "kafka://broker:9092"},
            "OFFLOAD_CELERY_BROKER_URL='kafka://broker:9092' (the broker_url option): ",
        ),
        (
            # The broker defaults to OFFLOAD_REDIS_URL: that is the variable to fix.
            "celery",
            {"OFFLOAD_REDIS_URL": "http://cache/0"},
            "OFFLOAD_REDIS_URL='http://cache/0' (the broker_url option): ",
        ),
        (
            "celery",
            {"OFFLOAD_CELERY_RESULT_BACKEND": "nosuchstore://x"},
            "OFFLOAD_CELERY_RESULT_BACKEND='nosuchstore://x' (the result_backend option): ",
        ),
    ],
)
def test_a_bad_value_from_the_environment_names_its_variable(
    name: str, environ: dict[str, str], starts: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_backend(name, environ=environ)
    assert str(caught.value).startswith(starts), caught.value
    assert "pw@" not in str(caught.value)


def test_a_bad_value_given_in_code_names_the_keyword() -> None:
    with pytest.raises(ConfigError, match=r"^broker_url='kafka://b'"):
        CeleryBackend(broker_url="kafka://b", result_backend=None)
    with pytest.raises(ConfigError, match=r"^result_backend='nosuchstore://x'"):
        CeleryBackend(broker_url="redis://b", result_backend="nosuchstore://x")
    with pytest.raises(ConfigError, match=r"^redis_url='http://b'"):
        RQBackend(redis_url="http://b")


def test_the_celery_worker_app_names_the_variable_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi_offload.backends.celery import celery_worker_app

    from . import jobs

    monkeypatch.setenv("OFFLOAD_CELERY_BROKER_URL", "kafka://broker:9092")
    with pytest.raises(ConfigError, match=r"^OFFLOAD_CELERY_BROKER_URL='kafka://broker:9092'"):
        celery_worker_app(jobs)
    # Given in code, the keyword is what to fix.
    with pytest.raises(ConfigError, match=r"^broker_url='kafka://other'"):
        celery_worker_app(jobs, broker_url="kafka://other")


def test_importing_the_package_imports_neither_celery_nor_rq() -> None:
    code = textwrap.dedent(
        """
        import sys
        import fastapi_offload, fastapi_offload.backends, fastapi_offload.testing
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("celery", "rq", "kombu"))
        print(loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
