"""The app's tasks. They write files under `$SIGNUP_DATA_DIR`, which tests point at a
temporary directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi_offload import cpu_bound, io_bound


def data_dir() -> Path:
    return Path(os.environ.get("SIGNUP_DATA_DIR") or tempfile.gettempdir())


@io_bound
def send_welcome_email(address: str) -> None:
    # Stands in for smtplib: the "sent" message is a file.
    (data_dir() / f"welcome-{address}.eml").write_text(f"To: {address}\n\nWelcome!\n")


@cpu_bound
def render_avatar(user_id: int, initials: str) -> None:
    size = 64
    pixels = bytes((x * y + ord(initials[0])) % 256 for y in range(size) for x in range(size))
    (data_dir() / f"avatar-{user_id}.pgm").write_bytes(b"P5 64 64 255\n" + pixels)
