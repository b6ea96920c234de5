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
        ({"threads": 3}, {}, "unknown option\\(s\\) threads"),
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
