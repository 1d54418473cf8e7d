"""Extract the part of Microsoft's Azure Batch OpenAPI spec that the contract tests need.

Usage (from the repository root)::

    python tests/contract/extract_spec.py [--source PATH] [--dest PATH]

``--source`` is a directory holding ``BatchService.json`` (the Azure Batch data-plane
OpenAPI 2.0 spec, api-version 2025-06-01.21.0), its ``examples/`` and the ``README.md`` that
records where those files came from. It defaults to ``../shared/reference/azure-batch-2025-06-01``
relative to the repository root. ``--dest`` defaults to ``tests/contract/spec``.

The script writes, into ``--dest``:

``batch-2025-06-01.json``
    ``info``; for every operation the emulator implements (``OPERATION_IDS``) its method, path,
    operationId, parameters (``$ref`` resolved, descriptions dropped), request body schema
    ``$ref`` and responses (status -> schema ``$ref`` plus declared headers); and every
    ``definitions`` entry reachable from those request bodies and responses (plus
    ``BatchError``), with ``description`` texts dropped to keep the committed file small.
``examples/``
    byte-for-byte copies of the source's example files whose ``operationId`` is implemented.
``NOTICE.md``
    licence and provenance: Microsoft's MIT notice, source repository, spec path, commit and
    sha256 (read from the source README and checked against the actual file).

Output is deterministic (sorted keys, fixed indentation, trailing newline), so running the
script again over the same source reproduces the committed files byte for byte;
``tests/contract/test_spec_subset.py`` checks that when the source is available.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "reference" / "azure-batch-2025-06-01"
DEFAULT_DEST = Path(__file__).resolve().parent / "spec"
SPEC_FILE_NAME = "batch-2025-06-01.json"
UPSTREAM_REPO = "Azure/azure-rest-api-specs"

#: Operations implemented by ``batchexecutor.emulator``; only these are extracted.
OPERATION_IDS: tuple[str, ...] = (
    "Pools_ListPools",
    "Pools_CreatePool",
    "Pools_GetPool",
    "Pools_UpdatePool",
    "Pools_DeletePool",
    "Pools_PoolExists",
    "Pools_ResizePool",
    "Pools_StopPoolResize",
    "Pools_EnablePoolAutoScale",
    "Pools_DisablePoolAutoScale",
    "Nodes_ListNodes",
    "Nodes_GetNode",
    "Nodes_ListNodeFiles",
    "Nodes_GetNodeFile",
    "Nodes_GetNodeFileProperties",
    "Jobs_ListJobs",
    "Jobs_CreateJob",
    "Jobs_GetJob",
    "Jobs_ReplaceJob",
    "Jobs_UpdateJob",
    "Jobs_DeleteJob",
    "Jobs_TerminateJob",
    "Jobs_DisableJob",
    "Jobs_EnableJob",
    "Jobs_GetJobTaskCounts",
    "Jobs_ListJobPreparationAndReleaseTaskStatus",
    "Tasks_CreateTaskCollection",
    "Tasks_ListTasks",
    "Tasks_CreateTask",
    "Tasks_GetTask",
    "Tasks_ReplaceTask",
    "Tasks_DeleteTask",
    "Tasks_ListTaskFiles",
    "Tasks_GetTaskFile",
    "Tasks_DeleteTaskFile",
    "Tasks_GetTaskFileProperties",
    "Tasks_ReactivateTask",
    "Tasks_TerminateTask",
    "Tasks_ListSubTasks",
)

#: Definitions included even when no extracted operation refers to them.
ALWAYS_INCLUDED_DEFINITIONS: tuple[str, ...] = ("BatchError",)

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
DEFINITION_REF_PREFIX = "#/definitions/"
PARAMETER_REF_PREFIX = "#/parameters/"
#: Parameter keys dropped from the extract (documentation or code-generation hints only).
DROPPED_PARAMETER_KEYS = frozenset({"description", "x-ms-parameter-location"})

MIT_LICENSE = """\
MIT License

Copyright (c) Microsoft Corporation.

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


class ExtractError(Exception):
    """The source directory does not look like the expected reference copy."""


def dump_json(data: Any) -> str:
    """Serialise ``data`` the one deterministic way the committed files use."""
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- spec extraction


def strip_schema(node: Any) -> Any:
    """Return a copy of a schema with documentation removed.

    Drops ``description`` keywords and ``x-ms-enum.values`` (the ``enum`` keyword keeps the
    allowed values). The names inside a ``properties`` mapping are property names, not
    keywords, so a property that happens to be called ``description`` (or ``default``, as in
    ``ExitConditions``) is kept.
    """
    if isinstance(node, list):
        return [strip_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "description":
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: strip_schema(prop) for name, prop in value.items()}
        elif key == "x-ms-enum" and isinstance(value, dict):
            # ``values`` only repeats ``enum`` with SDK member names and descriptions.
            out[key] = {k: v for k, v in value.items() if k != "values"}
        else:
            out[key] = strip_schema(value)
    return out


def definition_refs(node: Any) -> set[str]:
    """Names of all ``#/definitions/...`` targets referenced anywhere inside ``node``."""
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(DEFINITION_REF_PREFIX):
            found.add(ref[len(DEFINITION_REF_PREFIX) :])
        for value in node.values():
            found |= definition_refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= definition_refs(item)
    return found


def resolve_parameter(param: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """Resolve a ``#/parameters/...`` reference and drop documentation-only keys."""
    ref = param.get("$ref")
    if ref is not None:
        if not ref.startswith(PARAMETER_REF_PREFIX):
            raise ExtractError(f"unsupported parameter reference {ref!r}")
        param = shared[ref[len(PARAMETER_REF_PREFIX) :]]
    return {k: strip_schema(v) for k, v in param.items() if k not in DROPPED_PARAMETER_KEYS}


def compact_response(response: dict[str, Any]) -> dict[str, Any]:
    """A response as ``{"schema": ..., "headers": {name: {type, format}}}``."""
    out: dict[str, Any] = {}
    if "schema" in response:
        out["schema"] = strip_schema(response["schema"])
    headers = response.get("headers", {})
    out["headers"] = {
        name: {k: v for k, v in header.items() if k in ("type", "format")}
        for name, header in headers.items()
    }
    return out


def extract_operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The implemented operations, keyed by operationId."""
    shared_params: dict[str, Any] = spec.get("parameters", {})
    found: dict[str, dict[str, Any]] = {}
    for path, item in spec["paths"].items():
        common = item.get("parameters", [])
        for method in HTTP_METHODS:
            op = item.get(method)
            if op is None or op["operationId"] not in OPERATION_IDS:
                continue
            params = [resolve_parameter(p, shared_params) for p in [*common, *op["parameters"]]]
            body = [p for p in params if p["in"] == "body"]
            found[op["operationId"]] = {
                "operationId": op["operationId"],
                "method": method.upper(),
                "path": path,
                "parameters": params,
                "requestBody": (
                    {
                        "name": body[0]["name"],
                        "required": body[0].get("required", False),
                        "schema": body[0]["schema"],
                    }
                    if body
                    else None
                ),
                "responses": {
                    status: compact_response(resp) for status, resp in op["responses"].items()
                },
            }
    missing = sorted(set(OPERATION_IDS) - set(found))
    if missing:
        raise ExtractError(f"operations not found in the spec: {', '.join(missing)}")
    return found


def extract_definitions(
    spec: dict[str, Any], operations: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Every definition transitively referenced by request bodies and responses."""
    all_defs: dict[str, Any] = spec["definitions"]
    pending = set(ALWAYS_INCLUDED_DEFINITIONS)
    for op in operations.values():
        pending |= definition_refs(op["requestBody"])
        pending |= definition_refs(op["responses"])
    kept: dict[str, Any] = {}
    while pending:
        name = pending.pop()
        if name in kept:
            continue
        if name not in all_defs:
            raise ExtractError(f"dangling reference to #/definitions/{name}")
        kept[name] = strip_schema(all_defs[name])
        pending |= definition_refs(kept[name]) - kept.keys()
    return kept


def build_subset(spec: dict[str, Any], source_sha256: str) -> dict[str, Any]:
    operations = extract_operations(spec)
    return {
        "swagger": spec["swagger"],
        "info": strip_schema(spec["info"]),
        "x-extract": {
            "generator": "tests/contract/extract_spec.py",
            "source": "BatchService.json",
            "sourceSha256": source_sha256,
            "note": "Subset of the Azure Batch data-plane spec; see NOTICE.md.",
        },
        "operations": operations,
        "definitions": extract_definitions(spec, operations),
    }


# --------------------------------------------------------------------------- provenance


def read_provenance(readme: str) -> dict[str, Any]:
    """Pull the source facts out of the reference README (fails loudly if they are absent)."""

    def one(pattern: str, what: str) -> str:
        match = re.search(pattern, readme)
        if match is None:
            raise ExtractError(f"README.md: cannot find the {what}")
        return match.group(1)

    full_commits = dict(re.findall(r"\b([0-9a-f]{7}) = `([0-9a-f]{40})`", readme))
    examples: dict[str, dict[str, str]] = {}
    row = re.compile(r"^\| `examples/([^`]+)` \|[^|]*\|[^|]*\|[^|]*\| (\S+) \| `([0-9a-f]{7})` \|$")
    for line in readme.splitlines():
        match = row.match(line)
        if match:
            name, origin, short = match.groups()
            if short not in full_commits:
                raise ExtractError(f"README.md: no full commit id for {short}")
            examples[name] = {"from": origin, "commit": full_commits[short]}
    return {
        "spec_path": one(r"Spec path: `([^`]+)`", "spec path"),
        "commit": one(r"Spec commit: `([0-9a-f]{40})`", "spec commit"),
        "sha256": one(r"sha256 `([0-9a-f]{64})`", "spec sha256"),
        "data_plane_examples": one(r"`(specification/[^`]+/examples/)` \(\"data-plane\"", "dir"),
        "typespec_examples": one(r"`(specification/[^`]+/examples/[^`]+/)` \(\"typespec\"", "dir"),
        "examples": examples,
    }


def render_notice(
    info: dict[str, Any],
    provenance: dict[str, Any],
    source_bytes: int,
    source_sha256: str,
    example_names: list[str],
) -> str:
    lines = [
        "# Azure Batch REST API spec extract: licence and provenance",
        "",
        f"`{SPEC_FILE_NAME}` in this directory is an extract of the Azure Batch data-plane",
        f"OpenAPI 2.0 spec ({info['title']}, `info.version` {info['version']}), produced by",
        "`tests/contract/extract_spec.py`: the operations the emulator implements, the",
        "definitions they reference, with description texts removed. Re-running the script over",
        "the same source reproduces it byte for byte. The files in `examples/` are unmodified",
        "copies of the spec's example files for those operations.",
        "",
        "## Source",
        "",
        f"- Repository: https://github.com/{UPSTREAM_REPO}",
        f"- Spec path: `{provenance['spec_path']}`",
        f"- Commit: `{provenance['commit']}`",
        f"- Source file: {source_bytes} bytes, sha256 `{source_sha256}`",
        "- Example files, from the same repository, either from the spec's folder",
        f"  `{provenance['data_plane_examples']}` (data-plane) or from the TypeSpec folder",
        f"  `{provenance['typespec_examples']}` (typespec):",
        "",
        "| File | From | Commit |",
        "|---|---|---|",
    ]
    for name in example_names:
        fact = provenance["examples"].get(name)
        if fact is None:
            raise ExtractError(f"README.md does not record the provenance of examples/{name}")
        lines.append(f"| `examples/{name}` | {fact['from']} | `{fact['commit']}` |")
    lines += [
        "",
        "## Licence",
        "",
        f"The {UPSTREAM_REPO} repository is published by Microsoft under the MIT License:",
        "",
        "```text",
        *MIT_LICENSE.rstrip("\n").splitlines(),
        "```",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- driver


def extract(source: Path, dest: Path) -> list[Path]:
    """Write the extract, the examples and NOTICE.md into ``dest``; return the files written."""
    spec_path = source / "BatchService.json"
    raw = spec_path.read_bytes()
    sha256 = hashlib.sha256(raw).hexdigest()
    provenance = read_provenance((source / "README.md").read_text(encoding="utf-8"))
    if provenance["sha256"] != sha256:
        raise ExtractError(
            f"{spec_path} has sha256 {sha256}, but README.md records {provenance['sha256']}"
        )
    spec = json.loads(raw)
    subset = build_subset(spec, sha256)

    written: list[Path] = []
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / SPEC_FILE_NAME
    target.write_text(dump_json(subset), encoding="utf-8", newline="\n")
    written.append(target)

    examples_dest = dest / "examples"
    examples_dest.mkdir(exist_ok=True)
    example_names: list[str] = []
    for example in sorted((source / "examples").glob("*.json")):
        data = example.read_bytes()
        if json.loads(data).get("operationId") not in OPERATION_IDS:
            continue
        (examples_dest / example.name).write_bytes(data)
        written.append(examples_dest / example.name)
        example_names.append(example.name)
    stale = sorted(p.name for p in examples_dest.glob("*.json") if p.name not in set(example_names))
    if stale:
        raise ExtractError(f"{examples_dest} holds files the source does not: {stale}")

    notice = dest / "NOTICE.md"
    notice.write_text(
        render_notice(subset["info"], provenance, len(raw), sha256, example_names),
        encoding="utf-8",
        newline="\n",
    )
    written.append(notice)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--source",
        type=Path,
        default=DEFAULT_SOURCE,
        help="directory holding BatchService.json, examples/ and README.md",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=DEFAULT_DEST,
        help="output directory (default: tests/contract/spec)",
    )
    args = parser.parse_args(argv)
    try:
        written = extract(args.source, args.dest)
    except (ExtractError, OSError) as exc:
        print(f"extract_spec: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
