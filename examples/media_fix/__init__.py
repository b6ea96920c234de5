"""The classic failure (a CPU-heavy media job in `BackgroundTasks`) and its one-word fix."""
