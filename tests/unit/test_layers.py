"""The package's layers: no module imports one from a higher layer.

Every module of ``containerd_client`` is parsed with :mod:`ast` (nothing is
imported) and put in a layer by :data:`LAYER_OF`. Low to high::

    generated -> foundations -> rpc -> machinery -> objects -> testing

A module may import modules of its own layer and of the layers below it.
Runtime imports count wherever they stand, function-local ones included;
imports under ``if TYPE_CHECKING:`` are allowed to point upward, because they
only feed annotations and never run.

A new module fails :func:`test_every_module_has_a_layer` until it is added to
:data:`LAYER_OF`; a key names a module or a whole package (``"cio"`` covers
``cio.py`` and every module of a ``cio/`` package), and the longest key that
matches a module wins.
"""

from __future__ import annotations

import ast
import pathlib
import textwrap

import attrs
import pytest

import containerd_client

PACKAGE = "containerd_client"
ROOT = pathlib.Path(containerd_client.__file__).parent

LAYERS = ("generated", "foundations", "rpc", "machinery", "objects", "testing")

#: Module (or package) name inside ``containerd_client`` -> layer.
#: ``""`` is the package's own ``__init__``, the public front door.
LAYER_OF: dict[str, str] = {
    # protoc output
    "_pb": "generated",
    # errors, small value types and the helpers they need; no RPC
    "errors": "foundations",
    "types": "foundations",
    "_convert": "foundations",
    "_ids": "foundations",
    "_typeurl": "foundations",
    "_features": "foundations",
    "metrics": "foundations",
    "_socket": "foundations",
    "_html": "foundations",
    "_watchdog": "foundations",  # stdlib only; used by _ssh and the testing daemons
    # the gRPC wrapper and its retry policy
    "_rpc": "rpc",
    "_retry": "rpc",
    "_ssh": "rpc",
    # plumbing that knows no containerd objects
    "cio": "machinery",
    "_serial": "machinery",
    "_archive": "machinery",
    "_criu": "machinery",
    "_copy": "machinery",
    "_mount": "machinery",
    "_teardown": "machinery",
    "_registry": "machinery",
    "spec": "machinery",
    "network": "machinery",
    # the public objects and stores
    "": "objects",
    "client": "objects",
    "containers": "objects",
    "tasks": "objects",
    "wait": "objects",
    "processes": "objects",
    "images": "objects",
    "content": "objects",
    "snapshots": "objects",
    "namespaces": "objects",
    "leases": "objects",
    "events": "objects",
    "pull": "objects",
    "files": "objects",
    "sweep": "objects",
    # the command line (python -m containerd_client): the public objects, and above them
    "cli": "objects",
    "__main__": "objects",
    "checkpoint": "objects",
    # the private daemon, fixtures and the pytest plugin
    "testing": "testing",
}


@attrs.frozen
class Import:
    """One import of a package module, as written in ``source`` at ``line``."""

    source: str
    target: str
    line: int


def module_name(path: pathlib.Path) -> str:
    """``cio/_fifo.py`` -> ``cio._fifo``; the package ``__init__`` -> ``""``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> str | None:
    """The layer of the longest :data:`LAYER_OF` key that is ``name`` or a package holding it."""
    matches = [key for key in LAYER_OF if key == name or (key and name.startswith(key + "."))]
    return LAYER_OF[max(matches, key=len)] if matches else None


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _is_submodule(name: str) -> bool:
    path = ROOT.joinpath(*name.split(".")) if name else ROOT
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _package_of(source: str, is_package: bool) -> str:
    if is_package:
        return source
    return source.rpartition(".")[0]


def runtime_imports(source: str, text: str, *, is_package: bool = False) -> list[Import]:
    """The package modules ``text`` imports at run time (``if TYPE_CHECKING:`` blocks skipped)."""
    tree = ast.parse(text)
    found: list[Import] = []

    def add(target: str, line: int) -> None:
        found.append(Import(source, target, line))

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name[len(PACKAGE) + 1 :], node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(source, is_package).split(".") if source else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
                module = (node.module or "")[len(PACKAGE) + 1 :]
            else:
                module = None
            if module is not None:
                for alias in node.names:
                    sub = f"{module}.{alias.name}" if module else alias.name
                    # ``from pkg import name`` imports a submodule when there is one.
                    add(sub if _is_submodule(sub) else module, node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def package_modules() -> list[tuple[str, pathlib.Path]]:
    return sorted((module_name(p), p) for p in ROOT.rglob("*.py"))


def upward_imports(imports: list[Import]) -> list[str]:
    """Each import that points from a lower layer to a higher one, as a readable line."""
    bad: list[str] = []
    for imp in dict.fromkeys(imports):
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src is None or dst is None:
            continue
        if LAYERS.index(dst) > LAYERS.index(src):
            where = f"{imp.source or PACKAGE} ({src}) imports {imp.target or PACKAGE} ({dst})"
            bad.append(f"{where} at line {imp.line}")
    return bad


def test_layers_are_known() -> None:
    assert set(LAYER_OF.values()) <= set(LAYERS)


def test_every_module_has_a_layer() -> None:
    missing = [name or "__init__" for name, _ in package_modules() if layer_of(name) is None]
    assert not missing, (
        f"modules in no layer: {missing}; classify each in LAYER_OF in tests/unit/test_layers.py"
    )


def test_no_module_imports_a_higher_layer() -> None:
    bad: list[str] = []
    for name, path in package_modules():
        imports = runtime_imports(name, path.read_text(), is_package=path.name == "__init__.py")
        bad.extend(upward_imports(imports))
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


#: Modules that may import tenacity: the SDK's retry policy keeps it private.
TENACITY_USERS = ("_retry",)
#: Modules that may import grpc: the rpc layer; the generated stubs of ``_pb``
#: are the raw escape hatch behind ``client.services``.
GRPC_USERS = ("_rpc", "_pb")


def _imports_of(text: str, top: str) -> list[int]:
    """Lines that import the top-level package ``top`` (wherever they stand)."""
    lines = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        if any(n.split(".")[0] == top for n in names):
            lines.append(node.lineno)
    return lines


def _outside(top: str, allowed: tuple[str, ...]) -> list[str]:
    return [
        f"{name} imports {top} at line {line}"
        for name, path in package_modules()
        if not any(name == m or name.startswith(m + ".") for m in allowed)
        for line in _imports_of(path.read_text(), top)
    ]


def test_tenacity_stays_behind_retry() -> None:
    bad = _outside("tenacity", TENACITY_USERS)
    assert not bad, "tenacity is for _retry only (use _retry.poll or RetryPolicy):\n" + "\n".join(bad)


def test_grpc_stops_at_the_rpc_layer() -> None:
    bad = _outside("grpc", GRPC_USERS)
    assert not bad, "grpc is for _rpc only (call through Caller and api descriptors):\n" + "\n".join(bad)


def test_the_rpc_layer_is_typed_without_ignores() -> None:
    text = (ROOT / "_rpc.py").read_text()
    ignores = [n for n, line in enumerate(text.splitlines(), 1) if "type: ignore" in line]
    assert not ignores, f"_rpc.py silences mypy at lines {ignores}"


# -- the checker itself ---------------------------------------------------------


def _bad(source: str, text: str) -> list[str]:
    return upward_imports(runtime_imports(source, textwrap.dedent(text)))


def test_checker_sees_module_and_function_local_imports() -> None:
    text = """
        from containerd_client.content import Descriptor
        import containerd_client.client

        def f():
            from containerd_client import tasks
    """
    bad = _bad("_archive", text)
    assert [b.split(" at ")[0] for b in bad] == [
        "_archive (machinery) imports content (objects)",
        "_archive (machinery) imports client (objects)",
        "_archive (machinery) imports tasks (objects)",
    ]


def test_checker_allows_type_checking_imports_and_lower_layers() -> None:
    text = """
        from typing import TYPE_CHECKING
        import typing
        from containerd_client import errors, _rpc
        from containerd_client._pb.containerd.types import descriptor_pb2

        if TYPE_CHECKING:
            from containerd_client.client import Client
        if typing.TYPE_CHECKING:
            from containerd_client.tasks import Task
    """
    assert _bad("_archive", text) == []


def test_checker_resolves_relative_imports() -> None:
    assert [i.target for i in runtime_imports("cio._fifo", "from .. import client\nfrom . import _x\n")] == [
        "client",
        "cio",
    ]


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("cio._fifo", "machinery"),
        ("_pb.containerd.types.mount_pb2", "generated"),
        ("", "objects"),
        ("nope", None),
    ],
)
def test_layer_of_uses_the_longest_key(name: str, layer: str | None) -> None:
    assert layer_of(name) == layer
