"""The registry of benchmark functions and the figures they return."""

from __future__ import annotations

import fnmatch
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Settings:
    """What a benchmark function is told about the run."""

    #: a short run: fewer tasks and repeats (figures are not comparable with a full run's)
    quick: bool = False

    def pick(self, full: N, quick: N) -> N:
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
    #: the issue's aim for the median, e.g. ``("<=", 0.011)``; read off, never asserted
    aim: tuple[str, float] | None = None
    #: why the figure is what it is (and, when it misses its aim, why and what would fix it)
    notes: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def meets_aim(self) -> bool | None:
        if self.aim is None:
            return None
        op, bound = self.aim
        return self.median <= bound if op == "<=" else self.median >= bound

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
            "aim": None if self.aim is None else f"{self.aim[0]} {self.aim[1]:g}",
            "meets_aim": self.meets_aim,
            "notes": self.notes,
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
    #: called when the run starts, before any benchmark, if this one is selected (to start
    #: slow services in the background)
    prepare: Callable[[], None] | None = None

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
    name: str, *, figures: Iterable[str], prepare: Callable[[], None] | None = None
) -> Callable[[BenchmarkFunction], BenchmarkFunction]:
    """Register a benchmark function under ``name``; it returns the figures named.

    ``prepare`` is called at the start of a run that selects it (before any benchmark).
    """

    def register(function: BenchmarkFunction) -> BenchmarkFunction:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        doc = (function.__doc__ or "").strip().splitlines()
        REGISTRY[name] = Benchmark(name, tuple(figures), function, doc[0] if doc else "", prepare)
        return function

    return register


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call, and what it returned."""
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value
