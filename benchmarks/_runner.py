"""Run the registered benchmarks; write ``results/latest.json`` and ``results/latest.md``."""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._registry import REGISTRY, Benchmark, Settings

#: modules whose import registers benchmarks (executor figures will join here)
MODULES = ("benchmarks.emulator",)
RESULTS_DIR = Path(__file__).parent / "results"
PACKAGES = ("batchexecutor", "azure-batch", "azure-core", "requests", "urllib3")
SCHEMA_VERSION = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure batchexecutor (medians of repeated runs; nothing is asserted).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer tasks and repeats (under two minutes); figures are not "
        "comparable with a full run's",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        default=[],
        help="run only the benchmarks named or returning a figure named NAME "
        "(exact, prefix such as 'emulator', or glob); may be repeated",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR,
        metavar="DIR",
        help=f"where latest.json and latest.md go (default: {RESULTS_DIR})",
    )
    args = parser.parse_args(argv)

    for module in MODULES:
        importlib.import_module(module)
    if args.list:
        for bench in REGISTRY.values():
            print(f"{bench.name}: {bench.description}\n    figures: {', '.join(bench.figures)}")
        return 0
    selected = [
        b for b in REGISTRY.values() if not args.only or any(b.matches(p) for p in args.only)
    ]
    if not selected:
        parser.error(f"no benchmark matches {args.only}; see --list")

    settings = Settings(quick=args.quick)
    if settings.quick:
        print(
            "QUICK run: fewer tasks and repeats than a full run; its figures are indicative "
            "only and not comparable with a full run's.",
            file=sys.stderr,
        )
    started = time.monotonic()
    machine = describe_machine()
    print(
        f"machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), "
        f"Python {machine['python']}, load average {machine['load_average_start']}",
        file=sys.stderr,
    )
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": settings.quick,
        "only": args.only,
        "machine": machine,
        "benchmarks": {},
        "figures": {},
    }
    for bench in selected:
        print(f"== {bench.name}: {bench.description}", file=sys.stderr, flush=True)
        bench_start = time.monotonic()
        figures = bench.function(settings)
        elapsed = time.monotonic() - bench_start
        report["benchmarks"][bench.name] = {
            "description": bench.description,
            "seconds": round(elapsed, 2),
        }
        for figure in figures:
            report["figures"][figure.name] = figure.to_json(bench.name)
            print(
                f"   {figure.name} = {_fmt(figure.median)} {figure.unit} "
                f"(median of {len(figure.samples)}: {', '.join(map(_fmt, figure.samples))})",
                file=sys.stderr,
                flush=True,
            )
    machine["load_average_end"] = _load_average()
    report["seconds"] = round(time.monotonic() - started, 2)

    args.output.mkdir(parents=True, exist_ok=True)
    _write(args.output / "latest.json", json.dumps(report, indent=2) + "\n")
    markdown = render_markdown(report)
    _write(args.output / "latest.md", markdown)
    print(markdown)
    print(
        f"wrote {args.output / 'latest.json'} and latest.md in {report['seconds']} s",
        file=sys.stderr,
    )
    return 0


def describe_machine() -> dict[str, Any]:
    """What the figures depend on: CPUs, OS, Python, package versions, commit."""
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "packages": packages,
        "git": _git(),
        "temp_dir": tempfile.gettempdir(),
        "temp_dir_filesystem": _filesystem(tempfile.gettempdir()),
        "load_average_start": _load_average(),
    }


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    lines = [
        "# Benchmark results",
        "",
        f"- date: {report['date']}"
        + (
            " — **QUICK run** (fewer tasks and repeats; indicative only)"
            if report["quick"]
            else " — full run"
        ),
        f"- machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, {machine['platform']}",
        f"- Python {machine['python']} ({machine['python_implementation']}); {packages}",
        f"- temp dir (emulator files): {machine['temp_dir']} on {machine['temp_dir_filesystem']}",
        f"- commit: {machine['git']}; load average at start {machine['load_average_start']}, "
        f"at end {machine.get('load_average_end')}",
        f"- total time: {report['seconds']} s",
        "",
        "| figure | median | unit | min to max | repeats | workload |",
        "| --- | ---: | --- | --- | ---: | --- |",
    ]
    for name, fig in report["figures"].items():
        lines.append(
            f"| `{name}` | {_fmt(fig['median'])} | {fig['unit']} | "
            f"{_fmt(fig['min'])} to {_fmt(fig['max'])} | {fig['repeats']} | "
            f"{fig['workload']} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _filesystem(path: str) -> str | None:
    """The type of the file system ``path`` is on (emulator task files go to the temp dir)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    resolved = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > best[0]):
            best = (len(point), f"{fields[2]} ({fields[0]} on {point})")
    return best[1] if best else None


def _git() -> str | None:
    """The commit measured (read-only git; GIT_OPTIONAL_LOCKS=0 keeps the index untouched)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "diff", "--quiet", "HEAD", "--", "batchexecutor"],
                cwd=root,
                env=env,
                capture_output=True,
            ).returncode
            != 0
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + (" (+ uncommitted changes in batchexecutor/)" if dirty else "")


__all__ = ["Benchmark", "main"]
