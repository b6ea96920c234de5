"""Latency summaries and the tables the demo and the suite print."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    """Summary of one probe window, in milliseconds."""

    n: int
    errors: int
    p50: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "errors": self.errors,
            "p50": self.p50,
            "p99": self.p99,
            "max": self.max,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(latencies_ms: Sequence[float], errors: int = 0) -> Latency:
    return Latency(
        n=len(latencies_ms),
        errors=errors,
        p50=percentile(latencies_ms, 50),
        p99=percentile(latencies_ms, 99),
        max=max(latencies_ms, default=float("nan")),
    )


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def fmt_ms(value: float) -> str:
    if value != value:  # NaN: no sample
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, padded so it also reads well in a terminal."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])
