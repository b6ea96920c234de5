"""The media job: make a thumbnail in pure Python, about a second of CPU work.

`@cpu_bound` declares where the job belongs (a worker process) when it goes through
`OffloadTasks`. It returns the function unchanged: `BackgroundTasks` ignores it, and
calling `make_thumbnail(...)` directly still works.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi_offload import cpu_bound


def media_dir() -> Path:
    """Where thumbnails go: `$MEDIA_DIR`, else the system's temporary directory."""
    return Path(os.environ.get("MEDIA_DIR") or tempfile.gettempdir())


def decode(image_id: int, side: int) -> bytearray:
    """Stands in for decoding an upload: a `side` x `side` grey image, one byte a pixel."""
    pixels = bytearray(side * side)
    for y in range(side):
        row = y * side
        for x in range(side):
            pixels[row + x] = (x * x + y * y + image_id) % 256
    return pixels


def shrink(pixels: bytearray, side: int, size: int) -> bytearray:
    """Box filter: each thumbnail pixel is the mean of a square of source pixels."""
    step = side // size
    out = bytearray(size * size)
    for ty in range(size):
        for tx in range(size):
            total = 0
            for y in range(ty * step, ty * step + step):
                start = y * side + tx * step
                total += sum(pixels[start : start + step])
            out[ty * size + tx] = total // (step * step)
    return out


@cpu_bound
def make_thumbnail(image_id: int, *, size: int = 128, side: int = 3000) -> str:
    """Decode image `image_id`, shrink it to `size` x `size`, write a PGM file; its path."""
    thumbnail = shrink(decode(image_id, side), side, size)
    path = media_dir() / f"thumbnail-{image_id}-{size}.pgm"
    # Written aside, then renamed: whoever serves or reads it never sees half a file.
    part = path.with_name(f"{path.name}.part")
    part.write_bytes(f"P5 {size} {size} 255\n".encode() + bytes(thumbnail))
    part.replace(path)
    return str(path)
