"""Pools: what to create (:class:`PoolSpec`, :class:`Autoscale`), and the pool operations
the executor uses (create or reuse, wait for nodes, inspect, resize, delete).

A :class:`PoolSpec` becomes one ``Pools_CreatePool`` request
(:meth:`PoolSpec.to_create_options`):

* a VM size and a marketplace image with its node agent SKU (default: Ubuntu Server 24.04
  LTS, ``canonical/ubuntu-24_04-lts/server`` with ``batch.node.ubuntu 24.04``; with a
  container image, Microsoft's container-ready Ubuntu 24.04 HPC image);
* a fixed size (``dedicated_nodes``, ``spot_nodes``) or an :class:`Autoscale` formula;
* a start task, when there is something to set up: it runs as the pool-wide admin
  auto-user with ``waitForSuccess`` (no task is scheduled on a node before it succeeds,
  and a node whose start task fails is marked ``starttaskfailed``, with its stderr kept
  in ``startup/stderr.txt`` on the node). Its bash script is the
  ``BATCHEXECUTOR_START_TASK`` environment setting of the start task (readable in the
  pool's JSON), written to ``startup/wd/batchexecutor-start.sh`` and run with
  ``bash -eo pipefail``: first ``start_task_commands``, then, with ``packages``, a
  virtual environment at ``venv`` (default ``/opt/batchexecutor/venv``; ``python3-venv``
  is installed with apt when the image lacks it) into which ``pip install -r`` installs
  the packages. Tasks then run that environment's interpreter (:attr:`PoolSpec.python`);
* metadata marking the pool as batchexecutor's: ``batchexecutor.kind=pool``, the client's
  version, the task interpreter (``batchexecutor.python``) and a digest of the node
  environment (``batchexecutor.spec``: image, start task, container and network
  settings), so a reused pool built from another spec is noticed.

Autoscale formulas are the templates doAzureParallel offered (QUEUE, QUEUE_AND_RUNNING,
WORKDAY, WEEKEND, MAX_CPU) in the service's current variable names, evaluated every
5 minutes by default; see :class:`Autoscale`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shlex
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any, Final

from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from ._batch import read_node_file_tail
from ._config import Secret
from ._errors import BatchExecutorError
from ._retry import call, error_code, redact

if TYPE_CHECKING:
    from azure.batch import BatchClient

__all__ = [
    "DEFAULT_VENV",
    "START_TASK_VARIABLE",
    "UBUNTU_LTS",
    "UBUNTU_LTS_CONTAINERS",
    "Autoscale",
    "ContainerRegistry",
    "NodeFailure",
    "PoolError",
    "PoolInfo",
    "PoolSpec",
    "PoolWarning",
    "VmImage",
    "delete_pool",
    "ensure_pool",
    "pool_info",
    "resize_pool",
    "wait_for_nodes",
]

_log = logging.getLogger("batchexecutor.pool")

#: Where the start task creates the virtual environment that ``packages`` go to.
DEFAULT_VENV: Final = "/opt/batchexecutor/venv"
#: The start task's environment setting that holds its bash script.
START_TASK_VARIABLE: Final = "BATCHEXECUTOR_START_TASK"
#: The script's file name in the start task's working directory.
START_SCRIPT: Final = "batchexecutor-start.sh"
#: The start task's stderr, relative to the node's root directory (Nodes_GetNodeFile).
START_TASK_STDERR: Final = "startup/stderr.txt"
METADATA_PREFIX: Final = "batchexecutor."
#: Batch's limits on the autoscale evaluation interval.
MIN_INTERVAL: Final = timedelta(minutes=5)
MAX_INTERVAL: Final = timedelta(hours=168)
#: Bytes of a failed start task's stderr shown in errors and :class:`PoolInfo`.
STDERR_TAIL: Final = 4096
#: Failed nodes whose stderr :func:`pool_info` reads (one request each).
MAX_FAILURES_READ: Final = 3

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Node states: able to run tasks; failed for good; away (may come back, e.g. preempted).
_USABLE = frozenset({"idle", "running"})
_FAILED = frozenset({"starttaskfailed", "unusable"})
_GONE = frozenset({"leavingpool", "offline", "preempted", "deallocated", "deallocating"})
_NODE_FIELDS = ["id", "state", "isDedicated", "startTaskInfo", "errors"]


class PoolError(BatchExecutorError):
    """A pool cannot run tasks: its nodes failed their start task, it could not be
    resized (quota, capacity, subnet ...), or it is being deleted. ``pool_id`` names it;
    ``failures`` holds the failed nodes with the tail of their start task's stderr."""

    def __init__(self, message: str, *, pool_id: str, failures: Sequence[NodeFailure] = ()) -> None:
        super().__init__(message)
        self.pool_id = pool_id
        self.failures = list(failures)


class PoolWarning(UserWarning):
    """A reused pool differs from the :class:`PoolSpec` asked for (size, VM size, ...)."""


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class VmImage:
    """A VM image and the Batch node agent SKU that matches it.

    Either a marketplace image (``publisher``, ``offer``, ``sku``, ``version``) or a
    custom image by ARM ID (``virtual_machine_image_id``, an Azure Compute Gallery image
    version); the node agent SKU must match the image's OS (``batch.node.ubuntu 24.04``
    for Ubuntu 24.04; ``az batch pool supported-images list`` lists the pairs).
    """

    publisher: str | None = None
    offer: str | None = None
    sku: str | None = None
    version: str = "latest"
    node_agent_sku_id: str = "batch.node.ubuntu 24.04"
    virtual_machine_image_id: str | None = None

    def __post_init__(self) -> None:
        marketplace = (self.publisher, self.offer, self.sku)
        if self.virtual_machine_image_id is not None:
            if any(part is not None for part in marketplace):
                raise ValueError(
                    "VmImage: give either virtual_machine_image_id or publisher/offer/sku, not both"
                )
        elif not all(isinstance(part, str) and part for part in marketplace):
            raise ValueError(
                "VmImage needs publisher, offer and sku (a marketplace image), or "
                "virtual_machine_image_id (a custom image)"
            )
        if not isinstance(self.node_agent_sku_id, str) or not self.node_agent_sku_id:
            raise ValueError("VmImage needs its node_agent_sku_id, e.g. 'batch.node.ubuntu 24.04'")

    def image_reference(self) -> bm.BatchVmImageReference:
        if self.virtual_machine_image_id is not None:
            return bm.BatchVmImageReference(virtual_machine_image_id=self.virtual_machine_image_id)
        return bm.BatchVmImageReference(
            publisher=self.publisher, offer=self.offer, sku=self.sku, version=self.version
        )


#: The default image: Ubuntu Server 24.04 LTS (Gen2 VM sizes, e.g. the Dsv3/Dsv5 series).
UBUNTU_LTS: Final = VmImage(
    "canonical", "ubuntu-24_04-lts", "server", node_agent_sku_id="batch.node.ubuntu 24.04"
)
#: The default image of container pools: Microsoft's Ubuntu 24.04 HPC image, which comes
#: with a Docker-compatible container runtime.
UBUNTU_LTS_CONTAINERS: Final = VmImage(
    "microsoft-dsvm", "ubuntu-hpc", "2404", node_agent_sku_id="batch.node.ubuntu 24.04"
)


@dataclass(frozen=True)
class ContainerRegistry:
    """A private container registry: its server and credentials (the password is a
    :class:`~batchexecutor.Secret`, never shown)."""

    server: str
    username: str | None = None
    password: Secret | None = None

    def __init__(
        self, server: str, username: str | None = None, password: str | Secret | None = None
    ) -> None:
        if not isinstance(server, str) or not server.strip():
            raise ValueError("ContainerRegistry needs its server, e.g. 'myregistry.azurecr.io'")
        if isinstance(password, str):
            password = Secret(password)
        if (username is None) != (password is None):
            raise ValueError("ContainerRegistry: give both username and password, or neither")
        object.__setattr__(self, "server", server.strip())
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "password", password)

    def reference(self) -> bm.ContainerRegistryReference:
        return bm.ContainerRegistryReference(
            registry_server=self.server,
            username=self.username,
            password=self.password.reveal() if self.password is not None else None,
        )


# --------------------------------------------------------------------------- autoscale


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _bounds(low: int, high: int, what: str) -> None:
    _count(low, f"{what} minimum")
    _count(high, f"{what} maximum")
    if low > high:
        raise ValueError(f"{what}: the minimum ({low}) exceeds the maximum ({high})")


# Tasks waiting (QUEUE: $ActiveTasks) or waiting and running (QUEUE_AND_RUNNING:
# $PendingTasks) over the last 15 minutes; nodes = ceil(tasks / slots per node), the
# integer division written as doAzureParallel did. With no task, the pool halves.
_QUEUE = """\
$samples = {metric}.GetSamplePercent(TimeInterval_Minute * 15);
$tasks = $samples < 70 ? max(0, {metric}.GetSample(1)) : max({metric}.GetSample(1), \
avg({metric}.GetSample(TimeInterval_Minute * 15)));
$slots = max(1, $TaskSlotsPerNode);
$current = $CurrentDedicatedNodes + $CurrentLowPriorityNodes;
$targetVMs = $tasks > 0 ? ($tasks + $slots - 1) / $slots : max(0, $current / 2);
$dedicated = max({min_nodes}, min($targetVMs, {max_nodes}));
$TargetDedicatedNodes = $dedicated;
$TargetLowPriorityNodes = max({spot_min}, min($targetVMs - $dedicated, {spot_max}));
$NodeDeallocationOption = taskcompletion;"""

_CALENDAR = """\
$now = time();
$workHours = $now.hour >= {start_hour} && $now.hour < {end_hour};
$isWeekday = $now.weekday >= 1 && $now.weekday <= 5;
{assignment}
$NodeDeallocationOption = taskcompletion;"""

_MAX_CPU = """\
$busy = min($CPUPercent.GetSample(TimeInterval_Minute * 10)) > {scale_up_above};
$idle = avg($CPUPercent.GetSample(TimeInterval_Minute * 60)) < {scale_down_below};
$grown = max($CurrentDedicatedNodes + 1, $CurrentDedicatedNodes * 1.1);
$nodes = $busy ? $grown : ($idle ? $CurrentDedicatedNodes * 0.9 : $CurrentDedicatedNodes);
$TargetDedicatedNodes = max({min_nodes}, min($nodes, {max_nodes}));
$NodeDeallocationOption = taskcompletion;"""


@dataclass(frozen=True)
class Autoscale:
    """An autoscale formula and how often Batch evaluates it (5 minutes to 168 hours).

    Use the templates (each keeps its formula text in :attr:`formula`):

    * :meth:`queue` -- enough nodes for the tasks waiting to run;
    * :meth:`queue_and_running` -- enough nodes for the tasks waiting and running;
    * :meth:`workday` / :meth:`weekend` -- a larger size on weekday working hours /
      at weekends (UTC), a smaller one otherwise;
    * :meth:`max_cpu` -- grow by 10% while every node is busy, shrink while idle;
    * :meth:`custom` -- any formula of Batch's autoscale language.
    """

    formula: str
    evaluation_interval: timedelta = timedelta(minutes=5)
    template: str = "custom"

    def __post_init__(self) -> None:
        if not isinstance(self.formula, str) or not self.formula.strip():
            raise ValueError("an autoscale formula must be a non-empty string")
        if len(self.formula.encode("utf-8")) > 8192:
            raise ValueError("an autoscale formula may not exceed 8 KB")
        if not isinstance(self.evaluation_interval, timedelta):
            raise TypeError("evaluation_interval must be a datetime.timedelta")
        if not MIN_INTERVAL <= self.evaluation_interval <= MAX_INTERVAL:
            raise ValueError(
                "evaluation_interval must be between 5 minutes and 168 hours (Batch's "
                f"limits), got {self.evaluation_interval}"
            )

    @classmethod
    def custom(
        cls, formula: str, *, evaluation_interval: timedelta = timedelta(minutes=5)
    ) -> Autoscale:
        """Any formula (``$TargetDedicatedNodes = ...;``), evaluated every interval."""
        return cls(formula, evaluation_interval, "custom")

    @classmethod
    def queue(
        cls,
        min_nodes: int = 0,
        max_nodes: int = 10,
        *,
        spot_min_nodes: int = 0,
        spot_max_nodes: int = 0,
        evaluation_interval: timedelta = timedelta(minutes=5),
    ) -> Autoscale:
        """Nodes for the tasks *waiting* to run: ``ceil(tasks / task slots per node)``.

        Dedicated nodes between ``min_nodes`` and ``max_nodes`` come first; spot nodes
        (between ``spot_min_nodes`` and ``spot_max_nodes``) make up the rest. Without
        waiting tasks the pool halves at each evaluation, down to the minimums; nodes
        leave once their tasks complete. (doAzureParallel's QUEUE template sized both
        kinds to the whole demand.)
        """
        return cls._queue("$ActiveTasks", "queue", locals())

    @classmethod
    def queue_and_running(
        cls,
        min_nodes: int = 0,
        max_nodes: int = 10,
        *,
        spot_min_nodes: int = 0,
        spot_max_nodes: int = 0,
        evaluation_interval: timedelta = timedelta(minutes=5),
    ) -> Autoscale:
        """As :meth:`queue`, counting running tasks too (``$PendingTasks``): a node
        running a task is kept until it completes."""
        return cls._queue("$PendingTasks", "queue_and_running", locals())

    @classmethod
    def _queue(cls, metric: str, template: str, given: Mapping[str, Any]) -> Autoscale:
        _bounds(given["min_nodes"], given["max_nodes"], "dedicated nodes")
        _bounds(given["spot_min_nodes"], given["spot_max_nodes"], "spot nodes")
        if given["max_nodes"] + given["spot_max_nodes"] == 0:
            raise ValueError("max_nodes and spot_max_nodes are both 0: the pool could not grow")
        formula = _QUEUE.format(
            metric=metric,
            min_nodes=given["min_nodes"],
            max_nodes=given["max_nodes"],
            spot_min=given["spot_min_nodes"],
            spot_max=given["spot_max_nodes"],
        )
        return cls(formula, given["evaluation_interval"], template)

    @classmethod
    def workday(
        cls,
        min_nodes: int = 0,
        max_nodes: int = 10,
        *,
        start_hour: int = 8,
        end_hour: int = 18,
        evaluation_interval: timedelta = timedelta(minutes=5),
    ) -> Autoscale:
        """``max_nodes`` dedicated nodes Monday to Friday from ``start_hour`` to
        ``end_hour`` (UTC), ``min_nodes`` otherwise."""
        return cls._calendar(
            "$TargetDedicatedNodes = ($workHours && $isWeekday) ? {high} : {low};",
            "workday",
            min_nodes,
            max_nodes,
            start_hour,
            end_hour,
            evaluation_interval,
        )

    @classmethod
    def weekend(
        cls,
        min_nodes: int = 0,
        max_nodes: int = 10,
        *,
        evaluation_interval: timedelta = timedelta(minutes=5),
    ) -> Autoscale:
        """``max_nodes`` dedicated nodes on Saturdays and Sundays (UTC), ``min_nodes``
        otherwise."""
        return cls._calendar(
            "$TargetDedicatedNodes = $isWeekday ? {low} : {high};",
            "weekend",
            min_nodes,
            max_nodes,
            0,
            24,
            evaluation_interval,
        )

    @classmethod
    def _calendar(
        cls,
        assignment: str,
        template: str,
        low: int,
        high: int,
        start_hour: int,
        end_hour: int,
        interval: timedelta,
    ) -> Autoscale:
        _bounds(low, high, "nodes")
        for name, hour in (("start_hour", start_hour), ("end_hour", end_hour)):
            if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 24:
                raise ValueError(f"{name} must be an hour from 0 to 24, got {hour!r}")
        if start_hour >= end_hour:
            raise ValueError(f"start_hour ({start_hour}) must come before end_hour ({end_hour})")
        lines = _CALENDAR.format(
            start_hour=start_hour,
            end_hour=end_hour,
            assignment=assignment.format(low=low, high=high),
        )
        if template == "weekend":  # hours do not matter at weekends
            lines = "\n".join(line for line in lines.splitlines() if "$workHours" not in line)
        return cls(lines, interval, template)

    @classmethod
    def max_cpu(
        cls,
        min_nodes: int = 1,
        max_nodes: int = 10,
        *,
        scale_up_above: float = 70.0,
        scale_down_below: float = 20.0,
        evaluation_interval: timedelta = timedelta(minutes=5),
    ) -> Autoscale:
        """Grow dedicated nodes by 10% (at least one) while the least busy sample of the
        last 10 minutes is above ``scale_up_above`` percent CPU; shrink by 10% while the
        last hour's average is below ``scale_down_below``; stay within the bounds."""
        _bounds(min_nodes, max_nodes, "nodes")
        for name, value in (
            ("scale_up_above", scale_up_above),
            ("scale_down_below", scale_down_below),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a percentage, got {value!r}")
            if not 0 <= value <= 100:
                raise ValueError(f"{name} must be a percentage from 0 to 100, got {value!r}")
        if scale_down_below >= scale_up_above:
            raise ValueError("scale_down_below must be lower than scale_up_above")
        formula = _MAX_CPU.format(
            min_nodes=min_nodes,
            max_nodes=max_nodes,
            scale_up_above=f"{scale_up_above:g}",
            scale_down_below=f"{scale_down_below:g}",
        )
        return cls(formula, evaluation_interval, "max_cpu")


# --------------------------------------------------------------------------- pool spec


def _strings(value: Iterable[str] | str | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise TypeError(f"{name} must be a list of strings, not one string")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"every item of {name} must be a non-empty string, got {item!r}")
        if "\n" in item or "\r" in item:
            raise ValueError(f"an item of {name} spans several lines: give one line per item")
    return items


@dataclass(frozen=True)
class PoolSpec:
    """A Batch pool for batchexecutor's tasks.

    ``pool_id`` (at most 64 letters, digits, ``-`` and ``_``) and ``vm_size`` (e.g.
    ``"Standard_D4s_v5"``) are required. The size is fixed (``dedicated_nodes``,
    ``spot_nodes``; default one dedicated node) or an :class:`Autoscale` formula (not
    both). ``task_slots_per_node`` tasks run at once on a node (Batch allows up to 4x its
    cores, at most 256).

    Node set-up: ``start_task_commands`` (bash lines, run first, as root-capable admin),
    ``packages`` (lines of a pip requirements file: requirement specifiers such as
    ``"numpy>=2"``, or options such as ``"--find-links DIR"`` / ``"--index-url URL"``),
    installed into a virtual environment at ``venv`` whose interpreter tasks use; a
    failed command or install fails the node's start task, visibly. Or
    ``container_image`` (with ``container_registry`` for a private one): the image is
    pulled onto every node (the default image is then a container-ready one).
    ``subnet_id`` joins the nodes to a virtual network subnet; ``metadata`` adds
    name/value pairs to the pool's own.
    """

    pool_id: str
    vm_size: str
    image: VmImage | None = None
    dedicated_nodes: int | None = None
    spot_nodes: int | None = None
    task_slots_per_node: int = 1
    autoscale: Autoscale | None = None
    start_task_commands: Sequence[str] = ()
    packages: Sequence[str] = ()
    venv: str = DEFAULT_VENV
    container_image: str | None = None
    container_registry: ContainerRegistry | None = None
    subnet_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    display_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pool_id, str) or not _ID_RE.match(self.pool_id):
            raise ValueError(
                f"pool_id must be 1-64 letters, digits, '-' and '_', got {self.pool_id!r}"
            )
        if not isinstance(self.vm_size, str) or not self.vm_size.strip():
            raise ValueError("vm_size is required, e.g. 'Standard_D4s_v5'")
        if self.image is not None and not isinstance(self.image, VmImage):
            raise TypeError(f"image must be a VmImage, got {type(self.image).__name__}")
        for name in ("dedicated_nodes", "spot_nodes"):
            value = getattr(self, name)
            if value is not None:
                _count(value, name)
        if self.autoscale is not None:
            if not isinstance(self.autoscale, Autoscale):
                raise TypeError("autoscale must be an Autoscale (e.g. Autoscale.queue(0, 10))")
            if self.dedicated_nodes is not None or self.spot_nodes is not None:
                raise ValueError(
                    "dedicated_nodes/spot_nodes and autoscale exclude each other: the "
                    "formula sets the pool's size (give the bounds to the Autoscale template)"
                )
        slots = self.task_slots_per_node
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= 256:
            raise ValueError(f"task_slots_per_node must be from 1 to 256, got {slots!r}")
        object.__setattr__(
            self, "start_task_commands", _strings(self.start_task_commands, "start_task_commands")
        )
        object.__setattr__(self, "packages", _strings(self.packages, "packages"))
        if not isinstance(self.venv, str) or not self.venv.startswith("/"):
            raise ValueError(f"venv must be an absolute path on the nodes, got {self.venv!r}")
        if self.container_image is not None:
            if not isinstance(self.container_image, str) or not self.container_image.strip():
                raise ValueError("container_image must be an image name, e.g. 'python:3.12'")
            if self.packages:
                raise ValueError(
                    "packages and container_image exclude each other: install the packages "
                    "in the container image"
                )
        if self.container_registry is not None:
            if self.container_image is None:
                raise ValueError("container_registry needs a container_image to pull from it")
            if not isinstance(self.container_registry, ContainerRegistry):
                raise TypeError("container_registry must be a ContainerRegistry")
        metadata = dict(self.metadata)
        for name, value in metadata.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError("metadata must map strings to strings")
            if name.startswith(METADATA_PREFIX):
                raise ValueError(f"metadata names starting with {METADATA_PREFIX!r} are reserved")
        object.__setattr__(self, "metadata", metadata)

    # -- derived -------------------------------------------------------------------------

    @property
    def vm_image(self) -> VmImage:
        """The image: ``image``, or the default for this spec."""
        if self.image is not None:
            return self.image
        return UBUNTU_LTS_CONTAINERS if self.container_image is not None else UBUNTU_LTS

    @property
    def target_nodes(self) -> tuple[int, int]:
        """``(dedicated, spot)`` for a fixed size (``(0, 0)`` with autoscale)."""
        if self.autoscale is not None:
            return 0, 0
        if self.dedicated_nodes is None and self.spot_nodes is None:
            return 1, 0
        return self.dedicated_nodes or 0, self.spot_nodes or 0

    @property
    def python(self) -> str:
        """The interpreter tasks run: the virtual environment's with ``packages``, else
        ``python3``."""
        return f"{self.venv}/bin/python" if self.packages else "python3"

    def start_task_script(self) -> str | None:
        """The start task's bash script, or ``None`` when there is nothing to set up."""
        if not self.start_task_commands and not self.packages:
            return None
        lines = ["# batchexecutor start task: prepares this node for batchexecutor's tasks."]
        if self.start_task_commands:
            lines.append("# start_task_commands")
            lines.extend(self.start_task_commands)
        if self.packages:
            venv = shlex.quote(self.venv)
            marker = "BATCHEXECUTOR_REQUIREMENTS"
            if any(line.strip() == marker for line in self.packages):
                raise ValueError(f"a packages line may not be {marker!r}")
            lines += [
                "# packages: a virtual environment for the tasks, and pip install into it",
                'as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }',
                'if ! python3 -c "import ensurepip, venv" 2>/dev/null; then',
                "    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q",
                "    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv",
                "fi",
                f"if ! mkdir -p {venv} 2>/dev/null; then",
                f'    as_root mkdir -p {venv} && as_root chown "$(id -u):$(id -g)" {venv}',
                "fi",
                f"python3 -m venv {venv}",
                f"cat > requirements.txt <<'{marker}'",
                *self.packages,
                marker,
                f"{venv}/bin/python -m pip install --disable-pip-version-check --no-input "
                "-r requirements.txt",
            ]
        return "\n".join(lines) + "\n"

    def start_task(self) -> bm.BatchStartTask | None:
        """The pool's start task (admin auto-user, ``waitForSuccess``), if any."""
        script = self.start_task_script()
        if script is None:
            return None
        command = (
            f'/bin/bash -c \'printf "%s" "${START_TASK_VARIABLE}" > {START_SCRIPT} && '
            f"exec /bin/bash -eo pipefail {START_SCRIPT}'"
        )
        return bm.BatchStartTask(
            command_line=command,
            environment_settings=[bm.EnvironmentSetting(name=START_TASK_VARIABLE, value=script)],
            user_identity=bm.UserIdentity(
                auto_user=bm.AutoUserSpecification(
                    scope=bm.AutoUserScope.POOL, elevation_level=bm.ElevationLevel.ADMIN
                )
            ),
            max_task_retry_count=0,
            wait_for_success=True,
        )

    def virtual_machine_configuration(self) -> bm.VirtualMachineConfiguration:
        image = self.vm_image
        container = None
        if self.container_image is not None:
            container = bm.BatchContainerConfiguration(
                type=bm.ContainerType.DOCKER_COMPATIBLE,
                container_image_names=[self.container_image],
                container_registries=[self.container_registry.reference()]
                if self.container_registry is not None
                else None,
            )
        return bm.VirtualMachineConfiguration(
            image_reference=image.image_reference(),
            node_agent_sku_id=image.node_agent_sku_id,
            container_configuration=container,
        )

    def environment_digest(self) -> str:
        """A digest of what a node's software depends on (image, start task, container,
        network), kept in the pool's metadata; passwords are left out of it."""
        start_task = self.start_task()
        parts: dict[str, Any] = {
            "virtualMachineConfiguration": _as_json(self.virtual_machine_configuration()),
            "startTask": _as_json(start_task) if start_task is not None else None,
            "subnetId": self.subnet_id,
        }
        for registry in (
            parts["virtualMachineConfiguration"]
            .get("containerConfiguration", {})
            .get("containerRegistries", [])
        ):
            registry.pop("password", None)
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def pool_metadata(self) -> list[bm.BatchMetadataItem]:
        from ._version import __version__

        entries = {
            METADATA_PREFIX + "kind": "pool",
            METADATA_PREFIX + "version": __version__,
            METADATA_PREFIX + "python": self.python,
            METADATA_PREFIX + "spec": self.environment_digest(),
            **self.metadata,
        }
        return [bm.BatchMetadataItem(name=k, value=v) for k, v in entries.items()]

    def to_create_options(self) -> bm.BatchPoolCreateOptions:
        """The ``Pools_CreatePool`` request body (an azure-batch model)."""
        dedicated, spot = self.target_nodes
        autoscale = self.autoscale
        return bm.BatchPoolCreateOptions(
            id=self.pool_id,
            display_name=self.display_name,
            vm_size=self.vm_size,
            virtual_machine_configuration=self.virtual_machine_configuration(),
            target_dedicated_nodes=None if autoscale else dedicated,
            target_low_priority_nodes=None if autoscale else spot,
            enable_auto_scale=autoscale is not None,
            auto_scale_formula=autoscale.formula if autoscale else None,
            auto_scale_evaluation_interval=autoscale.evaluation_interval if autoscale else None,
            network_configuration=bm.NetworkConfiguration(subnet_id=self.subnet_id)
            if self.subnet_id
            else None,
            start_task=self.start_task(),
            task_slots_per_node=self.task_slots_per_node,
            metadata=self.pool_metadata(),
        )


def _as_json(model: Any) -> dict[str, Any]:
    """A model as the SDK sends it (its JSON encoder, read-only fields left out)."""
    try:
        from azure.batch._utils.model_base import SdkJSONEncoder

        text = json.dumps(model, cls=SdkJSONEncoder, exclude_readonly=True)
    except ImportError:  # pragma: no cover - a future SDK layout
        text = json.dumps(model.as_dict(exclude_readonly=True), default=str)
    data: dict[str, Any] = json.loads(text)
    return data


# --------------------------------------------------------------------------- pool state


@dataclass(frozen=True)
class NodeFailure:
    """A node whose start task failed, or that reports errors."""

    node_id: str
    state: str
    exit_code: int | None
    failure: str | None
    stderr: str

    def __str__(self) -> str:
        head = f"node {self.node_id} ({self.state}"
        if self.exit_code is not None:
            head += f", start task exit code {self.exit_code}"
        head += ")"
        if self.failure:
            head += f": {self.failure}"
        if self.stderr.strip():
            body = "\n".join("    " + line for line in self.stderr.rstrip().splitlines())
            head += f"\n  start task stderr (its end):\n{body}"
        return head


@dataclass(frozen=True)
class PoolInfo:
    """A pool's state, sizes, node states and errors (``print()`` it for a summary)."""

    pool_id: str
    state: str
    allocation_state: str
    vm_size: str
    task_slots_per_node: int
    dedicated: tuple[int, int]
    """(current, target) dedicated nodes."""
    spot: tuple[int, int]
    """(current, target) spot (low-priority) nodes."""
    autoscale_formula: str | None
    node_states: dict[str, int]
    resize_errors: list[str]
    failures: list[NodeFailure]
    metadata: dict[str, str]

    @property
    def usable_nodes(self) -> int:
        return sum(self.node_states.get(state, 0) for state in _USABLE)

    @property
    def workers(self) -> int:
        """Tasks that can run at once now: usable nodes x task slots per node."""
        return self.usable_nodes * self.task_slots_per_node

    @property
    def created_by_batchexecutor(self) -> bool:
        return self.metadata.get(METADATA_PREFIX + "kind") == "pool"

    @property
    def python(self) -> str | None:
        """The task interpreter batchexecutor recorded when it created the pool."""
        return self.metadata.get(METADATA_PREFIX + "python")

    def __str__(self) -> str:
        lines = [
            f"pool {self.pool_id}: {self.state}, {self.allocation_state}, {self.vm_size}, "
            f"{self.task_slots_per_node} task slot(s) per node",
            f"  dedicated nodes: {self.dedicated[0]} (target {self.dedicated[1]}); "
            f"spot nodes: {self.spot[0]} (target {self.spot[1]})",
        ]
        if self.autoscale_formula:
            lines.append("  autoscale: " + " ".join(self.autoscale_formula.split()))
        states = ", ".join(f"{n} {s}" for s, n in sorted(self.node_states.items())) or "none"
        lines.append(f"  nodes: {states}; workers: {self.workers}")
        lines += [f"  resize error: {error}" for error in self.resize_errors]
        lines += ["  " + str(failure) for failure in self.failures]
        return "\n".join(lines)


def _text(value: object) -> str:
    return str(getattr(value, "value", value)) if value is not None else ""


def _failure(
    client: BatchClient, pool_id: str, node: bm.BatchNode, deadline: float, read: bool
) -> NodeFailure | None:
    info = node.start_task_info
    failed_start = info is not None and _text(info.result) == "failure"
    errors = list(node.errors or [])
    if not failed_start and not errors and _text(node.state) not in _FAILED:
        return None
    reasons = []
    if info is not None and info.failure_info is not None:
        reasons.append(f"{info.failure_info.code}: {info.failure_info.message}")
    reasons += [f"{e.code}: {e.message}" for e in errors if e.code or e.message]
    stderr = (
        read_node_file_tail(
            client, pool_id, str(node.id), START_TASK_STDERR, limit=STDERR_TAIL, deadline=deadline
        )
        if read
        else ""
    )
    return NodeFailure(
        node_id=str(node.id),
        state=_text(node.state),
        exit_code=info.exit_code if info is not None else None,
        failure=redact("; ".join(reasons)) if reasons else None,
        stderr=stderr,
    )


def _get_pool(client: BatchClient, pool_id: str, deadline: float) -> bm.BatchPool:
    pool: bm.BatchPool = call(f"get pool {pool_id!r}", client.get_pool, pool_id, deadline=deadline)
    return pool


def _nodes(client: BatchClient, pool_id: str, deadline: float) -> list[bm.BatchNode]:
    return call(
        f"list the nodes of pool {pool_id!r}",
        lambda: list(client.list_nodes(pool_id, select=_NODE_FIELDS)),
        deadline=deadline,
    )


def _info(
    client: BatchClient,
    pool: bm.BatchPool,
    nodes: Sequence[bm.BatchNode],
    deadline: float,
    *,
    read_stderr: int = MAX_FAILURES_READ,
) -> PoolInfo:
    pool_id = str(pool.id)
    states: dict[str, int] = {}
    for node in nodes:
        states[_text(node.state)] = states.get(_text(node.state), 0) + 1
    failures: list[NodeFailure] = []
    for node in nodes:
        failure = _failure(client, pool_id, node, deadline, read=len(failures) < read_stderr)
        if failure is not None:
            failures.append(failure)
    resize_errors = []
    for error in pool.resize_errors or []:
        details = [f"{v.name}={v.value}" for v in (error.error_values or []) if v.name]
        text = f"{error.code}: {error.message}"
        resize_errors.append(f"{text} ({', '.join(details)})" if details else text)
    return PoolInfo(
        pool_id=pool_id,
        state=_text(pool.state),
        allocation_state=_text(pool.allocation_state),
        vm_size=str(pool.vm_size or ""),
        task_slots_per_node=int(pool.task_slots_per_node or 1),
        dedicated=(int(pool.current_dedicated_nodes or 0), int(pool.target_dedicated_nodes or 0)),
        spot=(
            int(pool.current_low_priority_nodes or 0),
            int(pool.target_low_priority_nodes or 0),
        ),
        autoscale_formula=pool.auto_scale_formula if pool.enable_auto_scale else None,
        node_states=states,
        resize_errors=resize_errors,
        failures=failures,
        metadata={str(m.name): str(m.value) for m in pool.metadata or []},
    )


def pool_info(client: BatchClient, pool_id: str, *, deadline: float) -> PoolInfo:
    """The pool's state, node state counts, resize errors and start task failures (with
    the end of the stderr of the first few failed nodes)."""
    pool = _get_pool(client, pool_id, deadline)
    return _info(client, pool, _nodes(client, pool_id, deadline), deadline)


# --------------------------------------------------------------------------- operations


def _pool_or_none(client: BatchClient, pool_id: str, deadline: float) -> bm.BatchPool | None:
    try:
        return _get_pool(client, pool_id, deadline)
    except ResourceNotFoundError as error:
        if error_code(error) == "PoolNotFound":
            return None
        raise


def _differences(spec: PoolSpec, pool: bm.BatchPool) -> list[str]:
    found = []
    if str(pool.vm_size or "").lower() != spec.vm_size.lower():
        found.append(f"its VM size is {pool.vm_size}, not {spec.vm_size}")
    if spec.autoscale is not None:
        if not pool.enable_auto_scale:
            found.append("it has a fixed size, not the autoscale formula asked for")
        elif (pool.auto_scale_formula or "").strip() != spec.autoscale.formula.strip():
            found.append("its autoscale formula differs")
    elif pool.enable_auto_scale:
        found.append("it autoscales, where a fixed size was asked for")
    else:
        have = (int(pool.target_dedicated_nodes or 0), int(pool.target_low_priority_nodes or 0))
        want = spec.target_nodes
        if have != want:
            found.append(
                f"its target size is {have[0]} dedicated and {have[1]} spot nodes, not "
                f"{want[0]} and {want[1]}"
            )
    if int(pool.task_slots_per_node or 1) != spec.task_slots_per_node:
        found.append(
            f"it has {pool.task_slots_per_node} task slots per node, not {spec.task_slots_per_node}"
        )
    metadata = {str(m.name): str(m.value) for m in pool.metadata or []}
    digest = metadata.get(METADATA_PREFIX + "spec")
    if digest is None:
        found.append("it was not created by batchexecutor (its node set-up is unknown)")
    elif digest != spec.environment_digest():
        found.append(
            "it was created from another PoolSpec (image, start task, packages, container "
            "or subnet differ)"
        )
    return found


def ensure_pool(
    client: BatchClient,
    spec: PoolSpec,
    *,
    deadline: float,
    timeout: float | None = 1800.0,
    interval: tuple[float, float] = (1.0, 15.0),
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Create the pool, or reuse an existing one with its ID; ``True`` if created.

    A pool being deleted is waited for (up to ``timeout`` seconds), then created anew.
    A reused pool that differs from ``spec`` (VM size, size or formula, task slots,
    node set-up) is used as it is, with a :class:`PoolWarning` saying how it differs.
    """
    end = None if timeout is None else time.monotonic() + timeout
    wait = interval[0]
    announced = False
    while True:
        pool = _pool_or_none(client, spec.pool_id, deadline)
        if pool is None:
            try:
                call(
                    f"create pool {spec.pool_id!r}",
                    client.create_pool,
                    spec.to_create_options(),
                    deadline=deadline,
                )
            except HttpResponseError as error:
                if error_code(error) not in ("PoolExists", "PoolBeingDeleted"):
                    raise
                continue  # created (or being deleted) by someone else meanwhile: look again
            _log.info("created pool %s", spec.pool_id)
            return True
        if _text(pool.state) != "deleting":
            differences = _differences(spec, pool)
            if differences:
                warnings.warn(
                    f"pool {spec.pool_id!r} exists and is used as it is, but "
                    + "; ".join(differences)
                    + " (resize_pool() resizes it; delete it to create it from this PoolSpec)",
                    PoolWarning,
                    stacklevel=3,
                )
            return False
        if not announced:
            _log.info("pool %s is being deleted; waiting to create it anew", spec.pool_id)
            announced = True
        if end is not None and time.monotonic() >= end:
            raise PoolError(
                f"pool {spec.pool_id!r} is still being deleted after {timeout:g} s; "
                "try again later, or choose another pool_id",
                pool_id=spec.pool_id,
            )
        sleep(wait if end is None else max(0.0, min(wait, end - time.monotonic())))
        wait = min(wait * 1.5, interval[1])


def _steady(client: BatchClient, pool_id: str, deadline: float) -> bm.BatchPool:
    """The pool once its allocation is steady (a resize must not overlap another)."""
    end = time.monotonic() + deadline
    wait = 0.05
    while True:
        pool = _get_pool(client, pool_id, deadline)
        if _text(pool.state) == "deleting":
            raise PoolError(f"pool {pool_id!r} is being deleted", pool_id=pool_id)
        if _text(pool.allocation_state) == "steady" or time.monotonic() >= end:
            return pool
        time.sleep(min(wait, max(0.0, end - time.monotonic())))
        wait = min(wait * 1.5, 5.0)


def resize_pool(
    client: BatchClient,
    pool_id: str,
    *,
    dedicated: int | None = None,
    spot: int | None = None,
    autoscale: Autoscale | None = None,
    deadline: float,
) -> None:
    """Resize to ``dedicated``/``spot`` nodes (``None``: keep that target), switching
    autoscale off; or switch to the ``autoscale`` formula. Returns once the service took
    the request (nodes come and go in the background: see :func:`wait_for_nodes`)."""
    if autoscale is not None:
        if dedicated is not None or spot is not None:
            raise ValueError("give either a size (dedicated=, spot=) or autoscale=, not both")
        enable = bm.BatchPoolEnableAutoScaleOptions(
            auto_scale_formula=autoscale.formula,
            auto_scale_evaluation_interval=autoscale.evaluation_interval,
        )
        call(
            f"enable autoscale on pool {pool_id!r}",
            client.enable_pool_auto_scale,
            pool_id,
            enable,
            deadline=deadline,
        )
        return
    if dedicated is None and spot is None:
        raise ValueError("give dedicated=, spot= (or both), or autoscale=")
    for name, value in (("dedicated", dedicated), ("spot", spot)):
        if value is not None:
            _count(value, name)
    pool = _get_pool(client, pool_id, deadline)
    if pool.enable_auto_scale:
        call(
            f"disable autoscale on pool {pool_id!r}",
            client.disable_pool_auto_scale,
            pool_id,
            deadline=deadline,
        )
    pool = _steady(client, pool_id, deadline)
    if _text(pool.allocation_state) != "steady":
        raise PoolError(
            f"pool {pool_id!r} is still being resized (allocation state "
            f"{_text(pool.allocation_state)}); try again once it is steady",
            pool_id=pool_id,
        )
    options = bm.BatchPoolResizeOptions(
        target_dedicated_nodes=dedicated
        if dedicated is not None
        else int(pool.target_dedicated_nodes or 0),
        target_low_priority_nodes=spot
        if spot is not None
        else int(pool.target_low_priority_nodes or 0),
    )
    call(
        f"resize pool {pool_id!r}",
        client._resize_pool_internal,
        pool_id,
        options,
        deadline=deadline,
    )


def _delete(client: BatchClient, pool_id: str) -> bool:
    try:
        client._delete_pool_internal(pool_id)
    except ResourceNotFoundError as error:
        if error_code(error) == "PoolNotFound":
            return False
        raise
    return True


def delete_pool(client: BatchClient, pool_id: str, *, deadline: float) -> bool:
    """Ask Batch to delete the pool (one request; its nodes go in the background);
    ``False`` if there is no such pool. Tasks still running on it are ended."""
    return call(f"delete pool {pool_id!r}", _delete, client, pool_id, deadline=deadline)


def _summary(info: PoolInfo) -> str:
    states = ", ".join(f"{n} {s}" for s, n in sorted(info.node_states.items())) or "no nodes"
    return f"pool {info.pool_id}: {info.usable_nodes} node(s) ready ({states})"


def wait_for_nodes(
    client: BatchClient,
    pool_id: str,
    *,
    deadline: float,
    timeout: float | None = None,
    min_nodes: int = 1,
    interval: tuple[float, float] = (0.05, 15.0),
    progress: IO[str] | None = None,
) -> PoolInfo:
    """Wait until ``min_nodes`` nodes of the pool can run tasks; the pool's :class:`PoolInfo`.

    Raises :class:`PoolError` as soon as waiting cannot succeed: the pool's allocation is
    steady, no node is still starting, and too few nodes are usable because nodes failed
    their start task (the message carries a failed node's stderr) or became unusable, or
    because the pool could not get any node (its resize errors: quota, capacity, subnet
    ...); or the pool is being deleted. A pool steady at zero nodes with a target of zero
    (autoscale from zero) has nothing to wait for and is returned as it is.
    ``TimeoutError`` after ``timeout`` seconds, with the node states. ``progress``, a
    text stream, gets a line whenever the node states change.
    """
    if isinstance(min_nodes, bool) or not isinstance(min_nodes, int) or min_nodes < 1:
        raise ValueError(f"min_nodes must be a positive integer, got {min_nodes!r}")
    end = None if timeout is None else time.monotonic() + timeout
    wait = interval[0]
    shown = ""
    while True:
        pool = _get_pool(client, pool_id, deadline)
        if _text(pool.state) == "deleting":
            raise PoolError(f"pool {pool_id!r} is being deleted", pool_id=pool_id)
        nodes = _nodes(client, pool_id, deadline)
        states = [_text(node.state) for node in nodes]
        usable = sum(1 for state in states if state in _USABLE)
        failed = sum(1 for state in states if state in _FAILED)
        target = int(pool.target_dedicated_nodes or 0) + int(pool.target_low_priority_nodes or 0)
        counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
        line = f"pool {pool_id}: {usable} of {max(target, len(nodes))} node(s) ready" + (
            f" ({counts})" if counts else " (allocating)"
        )
        if progress is not None and line != shown:
            print(line, file=progress, flush=True)
            shown = line
        if usable >= min_nodes:
            return _info(client, pool, nodes, deadline, read_stderr=0)
        settled = _text(pool.allocation_state) == "steady" and all(
            state in _USABLE | _FAILED | _GONE for state in states
        )
        if settled and failed:
            info = _info(client, pool, nodes, deadline)
            failures = [f for f in info.failures if f.state in _FAILED] or info.failures
            raise PoolError(
                f"pool {pool_id!r}: {usable} usable node(s) where {min_nodes} were awaited; "
                f"{failed} of {len(nodes)} node(s) failed ({counts}).\n"
                + "\n".join(str(f) for f in failures[:1])
                + "\nFix the PoolSpec (packages, start_task_commands, image), then delete "
                "and recreate the pool; pool_info() shows every node.",
                pool_id=pool_id,
                failures=info.failures,
            )
        if settled and not nodes:
            info = _info(client, pool, nodes, deadline, read_stderr=0)
            if info.resize_errors:
                raise PoolError(
                    f"pool {pool_id!r} could not get any node: " + "; ".join(info.resize_errors),
                    pool_id=pool_id,
                )
            if target == 0:
                return info  # nothing to wait for (autoscale from zero, or sized zero)
        if end is not None and time.monotonic() >= end:
            raise TimeoutError(f"no usable node within {timeout:g} s: {line}")
        remaining = math.inf if end is None else max(0.0, end - time.monotonic())
        time.sleep(min(wait, remaining))
        wait = min(wait * 1.5, interval[1])
