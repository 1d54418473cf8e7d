"""``batchexecutor pool create|show|resize|delete|list``, run as a real subprocess.

The stacks are those of ``tests/test_cli.py`` (``local``: ``--local`` and the emulator
daemon of a temporary home; ``env``: the session's emulator configured by environment
variables), and so are the checks of every run: the account key never appears in any
output, and errors are one message and an exit code, never a traceback. Pools are made by
the CLI and checked with the plain SDK; a start task really runs (``pip install`` of a
wheel built here into a virtual environment in a temporary directory).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from batchexecutor import Autoscale
from batchexecutor._cli import EXIT_FAILED, EXIT_NOT_DONE, EXIT_NOT_FOUND, EXIT_USAGE
from batchexecutor._daemon import running_daemon, stop_daemon
from tests.conftest import wait_for
from tests.executor.conftest import batch_service  # noqa: F401 (a fixture)
from tests.executor.test_pool import PROBE, build_wheel
from tests.test_cli import (  # noqa: F401 (fixtures)
    TIMEOUT,
    Stack,
    answer_on_a_terminal,
    clean_environment,
    local_home,
    run,
    stack,
)

VM = "standard_d2s_v3"
ACTIONS = ("create", "show", "resize", "delete", "list")


@dataclass
class PoolStack(Stack):
    """A stack whose ``cli`` runs ``batchexecutor pool ...``; ``made`` are deleted after."""

    made: list[str] = field(default_factory=list)

    def cli(self, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        return super().cli("pool", *args, **options)

    def new_id(self) -> str:
        pool_id = f"cli-{uuid.uuid4().hex[:10]}"
        self.made.append(pool_id)
        return pool_id

    def pool(self, pool_id: str) -> Any:
        return self.sdk.get_pool(pool_id)

    def failed(self, args: list[str], code: int, *fragments: str) -> str:
        """Run ``args``: its exit code is ``code``, nothing on stdout, and its error is the
        last line of stderr, with ``fragments`` (before it: argparse's usage, or --wait's
        progress)."""
        done = self.cli(*args)
        assert done.returncode == code, done
        assert done.stdout == "", done.stdout
        *before, error = done.stderr.splitlines()
        assert error.startswith(f"batchexecutor pool {args[0]}: "), done.stderr
        assert all(line.startswith(("usage:", " ", "pool ")) for line in before), done.stderr
        for fragment in fragments:
            assert fragment in error, done.stderr
        return error


@pytest.fixture
def pools(stack: Stack) -> Iterator[PoolStack]:  # noqa: F811 (the fixture)
    found = PoolStack(**{f.name: getattr(stack, f.name) for f in fields(Stack)})
    yield found
    for pool_id in found.made:
        with contextlib.suppress(Exception):
            stack.sdk._delete_pool_internal(pool_id)


#: For the slower tests, one stack is enough: the environment's.
ENV_ONLY = pytest.mark.parametrize("stack", ["env"], indirect=True)
#: Arguments are checked before the stack matters: one stack is enough.
LOCAL_ONLY = pytest.mark.parametrize("stack", ["local"], indirect=True)


def metadata(pool: Any) -> dict[str, str]:
    return {str(item.name): str(item.value) for item in pool.metadata or []}


# --------------------------------------------------------------------------- help


def test_pool_help_everywhere() -> None:
    env = clean_environment()
    top = run(["--help"], env)
    assert top.returncode == 0 and "pool" in top.stdout
    group = run(["pool", "--help"], env)
    assert group.returncode == 0 and group.stdout.startswith("usage: batchexecutor pool")
    for action in ACTIONS:
        assert action in group.stdout
        shown = run(["pool", action, "--help"], env)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith(f"usage: batchexecutor pool {action}")
        assert "exit codes:" in shown.stdout and "no such job, task or pool" in shown.stdout
    create = " ".join(run(["pool", "create", "--help"], env).stdout.split())  # unwrapped
    for option in ("--vm-size", "--autoscale", "--package", "--requirements", "--wait", "--spec"):
        assert option in create
    assert "started if none is running" in create
    assert "never started" in " ".join(run(["pool", "show", "--help"], env).stdout.split())
    missing = run(["pool"], env)
    assert missing.returncode == EXIT_USAGE and "usage:" in missing.stderr


# --------------------------------------------------------------------------- the life of a pool


def test_create_reuse_show_resize_list_delete(pools: PoolStack) -> None:
    pool_id = pools.new_id()
    made = pools.cli("create", pool_id, "--vm-size", VM, "--slots", "2", "--wait", "60", "--json")
    assert made.returncode == 0, made.stderr
    document = json.loads(made.stdout)
    assert document["created"] is True and document["warnings"] == []
    info = document["pool"]
    assert info["pool_id"] == pool_id and info["usable_nodes"] == 1 and info["workers"] == 2
    assert info["dedicated"]["target"] == 1 and info["spot"] == {"current": 0, "target": 0}
    assert info["created_by_batchexecutor"] is True and info["python"] == "python3"
    assert "ready" in made.stderr  # --wait's progress, on stderr
    pool = pools.pool(pool_id)
    assert pool.vm_size == VM and pool.task_slots_per_node == 2
    assert metadata(pool)["batchexecutor.kind"] == "pool"

    # The same ID again with other options: reused as it is, the differences on stderr.
    again = pools.cli("create", pool_id, "--vm-size", VM, "--nodes", "2", "--slots", "2")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"pool {pool_id} exists ") and "reused as it is" in again.stdout
    assert "warning:" in again.stderr
    assert "target size is 1 dedicated and 0 spot nodes, not 2 and 0" in again.stderr
    assert f"batchexecutor pool resize {pool_id}" in again.stderr
    assert pools.pool(pool_id).target_dedicated_nodes == 1

    shown = pools.cli("show", pool_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"pool {pool_id}: active, steady, {VM}, 2 task slot(s) per node"
    assert "  dedicated nodes: 1 (target 1); spot nodes: 0 (target 0)" in lines
    assert "  nodes: 1 idle; workers: 2" in lines
    data = json.loads(pools.cli("show", pool_id, "--json").stdout)
    assert data["state"] == "active" and data["allocation_state"] == "steady"
    assert data["node_states"] == {"idle": 1} and data["failures"] == []
    assert data["resize_errors"] == [] and data["autoscale_formula"] is None

    resized = pools.cli("resize", pool_id, "--nodes", "2")
    assert resized.returncode == 0, resized.stderr
    assert resized.stdout.startswith(f"pool {pool_id}: resizing to 2 dedicated and 0 spot")
    assert pools.pool(pool_id).target_dedicated_nodes == 2
    wait_for(lambda: pools.pool(pool_id).current_dedicated_nodes == 2, timeout=TIMEOUT)

    table = pools.cli("list")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "Id",
        "State",
        "Allocation",
        "VmSize",
        "Dedicated",
        "Spot",
        "Slots",
        "Scaling",
        "Kind",
    ]
    by_id = {row.split()[0]: row.split()[1:] for row in rows}
    assert by_id[pool_id][3:] == ["2/2", "0/0", "2", "fixed", "batchexecutor"]
    listed = {pool["id"]: pool for pool in json.loads(pools.cli("list", "--json").stdout)}
    assert listed[pool_id]["created_by_batchexecutor"] is True
    assert listed[pool_id]["dedicated"] == {"current": 2, "target": 2}
    # The stack's own pool was made with the plain SDK: listed, not marked as ours.
    foreign = "pool" if pools.name == "env" else "local"
    assert by_id[foreign][-1] == "-" and listed[foreign]["created_by_batchexecutor"] is False

    refused = pools.failed(["delete", pool_id], EXIT_USAGE, "without confirmation", "--yes")
    assert "stdin is not a terminal" in refused
    declined = answer_on_a_terminal(pools, pool_id, "n")
    assert declined.returncode == EXIT_FAILED, declined
    assert f"delete pool {pool_id} (active, 2 idle)" in declined.stderr
    assert "was not deleted" in declined.stderr
    assert pools.pool(pool_id).state == "active"
    confirmed = answer_on_a_terminal(pools, pool_id, "y")
    assert confirmed.returncode == 0, confirmed
    assert confirmed.stdout.startswith(f"deleting pool {pool_id}:")
    wait_for(lambda: pool_id not in {p.id for p in pools.sdk.list_pools()}, timeout=TIMEOUT)
    pools.failed(["delete", pool_id, "--yes"], EXIT_NOT_FOUND, f"no pool '{pool_id}'")
    pools.failed(["show", pool_id], EXIT_NOT_FOUND, f"no pool '{pool_id}'", "pool list")


def test_autoscale_templates_and_formulas(pools: PoolStack, tmp_path: Path) -> None:
    pool_id = pools.new_id()
    made = pools.cli(
        "create", pool_id, "--vm-size", VM, "--slots", "4", "--autoscale", "queue:0:2:0:3"
    )
    assert made.returncode == 0, made.stderr
    assert "autoscale (queue)" in made.stdout
    pool = pools.pool(pool_id)
    expected = Autoscale.queue(0, 2, spot_min_nodes=0, spot_max_nodes=3)
    assert pool.enable_auto_scale and pool.auto_scale_formula == expected.formula
    assert pool.auto_scale_evaluation_interval == timedelta(minutes=5)

    formula = tmp_path / "formula.txt"
    formula.write_text("$TargetDedicatedNodes = 1;\n", encoding="utf-8")
    switched = pools.cli(
        "resize",
        pool_id,
        "--autoscale-formula",
        f"@{formula}",
        "--autoscale-interval",
        "10m",
        "--json",
    )
    assert switched.returncode == 0, switched.stderr
    request = json.loads(switched.stdout)["resize"]["autoscale"]
    assert request["template"] == "custom" and request["evaluation_interval"] == 600
    pool = pools.pool(pool_id)
    assert pool.auto_scale_formula.strip() == "$TargetDedicatedNodes = 1;"
    assert pool.auto_scale_evaluation_interval == timedelta(minutes=10)

    wait_for(lambda: pools.pool(pool_id).allocation_state == "steady", timeout=TIMEOUT)
    fixed = pools.cli("resize", pool_id, "--nodes", "1", "--spot-nodes", "0")
    assert fixed.returncode == 0, fixed.stderr
    pool = pools.pool(pool_id)
    assert not pool.enable_auto_scale and pool.target_dedicated_nodes == 1
    back = pools.cli("resize", pool_id, "--autoscale", "WORKDAY:1:4")  # any case, no spot
    assert back.returncode == 0, back.stderr
    assert pools.pool(pool_id).auto_scale_formula == Autoscale.workday(1, 4).formula


def test_create_from_a_spec_file_with_options_winning(pools: PoolStack, tmp_path: Path) -> None:
    pool_id = pools.new_id()
    spec = tmp_path / "pool.toml"
    spec.write_text(
        f'''pool_id = "{pool_id}"
vm_size = "{VM}"
task_slots_per_node = 3
autoscale = "max_cpu:1:3"
start_task_commands = ["echo set-up"]
metadata = {{ team = "research" }}
display_name = "from a spec"

[image]
publisher = "canonical"
offer = "0001-com-ubuntu-server-jammy"
sku = "22_04-lts"
node_agent_sku_id = "batch.node.ubuntu 22.04"
''',
        encoding="utf-8",
    )
    made = pools.cli("create", pool_id, "--spec", str(spec), "--slots", "2", "--json")
    assert made.returncode == 0, made.stderr
    pool = pools.pool(pool_id)
    assert pool.task_slots_per_node == 2  # the option won over the file
    assert pool.display_name == "from a spec"
    assert pool.auto_scale_formula == Autoscale.max_cpu(1, 3).formula
    assert metadata(pool)["team"] == "research"
    image = pool.virtual_machine_configuration
    assert image.image_reference.sku == "22_04-lts"
    assert image.node_agent_sku_id == "batch.node.ubuntu 22.04"
    assert pool.start_task is not None and pool.start_task.wait_for_success
    other = tmp_path / "other.toml"
    other.write_text('pool_id = "someone-else"\nvm_size = "x"\n', encoding="utf-8")
    pools.failed(
        ["create", pool_id, "--spec", str(other)], EXIT_USAGE, "is for pool 'someone-else'"
    )


@ENV_ONLY
def test_packages_are_installed_by_the_start_task(pools: PoolStack, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        f"# the probe, from a local directory only\n--no-index\n--find-links {wheels}\n\n",
        encoding="utf-8",
    )
    pool_id = pools.new_id()
    venv = tmp_path / "venv"
    made = pools.cli(
        "create",
        pool_id,
        "--vm-size",
        VM,
        "--requirements",
        str(requirements),
        "--package",
        PROBE,
        "--venv",
        str(venv),
        "--wait",
        "90",
    )
    assert made.returncode == 0, made.stderr
    assert "3 package line(s)" in made.stdout and "nodes: 1 idle" in made.stdout
    assert list(venv.glob(f"lib/python*/site-packages/{PROBE}/__init__.py"))
    assert metadata(pools.pool(pool_id))["batchexecutor.python"] == f"{venv}/bin/python"

    broken = pools.new_id()
    failed = pools.cli(
        "create",
        broken,
        "--vm-size",
        VM,
        "--package=--no-index",
        "--package",
        "bxprobe-does-not-exist",
        "--venv",
        str(tmp_path / "venv2"),
        "--wait",
        "90",
    )
    assert failed.returncode == EXIT_FAILED, failed
    assert "starttaskfailed" in failed.stderr and "bxprobe-does-not-exist" in failed.stderr
    shown = json.loads(pools.cli("show", broken, "--json").stdout)
    assert shown["node_states"] == {"starttaskfailed": 1}
    (failure,) = shown["failures"]
    assert failure["exit_code"] not in (None, 0)
    assert "bxprobe-does-not-exist" in failure["stderr"]
    text = pools.cli("show", broken).stdout
    assert "start task stderr (its end):" in text and "bxprobe-does-not-exist" in text


@ENV_ONLY
def test_wait_times_out_with_its_own_exit_code(pools: PoolStack, tmp_path: Path) -> None:
    pool_id = pools.new_id()
    args = ["create", pool_id, "--vm-size", VM, "--start-command", "sleep 30", "--wait", "1"]
    pools.failed(args, EXIT_NOT_DONE, "no usable node within 1 s", f"pool show {pool_id}")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["create", "{id}"], ["--vm-size is required"]),
        (["create", "{id}", "--vm-size", VM, "--nodes", "-1"], ["argument --nodes", "'-1'"]),
        (["create", "{id}", "--vm-size", VM, "--slots", "0"], ["1 to 256 task slots"]),
        (
            ["create", "{id}", "--vm-size", VM, "--nodes", "1", "--autoscale", "queue"],
            ["--nodes and --autoscale exclude each other"],
        ),
        (
            ["create", "{id}", "--vm-size", VM, "--autoscale", "quee:0:2"],
            ["unknown autoscale template 'quee'", "did you mean queue?"],
        ),
        (
            ["create", "{id}", "--vm-size", VM, "--autoscale", "queue:5:2"],
            ["the minimum (5) exceeds the maximum (2)"],
        ),
        (
            ["create", "{id}", "--vm-size", VM, "--autoscale", "weekend:0:2:0:2"],
            ["expected weekend or weekend:MIN:MAX"],
        ),
        (
            [
                "create",
                "{id}",
                "--vm-size",
                VM,
                "--autoscale",
                "queue",
                "--autoscale-interval",
                "1m",
            ],
            ["between 5 minutes and 168 hours"],
        ),
        (
            ["create", "{id}", "--vm-size", VM, "--autoscale-interval", "10m"],
            ["--autoscale-interval goes with --autoscale"],
        ),
        (
            ["create", "{id}", "--vm-size", VM, "--image", "canonical:ubuntu"],
            ["--node-agent-sku"],
        ),
        (
            ["create", "{id}", "--vm-size", VM, "--image", "a:b", "--node-agent-sku", "x"],
            ["expected PUBLISHER:OFFER:SKU[:VERSION]"],
        ),
        (
            ["create", "{id}", "--vm-size", VM, "--node-agent-sku", "x"],
            ["--node-agent-sku goes with --image"],
        ),
        (
            ["create", "{id}", "--vm-size", VM, "--package", "x", "--container-image", "y"],
            ["packages and container_image exclude each other"],
        ),
        (
            ["create", "{id}", "--vm-size", VM, "--requirements", "/no/such/requirements.txt"],
            ["cannot read /no/such/requirements.txt"],
        ),
        (["create", "{id}", "--vm-size", VM, "--wait", "soon"], ["--wait must be a number"]),
        (["create", "{id}", "--vm-size", VM, "--spec", "/no/such.toml"], ["cannot read"]),
        (["show", "not a pool id"], ["invalid pool ID 'not a pool id'"]),
        (["resize", "{id}"], ["say how to resize", "--nodes N"]),
        (
            ["resize", "{id}", "--autoscale", "queue", "--autoscale-formula", "x"],
            ["exclude each other"],
        ),
    ],
)
@LOCAL_ONLY
def test_bad_arguments_exit_2_naming_the_problem(
    pools: PoolStack, args: list[str], fragments: list[str]
) -> None:
    pool_id = pools.new_id()
    pools.failed([arg.replace("{id}", pool_id) for arg in args], EXIT_USAGE, *fragments)
    assert pool_id not in {pool.id for pool in pools.sdk.list_pools()}  # nothing was made


@LOCAL_ONLY
def test_bad_files_exit_2_naming_the_line_or_key(pools: PoolStack, tmp_path: Path) -> None:
    pool_id = pools.new_id()
    nested = tmp_path / "requirements.txt"
    nested.write_text("numpy\n-r other.txt\n", encoding="utf-8")
    pools.failed(
        ["create", pool_id, "--vm-size", VM, "--requirements", str(nested)],
        EXIT_USAGE,
        "line 2",
        "refers to another file",
    )
    spec = tmp_path / "spec.toml"
    for text, fragment in (
        ('vm_sise = "x"\n', "unknown key 'vm_sise' (did you mean 'vm_size'?)"),
        ('vm_size = "x"\nimage = "a:b:c"\n', "write it as a table"),
        ('vm_size = "x"\nautoscale = { formula = 3 }\n', "a template string"),
        ("vm_size = x\n", "not valid TOML"),
        ('vm_size = "x"\npackages = "numpy"\n', "packages must be a list of strings"),
    ):
        spec.write_text(text, encoding="utf-8")
        pools.failed(["create", pool_id, "--spec", str(spec)], EXIT_USAGE, fragment)


def test_a_missing_pool_exits_3(pools: PoolStack) -> None:
    for args in (["show", "no-such-pool"], ["resize", "no-such-pool", "--nodes", "1"]):
        pools.failed(args, EXIT_NOT_FOUND, "no pool 'no-such-pool'", "batchexecutor pool list")
    pools.failed(["delete", "no-such-pool", "--yes"], EXIT_NOT_FOUND, "no pool 'no-such-pool'")


# --------------------------------------------------------------------------- configuration


def test_no_configuration_says_what_to_set(tmp_path: Path) -> None:
    env = clean_environment(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    for args in (["pool", "list"], ["pool", "show", "p"], ["pool", "delete", "p", "--yes"]):
        done = run(args, env)
        assert done.returncode == EXIT_USAGE, done
        assert "AZURE_BATCH_ENDPOINT" in done.stderr and "--local" in done.stderr
        assert "the pool commands need only the Batch settings" in done.stderr


@ENV_ONLY
def test_pool_commands_need_no_storage(pools: PoolStack) -> None:
    batch_only = {
        name: value
        for name, value in pools.env.items()
        if not name.startswith(("AZURE_STORAGE_", "BATCHEXECUTOR_STORAGE_"))
    }
    broken = dict(batch_only, AZURE_STORAGE_KEY="not a key")  # storage is not even read
    for env in (batch_only, broken):
        done = run(["pool", "list", "--json"], env, secrets=pools.secrets)
        assert done.returncode == 0, done.stderr
        assert "pool" in {pool["id"] for pool in json.loads(done.stdout)}


def test_only_create_starts_the_local_daemon(tmp_path: Path) -> None:
    home = tmp_path / "pool-home"
    env = clean_environment(BATCHEXECUTOR_HOME=str(home))
    for args in (["pool", "list", "--local"], ["pool", "show", "p", "--home", str(home)]):
        done = run(args, env)
        assert done.returncode == EXIT_FAILED and done.stdout == ""
        assert "no local daemon is running" in done.stderr and "pool create --local" in done.stderr
    bad = run(["pool", "create", "p", "--local", "--autoscale", "queue:3:1"], env)
    assert bad.returncode == EXIT_USAGE and "--vm-size is required" not in bad.stderr
    assert "exceeds the maximum" in bad.stderr  # checked before anything starts
    assert running_daemon(home) is None
    try:
        made = run(["pool", "create", "p", "--local", "--vm-size", VM, "--nodes", "0"], env)
        assert made.returncode == 0, made.stderr
        daemon = running_daemon(home)
        assert daemon is not None
        assert daemon.account_key not in made.stdout + made.stderr
        assert made.stdout.startswith("created pool p on the local emulator")
        listed = run(["pool", "list", "--local", "--json"], env, secrets=[daemon.account_key])
        assert [pool["id"] for pool in json.loads(listed.stdout)] == ["p"]
    finally:
        stop_daemon(home)
