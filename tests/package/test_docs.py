"""The docs site: generated tables up to date, snippets in place, `mkdocs build --strict`,
and the built pages rendered by a real headless Chromium.

mkdocs and Chromium are optional locally (skipped with the reason); with
`OFFLOAD_REQUIRE_SERVICES=1` (CI) a missing one fails the test instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NoReturn

import pytest
from docs_src import config_reference as generator

from fastapi_offload import ConfigError, Offload
from fastapi_offload._config import OffloadConfig
from fastapi_offload._remote_settings import RemoteSettings
from fastapi_offload.backends import BACKENDS

from ..conftest import ROOT
from . import reference_names

DOCS = ROOT / "docs"
SNIPPET = re.compile(r'^\s*--8<-- "([^"]+)"\s*$', re.MULTILINE)
# Files whose code is shown on a page (docs_src/config_reference.py generates a page).
NOT_SHOWN = ("__init__", "config_reference")
SHOWN = [
    *(p for p in (ROOT / "docs_src").glob("*.py") if p.stem not in NOT_SHOWN),
    *(
        p
        for folder in ("media_fix", "compute_status", "testing_app")
        for p in (ROOT / "examples" / folder).glob("*.py")
        if p.stem != "__init__"
    ),
]


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("OFFLOAD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (OFFLOAD_REQUIRE_SERVICES=1 turns this skip into a failure)")
    pytest.skip(reason)


def pages() -> dict[str, str]:
    # `_*.md`: section files pasted into a page, excluded from the site (mkdocs.yml).
    found = sorted(DOCS.glob("*.md"))
    return {path.name: path.read_text() for path in found if not path.name.startswith("_")}


# -- the configuration reference -------------------------------------------------------


def test_configuration_page_is_generated_from_the_code() -> None:
    page = (DOCS / "configuration.md").read_text()
    assert generator.updated(page) == page, (
        "docs/configuration.md is out of date: run .venv/bin/python -m docs_src.config_reference"
    )
    for field in dataclasses.fields(OffloadConfig):
        assert f"| [`{field.name}`](#{field.name}) | `{field.metadata['env']}` |" in page


def test_every_option_has_an_accepted_values_spec() -> None:
    assert list(generator.SPECS) == [f.name for f in dataclasses.fields(OffloadConfig)]


def _accepts(name: str, value: Any) -> bool:
    try:
        OffloadConfig.resolve({name: value}, environ={})
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("name", list(generator.SPECS))
def test_accepted_values_are_what_the_code_accepts(name: str) -> None:
    spec = generator.SPECS[name]
    if spec.kind == "int":
        minimum = int(spec.minimum)
        assert _accepts(name, minimum) and _accepts(name, minimum + 5)
        assert not _accepts(name, minimum - 1) and not _accepts(name, 2.5)
    elif spec.kind == "seconds":
        assert _accepts(name, spec.minimum) is not spec.exclusive
        assert _accepts(name, spec.minimum + 0.5) and not _accepts(name, spec.minimum - 0.5)
        assert _accepts(name, None) is spec.optional
    elif spec.kind == "choice":
        assert all(_accepts(name, choice) for choice in spec.choices)
        assert not _accepts(name, "something-else")
    elif spec.kind == "bool":
        assert _accepts(name, True) and _accepts(name, False) and not _accepts(name, "yes")
        env = {f.name: f.metadata["env"] for f in dataclasses.fields(OffloadConfig)}[name]
        for raw, value in [("1", True), ("true", True), ("yes", True), ("on", True)]:
            assert getattr(OffloadConfig.resolve({}, {env: raw}), name) is value
        for raw in ("0", "false", "no", "off"):
            assert getattr(OffloadConfig.resolve({}, {env: raw}), name) is False
    elif spec.kind == "routes":
        assert all(_accepts(name, {"x.*": lane}) for lane in spec.choices)
        assert not _accepts(name, {"x.*": "gpu"})
        parsed = OffloadConfig.resolve({}, {"OFFLOAD_ROUTES": "a.*=process,b.*=thread"})
        assert parsed.routes == {"a.*": "process", "b.*": "thread"}
    elif spec.kind == "store":
        assert OffloadConfig.resolve({"store": "sqlite:///./x.db"}).store_path == "./x.db"
        assert OffloadConfig.resolve({}, {"OFFLOAD_STORE": "memory"}).store_path is None
        assert OffloadConfig.resolve({"store": "redis://h:6379/0"}).durable_store
        for bad in ("sqlite://x.db", "postgres://h/db", "sqlite:///"):
            with pytest.raises(ConfigError, match="store="):
                Offload(store=bad)
    elif spec.kind == "secret":
        minimum = int(spec.minimum)
        assert _accepts(name, "k" * minimum) and not _accepts(name, "k" * (minimum - 1))
        assert _accepts(name, None) is spec.optional and not _accepts(name, b"k" * minimum)
        assert "k" * minimum not in repr(OffloadConfig.resolve({name: "k" * minimum}))
    elif spec.kind == "backend":
        assert set(spec.choices) == {"local", *BACKENDS}
        with pytest.raises(ConfigError):
            Offload(backend="no-such-backend")
    else:  # pragma: no cover - a new kind needs a check here
        raise AssertionError(f"no check for {spec.kind!r}")


REMOTE_SAMPLES = {
    "redis_url": ("redis://example:1/2", "redis://example:1/2"),
    "celery_broker_url": ("amqp://broker//", "amqp://broker//"),
    "celery_result_backend": ("none", None),
    "celery_queue": ("q1", "q1"),
    "rq_queue": ("q2", "q2"),
    "serializer": ("pickle", "pickle"),
    "broker_timeout": ("7", 7.0),
    "result_ttl": ("60", 60),
    "result_max_bytes": ("2048", 2048),
}


def test_remote_settings_are_all_documented_with_the_variable_that_sets_them() -> None:
    names = [f.name for f in dataclasses.fields(RemoteSettings)]
    assert list(generator.REMOTE) == names
    assert list(REMOTE_SAMPLES) == names
    for name, (raw, expected) in REMOTE_SAMPLES.items():
        settings = RemoteSettings.from_env({generator.remote_env_name(name): raw})
        assert getattr(settings, name) == expected, name


# -- snippets --------------------------------------------------------------------------


def test_every_shown_file_is_included_by_a_page() -> None:
    included = {name for text in pages().values() for name in SNIPPET.findall(text)}
    for name in included:
        assert (ROOT / name).is_file(), f"a page includes {name}, which does not exist"
    shown = {str(path.relative_to(ROOT)) for path in SHOWN}
    assert shown - included == set(), "files that no page shows"


class _Fences:
    """Python code blocks of a page that are written inline, not included."""

    def __init__(self, text: str) -> None:
        self.blocks: list[list[str]] = []
        current: list[str] | None = None
        for line in text.splitlines():
            stripped = line.strip()
            if current is None and stripped.startswith("```python"):
                current = []
            elif current is not None and stripped == "```":
                if not any(SNIPPET.match(code) for code in current):
                    self.blocks.append([code for code in current if code.strip()])
                current = None
            elif current is not None:
                current.append(line)


@pytest.mark.parametrize("name", [name for name in pages() if name != "benchmarks.md"])
def test_inline_python_blocks_are_fragments(name: str) -> None:
    # Anything longer lives in docs_src/ or examples/, where a test runs it.
    for block in _Fences(pages()[name]).blocks:
        assert len(block) <= 6, f"{name}: move this block into docs_src/:\n" + "\n".join(block)


def test_quickstart_highlights_the_changed_lines() -> None:
    page = (DOCS / "quickstart.md").read_text()
    found = re.findall(r'```python hl_lines="(\d+) (\d+)"\n\s*--8<-- "([^"]+)"', page)
    assert len(found) == 2
    for first, second, name in found:
        lines = (ROOT / name).read_text().splitlines()
        word = "BackgroundTasks" if "before" in name else "OffloadTasks"
        assert word in lines[int(first) - 1] and word in lines[int(second) - 1], name


# -- the build ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once by `mkdocs build --strict` (a warning fails it)."""
    needed = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
    missing = [name for name in needed if find_spec(name) is None]
    if missing:
        unavailable(f"docs tools not installed ({', '.join(missing)}): run scripts/install docs")
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    command += ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    return out


def test_every_public_name_has_an_entry_in_the_built_api_reference(site: Path) -> None:
    # Read from the code (`__all__`, public methods) and from the built inventory, so a
    # name made public without a reference entry fails here.
    missing = reference_names.undocumented(site)
    assert missing == [], (
        f"public but not in the API reference: {', '.join(missing)}. Add a `::: path` "
        "block to docs/reference.md, or a method to its class's `members:` list there"
    )


def test_mkdocs_build_strict_builds_every_page(site: Path) -> None:
    for name in pages():
        built = site / ("index.html" if name == "index.md" else f"{name[:-3]}/index.html")
        assert built.is_file(), f"{name} was not built"
    assert (site / "search" / "search_index.json").is_file()


class _Page(HTMLParser):
    """Collects the navigation link texts and the code blocks of a rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.nav: list[str] = []
        self.code: list[str] = []
        self.copy_buttons = 0
        self.palette = False
        self._open: list[Any] | None = None  # [tag, role, nesting] of the element read
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("data-md-type") == "copy":
            self.copy_buttons += 1
        if found.get("data-md-component") == "palette":
            self.palette = True
        if self._open is not None:
            self._open[2] += tag == self._open[0]
            return
        if tag == "a" and "md-nav__link" in (found.get("class") or "").split():
            self._open, self._text = [tag, "nav", 0], []
        elif tag == "pre":
            self._open, self._text = [tag, "code", 0], []

    def handle_endtag(self, tag: str) -> None:
        if self._open is None or tag != self._open[0]:
            return
        if self._open[2]:
            self._open[2] -= 1
            return
        text = "".join(self._text)
        if self._open[1] == "nav":
            self.nav.append(" ".join(text.split()))
        else:
            self.code.append(text)
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    unavailable("no Chromium found on PATH (apt-get install chromium)")


def render(browser: str, page: Path, profile: Path) -> _Page:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium failed on {page}:\n{result.stderr[-2000:]}"
    parsed = _Page()
    parsed.feed(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def browser() -> Iterator[str]:
    yield chromium()


@pytest.mark.parametrize(
    ("page", "expected_code"),
    [("index.html", "offload.status_router()"), ("lanes/index.html", "@cpu_bound")],
)
def test_pages_render_in_headless_chromium(
    site: Path, browser: str, tmp_path: Path, page: str, expected_code: str
) -> None:
    rendered = render(browser, site / page, tmp_path / "profile")
    for title in (
        "Getting started",
        "Lanes and routing",
        "Remote backends",
        "Configuration",
        "API",
    ):
        assert title in rendered.nav, f"{title!r} not in the navigation: {rendered.nav}"
    assert any(expected_code in block for block in rendered.code), rendered.code[:3]
    # Added by the theme's JavaScript: the page ran in the browser, not just parsed.
    assert rendered.copy_buttons >= 1
    assert rendered.palette


_MEASURE = """<script>
addEventListener("load", () => {
  const cut = [...document.querySelectorAll("pre > code")]
    .filter((code) => code.scrollWidth > code.clientWidth + 1)
    .map((code) => code.textContent.split("\\n").reduce((a, b) => (b.length > a.length ? b : a)));
  document.body.setAttribute("data-cut", JSON.stringify(cut));
});
</script>"""


@pytest.mark.parametrize(
    "page",
    [
        "cancel", "durability", "examples", "lanes", "monitoring", "progress", "quickstart",
        "reliability", "remote", "results", "status", "testing",
    ],
)  # fmt: skip
def test_code_blocks_are_not_cut_off_at_1280_px(
    site: Path, browser: str, tmp_path: Path, page: str
) -> None:
    # The page as built, with a script that lists the code blocks wider than their box.
    html = (site / page / "index.html").read_text()
    measured = site / page / "measured.html"
    measured.write_text(html.replace("</body>", _MEASURE + "</body>"))
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900",
        "--virtual-time-budget=3000", "--dump-dom", measured.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-cut="([^"]*)"', dom)
    assert found is not None, "the measuring script did not run"
    cut = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert cut == [], f"code blocks cut off at 1280 px on {page}: longest lines {cut}"
