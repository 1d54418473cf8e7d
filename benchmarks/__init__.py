"""Benchmarks of batchexecutor: ``python -m benchmarks [--quick] [--only NAME]`` (``nox -s bench``).

Benchmarks measure; they never assert timings (speed targets are read off the results, not
enforced by tests). Each benchmark is a function registered with :func:`benchmark` that
returns named :class:`Figure` objects; the runner (``_runner``) describes the machine, runs
the selected benchmarks and writes ``benchmarks/results/latest.json`` and ``latest.md``.

To add figures, write a function in a module listed in ``_runner.MODULES``::

    @benchmark("executor.submit", figures=("executor.submit_per_s",))
    def submit(settings: Settings) -> list[Figure]:
        samples = [...]  # one timing per repeat
        return [Figure("executor.submit_per_s", "tasks/s", "1,000 submits ...", samples)]
"""

from ._registry import Figure, Settings, benchmark

__all__ = ["Figure", "Settings", "benchmark"]
