"""The metric families: names, help texts, labels and buckets, shared by the one-process
collector (`router`) and the multiprocess files (`files`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...core.runtime import Runtime

PREFIX = "fastapi_offload_"
# Background tasks run from milliseconds to an hour: Prometheus' default buckets stop at 10 s.
BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    *(120.0, 300.0, 600.0, 1800.0, 3600.0),
)
# What the observer counts, by ledger event: metric name (`_total` is added), help, labels.
COUNTERS = {
    "admitted": ("tasks_admitted", "Tasks accepted (add_task, submit), by lane", ("lane",)),
    "rejected": ("tasks_rejected", "Tasks refused, their lane full: QueueFull, a 503", ("lane",)),
    "finished": ("tasks", "Tasks that ended: succeeded, failed or cancelled", ("lane", "state")),
    "retrying": ("tasks_retried", "Failed attempts that are retried", ("lane",)),
    "handed_off": (
        "tasks_handed_off",
        "Tasks a remote backend accepted (lane: its name)",
        ("lane",),
    ),
    "discarded": (
        "tasks_discarded",
        "Tasks admitted in a request that then failed before its response: never run",
        ("lane",),
    ),
}
HISTOGRAMS = {
    "wait": (
        "task_wait_seconds",
        "Seconds from a task's admission (a delayed one's due time) to its first start",
    ),
    "duration": ("task_duration_seconds", "Seconds from a task's first start to its end"),
}
ENDED = ("succeeded", "failed", "cancelled")  # the states of `fastapi_offload_tasks_total`
GAUGES = {  # per local lane, read from the ledger
    "waiting": ("tasks_waiting", "Tasks accepted and not started (the queue depth)"),
    "running": ("tasks_running", "Tasks running now"),
    "scheduled": (
        "tasks_scheduled",
        "Tasks accepted with a delay and not due yet (not counted against max_pending)",
    ),
    "capacity": ("lane_capacity", "Tasks the lane runs at once"),
    "abandoned": (
        "threads_abandoned",
        "Threads still running a task that timed out; each holds a slot of the lane",
    ),
}
TOTALS = {  # counted by the loop monitor and the process lane
    "loop_blocks": ("loop_blocks", "Steps of async def tasks that held the event loop too long"),
    "process_crashes": ("process_crashes", "Process-lane workers that died running a task"),
    "process_cpu_seconds": ("process_cpu_seconds", "CPU seconds of process-lane tasks"),
}


def totals(runtime: Runtime) -> dict[str, float]:
    lane = runtime.process_lane
    return {
        "loop_blocks": runtime.monitor.blocks,
        "process_crashes": lane.crashed,
        "process_cpu_seconds": lane.cpu_seconds,
    }
