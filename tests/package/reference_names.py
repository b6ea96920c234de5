"""What the API reference must document, and what a built site does document.

The public names are read from the code (each module's `__all__`, and the public
methods of the classes an app holds: `Offload`, what `OffloadTasks` gives an endpoint,
and the builders their `options()` return), so a new public name is checked without
anyone remembering to list it. What is documented is read from the built site's
`objects.inv`, the inventory mkdocstrings writes of every object it rendered.
"""

from __future__ import annotations

import importlib
import typing
import zlib
from dataclasses import dataclass
from pathlib import Path

# Modules whose `__all__` is public API. The backends need their extras (the docs build
# imports them too).
MODULES = (
    "fastapi_offload",
    "fastapi_offload.testing",
    "fastapi_offload.backends",
    "fastapi_offload.backends.celery",
    "fastapi_offload.backends.rq",
)
# Priority 1: an object rendered on a page. Priority 2 entries are only other import
# paths (aliases) of a rendered object.
_RENDERED = "1"


@dataclass(frozen=True)
class PublicName:
    """A public name and the paths its reference entry may have: the one users import,
    or the defining module's (a class reached only through a method or an annotation)."""

    name: str
    paths: tuple[str, ...]


def public_names() -> list[PublicName]:
    found: list[PublicName] = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        found += [PublicName(f"{module_name}.{n}", (f"{module_name}.{n}",)) for n in module.__all__]
    offload = importlib.import_module("fastapi_offload")
    # `OffloadTasks` is `Annotated[TaskCollector, Depends(...)]`: an endpoint holds a
    # TaskCollector, whose methods are the ones to document.
    collector = typing.get_args(offload.OffloadTasks)[0]
    classes: list[tuple[str, type]] = [
        ("fastapi_offload.Offload", offload.Offload),
        ("fastapi_offload.OffloadTasks", collector),
    ]
    for shown, cls in list(classes):
        returned = typing.get_type_hints(vars(cls)["options"])["return"]  # per-call builder
        classes.append((f"{shown}.options()", returned))
    for shown, cls in classes:
        homes = {f"{cls.__module__}.{cls.__qualname__}"}
        if getattr(offload, cls.__name__, None) is cls:
            homes.add(f"fastapi_offload.{cls.__name__}")
        for member in vars(cls):
            if not member.startswith("_"):
                paths = tuple(sorted(f"{home}.{member}" for home in homes))
                found.append(PublicName(f"{shown}.{member}", paths))
    return found


def documented(site: Path) -> set[str]:
    """The objects rendered in the built `site`, by path."""
    inventory = (site / "objects.inv").read_bytes()
    header = inventory.split(b"\n", 4)
    if header[0] != b"# Sphinx inventory version 2" or len(header) < 5:
        raise AssertionError(f"{site / 'objects.inv'} is not a version 2 inventory")
    rendered = set()
    for line in zlib.decompress(header[4]).decode().splitlines():
        path, _role, priority, *_ = line.split(" ", 4)
        if priority == _RENDERED:
            rendered.add(path)
    return rendered


def undocumented(site: Path) -> list[str]:
    """The public names without an entry in the built reference."""
    rendered = documented(site)
    return [p.name for p in public_names() if not rendered.intersection(p.paths)]
