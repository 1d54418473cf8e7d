"""Run the registered benchmarks; write ``results/latest.json`` and ``results/latest.md``."""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from ._registry import REGISTRY, Benchmark, Settings

#: modules whose import registers benchmarks, in the order they run
MODULES = (
    "benchmarks.emulator",
    "benchmarks.submission",
    "benchmarks.polling",
    "benchmarks.results",
    "benchmarks.latency",
    "benchmarks.client",
    "benchmarks.local",
)
RESULTS_DIR = Path(__file__).parent / "results"
PACKAGES = (
    "batchexecutor",
    "azure-batch",
    "azure-core",
    "azure-storage-blob",
    "cloudpickle",
    "requests",
    "urllib3",
    "loky",
    "dask",
    "distributed",
)
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
        "--merge",
        action="store_true",
        help="keep the other benchmarks' figures of the existing latest.json (same mode), "
        "replacing only those run now (e.g. to rerun one on a quiet machine)",
    )
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
    for prepare in dict.fromkeys(b.prepare for b in selected if b.prepare is not None):
        prepare()
    cpu_start = _cpu_sample()
    for bench in selected:
        print(f"== {bench.name}: {bench.description}", file=sys.stderr, flush=True)
        bench_start = time.monotonic()
        bench_date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        bench_cpu = _cpu_sample()
        error: str | None = None
        try:
            figures = bench.function(settings)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            error = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            figures = []
        elapsed = time.monotonic() - bench_start
        report["benchmarks"][bench.name] = {
            "description": bench.description,
            "date": bench_date,  # when it started
            "commit": machine["git"],
            "load_average_end": _load_average(),
            "seconds": round(elapsed, 2),
            "others_cpu_share": _others_share(bench_cpu, _cpu_sample()),
            **({"error": error} if error else {}),
        }
        for figure in figures:
            report["figures"][figure.name] = figure.to_json(bench.name)
            print(
                f"   {figure.name} = {_fmt(figure.median)} {figure.unit} "
                f"(median of {len(figure.samples)}: {', '.join(map(_fmt, figure.samples))})",
                file=sys.stderr,
                flush=True,
            )
        for name in bench.figures:  # every declared key is written, measured or not
            if name not in report["figures"]:
                report["figures"][name] = _missing(bench.name, error or "not returned")
    machine["load_average_end"] = _load_average()
    machine["others_cpu_share"] = _others_share(cpu_start, _cpu_sample())
    report["seconds"] = round(time.monotonic() - started, 2)

    args.output.mkdir(parents=True, exist_ok=True)
    if args.merge:
        report = _merged(args.output / "latest.json", report)
    _write(args.output / "latest.json", json.dumps(report, indent=2) + "\n")
    markdown = render_markdown(report)
    _write(args.output / "latest.md", markdown)
    print(markdown)
    print(
        f"wrote {args.output / 'latest.json'} and latest.md in {report['seconds']} s",
        file=sys.stderr,
    )
    return 0


def _merged(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """``report`` on top of the previous one at ``path``: its other benchmarks are kept."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return report
    if previous.get("quick") != report["quick"] or previous.get("schema") != SCHEMA_VERSION:
        print(f"--merge: {path} is of another mode or schema; not merged", file=sys.stderr)
        return report
    rerun = set(report["benchmarks"])
    benchmarks = {k: v for k, v in previous["benchmarks"].items() if k not in rerun}
    for name in benchmarks:
        benchmarks[name].setdefault("date", previous["date"])
    figures = {k: v for k, v in previous["figures"].items() if v["benchmark"] not in rerun}
    benchmarks.update(report["benchmarks"])
    figures.update(report["figures"])
    order = [b for b in REGISTRY if b in benchmarks]
    merged = dict(report)
    merged["benchmarks"] = {name: benchmarks[name] for name in order}
    merged["figures"] = {
        name: fig for bench in order for name, fig in figures.items() if fig["benchmark"] == bench
    }
    merged["merged_from"] = {"date": previous["date"], "machine": previous["machine"]}
    merged["seconds"] = round(sum(b["seconds"] for b in benchmarks.values()), 2)
    return merged


def _missing(benchmark_name: str, why: str) -> dict[str, Any]:
    return {
        "benchmark": benchmark_name,
        "value": None,
        "unit": "",
        "workload": "",
        "repeats": 0,
        "median": None,
        "min": None,
        "max": None,
        "samples": [],
        "aim": None,
        "meets_aim": None,
        "notes": f"not measured: {why}",
        "details": {},
    }


CpuSample = tuple[float, float, float, dict[int, tuple[int, float]]]


def _process_times() -> dict[int, tuple[int, float]]:
    """CPU seconds of every process now, by PID (with its start time, to spot PID reuse)."""
    ticks = os.sysconf("SC_CLK_TCK")
    times: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = text.rpartition(")")[2].split()
        # after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt
        # cmajflt utime(11) stime(12) cutime cstime priority nice threads itrealvalue starttime(19)
        try:
            times[int(entry.name)] = (int(fields[19]), (int(fields[11]) + int(fields[12])) / ticks)
        except (IndexError, ValueError):
            continue
    return times


def _cpu_sample() -> CpuSample | None:
    """(wall, busy CPU seconds of the machine, CPU seconds of this process and its reaped
    children, CPU seconds of every process by PID)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    values = [int(x) for x in fields]
    busy = (sum(values[:8]) - values[3] - values[4]) / ticks  # all but idle and iowait
    own = sum(
        getattr(resource.getrusage(who), field)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for field in ("ru_utime", "ru_stime")
    )
    return time.monotonic(), busy, own, _process_times()


def _others_share(start: CpuSample | None, end: CpuSample | None) -> dict[str, float] | None:
    """How much of the machine's CPU other processes used between two samples.

    ``upper``: everything but this process and the children it reaped (so it also counts
    what this run started and did not reap: the local emulator daemon, pool workers);
    ``lower``: only processes that were already running at the start (other people's
    test runs, their emulators) and still are at the end, this process excluded.
    """
    if start is None or end is None or end[0] <= start[0]:
        return None
    capacity = (end[0] - start[0]) * (os.cpu_count() or 1)
    upper = max(0.0, (end[1] - start[1]) - (end[2] - start[2]))
    me = os.getpid()
    lower = 0.0
    for pid, (started, cpu) in end[3].items():
        before = start[3].get(pid)
        if pid != me and before is not None and before[0] == started:
            lower += cpu - before[1]
    return {"lower": round(lower / capacity, 3), "upper": round(upper / capacity, 3)}


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
    others = machine.get("others_cpu_share")
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
        f"at end {machine.get('load_average_end')}"
        + (
            f"; CPU used by other processes: {others['lower']:.0%} (processes older than the "
            f"run) to {others['upper']:.0%} (all but this process) of the machine"
            if isinstance(others, dict)
            else ""
        ),
        f"- total time: {report['seconds']} s"
        + (
            " (merged: "
            + "; ".join(
                f"{name} {bench.get('date', '?')}"
                + (f" at {bench['commit']}" if bench.get("commit") else "")
                for name, bench in report["benchmarks"].items()
            )
            + ")"
            if report.get("merged_from")
            else ""
        ),
        "",
        "| figure | median | unit | min to max | repeats | aim | workload |",
        "| --- | ---: | --- | --- | ---: | --- | --- |",
    ]
    notes = []
    for name, fig in report["figures"].items():
        if fig["median"] is None:
            lines.append(f"| `{name}` | — | | | 0 | | {fig['notes']} |")
            continue
        aim = ""
        if fig.get("aim"):
            aim = f"{fig['aim']} {'met' if fig['meets_aim'] else '**missed**'}"
        lines.append(
            f"| `{name}` | {_fmt(fig['median'])} | {fig['unit']} | "
            f"{_fmt(fig['min'])} to {_fmt(fig['max'])} | {fig['repeats']} | {aim} | "
            f"{fig['workload']} |"
        )
        if fig.get("notes"):
            notes.append(f"- `{name}`: {fig['notes']}")
    errors = [
        f"- `{name}`: {bench['error']}"
        for name, bench in report["benchmarks"].items()
        if bench.get("error")
    ]
    if notes:
        lines += ["", "## Notes", "", *notes]
    if errors:
        lines += ["", "## Benchmarks that failed", "", *errors]
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
