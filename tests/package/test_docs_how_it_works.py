"""docs/how-it-works.md names every module of the package, and only modules that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ..conftest import ROOT

SRC = ROOT / "src" / "fastapi_offload"
PAGE = (ROOT / "docs" / "how-it-works.md").read_text()
TOP = {"__init__", "_offload", "testing"}


def _modules() -> dict[str, Path]:
    """Dotted names below the package (`lanes.process.lane`), without the packages whose
    `__init__.py` is a docstring only (`lanes`, `web.metrics`)."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
            if len(ast.parse(path.read_text()).body) <= 1:
                continue
        found[".".join(parts)] = path
    return found


def test_every_module_has_its_line() -> None:
    missing = []
    for name in _modules():
        leaf = name.rpartition(".")[2]
        if name in TOP:
            named = f"{name}.py" in PAGE
        else:
            named = f"`{name}`" in PAGE or f"`{leaf}`" in PAGE
        if not named:
            missing.append(name)
    assert missing == [], f"docs/how-it-works.md: add a line (its job) for {missing}"


def test_every_module_named_exists() -> None:
    modules = _modules()
    layers = PAGE.split("## Layers", 1)[1].split("\n## ", 1)[0]
    # The first name of each line of the module list: a module below the package.
    named = re.findall(r"^- `([\w.]+)`", layers, flags=re.MULTILINE)
    unknown = sorted(name for name in named if name not in modules)
    assert len(named) > 40 and unknown == [], f"docs/how-it-works.md: no module {unknown}"
