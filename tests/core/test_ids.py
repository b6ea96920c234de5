"""Task ids (`core/ids.py`)."""

from __future__ import annotations

import re

from fastapi_offload.core.ids import IdSource


def test_ids_are_32_hex_digits_and_do_not_repeat() -> None:
    new_id = IdSource()
    ids = {new_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
