"""The tree drawn in ``errors.py``'s docstring is the true class tree.

Every public :class:`ContainerdError` subclass the package defines, in any
module, appears in the tree exactly once, under the class it derives from
(its first ``ContainerdError`` base); and every name in the tree is such a
class. A name in the tree is either a class of :mod:`containerd_client.errors`
(``NotFoundError``) or ``module.Class`` for one kept beside its code
(``cio.IOSetupError``), resolved as an attribute of that module.
"""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import re

import pytest

import containerd_client
from containerd_client import errors
from containerd_client.errors import ContainerdError

_CONNECTOR = re.compile(r"^(?P<indent>(?:│   |    )*)(?:├── |└── )(?P<name>[\w.]+)")


def tree_lines() -> list[str]:
    doc = errors.__doc__ or ""
    _head, sep, rest = doc.partition("The tree::\n")
    assert sep, "errors.py's docstring has no 'The tree::' block"
    lines = rest.split("\n")
    start = next(i for i, line in enumerate(lines) if line.strip())
    block: list[str] = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    return [line for line in block if line.strip()]


def parse_tree() -> dict[str, str | None]:
    """Each name in the tree -> the name it hangs under (``None`` for the root)."""
    lines = tree_lines()
    root = lines[0].split()[0]
    parents: dict[str, str | None] = {root: None}
    stack = [root]  # stack[d] is the last name seen at depth d
    for line in lines[1:]:
        m = _CONNECTOR.match(line)
        if m is None:
            continue  # a description carried over to the next line
        depth = len(m["indent"]) // 4 + 1
        name = m["name"]
        assert name not in parents, f"{name} appears twice in the tree"
        assert depth <= len(stack), f"{name} is indented past its parent"
        parents[name] = stack[depth - 1]
        del stack[depth:]
        stack.append(name)
    return parents


def resolve(name: str) -> type:
    module, _, cls = name.rpartition(".")
    mod = importlib.import_module(f"containerd_client.{module}" if module else "containerd_client.errors")
    value = getattr(mod, cls)
    assert isinstance(value, type), f"{name} is not a class"
    return value


def public_error_classes() -> set[type]:
    """Every public ContainerdError subclass defined in the package (the generated code aside)."""
    found: set[type] = set()
    for info in pkgutil.walk_packages(containerd_client.__path__, "containerd_client."):
        if info.name.startswith("containerd_client._pb"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, ContainerdError)
                and value.__module__.startswith("containerd_client.")
                and not value.__name__.startswith("_")
            ):
                found.add(value)
    return found


def _first_error_base(cls: type) -> type | None:
    return next((b for b in cls.__bases__ if issubclass(b, ContainerdError)), None)


def test_tree_names_every_public_error_class() -> None:
    in_tree = {resolve(name) for name in parse_tree()}
    defined = public_error_classes()
    missing = sorted(f"{c.__module__}.{c.__qualname__}" for c in defined - in_tree)
    assert not missing, f"error classes missing from errors.py's tree: {missing}"
    extra = sorted(f"{c.__module__}.{c.__qualname__}" for c in in_tree - defined)
    assert not extra, f"names in errors.py's tree that are no public error class: {extra}"


def test_tree_parents_are_the_class_bases() -> None:
    wrong = []
    for name, parent in parse_tree().items():
        cls = resolve(name)
        base = _first_error_base(cls)
        expected = None if parent is None else resolve(parent)
        if base is not expected:
            wrong.append(f"{name} is drawn under {parent} but derives from {base and base.__name__}")
    assert not wrong, "errors.py's tree is wrong:\n" + "\n".join(wrong)


def test_tree_parser_reads_nesting_and_continuations() -> None:
    parents = parse_tree()
    assert parents["ContainerdError"] is None
    assert parents["RPCError"] == "ContainerdError"
    assert parents["InvalidIdError"] == "InvalidArgumentError"
    assert parents["ConflictError"] == "AlreadyExistsError"
    assert parents["UnauthenticatedError"] == "RPCError"


# -- builtin pairings -------------------------------------------------------------


def test_deadline_exceeded_is_a_builtin_timeout_error() -> None:
    exc = errors.error_for_status(errors.StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")
    with pytest.raises(TimeoutError) as info:
        raise exc
    assert type(info.value) is errors.DeadlineExceededError
    assert isinstance(info.value, errors.RPCError)
    # OSError's own fields stay empty: the message and code are containerd's.
    assert str(exc) == "context deadline exceeded"
    assert exc.args == ("context deadline exceeded",)
    assert exc.code is errors.StatusCode.DEADLINE_EXCEEDED
    assert exc.errno is None
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is errors.DeadlineExceededError
    assert (str(again), again.code) == (str(exc), exc.code)


def test_mro_keeps_the_sdk_base_before_any_builtin() -> None:
    # ``except ContainerdError`` and the SDK's own methods come first; a
    # builtin base is only there so that ``except TimeoutError`` / ``ValueError`` work.
    paired = {}
    for cls in public_error_classes():
        mro = cls.__mro__
        builtins_in = [
            b for b in mro if b.__module__ == "builtins" and b not in (Exception, BaseException, object)
        ]
        for builtin in builtins_in:
            assert mro.index(ContainerdError) < mro.index(builtin), cls
        if builtins_in:
            paired[cls.__name__] = builtins_in[0]
    assert paired["DeadlineExceededError"] is TimeoutError
    assert paired["InvalidIdError"] is ValueError
    assert paired["BlobTooLargeError"] is ValueError
    assert paired["UnknownTypeError"] is LookupError
