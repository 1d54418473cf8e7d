"""``batchexecutor pool ...``: pools from any shell, as doAzureParallel's cluster functions.

::

    batchexecutor pool create POOL_ID --vm-size SIZE [options]   create it, or reuse it
    batchexecutor pool show POOL_ID [--json]                      state, nodes, errors
    batchexecutor pool resize POOL_ID (--nodes N [--spot-nodes N] | --autoscale T[:MIN:MAX])
    batchexecutor pool delete POOL_ID [--yes]                     delete it and its nodes
    batchexecutor pool list [--json]                              the account's pools

Each command is a thin layer over :mod:`batchexecutor._pool`: ``create`` builds a
:class:`~batchexecutor.PoolSpec` from its options (or from ``--spec FILE.toml``, whose keys
are ``PoolSpec``'s arguments; options given on the command line win) and calls
:func:`~batchexecutor._pool.ensure_pool`, which reuses a pool that exists with that ID (a
difference from the options is a warning on stderr, as ``PoolWarning`` is in Python);
``show`` prints :class:`~batchexecutor.PoolInfo`; ``resize`` and ``delete`` call
:func:`~batchexecutor._pool.resize_pool` and :func:`~batchexecutor._pool.delete_pool`;
``list`` is one ``Pools_ListPools`` request.

``--autoscale`` names one of :class:`~batchexecutor.Autoscale`'s templates with optional
bounds: ``queue``, ``queue_and_running`` (``TEMPLATE:MIN:MAX[:SPOT_MIN:SPOT_MAX]``),
``workday``, ``weekend``, ``max_cpu`` (``TEMPLATE:MIN:MAX``); ``--autoscale-formula``
takes any formula (``@FILE`` reads it from a file).

The Batch account comes from the environment (only its Batch settings are read: pools
need no storage), or with ``--local`` from the local emulator daemon: ``create`` starts
it when none runs (a pool is something to run on), the other commands never do. Exit
codes and error lines are the job commands' (:data:`batchexecutor._cli.EXIT_CODES`); a
missing pool exits with ``EXIT_NOT_FOUND``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import json
import math
import re
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cli import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_DONE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    _error,
    _Failure,
    _where,
    command_config,
    confirm,
    require_terminal,
)

if TYPE_CHECKING:
    from azure.batch import BatchClient

    from ._config import BatchConfig
    from ._pool import Autoscale, PoolInfo, PoolSpec, VmImage

__all__ = ["pool_commands"]

CONFIGURATION = """\
configuration:
  Without --local, the Batch account comes from the environment: AZURE_BATCH_ENDPOINT,
  AZURE_BATCH_ACCOUNT, AZURE_BATCH_ACCESS_KEY (or Microsoft Entra ID; see
  BATCHEXECUTOR_BATCH_AUDIENCE and AZURE_AUTHORITY_HOST for sovereign clouds). Storage
  settings are not needed. With --local, the local emulator daemon of --home DIR (default
  $BATCHEXECUTOR_HOME or a per-user cache directory).
"""

#: The ``--autoscale`` templates and how many bounds each takes.
TEMPLATES: dict[str, tuple[int, ...]] = {
    "queue": (0, 2, 4),
    "queue_and_running": (0, 2, 4),
    "workday": (0, 2),
    "weekend": (0, 2),
    "max_cpu": (0, 2),
}
#: Keys of a ``--spec`` file: ``PoolSpec``'s arguments (no registry: it holds a password).
SPEC_KEYS = (
    "pool_id",
    "vm_size",
    "image",
    "dedicated_nodes",
    "spot_nodes",
    "task_slots_per_node",
    "autoscale",
    "start_task_commands",
    "packages",
    "venv",
    "container_image",
    "subnet_id",
    "metadata",
    "display_name",
)
_LIST_FIELDS = [
    "id",
    "state",
    "allocationState",
    "vmSize",
    "currentDedicatedNodes",
    "targetDedicatedNodes",
    "currentLowPriorityNodes",
    "targetLowPriorityNodes",
    "taskSlotsPerNode",
    "enableAutoScale",
    "metadata",
]
_INCLUDES = re.compile(r"^(-r|-c|--requirement|--constraint)(\s|=|$)")


# --------------------------------------------------------------------------- the parsers


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of nodes (0 or more), got {text!r}"
        )
    return value


def _slots(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"expected 1 to 256 task slots per node, got {text!r}")
    return value


def pool_commands(commands: Any) -> None:
    """Add ``pool`` and its subcommands to the CLI's subparsers."""
    group_options = argparse.ArgumentParser(add_help=False)
    _where(group_options, what="pools", started="started by pool create only")
    common = argparse.ArgumentParser(add_help=False)
    _where(common, what="pools")
    starting = argparse.ArgumentParser(add_help=False)
    _where(starting, what="pools", started="started if none is running")
    epilog = CONFIGURATION + "\n" + EXIT_CODES

    group: argparse.ArgumentParser = commands.add_parser(
        "pool",
        parents=[group_options],
        help="create, show, resize, delete or list pools",
        description="Manage the Batch account's pools (the VMs tasks run on): create one from "
        "options or a TOML spec (or reuse it), show its nodes and errors, resize it, delete "
        "it, list them all.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(
        name: str, summary: str, description: str, parent: argparse.ArgumentParser = common
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(
            name,
            parents=[parent],
            help=summary,
            description=textwrap.fill(description, 79),
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parser

    def pool_id(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "pool_id", metavar="POOL_ID", help="the pool's ID (1-64 letters, digits, - and _)"
        )

    def sizing(parser: argparse.ArgumentParser) -> None:
        size = parser.add_argument_group("size: a fixed number of nodes, or an autoscale formula")
        size.add_argument("--nodes", type=_count, metavar="N", help="dedicated nodes")
        size.add_argument(
            "--spot-nodes", type=_count, metavar="N", help="spot (low-priority) nodes"
        )
        size.add_argument(
            "--autoscale",
            metavar="TEMPLATE[:MIN:MAX]",
            help="an autoscale template: queue or queue_and_running "
            "(TEMPLATE:MIN:MAX[:SPOT_MIN:SPOT_MAX] nodes), workday, weekend or max_cpu "
            "(TEMPLATE:MIN:MAX); e.g. queue:0:10",
        )
        size.add_argument(
            "--autoscale-formula",
            metavar="TEXT|@FILE",
            help="your own autoscale formula, or @FILE to read it from a file",
        )
        size.add_argument(
            "--autoscale-interval",
            metavar="DURATION",
            help="how often Batch evaluates the formula: 5m (the default and minimum) to 168h",
        )

    create = action(
        "create",
        "create a pool, or reuse the one with that ID",
        "Create a pool from the options (or from --spec FILE.toml, whose keys are PoolSpec's "
        "arguments; options given here win over it). If a pool with that ID exists it is "
        "reused as it is, and differences from the options are warnings on stderr. With "
        "--packages (or --requirements), a start task installs them into a virtual "
        "environment on each node; --wait waits until a node can run tasks and fails with "
        "its start task's stderr if none can.",
        starting,
    )
    pool_id(create)
    create.add_argument(
        "--spec", metavar="FILE.toml", help="read the PoolSpec's arguments from a TOML file"
    )
    create.add_argument(
        "--vm-size", metavar="SIZE", help="the VM size, e.g. Standard_D4s_v5 (required)"
    )
    create.add_argument(
        "--slots", type=_slots, metavar="N", help="tasks running at once on a node (default 1)"
    )
    sizing(create)
    setup = create.add_argument_group("node set-up")
    setup.add_argument(
        "--package",
        action="append",
        default=[],
        metavar="SPEC",
        help="a pip requirement for the nodes, e.g. 'numpy>=2' (repeatable; pip options as "
        "--package=--no-index)",
    )
    setup.add_argument(
        "--requirements", metavar="FILE", help="a pip requirements file: its lines are packages"
    )
    setup.add_argument(
        "--venv", metavar="PATH", help="where the packages' virtual environment goes on the nodes"
    )
    setup.add_argument(
        "--start-command",
        action="append",
        default=[],
        metavar="CMD",
        help="a bash line each node runs first, as admin (repeatable)",
    )
    setup.add_argument(
        "--image",
        metavar="PUBLISHER:OFFER:SKU[:VERSION]",
        help="a marketplace image (or a custom image's ARM ID); needs --node-agent-sku. "
        "Default: Ubuntu Server 24.04 LTS",
    )
    setup.add_argument(
        "--node-agent-sku",
        metavar="ID",
        help="the image's node agent SKU, e.g. 'batch.node.ubuntu 24.04'",
    )
    setup.add_argument("--container-image", metavar="IMAGE", help="an image pulled onto every node")
    setup.add_argument("--subnet-id", metavar="ID", help="the ARM ID of a virtual network subnet")
    create.add_argument(
        "--wait",
        nargs="?",
        const="",
        default=None,
        metavar="SECONDS",
        help="wait until a node can run tasks (at most SECONDS, e.g. 600 or 15m)",
    )
    create.add_argument("--json", action="store_true", help="print a JSON object")
    create.set_defaults(handler=_handler(_create, start=True, prepare=_prepare_create))

    show = action(
        "show",
        "show a pool: state, sizes, nodes, errors",
        "Show a pool's state, allocation state, VM size, current and target nodes, autoscale "
        "formula, node states, resize errors, and the nodes whose start task failed with the "
        "end of their stderr.",
    )
    pool_id(show)
    show.add_argument("--json", action="store_true", help="print a JSON object")
    show.set_defaults(handler=_handler(_show))

    resize = action(
        "resize",
        "resize a pool, or switch it to an autoscale formula",
        "Set a fixed size (--nodes and/or --spot-nodes; a size not given keeps its target; "
        "autoscale is switched off), or switch to an autoscale formula (--autoscale or "
        "--autoscale-formula). Nodes come and go in the background.",
    )
    pool_id(resize)
    sizing(resize)
    resize.add_argument("--json", action="store_true", help="print a JSON object")
    resize.set_defaults(handler=_handler(_resize, prepare=_prepare_resize))

    delete = action(
        "delete",
        "delete a pool and its nodes",
        "Delete a pool: its nodes go, and tasks still running on them end. Asks for "
        "confirmation on a terminal; off a terminal it needs --yes.",
    )
    pool_id(delete)
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_handler(_delete))

    listing = action(
        "list",
        "list pools: Id, State, Allocation, VmSize, Dedicated, Spot, Slots, Scaling, Kind",
        "List the account's pools with their state, VM size, current/target nodes, task "
        "slots, fixed or autoscale, and whether batchexecutor created them.",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(handler=_handler(_list))


# --------------------------------------------------------------------------- running


class _Session:
    """What a pool command works with: the configuration and a Batch client."""

    def __init__(self, config: BatchConfig, *, local: bool) -> None:
        self.config = config
        self.local = local
        self.client: BatchClient = config.batch_client()
        self.deadline = config.request_deadline

    def where(self) -> str:
        if self.local:
            return "on the local emulator"
        return f"in the Batch account {self.config.batch_endpoint}"


def _handler(
    body: Callable[[_Session, argparse.Namespace], int],
    *,
    start: bool = False,
    prepare: Callable[[argparse.Namespace], None] | None = None,
) -> Callable[[argparse.Namespace], int]:
    """The command: ``prepare`` checks the arguments (before any daemon starts or request
    is made), then ``body`` runs with a session; every failure becomes one line."""

    def handler(args: argparse.Namespace) -> int:
        name = f"batchexecutor pool {args.action}"
        session: _Session | None = None
        try:
            if getattr(args, "pool_id", None) is not None:
                _check_pool_id(args.pool_id)
            if prepare is not None:
                prepare(args)
            config = command_config(args, what="pools", start=start, storage=False)
            local = bool(getattr(args, "local", False) or getattr(args, "home", None))
            session = _Session(config, local=local)
            return body(session, args)
        except _Failure as failure:
            _error(name, failure.message)
            return failure.code
        except KeyboardInterrupt:
            _error(name, "interrupted")
            return EXIT_INTERRUPTED
        except Exception as error:  # every failure is a message and an exit code
            code, message = _explain(error, args, session)
            _error(name, message)
            return code
        finally:
            if session is not None:
                session.client.close()

    return handler


def _check_pool_id(pool_id: str) -> None:
    from ._pool import _ID_RE

    if not _ID_RE.match(pool_id):
        raise _Failure(
            EXIT_USAGE,
            f"invalid pool ID {pool_id!r}: a Batch pool ID is 1 to 64 letters, digits, "
            "hyphens and underscores",
        )


def _explain(
    error: Exception, args: argparse.Namespace, session: _Session | None
) -> tuple[int, str]:
    from azure.core.exceptions import ResourceNotFoundError

    from ._pool import PoolError
    from ._retry import describe, error_code

    pool_id = getattr(args, "pool_id", None)
    if isinstance(error, ResourceNotFoundError) and error_code(error) == "PoolNotFound":
        where = session.where() if session is not None else "in the Batch account"
        return EXIT_NOT_FOUND, (
            f"no pool {pool_id!r} {where}; `batchexecutor pool list` lists the pools"
            + (", `batchexecutor pool create` makes one" if args.action != "delete" else "")
        )
    if isinstance(error, PoolError):
        return EXIT_FAILED, (
            f"{error}\n(here: `batchexecutor pool show {error.pool_id}` shows every node; "
            f"`batchexecutor pool delete {error.pool_id}`, then `batchexecutor pool create` "
            "with other options, makes it anew)"
        )
    if isinstance(error, ValueError):  # a duration, a bound, the configuration
        return EXIT_USAGE, str(error)
    return EXIT_FAILED, describe(error)


def _info_json(info: PoolInfo) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    data["dedicated"] = {"current": info.dedicated[0], "target": info.dedicated[1]}
    data["spot"] = {"current": info.spot[0], "target": info.spot[1]}
    data["usable_nodes"] = info.usable_nodes
    data["workers"] = info.workers
    data["created_by_batchexecutor"] = info.created_by_batchexecutor
    data["python"] = info.python
    return data


def _wait_seconds(text: str | None) -> float | None:
    """``--wait``'s timeout: ``None`` without ``--wait``, ``inf`` without SECONDS."""
    if text is None:
        return None
    if not text.strip():
        return math.inf
    from ._config import _parse_seconds

    seconds = _parse_seconds(text, "--wait")
    if seconds <= 0:
        raise _Failure(EXIT_USAGE, f"--wait needs a positive number of seconds, got {text!r}")
    return seconds


# --------------------------------------------------------------------------- create


def _prepare_create(args: argparse.Namespace) -> None:
    args.pool_spec = _spec(args)
    args.timeout = _wait_seconds(args.wait)


def _create(session: _Session, args: argparse.Namespace) -> int:
    from ._pool import PoolWarning, ensure_pool, pool_info, wait_for_nodes

    spec: PoolSpec = args.pool_spec
    timeout: float | None = args.timeout
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PoolWarning)
        created = ensure_pool(session.client, spec, deadline=session.deadline)
    differences = []
    for warning in caught:
        if issubclass(warning.category, PoolWarning):
            differences.append(str(warning.message))
            _error(
                "batchexecutor pool create",
                f"warning: {warning.message}. Here: `batchexecutor pool resize {spec.pool_id} "
                f"...` resizes it; `batchexecutor pool delete {spec.pool_id}`, then this "
                "command, makes it from these options",
            )
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if timeout is not None:
        try:
            info = wait_for_nodes(
                session.client,
                spec.pool_id,
                deadline=session.deadline,
                timeout=None if math.isinf(timeout) else timeout,
                progress=sys.stderr,
            )
        except TimeoutError as error:
            raise _Failure(
                EXIT_NOT_DONE,
                f"{error}. The pool exists and its nodes keep starting: `batchexecutor pool "
                f"show {spec.pool_id}` follows them",
            ) from None
    else:
        info = pool_info(session.client, spec.pool_id, deadline=session.deadline)
    if args.json:
        document = {
            "pool_id": spec.pool_id,
            "created": created,
            "warnings": differences,
            "pool": _info_json(info),
        }
        print(json.dumps(document, indent=2))
        return EXIT_OK
    if created:
        print(f"created pool {spec.pool_id} {session.where()}: {_describe(spec)}")
    else:
        print(f"pool {spec.pool_id} exists {session.where()}: reused as it is")
    print(info)
    if timeout is None and info.usable_nodes == 0:
        print(
            f"Its nodes start in the background: `batchexecutor pool show {spec.pool_id}` "
            "follows them (or create with --wait)."
        )
    return EXIT_OK


def _describe(spec: PoolSpec) -> str:
    if spec.autoscale is not None:
        size = f"autoscale ({spec.autoscale.template})"
    else:
        dedicated, spot = spec.target_nodes
        size = f"{dedicated} dedicated and {spot} spot node(s)"
    text = f"{spec.vm_size}, {size}, {spec.task_slots_per_node} task slot(s) per node"
    if spec.packages:
        text += f", {len(spec.packages)} package line(s) installed into {spec.venv}"
    return text


def _spec(args: argparse.Namespace) -> PoolSpec:
    """The ``PoolSpec`` of ``pool create``: the ``--spec`` file, then the options."""
    from ._pool import PoolSpec

    values: dict[str, Any] = _spec_file(Path(args.spec).expanduser()) if args.spec else {}
    named = values.pop("pool_id", args.pool_id)
    if named != args.pool_id:
        raise _Failure(
            EXIT_USAGE,
            f"{args.spec} is for pool {named!r}, not {args.pool_id!r}: give the same ID, or "
            "remove pool_id from the file",
        )
    options = {
        "vm_size": args.vm_size,
        "task_slots_per_node": args.slots,
        "venv": args.venv,
        "container_image": args.container_image,
        "subnet_id": args.subnet_id,
    }
    values.update({name: value for name, value in options.items() if value is not None})
    packages = _requirements(Path(args.requirements).expanduser()) if args.requirements else []
    packages += args.package
    if packages:
        values["packages"] = packages
    if args.start_command:
        values["start_task_commands"] = args.start_command
    if args.image is not None:
        values["image"] = _image(args.image, args.node_agent_sku, "--image")
    elif args.node_agent_sku is not None:
        raise _Failure(
            EXIT_USAGE,
            "--node-agent-sku goes with --image: give the image it matches "
            "(--image PUBLISHER:OFFER:SKU[:VERSION])",
        )
    autoscale = _autoscale_option(args)
    if autoscale is not None or args.nodes is not None or args.spot_nodes is not None:
        for name in ("autoscale", "dedicated_nodes", "spot_nodes"):  # the options replace them
            values.pop(name, None)
    if autoscale is not None:
        values["autoscale"] = autoscale
    if args.nodes is not None:
        values["dedicated_nodes"] = args.nodes
    if args.spot_nodes is not None:
        values["spot_nodes"] = args.spot_nodes
    if not values.get("vm_size"):
        raise _Failure(
            EXIT_USAGE,
            "--vm-size is required, e.g. --vm-size Standard_D4s_v5 (or vm_size in --spec FILE)",
        )
    try:
        return PoolSpec(args.pool_id, **values)
    except (TypeError, ValueError) as error:
        where = f" (in {args.spec} or the options)" if args.spec else ""
        raise _Failure(EXIT_USAGE, f"{error}{where}") from None


def _sizes_conflict(args: argparse.Namespace) -> None:
    fixed = [
        f for f, v in (("--nodes", args.nodes), ("--spot-nodes", args.spot_nodes)) if v is not None
    ]
    scaled = [
        f
        for f, v in (
            ("--autoscale", args.autoscale),
            ("--autoscale-formula", args.autoscale_formula),
        )
        if v is not None
    ]
    if len(scaled) == 2:
        raise _Failure(
            EXIT_USAGE,
            "--autoscale and --autoscale-formula exclude each other: give a template or your "
            "own formula",
        )
    if fixed and scaled:
        raise _Failure(
            EXIT_USAGE,
            f"{fixed[0]} and {scaled[0]} exclude each other: a pool has a fixed size or an "
            "autoscale formula (give the bounds to the template, e.g. --autoscale queue:0:10)",
        )
    if args.autoscale_interval is not None and not scaled:
        raise _Failure(
            EXIT_USAGE,
            "--autoscale-interval goes with --autoscale or --autoscale-formula",
        )


def _autoscale_option(args: argparse.Namespace) -> Autoscale | None:
    """The ``--autoscale`` / ``--autoscale-formula`` option's Autoscale, if given."""
    from ._pool import Autoscale

    _sizes_conflict(args)
    interval = timedelta(minutes=5)
    if args.autoscale_interval is not None:
        from ._config import _parse_seconds

        interval = timedelta(
            seconds=_parse_seconds(args.autoscale_interval, "--autoscale-interval")
        )
    if args.autoscale is not None:
        return _template(args.autoscale, interval, "--autoscale")
    if args.autoscale_formula is not None:
        text = args.autoscale_formula
        if text.startswith("@"):
            text = _read_text(Path(text[1:]).expanduser(), "--autoscale-formula")
        try:
            return Autoscale.custom(text, evaluation_interval=interval)
        except ValueError as error:
            raise _Failure(EXIT_USAGE, f"--autoscale-formula: {error}") from None
    return None


def _template(text: str, interval: timedelta, where: str) -> Autoscale:
    """``queue:0:10`` (``TEMPLATE[:MIN:MAX[:SPOT_MIN:SPOT_MAX]]``) as an Autoscale."""
    from ._pool import Autoscale

    name, *bounds = text.strip().split(":")
    template = name.strip().lower().replace("-", "_")
    if template not in TEMPLATES:
        close = difflib.get_close_matches(template, TEMPLATES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise _Failure(
            EXIT_USAGE,
            f"{where} {text!r}: unknown autoscale template {name!r}{hint}; the templates are "
            f"{', '.join(TEMPLATES)} (or --autoscale-formula for your own formula)",
        )
    shape = "TEMPLATE:MIN:MAX" + (":SPOT_MIN:SPOT_MAX" if 4 in TEMPLATES[template] else "")
    if len(bounds) not in TEMPLATES[template] or not all(b.strip().isdigit() for b in bounds):
        raise _Failure(
            EXIT_USAGE,
            f"{where} {text!r}: expected {template} or {shape.replace('TEMPLATE', template)} "
            "with whole numbers of nodes, e.g. "
            f"{template}:0:10",
        )
    numbers = [int(bound) for bound in bounds]
    kwargs: dict[str, Any] = {"evaluation_interval": interval}
    if numbers:
        kwargs.update(min_nodes=numbers[0], max_nodes=numbers[1])
    if len(numbers) == 4:
        kwargs.update(spot_min_nodes=numbers[2], spot_max_nodes=numbers[3])
    make: Callable[..., Autoscale] = getattr(Autoscale, template)
    try:
        return make(**kwargs)
    except ValueError as error:
        raise _Failure(EXIT_USAGE, f"{where} {text!r}: {error}") from None


def _image(text: str, node_agent_sku: str | None, where: str) -> VmImage:
    from ._pool import VmImage

    if not node_agent_sku:
        raise _Failure(
            EXIT_USAGE,
            f"{where} needs its node agent SKU: add --node-agent-sku ID (e.g. 'batch.node."
            "ubuntu 24.04'; `az batch pool supported-images list` lists the images and SKUs)",
        )
    if text.startswith("/"):  # an Azure Compute Gallery image version's ARM ID
        return VmImage(virtual_machine_image_id=text, node_agent_sku_id=node_agent_sku)
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(part.strip() for part in parts):
        raise _Failure(
            EXIT_USAGE,
            f"{where} {text!r}: expected PUBLISHER:OFFER:SKU[:VERSION], e.g. "
            "canonical:ubuntu-24_04-lts:server, or a custom image's ARM ID (/subscriptions/...)",
        )
    version = parts[3] if len(parts) == 4 else "latest"
    return VmImage(parts[0], parts[1], parts[2], version, node_agent_sku_id=node_agent_sku)


def _read_text(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise _Failure(
            EXIT_USAGE, f"{option}: cannot read {path}: {error.strerror or error}"
        ) from None


def _requirements(path: Path) -> list[str]:
    """The lines of a pip requirements file, comments and blank lines left out."""
    lines: list[str] = []
    pending = ""
    for number, raw in enumerate(_read_text(path, "--requirements").splitlines(), 1):
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line:
            continue
        if _INCLUDES.match(line):
            raise _Failure(
                EXIT_USAGE,
                f"--requirements {path}, line {number}: {line!r} refers to another file, "
                "which the nodes do not have; put that file's lines in this one",
            )
        lines.append(line)
    return lines


def _spec_file(path: Path) -> dict[str, Any]:
    """A ``--spec`` TOML file's PoolSpec arguments (image and autoscale converted)."""
    from ._pool import Autoscale, VmImage

    tomllib = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    try:
        data: dict[str, Any] = tomllib.loads(_read_text(path, "--spec"))
    except tomllib.TOMLDecodeError as error:
        raise _Failure(
            EXIT_USAGE,
            f"--spec {path} is not valid TOML: {error}; strings need quotes, e.g. "
            'vm_size = "Standard_D4s_v5"',
        ) from None
    for key in data:
        if key not in SPEC_KEYS:
            close = difflib.get_close_matches(key, SPEC_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Failure(
                EXIT_USAGE,
                f"--spec {path}: unknown key {key!r}{hint}; the keys are PoolSpec's "
                f"arguments: {', '.join(SPEC_KEYS)}",
            )
    image = data.get("image")
    if image is not None:
        try:
            if not isinstance(image, dict):
                raise TypeError("expected a table")
            data["image"] = VmImage(**image)
        except (TypeError, ValueError) as error:
            raise _Failure(
                EXIT_USAGE,
                f"image in {path}: {error}; write it as a table of VmImage's arguments: "
                '[image] publisher = "canonical", offer = "ubuntu-24_04-lts", sku = "server", '
                'node_agent_sku_id = "batch.node.ubuntu 24.04"',
            ) from None
    autoscale = data.get("autoscale")
    if isinstance(autoscale, str):
        data["autoscale"] = _template(autoscale, timedelta(minutes=5), f"autoscale in {path}")
    elif isinstance(autoscale, dict):
        formula = autoscale.get("formula")
        interval = autoscale.get("evaluation_interval", 300)
        extra = set(autoscale) - {"formula", "evaluation_interval"}
        if not isinstance(formula, str) or extra:
            raise _Failure(
                EXIT_USAGE,
                f'autoscale in {path}: a template string such as "queue:0:10", or a table '
                'with formula (a string) and, optionally, evaluation_interval ("5m")',
            )
        from ._config import _parse_seconds

        seconds = (
            _parse_seconds(interval, f"autoscale.evaluation_interval in {path}")
            if isinstance(interval, str)
            else interval
        )
        try:
            data["autoscale"] = Autoscale.custom(
                formula, evaluation_interval=timedelta(seconds=seconds)
            )
        except (TypeError, ValueError) as error:
            raise _Failure(EXIT_USAGE, f"autoscale in {path}: {error}") from None
    return data


# --------------------------------------------------------------------------- show, resize


def _show(session: _Session, args: argparse.Namespace) -> int:
    from ._pool import pool_info

    info = pool_info(session.client, args.pool_id, deadline=session.deadline)
    print(json.dumps(_info_json(info), indent=2) if args.json else info)
    return EXIT_OK


def _prepare_resize(args: argparse.Namespace) -> None:
    args.autoscale_value = _autoscale_option(args)
    if args.autoscale_value is None and args.nodes is None and args.spot_nodes is None:
        raise _Failure(
            EXIT_USAGE,
            "say how to resize: --nodes N and/or --spot-nodes N (a fixed size), or "
            "--autoscale TEMPLATE[:MIN:MAX] / --autoscale-formula TEXT",
        )


def _resize(session: _Session, args: argparse.Namespace) -> int:
    from ._pool import pool_info, resize_pool

    autoscale: Autoscale | None = args.autoscale_value
    resize_pool(
        session.client,
        args.pool_id,
        dedicated=args.nodes,
        spot=args.spot_nodes,
        autoscale=autoscale,
        deadline=session.deadline,
    )
    info = pool_info(session.client, args.pool_id, deadline=session.deadline)
    if autoscale is not None:
        request: dict[str, Any] = {
            "autoscale": {
                "template": autoscale.template,
                "formula": autoscale.formula,
                "evaluation_interval": autoscale.evaluation_interval.total_seconds(),
            }
        }
        said = (
            f"pool {args.pool_id}: autoscale formula set ({autoscale.template}), evaluated "
            f"every {_duration(autoscale.evaluation_interval)}"
        )
    else:
        request = {"dedicated": args.nodes, "spot": args.spot_nodes}
        said = (
            f"pool {args.pool_id}: resizing to {info.dedicated[1]} dedicated and "
            f"{info.spot[1]} spot node(s) (a fixed size: autoscale is off)"
        )
    if args.json:
        print(
            json.dumps(
                {"pool_id": args.pool_id, "resize": request, "pool": _info_json(info)}, indent=2
            )
        )
    else:
        print(said)
        print(info)
    return EXIT_OK


def _duration(interval: timedelta) -> str:
    minutes = interval.total_seconds() / 60
    return f"{minutes:g} minutes" if minutes < 120 else f"{minutes / 60:g} hours"


# --------------------------------------------------------------------------- delete, list


def _delete(session: _Session, args: argparse.Namespace) -> int:
    from ._pool import delete_pool, pool_info

    pool_id = args.pool_id
    if not args.yes:
        require_terminal(f"pool {pool_id}")
        info = pool_info(session.client, pool_id, deadline=session.deadline)  # no pool: exit 3
        nodes = ", ".join(f"{n} {s}" for s, n in sorted(info.node_states.items())) or "no nodes"
        kind = "" if info.created_by_batchexecutor else ", not created by batchexecutor"
        confirm(
            f"delete pool {pool_id} ({info.state}, {nodes}{kind}) {session.where()}? Tasks "
            "still running on it end.",
            f"pool {pool_id}",
        )
    if not delete_pool(session.client, pool_id, deadline=session.deadline):
        raise _Failure(
            EXIT_NOT_FOUND,
            f"no pool {pool_id!r} {session.where()}; `batchexecutor pool list` lists the pools",
        )
    print(
        f"deleting pool {pool_id}: Batch removes it and its nodes in the background "
        f"(`batchexecutor pool show {pool_id}` says there is no such pool once it is gone)"
    )
    return EXIT_OK


def _list(session: _Session, args: argparse.Namespace) -> int:
    from ._pool import METADATA_PREFIX, _text
    from ._retry import call

    pools = call(
        "list pools",
        lambda: list(session.client.list_pools(select=_LIST_FIELDS)),
        deadline=session.deadline,
    )
    rows = []
    for pool in sorted(pools, key=lambda p: str(p.id)):
        metadata = {str(m.name): str(m.value) for m in pool.metadata or []}
        rows.append(
            {
                "id": str(pool.id),
                "state": _text(pool.state),
                "allocation_state": _text(pool.allocation_state),
                "vm_size": str(pool.vm_size or ""),
                "dedicated": {
                    "current": int(pool.current_dedicated_nodes or 0),
                    "target": int(pool.target_dedicated_nodes or 0),
                },
                "spot": {
                    "current": int(pool.current_low_priority_nodes or 0),
                    "target": int(pool.target_low_priority_nodes or 0),
                },
                "task_slots_per_node": int(pool.task_slots_per_node or 1),
                "autoscale": bool(pool.enable_auto_scale),
                "created_by_batchexecutor": metadata.get(METADATA_PREFIX + "kind") == "pool",
                "python": metadata.get(METADATA_PREFIX + "python"),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(_table(rows))
    else:
        print(f"No pools {session.where()} (`batchexecutor pool create` makes one).")
    return EXIT_OK


def _table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        ("Id", "State", "Allocation", "VmSize", "Dedicated", "Spot", "Slots", "Scaling", "Kind")
    ]
    for row in rows:
        lines.append(
            (
                row["id"],
                row["state"],
                row["allocation_state"],
                row["vm_size"],
                f"{row['dedicated']['current']}/{row['dedicated']['target']}",
                f"{row['spot']['current']}/{row['spot']['target']}",
                str(row["task_slots_per_node"]),
                "autoscale" if row["autoscale"] else "fixed",
                "batchexecutor" if row["created_by_batchexecutor"] else "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        " ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
