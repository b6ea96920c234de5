"""Render the results JSON as one PNG per scenario: `python -m benchmarks.chart [RESULTS] [PNG]`.

Defaults: `benchmarks/results/latest.json` to `docs/img/benchmarks-<scenario>.png` (the
name given, with the scenario's name added). One chart per scenario, drawn at the width
of the docs' content column so its labels stay readable there (six panels in one image
were not); a scenario missing from the results is skipped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only, also on CI and over SSH

# These come after use(): pyplot picks its backend when first imported.
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import NullFormatter

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
DEFAULT_PNG = ROOT / "docs" / "img" / "benchmarks.png"
OURS = "#2a7f62"  # OffloadTasks bars stand out; the alternatives are grey
OTHERS = "#9a9a9a"


def _color(name: str) -> str:
    return OURS if name.startswith("offload") else OTHERS


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _log_axis(ax: Axes) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short spans


def _bars(
    ax: Axes, strategies: dict[str, Any], key: str, xlabel: str, *, log: bool = False
) -> None:
    names = [n for n, s in strategies.items() if key in s["median"]]
    values = [strategies[n]["median"][key] for n in names]
    ax.barh([strategies[n]["label"] for n in names], values, color=[_color(n) for n in names])
    ax.invert_yaxis()  # first strategy on top, as in the tables
    ax.set_xlabel(xlabel)
    if log:
        _log_axis(ax)
    for y, value in enumerate(values):
        ax.annotate(
            _label(value), (value, y), xytext=(3, 0), textcoords="offset points", va="center"
        )


def _missing(ax: Axes, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "not in this run", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _cpu(ax: Axes, scenario: dict[str, Any]) -> None:
    strategies = scenario["strategies"]
    _bars(ax, strategies, "loaded_p99", "/health p99 under load, ms (log)", log=True)
    # The idle p99 of the same server, the yardstick of the 1.5x target.
    idle = [s["median"]["idle_p99"] for s in strategies.values()]
    ax.scatter(idle, range(len(idle)), marker="|", s=400, color="black", label="idle p99")
    ax.legend(loc="lower right", fontsize="small", markerscale=0.4)
    ax.set_title("1. CPU-bound jobs: /health p99")


def _blocking(ax: Axes, scenario: dict[str, Any]) -> None:
    strategies = scenario["strategies"]
    names = list(strategies)
    width = 0.4
    for offset, (key, label) in enumerate(
        (("health_loaded_p99", "/health"), ("sync_loaded_p99", "/sync (def endpoint)"))
    ):
        ax.barh(
            [i + offset * width for i in range(len(names))],
            [strategies[n]["median"][key] for n in names],
            height=width,
            label=label,
            color=["#4c72b0", "#dd8452"][offset],
        )
    ax.set_yticks([i + width / 2 for i in range(len(names))])
    ax.set_yticklabels([strategies[n]["label"] for n in names])
    ax.invert_yaxis()
    _log_axis(ax)
    ax.set_xlabel("p99 under load, ms (log)")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("2. Blocking I/O tasks: endpoint p99")


def _dispatch(ax: Axes, scenario: dict[str, Any]) -> None:
    _bars(ax, scenario["strategies"], "rps", "requests/s (one task added per request)")
    ax.set_title("3. Dispatch overhead")


def _process(ax: Axes, scenario: dict[str, Any]) -> None:
    strategies = {n: s for n, s in scenario["strategies"].items() if "noop_us" in s["median"]}
    _bars(ax, strategies, "noop_us", "microseconds per no-op task (2 workers)")
    ax.set_title("4. Process lane cost per task")


def _memory(ax: Axes, scenario: dict[str, Any]) -> None:
    marks: list[int] = scenario["params"]["marks"]
    for name, s in scenario["strategies"].items():
        m = s["median"]
        xs = [0, *marks]
        ys = [m["startup_kib"] / 1024, *(m[f"after_{k}_kib"] / 1024 for k in marks)]
        ax.plot(xs, ys, marker="o", label=s["label"], color=None if name != "bg-def" else OTHERS)
    ax.set_xlabel("tasks completed")
    ax.set_ylabel("RSS of the app process, MiB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("5. Memory")


def _scale(ax: Axes, scenario: dict[str, Any]) -> None:
    p = scenario["params"]
    label = f"jobs/s ({p['jobs']:,} jobs of ~{p['job_ms']:.0f} ms, {p['processes']} processes)"
    _bars(ax, scenario["strategies"], "jobs_per_s", label)
    ax.set_title("6. Scale")


PANELS = {
    "cpu": ("1. CPU-bound jobs", _cpu),
    "blocking": ("2. Blocking I/O tasks", _blocking),
    "dispatch": ("3. Dispatch overhead", _dispatch),
    "process": ("4. Process lane cost", _process),
    "memory": ("5. Memory", _memory),
    "scale": ("6. Scale", _scale),
}


def chart_path(png: Path, scenario: str) -> Path:
    """Where the chart of `scenario` goes, given the base name `png`."""
    return png.with_name(f"{png.stem}-{scenario}{png.suffix}")


def render(results: Path = DEFAULT_RESULTS, png: Path = DEFAULT_PNG) -> list[Path]:
    document = json.loads(results.read_text())
    scenarios: dict[str, Any] = document["scenarios"]
    meta = document["meta"]
    written = []
    for name, (_, draw) in PANELS.items():
        if name not in scenarios:
            continue
        rows = len(scenarios[name]["strategies"])
        # 9 x (rows) inches at 100 dpi: 900 px, about the content column's width, so
        # text is drawn at the size it is read (no shrinking of a wide figure).
        fig, ax = plt.subplots(figsize=(9, 1.6 + 0.36 * rows * (2 if name == "blocking" else 1)))
        draw(ax, scenarios[name])
        ax.set_title(
            f"{ax.get_title()}\n{meta['started'][:10]}, {meta['cpus']} CPUs, "
            f"medians of {meta['repeat']} run(s); green = OffloadTasks",
            fontsize="medium",
        )
        fig.tight_layout()
        path = chart_path(png, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    results = Path(args[0]) if args else DEFAULT_RESULTS
    png = Path(args[1]) if len(args) > 1 else DEFAULT_PNG
    for path in render(results, png):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
