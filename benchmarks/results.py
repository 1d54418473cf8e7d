"""Reading results: blob reads per combined job, and combined vs one object per task.

* ``results.blob_reads_per_combined_job``: a real ``map_async`` (chunk tasks and the
  combine task run as Python workers on the emulator); the client's blob reads from the
  moment ``map_async`` returns until ``result()`` returns. ``map()``'s iterator, which
  reads chunk outcomes as they complete before the combined result exists, is measured
  beside it.
* ``results.fetch_*``: the time to read ``n`` results in order, from the combined result
  (one object, written by the product's own ``combine``) or from one outcome object per
  task (the path a job without a combined result takes). The objects are written
  directly with the product's record writer: running 10,000 worker processes to make
  them would take half an hour here, and the read path does not care who wrote them.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from batchexecutor import _names
from batchexecutor._combine import combine
from batchexecutor._context import open_config_store
from batchexecutor._results import job_values
from batchexecutor._serialize import Record, RecordWriter, pickle_payload

from . import _tasks
from ._registry import Figure, Settings, benchmark
from ._stack import (
    BLOB_KINDS,
    STORE_KINDS,
    Azurite,
    CountingStore,
    Counts,
    Stack,
    by_kind,
    diff,
    window,
)

READS_SOURCE = {
    "azurite": "Get Blob requests counted by a raw_request_hook on the executor's ContainerClient "
    "(Azurite)",
    "dir": "calls of the executor's Store wrapped (open / get / get_range)",
}


def _reads(run: dict[str, Any], store: str) -> int:
    if store == "azurite":
        return int(run["blob_http_by_kind"]["reads"])
    return int(run["store_calls_by_kind"]["reads"])


def _combined_job(store: str, items: int, chunksize: int, *, iterate: bool) -> dict[str, Any]:
    """A real map_async (and a map()) on ``store``; the client's reads while waiting."""
    with Stack(store, max_processes=2) as stack:
        pool = stack.pool("run", nodes=1, slots=2)
        executor = stack.executor(pool, max_workers=2)
        future = executor.map_async(_tasks.noop, range(items), chunksize=chunksize)
        before = stack.snapshot()
        values = future.result(timeout=600)
        resolved = window(stack.snapshot(), before)
        if values != list(range(items)):
            raise RuntimeError("map_async returned wrong results")
        out: dict[str, Any] = {
            "items": items,
            "chunks": -(-items // chunksize),
            "map_async": {
                "reads": _reads(resolved, store),
                "blob_http": resolved["blob_http"],
                "store_calls": resolved["store_calls"],
            },
        }
        if iterate:
            before = stack.snapshot()
            start = time.perf_counter()
            streamed = list(executor.map(_tasks.noop, range(items), chunksize=chunksize))
            seconds = time.perf_counter() - start
            iterated = window(stack.snapshot(), before)
            if streamed != list(range(items)):
                raise RuntimeError("map returned wrong results")
            out["map_iterator"] = {
                "reads": _reads(iterated, store),
                "blob_http": iterated["blob_http"],
                "store_calls": iterated["store_calls"],
                "seconds": seconds,
            }
        executor.shutdown(wait=True)  # the map's clean-up, before the container goes
        return out


def _write_outcomes(store: Any, job_id: str, count: int) -> None:
    """``count`` one-item chunk outcomes, as a worker writes them (in parallel)."""
    value = "x" * 100

    def write(chunk: int) -> None:
        buffer = io.BytesIO()
        writer = RecordWriter(
            buffer, info={"kind": "outcome", "job": job_id, "chunk": chunk, "task": str(chunk)}
        )
        writer.write(Record(chunk, "ok", pickle_payload((chunk, value), what="a result")))
        writer.close({"items": 1, "failed": 0})
        store.put(_names.chunk_outcome(job_id, chunk), buffer.getvalue())

    with ThreadPoolExecutor(8) as threads:
        list(threads.map(write, range(count)))


def _fetch(store_kind: str, count: int, repeats: int, settings: Settings) -> dict[str, Any]:
    """Seconds (and reads) to read ``count`` results combined and one object per task."""
    with Stack(store_kind) as stack:
        inner, _ = open_config_store(stack.config)
        calls = Counts()
        store = CountingStore(inner, calls)
        job_id = "bx-bench-results"
        start = time.perf_counter()
        _write_outcomes(inner, job_id, count)
        setup = time.perf_counter() - start
        start = time.perf_counter()
        combine(inner, job_id, count, mode="raise")
        combine_seconds = time.perf_counter() - start
        seconds: dict[str, list[float]] = {"combined": [], "per_task": []}
        reads: dict[str, dict[str, Any]] = {}
        order = ["combined", "per_task"]
        for repeat in range(repeats):
            for mode in order[repeat % 2 :] + order[: repeat % 2]:
                http_before, calls_before = stack.blob.counts.snapshot(), calls.snapshot()
                start = time.perf_counter()
                got = list(
                    job_values(
                        store, job_id, chunks=count, mode="raise", combined=mode == "combined"
                    )
                )
                seconds[mode].append(time.perf_counter() - start)
                if len(got) != count or got[-1][0] != count - 1:
                    raise RuntimeError(f"{mode}: read {len(got)} results")
                reads[mode] = {
                    "blob_http": diff(stack.blob.counts.snapshot(), http_before),
                    "store_calls": diff(calls.snapshot(), calls_before),
                }
                reads[mode]["blob_http_by_kind"] = by_kind(reads[mode]["blob_http"], BLOB_KINDS)
                reads[mode]["store_calls_by_kind"] = by_kind(
                    reads[mode]["store_calls"], STORE_KINDS
                )
        settings.log(
            f"{store_kind} {count:,} results: combined {seconds['combined']}, per task "
            f"{seconds['per_task']} s (setup {setup:.1f} s, combine {combine_seconds:.1f} s)"
        )
        return {
            "store": store_kind,
            "results": count,
            "result_value": "(index, 100-character str), pickled",
            "seconds": seconds,
            "reads": reads,
            "write_outcomes_seconds": setup,
            "combine_seconds": combine_seconds,
        }


@benchmark(
    "results.combined",
    prepare=Azurite.start_soon,
    figures=(
        "results.blob_reads_per_combined_job",
        "results.blob_reads_map_iterator",
        "results.fetch_combined_s",
        "results.fetch_per_task_s",
        "results.fetch_speedup",
        "results.fetch_combined_s_azurite",
        "results.fetch_per_task_s_azurite",
        "results.fetch_per_task_ms_per_object_azurite",
    ),
)
def combined(settings: Settings) -> list[Figure]:
    """Blob reads per combined job; fetching results combined vs one object per task."""
    azurite = Azurite.shared() is not None
    headline = "azurite" if azurite else "dir"
    # Worker tasks on the Azurite stack import azure-storage-blob (~1 s each here): fewer.
    jobs = {"dir": [_combined_job("dir", settings.pick(400, 150), 50, iterate=True)]}
    if azurite:
        jobs["azurite"] = [
            _combined_job("azurite", settings.pick(400, 50), 50, iterate=not settings.quick)
        ]
    for store, runs in jobs.items():
        settings.log(
            f"{store}: map_async reads {[r['map_async']['reads'] for r in runs]}, "
            f"map() reads {[r.get('map_iterator', {}).get('reads') for r in runs]}"
        )
    repeats = settings.pick(3, 2)
    fetch = {"dir": _fetch("dir", settings.pick(10_000, 1_000), repeats, settings)}
    if azurite:
        fetch["azurite"] = _fetch("azurite", settings.pick(2_000, 40), repeats, settings)
    details: dict[str, Any] = {
        "reads_source": {s: READS_SOURCE[s] for s in jobs},
        "jobs": jobs,
        "fetch": fetch,
    }
    if not azurite:
        details["azurite"] = f"not measured: {Azurite.why_not()}"
    first = jobs[headline][0]
    job = (
        f"map_async of {first['items']} no-op items, chunksize 50 ({first['chunks']} chunk "
        f"tasks + the combine, run on the emulator), {headline} stack: the client's reads "
        f"({READS_SOURCE[headline]}) from map_async's return to result()"
    )
    iterated = jobs["dir"][0]
    count = fetch["dir"]["results"]
    fetched = f"reading {count:,} results in order through the client's reader (job_values)"
    speedup = [
        p / c
        for p, c in zip(
            fetch["dir"]["seconds"]["per_task"], fetch["dir"]["seconds"]["combined"], strict=True
        )
    ]
    figures = [
        Figure(
            "results.blob_reads_per_combined_job",
            "reads/job",
            job,
            [float(r["map_async"]["reads"]) for r in jobs[headline]],
            details,
            aim=("<=", 1.0),
            notes="the combined result is one object: one read (one ranged Get Blob per 4 MiB)",
        ),
        Figure(
            "results.blob_reads_map_iterator",
            "reads/job",
            f"list(map(...)) of {iterated['items']} items, chunksize 50 "
            f"({iterated['chunks']} chunks), dir stack: the client's reads while iterating",
            [float(iterated["map_iterator"]["reads"])],
            details,
            notes="map() streams: it reads each chunk's outcome as that chunk completes, and "
            "switches to the combined result only if it exists before the iterator is "
            "through; it then reads it from its start, skipping the items already returned. "
            "So up to one read per chunk: the combine task's work is usually wasted (and the "
            "job is terminated under it before being deleted)",
        ),
        Figure(
            "results.fetch_combined_s",
            "s",
            f"{fetched}, from the combined result (one object), dir stack",
            fetch["dir"]["seconds"]["combined"],
            details,
        ),
        Figure(
            "results.fetch_per_task_s",
            "s",
            f"{fetched}, from one outcome object per task (one read each, in turn), dir stack",
            fetch["dir"]["seconds"]["per_task"],
            details,
        ),
        Figure(
            "results.fetch_speedup",
            "x",
            "fetch_per_task_s / fetch_combined_s, per side-by-side pair (dir stack)",
            speedup,
            details,
        ),
    ]
    if azurite:
        blob = fetch["azurite"]
        n = blob["results"]
        figures += [
            Figure(
                "results.fetch_combined_s_azurite",
                "s",
                f"reading {n:,} results from the combined result, Azurite stack",
                blob["seconds"]["combined"],
                details,
            ),
            Figure(
                "results.fetch_per_task_s_azurite",
                "s",
                f"reading {n:,} results from one outcome blob per task, Azurite stack "
                f"({n:,}, not 10,000: each read is a request, ~10 ms on Azurite here)",
                blob["seconds"]["per_task"],
                details,
                notes="one Get Blob per result, in turn: 10,000 results take 10,000 x this "
                "figure's per-object time (results.fetch_per_task_ms_per_object_azurite); on "
                "Azure (~5-20 ms a request) one to three minutes, against one read combined",
            ),
            Figure(
                "results.fetch_per_task_ms_per_object_azurite",
                "ms",
                "results.fetch_per_task_s_azurite / results read",
                [s / n * 1000 for s in blob["seconds"]["per_task"]],
                details,
            ),
        ]
    return figures
