"""The worker: `python -m docs_src.backend_worker`, next to the app."""

from __future__ import annotations

from .backend_template import Worker
from .backend_usage import DATABASE, resize_image

if __name__ == "__main__":
    # Import the tasks from their module (not `__main__`): their registered names must
    # be the `module.qualname` the web process sends.
    Worker(DATABASE, resize_image).run_forever()
