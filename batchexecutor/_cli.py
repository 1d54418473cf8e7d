"""Command line: ``batchexecutor`` / ``python -m batchexecutor``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from ._version import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="batchexecutor",
        description="concurrent.futures on Azure Batch, and a local Azure Batch emulator.",
    )
    parser.add_argument("--version", action="version", version=f"batchexecutor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    emulator = commands.add_parser(
        "emulator",
        help="run the local Azure Batch emulator, or manage the local daemon",
        description="run (default): serve a local Azure Batch service on 127.0.0.1 in the "
        "foreground; point azure.batch.BatchClient at the printed endpoint with the printed "
        "account name and key. start / status / stop: the background daemon that local mode "
        "(AzureBatchExecutor.local) shares between processes, one per home directory "
        "($BATCHEXECUTOR_HOME or a per-user cache directory).",
    )
    emulator.add_argument(
        "action",
        nargs="?",
        default="run",
        choices=("run", "start", "status", "stop", "serve"),
        help="run (default), start, status or stop",
    )
    emulator.add_argument(
        "--home-dir",
        default=None,
        metavar="DIR",
        help="the local home for start/status/stop (default: $BATCHEXECUTOR_HOME or the "
        "per-user cache directory)",
    )
    emulator.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    emulator.add_argument(
        "--max-processes",
        type=int,
        default=None,
        metavar="N",
        help="task processes running at once on this host (default: CPUs)",
    )
    emulator.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="keep state and task files here, across restarts",
    )
    emulator.add_argument("--account-name", default="emulator", help="account name")
    emulator.add_argument(
        "--account-key", default=None, help="base64 account key (default: a random one, printed)"
    )
    faults = emulator.add_argument_group("fault injection (for testing clients)")
    faults.add_argument("--fault-seed", type=int, default=0)
    faults.add_argument(
        "--throttle-rate", type=float, default=0.0, help="fraction of requests answered 429"
    )
    faults.add_argument(
        "--unavailable-rate", type=float, default=0.0, help="fraction of requests answered 503"
    )
    faults.add_argument(
        "--drop-rate",
        type=float,
        default=0.0,
        help="fraction of connections dropped without an answer",
    )
    faults.add_argument(
        "--retry-after", type=float, default=0.2, help="seconds advertised in Retry-After"
    )
    faults.add_argument(
        "--preempt-rate",
        type=float,
        default=0.0,
        help="probability that a task attempt is preempted and requeued",
    )
    faults.add_argument(
        "--task-start-delay",
        type=float,
        default=0.0,
        help="seconds before each task process starts",
    )
    emulator.set_defaults(handler=_emulator)

    demo = commands.add_parser("demo", help="run a short real job on a local emulator")
    demo.add_argument("--tasks", type=int, default=20, help="number of tasks")
    demo.set_defaults(handler=_demo)

    args = parser.parse_args(argv)
    return int(args.handler(args))


def _emulator(args: argparse.Namespace) -> int:
    if args.action != "run":
        return _daemon_action(args)
    from .emulator import BatchEmulator, FaultPlan

    try:
        plan = FaultPlan(
            seed=args.fault_seed,
            throttle_rate=args.throttle_rate,
            unavailable_rate=args.unavailable_rate,
            drop_rate=args.drop_rate,
            retry_after=args.retry_after,
            preempt_rate=args.preempt_rate,
            task_start_delay=args.task_start_delay,
        )
        emulator = BatchEmulator(
            port=args.port,
            max_processes=args.max_processes,
            data_dir=args.data_dir,
            faults=plan,
            account_name=args.account_name,
            account_key=args.account_key,
        )
        emulator.start()
    except (ValueError, OSError) as error:
        print(f"batchexecutor emulator: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # The key is printed here because the user asked for this emulator's credentials.
    print(f"Azure Batch emulator listening on {emulator.endpoint}")
    print(f"  account name: {emulator.account_name}")
    print(f"  account key:  {emulator.account_key}")
    print("Press Ctrl+C to stop.", flush=True)
    try:
        stop.wait()
    finally:
        emulator.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return int(run_demo(tasks=args.tasks))


def _daemon_action(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._config import default_home
    from ._daemon import DaemonError, daemon_dir, ensure_daemon, running_daemon, serve, stop_daemon

    home = Path(args.home_dir).expanduser() if args.home_dir else default_home()
    if args.action == "serve":  # internal: the daemon process itself (--home-dir is its folder)
        return serve(home, args.max_processes)
    if args.action == "stop":
        stopped = stop_daemon(home)
        print("stopped the local emulator" if stopped else "no local emulator was running")
        return 0
    if args.action == "status":
        info = running_daemon(home)
        if info is None:
            print(f"no local emulator is running for {home}")
            return 1
        print(
            f"local emulator running at {info.endpoint} (pid {info.pid}, data in {info.data_dir})"
        )
        return 0
    try:
        info = ensure_daemon(home, max_processes=args.max_processes)
    except DaemonError as error:
        print(f"batchexecutor emulator start: {error}", file=sys.stderr)
        return 1
    print(
        f"local emulator running at {info.endpoint} (pid {info.pid}, state in {daemon_dir(home)})"
    )
    return 0
