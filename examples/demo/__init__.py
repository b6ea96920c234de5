"""The demo: `python -m examples.demo` (or `scripts/demo`). See `__main__.py`."""
