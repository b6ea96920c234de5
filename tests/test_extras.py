"""The missing-extra hint names a command that works: the checkout this copy runs from."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from fastapi_offload import _extras
from fastapi_offload._extras import install_hint


@pytest.mark.parametrize("extra", ["celery", "rq", "redis", "cron"])
def test_from_a_checkout_the_hint_installs_that_checkout_with_the_extra(extra: str) -> None:
    hint = install_hint(extra)
    assert hint.startswith('pip install -e "') and hint.endswith(f'[{extra}]" (from this checkout)')
    root = Path(hint.split('"')[1].rsplit("[", 1)[0])
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["name"] == "fastapi-offload"
    assert extra in project["optional-dependencies"]


def test_an_installed_copy_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages" / "fastapi_offload"
    site.mkdir(parents=True)
    monkeypatch.setattr(_extras, "__file__", str(site / "_extras.py"))
    assert install_hint("rq") == 'pip install "fastapi-offload[rq]"'
