"""What every scenario shares: settings, progress lines, alternation and medians."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._stats import median
from ._strategies import Strategy

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    quick: bool = False
    repeat: int = 3
    log: Callable[[str], None] = print
    # Busy loops beside the server in the `priority` scenario (other load on the host).
    tenants: int = 2

    def pick(self, full: T, quick: T) -> T:
        return quick if self.quick else full


@dataclass
class Target:
    """One target of issue 5, checked against this run's numbers."""

    text: str
    value: str
    met: bool | None  # None: could not be measured in this run

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.text, "value": self.value, "met": self.met}


@dataclass
class Result:
    title: str
    params: dict[str, Any]
    table: str
    strategies: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "params": self.params,
            "table": self.table,
            "strategies": self.strategies,
            "targets": [t.as_dict() for t in self.targets],
            "seconds": self.seconds,
        }


def prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    """`log`, with every line starting `prefix: `."""
    return lambda text: log(f"{prefix}: {text}")


def alternate(strategies: Sequence[Strategy], repeat: int) -> Iterator[tuple[int, Strategy]]:
    """Each repeat runs every strategy, starting one further along the list each time,
    so that no strategy always runs first (on a cold machine) or right after another."""
    for r in range(repeat):
        shift = r % len(strategies)
        for strategy in [*strategies[shift:], *strategies[:shift]]:
            yield r, strategy


def medians(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per key, the median over runs (keys missing from a run are skipped there)."""
    keys = sorted({k for run in runs for k in run})
    return {k: median([run[k] for run in runs if k in run]) for k in keys}


def paired_ratios(
    runs: Mapping[str, Sequence[Mapping[str, float]]], num: str, den: str, key: str
) -> list[float]:
    """`num[key] / den[key]` of each repeat, both from the same repeat."""
    pairs = zip(runs.get(num, ()), runs.get(den, ()), strict=False)
    return [a[key] / b[key] for a, b in pairs if b[key] > 0]


def paired_ratio(
    runs: Mapping[str, Sequence[Mapping[str, float]]], num: str, den: str, key: str
) -> float:
    """Median over repeats of `num[key] / den[key]`, both from the same repeat."""
    return median(paired_ratios(runs, num, den, key))


def spread_text(ratios: Sequence[float]) -> str:
    """How far the repeats' ratios ranged, for a target line: a median of 0.79x from
    rounds of 0.72x to 0.86x is not the verdict that rounds of 0.78x to 0.80x are."""
    if len(ratios) < 2:
        return ""
    return f" (rounds {min(ratios):.2f}x to {max(ratios):.2f}x)"


def ratio_text(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:.{digits}f}x"


def target_ratio(value: float) -> str:
    # One more digit than the tables: 1.05x could be either side of a 1.05 target.
    return ratio_text(value, 3)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started
