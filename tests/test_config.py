import logging

import pytest

from fastapi_offload import ConfigError, Offload, cpu_bound, task
from fastapi_offload._config import OffloadConfig


def test_defaults() -> None:
    config = OffloadConfig.resolve({}, environ={})
    assert config.thread_workers == 16
    assert config.process_priority == "low"
    assert config.backend == "local"
    assert config.routes == {}


def test_keywords_win_over_environment_over_defaults() -> None:
    environ = {"OFFLOAD_THREAD_WORKERS": "3", "OFFLOAD_MAX_PENDING": "7"}
    config = OffloadConfig.resolve({"thread_workers": 5}, environ=environ)
    assert config.thread_workers == 5  # keyword
    assert config.max_pending == 7  # environment
    assert config.shutdown_timeout == 25.0  # default


def test_environment_is_read_by_offload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_ROUTES", "myapp.images.*=process, myapp.mail.*=thread")
    monkeypatch.setenv("OFFLOAD_PRESTART_WORKERS", "yes")
    monkeypatch.setenv("OFFLOAD_TIMEOUT", "2.5")
    offload = Offload()
    assert offload.config.routes == {"myapp.images.*": "process", "myapp.mail.*": "thread"}
    assert offload.config.prestart_workers is True
    assert offload.config.timeout == 2.5


@pytest.mark.parametrize(
    ("options", "environ", "message"),
    [
        ({"process_priority": "highest"}, {}, "process_priority='highest'.*normal, low, idle"),
        ({"thread_workers": 0}, {}, "thread_workers=0 must be a whole number, 1 or more"),
        ({"shutdown_timeout": -1}, {}, "shutdown_timeout=-1"),
        ({"routes": {"x.*": "gpu"}}, {}, "routes\\['x.\\*'\\]='gpu' is not a lane"),
        ({"threads": 3}, {}, "has no option threads \\(did you mean thread_workers\\?\\)"),
        ({}, {"OFFLOAD_MAX_PENDING": "lots"}, "OFFLOAD_MAX_PENDING='lots' is not a whole number"),
        ({}, {"OFFLOAD_AUTO_PROMOTE": "maybe"}, "OFFLOAD_AUTO_PROMOTE='maybe' is not a boolean"),
        ({}, {"OFFLOAD_ROUTES": "nolane"}, "is not `pattern=lane`"),
        # A value that parses but is out of range names the variable it came from too.
        (
            {},
            {"OFFLOAD_THREAD_WORKERS": "0"},
            "^OFFLOAD_THREAD_WORKERS='0' \\(the thread_workers option\\): thread_workers=0 must",
        ),
        ({}, {"OFFLOAD_ROUTES": "x.*=gpu"}, "^OFFLOAD_ROUTES='x.\\*=gpu' \\(the routes option\\)"),
        ({}, {"OFFLOAD_STORE": "mysql://db"}, "^OFFLOAD_STORE='mysql://db' \\(the store option\\)"),
        ({}, {"OFFLOAD_PROCESS_PRIORITY": "max"}, "^OFFLOAD_PROCESS_PRIORITY='max'"),
    ],
)
def test_bad_values_name_the_option(
    options: dict[str, object], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        OffloadConfig.resolve(options, environ=environ)


def test_unknown_backend_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nosuchqueue"):
        Offload(backend="nosuchqueue")


def test_backend_must_be_a_backend() -> None:
    with pytest.raises(ConfigError, match="is not a Backend"):
        Offload(backend=object())  # type: ignore[arg-type]  # the wrong type on purpose


def test_decorators_validate_and_keep_the_function() -> None:
    def job() -> int:
        return 1

    assert cpu_bound(job) is job
    assert job() == 1
    with pytest.raises(ConfigError, match="lane='gpu'"):
        task(lane="gpu")  # type: ignore[call-overload]  # the wrong value on purpose
    with pytest.raises(ConfigError, match="retries=-1"):
        task(retries=-1)


def test_repr_shows_the_values_in_force() -> None:
    text = repr(Offload(thread_workers=4))
    assert "thread_workers=4" in text and "backend='local'" in text


def test_offload_takes_every_option_as_an_explicit_keyword() -> None:
    # Explicit, typed keywords (mypy flags `Offload(thred_workers=...)`), one per option.
    import dataclasses
    import inspect

    parameters = inspect.signature(Offload).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    assert set(parameters) == {f.name for f in dataclasses.fields(OffloadConfig)}


def test_options_given_as_none_fall_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OFFLOAD_THREAD_WORKERS", "3")
    assert Offload(thread_workers=None).config.thread_workers == 3
    assert Offload(thread_workers=5).config.thread_workers == 5


# -- names: unknown, misspelled and renamed options and variables ----------------------


def test_keep_result_is_the_offload_option_as_on_the_decorators() -> None:
    # `Offload(keep_result=True)` was a bare TypeError (the option was `keep_results`).
    assert Offload(keep_result=True).config.keep_result is True


def test_an_unknown_keyword_is_a_config_error_naming_the_closest_option() -> None:
    with pytest.raises(ConfigError) as raised:
        Offload(stor="memory")  # type: ignore[call-arg]  # the mistake under test
    message = str(raised.value)
    assert "Offload() has no option stor (did you mean store?)" in message
    assert "docs/configuration.md" in message and "help(Offload)" in message


def test_the_old_name_keep_results_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"keep_results=.* write keep_result=") as seen:
        offload = Offload(keep_results=True)  # type: ignore[call-arg]  # the old name
    assert offload.config.keep_result is True
    assert seen[0].filename == __file__  # points at the caller's line
    with pytest.warns(DeprecationWarning, match="is now keep_result"):
        assert offload.config.keep_results is True  # the old name
    with pytest.raises(ConfigError, match="both keep_results= and keep_result="):
        Offload(keep_results=True, keep_result=False)  # type: ignore[call-arg]


def test_the_old_variable_still_works_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OFFLOAD_KEEP_RESULTS", "1")
    with pytest.warns(DeprecationWarning, match="OFFLOAD_KEEP_RESULTS is deprecated: rename it"):
        config = OffloadConfig.resolve({})
    assert config.keep_result is True
    # Operators do not see DeprecationWarnings: the log says it too (once per process).
    assert "rename it OFFLOAD_KEEP_RESULT" in caplog.text
    # A bad value names the variable that holds it.
    with pytest.raises(ConfigError, match=r"^OFFLOAD_KEEP_RESULTS='maybe' is not a boolean"):
        with pytest.warns(DeprecationWarning):
            OffloadConfig.resolve({}, environ={"OFFLOAD_KEEP_RESULTS": "maybe"})


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("OFFLOAD_STOR", "OFFLOAD_STORE"),
        ("OFFLOAD_PROCES_WORKERS", "OFFLOAD_PROCESS_WORKERS"),
        ("OFFLOAD_CELERY_QUEU", "OFFLOAD_CELERY_QUEUE"),  # a remote backend's variable
    ],
)
def test_a_misspelled_variable_is_a_warning_naming_the_closest_one(
    caplog: pytest.LogCaptureFixture, variable: str, meant: str
) -> None:
    environ = {variable: "1", "OFFLOAD_REDIS_URL": "redis://r", "OFFLOAD_RQ_QUEUE": "q"}
    OffloadConfig.resolve({}, environ=environ)
    OffloadConfig.resolve({}, environ=environ)  # once per process, not per runtime
    [record] = [r for r in caplog.records if variable in r.getMessage()]
    assert record.levelno == logging.WARNING and record.name == "fastapi_offload"
    assert f"{variable} is set but is not a fastapi-offload variable" in record.getMessage()
    assert f"did you mean {meant}?" in record.getMessage()
    # The variables the remote backends read are known: nothing said about them.
    assert "OFFLOAD_REDIS_URL" not in caplog.text and "OFFLOAD_RQ_QUEUE " not in caplog.text


def test_an_unknown_variable_near_nothing_is_an_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "fastapi_offload")
    OffloadConfig.resolve({}, environ={"OFFLOAD_ZZ_APP_OWN": "x"})
    [record] = [r for r in caplog.records if "OFFLOAD_ZZ_APP_OWN" in r.getMessage()]
    assert record.levelno == logging.INFO and "did you mean" not in record.getMessage()
