"""Command line: ``batchexecutor`` / ``python -m batchexecutor``.

Managing jobs from any shell, as doAzureParallel's "long running job" guide does from R::

    batchexecutor jobs [--state active,completed] [--json]    getJobList()
    batchexecutor job JOB_ID [--json]                         getJob(jobId)
    batchexecutor result JOB_ID [-o FILE] [--errors MODE]     getJobResult(jobId)
    batchexecutor logs JOB_ID [TASK_ID]                       the failed tasks' output
    batchexecutor terminate JOB_ID                            stop its tasks
    batchexecutor delete JOB_ID [--yes]                       deleteJob(jobId), and its data

and pools, as doAzureParallel's cluster functions do (:mod:`batchexecutor._cli_pool`)::

    batchexecutor pool create POOL_ID --vm-size SIZE [...]    makeCluster(): create or reuse
    batchexecutor pool show POOL_ID [--json]                  getCluster(): state, nodes, errors
    batchexecutor pool resize POOL_ID --nodes N | --autoscale T   resizeCluster()
    batchexecutor pool delete POOL_ID [--yes]                 stopCluster()
    batchexecutor pool list [--json]                          getClusterList()

The Batch account and storage come from the environment (``BatchConfig.from_env()``; the
pool commands read only its Batch settings), or with ``--local`` from the local emulator
daemon (``--home DIR``, default ``$BATCHEXECUTOR_HOME``), which these commands never start,
except ``pool create``. Errors are one message on stderr and an exit code
(:data:`EXIT_CODES`), never a traceback, and never a secret.

``emulator ...`` runs or manages the local emulator and ``demo`` runs a short job.
This module imports nothing heavy at the top: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._demo import DEMO_POOL, DEMO_VM_SIZE
from ._version import __version__

if TYPE_CHECKING:
    from ._config import BatchConfig
    from ._executor import AzureBatchExecutor

#: Exit codes of the job and pool commands.
EXIT_OK = 0
EXIT_FAILED = 1  # the job or the pool's nodes failed, no local daemon, service failed, ...
EXIT_USAGE = 2  # bad arguments, no configuration, deletion refused without --yes
EXIT_NOT_FOUND = 3  # no such job, task or pool
EXIT_FOREIGN = 4  # the job was not created by batchexecutor
EXIT_NOT_DONE = 5  # the job is still running; pool create --wait: no node ready in time
EXIT_INCOMPLETE = 6  # the job's submission was cut short
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}  success
  {EXIT_FAILED}  the job (or its result) failed, the pool's nodes failed, no local daemon is
     running, the service failed, or a deletion was not confirmed
  {EXIT_USAGE}  bad arguments, no configuration, or delete without --yes off a terminal
  {EXIT_NOT_FOUND}  no such job, task or pool
  {EXIT_FOREIGN}  the job was not created by batchexecutor
  {EXIT_NOT_DONE}  the job is still running, or pool create --wait: no node was ready in time
  {EXIT_INCOMPLETE}  the job's submission was cut short (resume it from Python, or delete it)
"""

CONFIGURATION = """\
configuration:
  Without --local, the Batch account and storage come from the environment:
  AZURE_BATCH_ENDPOINT, AZURE_BATCH_ACCOUNT, AZURE_BATCH_ACCESS_KEY (or Microsoft Entra
  ID), and AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT (+ AZURE_STORAGE_KEY),
  or BATCHEXECUTOR_STORAGE_DIR. With --local, the local emulator daemon of --home DIR
  (default $BATCHEXECUTOR_HOME or a per-user cache directory) and its local store.
"""

_STATES = ("active", "completed")


class _Failure(Exception):
    """A job command failed: ``message`` for stderr, ``code`` to exit with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="batchexecutor",
        description="concurrent.futures on Azure Batch: manage its jobs and pools, run the local "
        "Azure Batch emulator, or try a demo.",
        epilog=CONFIGURATION + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"batchexecutor {__version__}")
    _where(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _job_commands(commands)
    from ._cli_pool import pool_commands

    pool_commands(commands)

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
    emulator.add_argument(
        "--container-runtime",
        default=None,
        metavar="RUNTIME",
        help="how tasks with containerSettings run: auto (docker if its daemon answers, else "
        "on the host), host, or a docker-compatible CLI such as docker or podman (default: "
        "$BATCHEXECUTOR_CONTAINER_RUNTIME or auto)",
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

    demo = commands.add_parser(
        "demo",
        help="run a short real job on a local emulator (or, with --azure, on Azure Batch)",
        description="A Monte-Carlo estimate of pi: one map job of chunk tasks and a combine "
        "task. By default on the local emulator daemon; with --azure on the Batch account "
        "and storage of the environment or config file (docs/azure.md), on the configured "
        f"pool or a one-node pool {DEMO_POOL!r} created for it and deleted afterwards.",
    )
    demo.add_argument("--tasks", type=int, default=20, help="number of tasks")
    demo.add_argument("--azure", action="store_true", help="run on Azure Batch")
    demo.add_argument(
        "--pool",
        default=None,
        metavar="POOL_ID",
        help="with --azure: an existing pool to use (default: $BATCHEXECUTOR_POOL_ID, else "
        f"a new pool {DEMO_POOL!r})",
    )
    demo.add_argument(
        "--vm-size",
        default=DEMO_VM_SIZE,
        help=f"with --azure: the new pool's VM size (default {DEMO_VM_SIZE})",
    )
    demo.add_argument(
        "--keep-pool", action="store_true", help="with --azure: do not delete the new pool"
    )
    demo.set_defaults(handler=_demo)

    args = parser.parse_args(argv)
    return int(args.handler(args))


# --------------------------------------------------------------------------- job commands


def _where(
    parser: argparse.ArgumentParser,
    *,
    what: str = "jobs",
    started: str = "never started by these commands",
) -> None:
    """``--local`` and ``--home``, accepted before the command and after it."""
    group = parser.add_argument_group(f"where the {what} are")
    group.add_argument(
        "--local",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"use the local emulator daemon ({started}) and its store, instead of the "
        "environment's configuration",
    )
    group.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the local daemon's home (implies --local; default: $BATCHEXECUTOR_HOME or a "
        "per-user cache directory)",
    )


def _job_commands(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    _where(common)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=textwrap.fill(description, 79),
            epilog=CONFIGURATION + "\n" + EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parser

    def job_id(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("job_id", metavar="JOB_ID", help="the job's ID (bx-map-...)")

    jobs = command(
        "jobs",
        "list jobs: Id, State, Status, FailedTasks, TotalTasks",
        "List the account's jobs, oldest first, with their state, the share of their tasks "
        "completed, and their failed and total task counts.",
    )
    jobs.add_argument(
        "--state",
        default=",".join(_STATES),
        metavar="STATES",
        help="comma-separated job states to list (default: active,completed; also "
        "disabling, disabled, enabling, terminating, deleting)",
    )
    jobs.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    jobs.set_defaults(handler=_job_command(_jobs))

    job = command(
        "job",
        "show one job: its metadata and task counts",
        "Show a job's metadata (function, chunk size, cloud combine, error mode, items, "
        "versions) and its tasks by state.",
    )
    job_id(job)
    job.add_argument("--json", action="store_true", help="print a JSON object")
    job.set_defaults(handler=_job_command(_job))

    result = command(
        "result",
        "print (or save) the result of a completed job",
        "Print the repr() of a completed job's result (a map's list of results, or its "
        "reduced value; a submit job's outcomes in order), or write it, pickled with "
        "cloudpickle, to a file.",
    )
    job_id(result)
    result.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="write the result pickled with cloudpickle to FILE instead of printing it",
    )
    result.add_argument(
        "--errors",
        choices=("raise", "skip", "return"),
        default=None,
        help="what failed items become: raise (fail on the first), skip (leave them out) or "
        "return (the exceptions in place); default: the job's own mode",
    )
    result.set_defaults(handler=_job_command(_result))

    logs = command(
        "logs",
        "print the output of a job's failed tasks, or of one task",
        "Print the state, exit code, failure, stdout and stderr (the last MiB of each) of "
        "TASK_ID, or without it of every failed task of the job.",
    )
    job_id(logs)
    logs.add_argument("task_id", metavar="TASK_ID", nargs="?", default=None, help="a task's ID")
    logs.add_argument("--json", action="store_true", help="print a JSON list")
    logs.set_defaults(handler=_job_command(_logs))

    terminate = command(
        "terminate",
        "stop a job's tasks (its results so far stay readable)",
        "Terminate a job: its running tasks are stopped and no more start. What finished "
        "stays readable; delete the job to remove it.",
    )
    job_id(terminate)
    terminate.set_defaults(handler=_job_command(_terminate))

    delete = command(
        "delete",
        "delete a job and everything it stored",
        "Delete the Batch job and every object it stored (inputs, outcomes, result). "
        "Asks for confirmation on a terminal; off a terminal it needs --yes.",
    )
    job_id(delete)
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_job_command(_delete))


def _job_command(
    body: Callable[[AzureBatchExecutor, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        name = f"batchexecutor {args.command}"
        try:
            # Shut down (poller, resolver) on the way out, whatever happens.
            with _executor(args) as executor:
                return body(executor, args)
        except _Failure as failure:
            _error(name, failure.message)
            return failure.code
        except KeyboardInterrupt:
            _error(name, "interrupted")
            return EXIT_INTERRUPTED
        except Exception as error:  # every failure is a message and an exit code
            code, message = _explain(error, args)
            _error(name, message)
            return code

    return handler


def _error(name: str, message: str) -> None:
    from ._retry import redact

    print(f"{name}: {redact(message)}", file=sys.stderr, flush=True)


def _executor(args: argparse.Namespace) -> AzureBatchExecutor:
    """The executor the command works with: local daemon or environment."""
    from ._executor import AzureBatchExecutor

    return AzureBatchExecutor(command_config(args), progress=False)


#: What ``BatchConfig.from_env`` reads about storage (the pool commands leave it out).
_STORAGE_VARIABLES = frozenset(
    {
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_KEY",
        "BATCHEXECUTOR_STORAGE_ACCOUNT_URL",
        "BATCHEXECUTOR_STORAGE_DIR",
        "BATCHEXECUTOR_STORAGE_AUDIENCE",
        "BATCHEXECUTOR_CONTAINER",
    }
)


def command_config(
    args: argparse.Namespace, *, what: str = "jobs", start: bool = False, storage: bool = True
) -> BatchConfig:
    """The configuration a command works with: the local daemon of ``--home`` with
    ``--local`` (started only if ``start``), else the environment's. ``storage=False``
    (the pool commands) reads only the Batch settings: storage is neither needed nor
    checked, and a stand-in directory (never written) takes its place."""
    from ._config import BatchConfig, ConfigurationError, default_home

    home_arg = getattr(args, "home", None)
    if getattr(args, "local", False) or home_arg is not None:
        from ._daemon import DaemonError, ensure_daemon, running_daemon

        home = Path(home_arg).expanduser() if home_arg else default_home()
        if start:
            try:
                daemon = ensure_daemon(home)
            except DaemonError as error:
                raise _Failure(EXIT_FAILED, f"the local daemon could not start: {error}") from None
        else:
            found = running_daemon(home)
            if found is None:
                created = (
                    "; `batchexecutor pool create --local ...` starts it" if what == "pools" else ""
                )
                raise _Failure(
                    EXIT_FAILED,
                    f"no local daemon is running for {home}, so there are no local {what} to "
                    f"manage (a stopped daemon keeps its {what}: start it with `batchexecutor "
                    f"emulator start --home-dir {home}`{created})",
                )
            daemon = found
        return BatchConfig.for_emulator(
            daemon.endpoint, daemon.account_name, daemon.account_key, home=home
        )
    environ: dict[str, str] = dict(os.environ)
    if not storage:
        environ = {k: v for k, v in environ.items() if k not in _STORAGE_VARIABLES}
        environ["BATCHEXECUTOR_STORAGE_DIR"] = os.getcwd()  # a stand-in, never used
    try:
        return BatchConfig.from_env(environ)
    except ConfigurationError as error:
        only = "" if storage else " (the pool commands need only the Batch settings)"
        raise _Failure(EXIT_USAGE, f"{error}{only}") from None


def _explain(error: Exception, args: argparse.Namespace) -> tuple[int, str]:
    """The exit code and message for a failed job command."""
    from ._errors import (
        BatchExecutorError,
        ForeignJobError,
        IncompleteJobError,
        JobNotDoneError,
        JobNotFoundError,
        RemoteError,
        TaskFailedError,
    )
    from ._retry import describe

    job_id = getattr(args, "job_id", None)
    hint = (
        f"(`--errors return` or `--errors skip` reads the other results; "
        f"`batchexecutor logs {job_id}` shows the failed tasks' output)"
    )
    if isinstance(error, JobNotFoundError):
        return EXIT_NOT_FOUND, str(error)
    if isinstance(error, ForeignJobError):
        return EXIT_FOREIGN, str(error)
    if isinstance(error, JobNotDoneError):
        return EXIT_NOT_DONE, f"{error}. Or run `batchexecutor job {job_id}` to see its progress"
    if isinstance(error, IncompleteJobError):
        return EXIT_INCOMPLETE, f"{error}; or `batchexecutor delete {job_id}`"
    if isinstance(error, BatchExecutorError):  # ours, e.g. a task that died: its message
        if args.command == "result" and isinstance(error, (RemoteError, TaskFailedError)):
            return EXIT_FAILED, f"{error}\n{hint}"
        return EXIT_FAILED, str(error)
    if isinstance(error.__cause__, RemoteError):  # the job's function raised on a node
        return EXIT_FAILED, (
            f"the job's function raised {describe(error)}\n{error.__cause__}\n{hint}"
        )
    if isinstance(error, ValueError):  # bad arguments (a job ID, a state), configuration
        return EXIT_USAGE, str(error)
    return EXIT_FAILED, describe(error)


def _jobs(executor: AzureBatchExecutor, args: argparse.Namespace) -> int:
    from ._manage import format_jobs

    states = [state.strip().lower() for state in args.state.split(",") if state.strip()]
    if not states:
        raise _Failure(EXIT_USAGE, "--state needs at least one job state, e.g. active")
    jobs = executor.list_jobs(states)
    if args.json:
        print(json.dumps([job.to_json() for job in jobs], indent=2))
    elif jobs:
        print(format_jobs(jobs))
    else:
        print(f"No jobs in state {' or '.join(states)}.")
    return EXIT_OK


def _job(executor: AzureBatchExecutor, args: argparse.Namespace) -> int:
    info = executor.get_job(args.job_id)
    if args.json:
        data = info.to_json()
        data["terminate_reason"] = info.terminate_reason
        print(json.dumps(data, indent=2))
    else:
        print(info)
    return EXIT_OK


def _result(executor: AzureBatchExecutor, args: argparse.Namespace) -> int:
    value = executor.job_result(args.job_id, errors=args.errors)
    if args.output is None:
        print(repr(value))
        return EXIT_OK
    import cloudpickle

    path = Path(args.output).expanduser()
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        cloudpickle.dump(value, file)
    temporary.replace(path)
    print(f"wrote the result of job {args.job_id} to {path}", file=sys.stderr)
    return EXIT_OK


def _logs(executor: AzureBatchExecutor, args: argparse.Namespace) -> int:
    logs = executor.job_logs(args.job_id, args.task_id)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "task_id": log.task_id,
                        "state": log.state,
                        "exit_code": log.exit_code,
                        "failure": log.failure,
                        "stdout": log.stdout,
                        "stderr": log.stderr,
                    }
                    for log in logs
                ],
                indent=2,
            )
        )
    elif not logs:
        print(
            f"job {args.job_id} has no failed tasks (name a task to see its output: "
            f"batchexecutor logs {args.job_id} TASK_ID)"
        )
    else:
        print("\n\n".join(str(log) for log in logs))
    return EXIT_OK


def _terminate(executor: AzureBatchExecutor, args: argparse.Namespace) -> int:
    if executor.terminate_job(args.job_id):
        print(
            f"terminated job {args.job_id}: its running tasks are stopped; what finished stays "
            f"readable (batchexecutor result {args.job_id} --errors return)"
        )
    else:
        print(f"job {args.job_id} had already ended: nothing to terminate")
    return EXIT_OK


def _delete(executor: AzureBatchExecutor, args: argparse.Namespace) -> int:
    from ._errors import JobNotFoundError
    from ._names import check_job_id

    job_id = check_job_id(args.job_id)
    if not args.yes:
        require_terminal(f"job {job_id}")
        try:
            info = executor.get_job(job_id)
        except JobNotFoundError:
            what = f"job {job_id} is not in the Batch account; delete whatever is stored for it"
        else:
            kind = "" if info.kind is not None else ", not a batchexecutor job"
            what = (
                f"delete job {job_id} ({info.state}, {info.counts.total} tasks{kind}) and "
                "everything it stored"
            )
        confirm(f"{what}?", f"job {job_id}")
    executor.delete_job(job_id)
    print(f"deleted job {job_id} and everything it stored")
    return EXIT_OK


def require_terminal(what: str) -> None:
    """Refuse (``EXIT_USAGE``) to delete ``what`` without ``--yes`` off a terminal."""
    if not sys.stdin.isatty():
        raise _Failure(
            EXIT_USAGE,
            f"refusing to delete {what} without confirmation: stdin is not a terminal; pass "
            "--yes to delete it",
        )


def confirm(question: str, what: str) -> None:
    """Ask ``question`` on the terminal; ``EXIT_FAILED`` unless the answer is yes."""
    print(f"{question} This cannot be undone. [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise _Failure(EXIT_FAILED, f"not confirmed: {what} was not deleted")


# --------------------------------------------------------------------------- emulator, demo


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
            container_runtime=args.container_runtime,
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

    if not args.azure and (args.pool or args.keep_pool or args.vm_size != DEMO_VM_SIZE):
        print("demo: --pool, --vm-size and --keep-pool go with --azure", file=sys.stderr)
        return EXIT_USAGE
    return int(
        run_demo(
            tasks=args.tasks,
            azure=args.azure,
            pool_id=args.pool,
            vm_size=args.vm_size,
            keep_pool=args.keep_pool,
        )
    )


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
