"""Scenario 5: RSS of the app process before and after 100,000 completed tasks."""

from __future__ import annotations

from .. import _harness as h
from .._scenario import Result, Settings, Stopwatch, Target
from .._strategies import pick, variant

TITLE = "Memory after many tasks"
STRATEGIES = ["bg-def", "offload-loop", "offload-thread", "offload-process"]
BATCH = 1000  # tasks per request: a burst, as when a client retries a backlog
# Two variants of the thread lane tell the parts of the growth apart: a smaller status
# store (the default keeps the last 10,000 finished tasks), and smaller bursts (a
# burst's peak of pending tasks stays in Python's allocator, not returned to the OS).
VARIANTS = [
    (
        variant(
            "offload-thread",
            "offload-thread-store-1000",
            "OffloadTasks, thread lane, status_capacity=1000",
            OFFLOAD_STATUS_CAPACITY="1000",
        ),
        BATCH,
    ),
    (
        variant(
            "offload-thread",
            "offload-thread-burst-100",
            "OffloadTasks, thread lane, 100 per request",
        ),
        100,
    ),
]


def run(settings: Settings) -> Result:
    clock = Stopwatch()
    total = settings.pick(100_000, 5_000)
    # RSS is read at these task counts; 10,000 is the status store's default capacity,
    # after which only the store's turnover, not its size, should change.
    half = total // 2 // BATCH * BATCH
    marks = sorted({m for m in (BATCH, 10_000, half, total) if BATCH <= m <= total})
    runs = [(s, BATCH) for s in pick(STRATEGIES)] + VARIANTS
    strategies = [s for s, _ in runs]
    results: dict[str, dict[str, float]] = {}
    # One run per strategy: RSS is not noisy the way latency is, and 100,000 tasks per
    # repeat would cost minutes.
    for strategy, batch in runs:
        step = f"[memory] {strategy.label}"
        settings.log(f"{step}: starting")
        with strategy.serve() as srv:
            rss = {"startup_kib": float(srv.rss_kib())}
            done = 0
            while done < total:
                h.new_batch(srv.url)
                h.post_jobs(srv.url, 1, {"kind": "noop", "count": batch})
                h.wait_done(srv.url, batch, timeout=120.0, poll=0.002)
                done += batch
                if done in marks:
                    rss[f"after_{done}_kib"] = float(srv.rss_kib())
                    kib = rss[f"after_{done}_kib"]
                    settings.log(f"{step}: {done} tasks done, RSS {kib:.0f} KiB")
        results[strategy.name] = rss

    # Growth is reported twice: from startup (the target's reading), and from the
    # moment the status store is full (whether anything else keeps growing).
    full = 10_000 if 10_000 in marks and 10_000 < total else marks[0]
    last = f"after_{total}_kib"
    rows = []
    targets = []
    for s in strategies:
        r = results[s.name]
        since_startup = (r[last] / r["startup_kib"] - 1) * 100
        since_full = (r[last] / r[f"after_{full}_kib"] - 1) * 100
        r["growth_since_startup_pct"] = since_startup
        r[f"growth_since_{full}_pct"] = since_full
        rows.append(
            [
                s.label,
                f"{r['startup_kib'] / 1024:.1f}",
                *(f"{r[f'after_{m}_kib'] / 1024:.1f}" for m in marks),
                f"{since_startup:+.1f}%",
                f"{since_full:+.1f}%",
            ]
        )
        if s.name.startswith("offload"):
            targets.append(
                Target(
                    f"{s.label}: RSS growth under 5% over {total:,} tasks",
                    f"{since_startup:+.1f}% from startup, {since_full:+.1f}% from {full:,} tasks",
                    since_startup < 5.0,
                )
            )
    headers = ["strategy", "startup MiB", *(f"after {m:,} MiB" for m in marks)]
    headers += ["growth from startup", f"growth from {full:,}"]
    return Result(
        title=TITLE,
        params={
            "tasks": total,
            "batch": {s.name: b for s, b in runs},
            "task": "no-op",
            "marks": marks,
        },
        table=h.table(headers, rows),
        strategies={s.name: {"label": s.label, "median": results[s.name]} for s in strategies},
        targets=targets,
        seconds=clock.seconds,
    )
