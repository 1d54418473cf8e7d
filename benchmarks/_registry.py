"""The registry of benchmark functions and the figures they return."""

from __future__ import annotations

import fnmatch
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Settings:
    """What a benchmark function is told about the run."""

    #: a short run: fewer tasks and repeats (figures are not comparable with a full run's)
    quick: bool = False

    def pick(self, full: int, quick: int) -> int:
        """A workload size or repeat count: ``full`` normally, ``quick`` with ``--quick``."""
        return quick if self.quick else full

    def log(self, message: str) -> None:
        print(f"    {message}", file=sys.stderr, flush=True)


@dataclass
class Figure:
    """One measured quantity: a sample per repeat; the median is the headline value."""

    name: str
    unit: str
    workload: str
    samples: list[float]
    #: extra facts about the workload (request counts, sizes, ...), written to the JSON
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def to_json(self, benchmark_name: str) -> dict[str, Any]:
        return {
            "benchmark": benchmark_name,
            "value": self.median,
            "unit": self.unit,
            "workload": self.workload,
            "repeats": len(self.samples),
            "median": self.median,
            "min": min(self.samples),
            "max": max(self.samples),
            "samples": self.samples,
            "details": self.details,
        }


BenchmarkFunction = Callable[[Settings], list[Figure]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    #: the names of the figures it returns, so ``--only FIGURE`` can select it before it runs
    figures: tuple[str, ...]
    function: BenchmarkFunction
    description: str

    def matches(self, pattern: str) -> bool:
        """``pattern`` names the benchmark or one of its figures: exact, prefix or glob."""
        names = (self.name, *self.figures)
        return any(
            name == pattern
            or name.startswith(pattern + ".")
            or name.startswith(pattern + "_")
            or fnmatch.fnmatchcase(name, pattern)
            for name in names
        )


REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    name: str, *, figures: Iterable[str]
) -> Callable[[BenchmarkFunction], BenchmarkFunction]:
    """Register a benchmark function under ``name``; it returns the figures named."""

    def register(function: BenchmarkFunction) -> BenchmarkFunction:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        doc = (function.__doc__ or "").strip().splitlines()
        REGISTRY[name] = Benchmark(name, tuple(figures), function, doc[0] if doc else "")
        return function

    return register


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call, and what it returned."""
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value
