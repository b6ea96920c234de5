"""Lanes: where a task's body runs (the event loop, our threads, worker processes)."""
