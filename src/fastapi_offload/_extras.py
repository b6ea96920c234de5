"""What to run when an optional extra is missing: a command that works from here.

The package is not on PyPI yet, so `pip install "fastapi-offload[rq]"` alone would fail
for most users today: when this copy was installed from a checkout (the usual case),
the hint names that checkout.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["install_hint"]


def install_hint(extra: str) -> str:
    """`pip install ...` for `extra`, from this package's checkout when there is one."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "src" / "fastapi_offload").is_dir():
        return f'pip install -e "{root}[{extra}]" (from this checkout)'
    return f'pip install "fastapi-offload[{extra}]"'
