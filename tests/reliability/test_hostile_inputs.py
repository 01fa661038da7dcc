"""Hostile input catalogue: ids, exec ids, namespaces, names, spec options, signals, timeouts.

Each case goes through the public API against the real daemon and must:

- raise the expected ``ContainerdError`` subclass (never a builtin),
- within a time bound (a hang or busy loop fails the case, it does not hang the run),
- before any RPC is made from the calling thread,
- leaving the daemon's namespace as it was (containers, tasks, snapshots,
  leases, content, images) and nothing in the client's state folder.

Archive and registry cases live with the helpers that own those parsers.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from containerd_client import Client, _rpc, errors, spec
from containerd_client._pb import api
from containerd_client._registry import InvalidReferenceError

#: The slowest a typed refusal may take (they are all made before any RPC).
BOUND_S = 5.0


@attrs.frozen
class Ctx:
    client: Client
    rootfs: str
    tmp: Path
    task: Any = None


Action = Callable[[Ctx], object]


@attrs.frozen
class Case:
    action: Action
    error: type[errors.ContainerdError]
    needs_task: bool = False


def _create(**kwargs: Any) -> Action:
    def act(ctx: Ctx) -> object:
        return ctx.client.create_container(f"h-{uuid.uuid4().hex[:8]}", **{"rootfs": ctx.rootfs, **kwargs})

    return act


def _create_id(container_id: Any) -> Action:
    return lambda ctx: ctx.client.create_container(container_id, rootfs=ctx.rootfs, args=["true"])


def _with_opt(make: Callable[[], spec.SpecOpt]) -> Action:
    # The option is made inside the action: a check at construction time counts too.
    return lambda ctx: ctx.client.create_container(
        f"h-{uuid.uuid4().hex[:8]}", rootfs=ctx.rootfs, args=["true"], spec=[make()]
    )


def _exec(exec_id: Any = "e1", args: Any = ("true",), **kwargs: Any) -> Action:
    return lambda ctx: ctx.task.exec(exec_id, list(args) if isinstance(args, tuple) else args, **kwargs)


def _import(name: Any) -> Action:
    # The archive does not exist: only a name check can answer with a typed error.
    return lambda ctx: ctx.client.images.import_archive(str(ctx.tmp / "missing.tar"), name=name)


InvalidId = errors.InvalidIdError
InvalidSpec = errors.InvalidSpecError
BadSignal = errors.UnknownSignalError
BadTimeout = errors.InvalidTimeoutError

CASES: dict[str, Case] = {
    # container ids
    "id-traversal": Case(_create_id("../x"), InvalidId),
    "id-empty": Case(_create_id(""), InvalidId),
    "id-77-chars": Case(_create_id("a" * 77), InvalidId),
    "id-slash": Case(_create_id("a/b"), InvalidId),
    "id-non-ascii": Case(_create_id("né"), InvalidId),
    "id-nul": Case(_create_id("a\x00b"), InvalidId),
    "id-leading-dash": Case(_create_id("-x"), InvalidId),
    "id-double-dot": Case(_create_id("x..y"), InvalidId),
    "id-trailing-newline": Case(_create_id("x\n"), InvalidId),
    "id-not-a-string": Case(_create_id(5), InvalidId),
    "id-100kb": Case(_create_id("a" * 100_000), InvalidId),
    "load-traversal": Case(lambda ctx: ctx.client.load_container("../../etc"), InvalidId),
    # exec ids
    "exec-id-traversal": Case(_exec("../e"), InvalidId, needs_task=True),
    "exec-id-empty": Case(_exec(""), InvalidId, needs_task=True),
    "exec-id-77-chars": Case(_exec("e" * 77), InvalidId, needs_task=True),
    "exec-id-slash": Case(_exec("e/f"), InvalidId, needs_task=True),
    # namespaces
    "ns-constructor-non-ascii": Case(lambda ctx: Client(ctx.client.address, "né"), InvalidId),
    "ns-constructor-traversal": Case(lambda ctx: Client(ctx.client.address, "../x"), InvalidId),
    "ns-view-77-chars": Case(lambda ctx: ctx.client.namespace("a" * 77), InvalidId),
    "ns-create-space": Case(lambda ctx: ctx.client.namespaces.create("bad ns"), InvalidId),
    # leases
    "lease-id-traversal": Case(lambda ctx: ctx.client.leases.create(lease_id="../l"), InvalidId),
    "lease-expire-nan": Case(lambda ctx: ctx.client.leases.create(expire=math.nan), BadTimeout),
    "lease-expire-negative": Case(lambda ctx: ctx.client.leases.create(expire=-1), BadTimeout),
    # image names and references (parser level)
    "import-name-nul": Case(_import("a\x00b"), InvalidReferenceError),
    "import-name-traversal": Case(_import("../../x"), InvalidReferenceError),
    "import-name-100kb": Case(_import("x" * 100_000), InvalidReferenceError),
    "import-name-space": Case(_import("has space:1"), InvalidReferenceError),
    "import-name-empty": Case(_import(""), InvalidReferenceError),
    "pull-ref-space": Case(lambda ctx: ctx.client.pull("localhost/a b:1"), InvalidReferenceError),
    "pull-ref-traversal": Case(lambda ctx: ctx.client.pull("localhost/../x"), InvalidReferenceError),
    "pull-ref-scheme": Case(lambda ctx: ctx.client.pull("http://localhost/x"), InvalidReferenceError),
    # spec options, through create_container
    "env-key-with-equals": Case(_with_opt(lambda: spec.with_env({"A=B": "c"})), InvalidSpec),
    "env-nul": Case(_with_opt(lambda: spec.with_env({"A": "b\x00"})), InvalidSpec),
    "env-no-equals": Case(_with_opt(lambda: spec.with_env(["NOEQUALS"])), InvalidSpec),
    "cpu-negative-quota": Case(_with_opt(lambda: spec.with_cpu(quota=-5)), InvalidSpec),
    "cpu-nan": Case(_with_opt(lambda: spec.with_cpu(cpus=math.nan)), InvalidSpec),
    "cap-unknown": Case(_with_opt(lambda: spec.with_capabilities(add=["BOGUS"])), InvalidSpec),
    "memory-negative": Case(_with_opt(lambda: spec.with_memory_limit(-1)), InvalidSpec),
    "pids-zero": Case(_with_opt(lambda: spec.with_pids_limit(0)), InvalidSpec),
    "user-negative": Case(_with_opt(lambda: spec.with_user(-1)), InvalidSpec),
    "cwd-relative": Case(_with_opt(lambda: spec.with_cwd("rel")), InvalidSpec),
    "hostname-65": Case(_with_opt(lambda: spec.with_hostname("h" * 65)), InvalidSpec),
    "tmpfs-negative-size": Case(_with_opt(lambda: spec.with_tmpfs("/t", size=-1)), InvalidSpec),
    "bind-relative-source": Case(_with_opt(lambda: spec.with_bind_mount("rel", "/x")), InvalidSpec),
    "annotation-empty-key": Case(_with_opt(lambda: spec.with_annotations({"": "x"})), InvalidSpec),
    "rootfs-relative": Case(_create(rootfs="rel", args=["true"]), InvalidSpec),
    "args-nul": Case(_create(args=["sh", "-c", "a\x00b"]), InvalidSpec),
    # A string command is split as docker-py splits it; one that does not split is refused.
    "args-string-unclosed-quote": Case(_create(args='sh -c "true'), InvalidSpec),
    "args-string-blank": Case(_create(args="   "), InvalidSpec),
    # exec options
    "exec-env-key-with-equals": Case(_exec(env={"A=B": "c"}), InvalidSpec, needs_task=True),
    "exec-cwd-relative": Case(_exec(cwd="rel"), InvalidSpec, needs_task=True),
    "exec-user-negative": Case(_exec(user=(-1, 0)), InvalidSpec, needs_task=True),
    "exec-args-nul": Case(_exec(args=("a\x00",)), InvalidSpec, needs_task=True),
    # signals
    "signal-unknown-name": Case(lambda ctx: ctx.task.kill("BOGUS"), BadSignal, needs_task=True),
    "signal-superscript-digit": Case(lambda ctx: ctx.task.kill("²"), BadSignal, needs_task=True),
    "signal-5000-digits": Case(lambda ctx: ctx.task.kill("9" * 5000), BadSignal, needs_task=True),
    "signal-zero": Case(lambda ctx: ctx.task.kill(0), BadSignal, needs_task=True),
    "signal-too-big": Case(lambda ctx: ctx.task.kill(10_000), BadSignal, needs_task=True),
    "signal-float": Case(lambda ctx: ctx.task.kill(9.0), BadSignal, needs_task=True),
    # timeouts
    "wait-nan": Case(lambda ctx: ctx.task.wait(math.nan), BadTimeout, needs_task=True),
    "wait-negative": Case(lambda ctx: ctx.task.wait(-1), BadTimeout, needs_task=True),
    "wait-inf": Case(lambda ctx: ctx.task.wait(math.inf), BadTimeout, needs_task=True),
    "wait-string": Case(lambda ctx: ctx.task.wait("5"), BadTimeout, needs_task=True),
    "force-delete-nan": Case(
        lambda ctx: ctx.task.force_delete(timeout=math.nan), BadTimeout, needs_task=True
    ),
    "task-run-negative": Case(lambda ctx: ctx.task.run(["true"], timeout=-1), BadTimeout, needs_task=True),
    "client-run-env": Case(lambda ctx: ctx.client.run("localhost/none:1", env={"A=B": "c"}), InvalidSpec),
    "client-run-cwd": Case(lambda ctx: ctx.client.run("localhost/none:1", cwd="rel"), InvalidSpec),
    "client-run-id": Case(lambda ctx: ctx.client.run("localhost/none:1", container_id="../c"), InvalidId),
    "client-run-nan": Case(lambda ctx: ctx.client.run("localhost/none:1", timeout=math.nan), BadTimeout),
    "client-timeout-inf": Case(lambda ctx: Client(ctx.client.address, "ns", timeout=math.inf), BadTimeout),
}


# -- observing the daemon, the RPCs and the file system ---------------------------------------


def _daemon_state(client: Client) -> dict[str, list[str]]:
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

    tasks = client.call(api.Tasks.List, tasks_pb2.ListTasksRequest(), idempotent=True).tasks
    return {
        "containers": sorted(c.id for c in client.containers()),
        "tasks": sorted(f"{t.id}:{t.status}" for t in tasks),
        "snapshots": sorted(
            f"{sn}:{s.name}" for sn in ("overlayfs", "native") for s in client.snapshots(sn).list()
        ),
        "leases": sorted(le.id for le in client.leases.list()),
        "content": sorted(i.digest for i in client.content.list()),
        "images": sorted(i.name for i in client.images.list()),
        "namespaces": sorted(n.name for n in client.namespaces.list()),
    }


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


class RpcLog:
    """Records the RPCs made from one thread (the case's), via the rpc layer's Caller."""

    def __init__(self) -> None:
        self.thread: int | None = None
        self.calls: list[str] = []


@pytest.fixture
def rpc_log(monkeypatch: pytest.MonkeyPatch) -> RpcLog:
    log = RpcLog()
    for name in ("call", "stream", "bidi"):
        original = getattr(_rpc.Caller, name)

        def spy(self: Any, service: str, method: str, *args: Any, _orig: Any = original, **kw: Any) -> Any:
            if threading.get_ident() == log.thread:
                log.calls.append(f"{service}.{method}")
            return _orig(self, service, method, *args, **kw)

        monkeypatch.setattr(_rpc.Caller, name, spy)
    return log


def _run_bounded(action: Action, ctx: Ctx, log: RpcLog) -> tuple[BaseException | None, float, bool]:
    """Run ``action`` on a daemon thread; return (what it raised, seconds taken, finished)."""
    outcome: list[BaseException | None] = []
    result: list[object] = []
    ready = threading.Event()

    def run() -> None:
        log.thread = threading.get_ident()
        ready.set()
        try:
            result.append(action(ctx))
            outcome.append(None)
        except BaseException as exc:  # the case inspects it
            outcome.append(exc)

    thread = threading.Thread(target=run, name="hostile-case", daemon=True)
    start = time.monotonic()
    thread.start()
    ready.wait(BOUND_S)
    thread.join(BOUND_S)
    elapsed = time.monotonic() - start
    for value in result:  # something was accepted: do not leak it
        close = getattr(value, "cleanup", None) or getattr(value, "close", None)
        if callable(close):
            close()
    return (outcome[0] if outcome else None), elapsed, not thread.is_alive()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    return folder


@pytest.fixture
def hostile_client(containerd: Client, state_dir: Path) -> Iterator[Client]:
    with Client(containerd.address, containerd.namespace_name, state_dir=str(state_dir)) as client:
        yield client


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_input(
    request: pytest.FixtureRequest,
    case: Case,
    hostile_client: Client,
    busybox_rootfs: str,
    tmp_path: Path,
    state_dir: Path,
    rpc_log: RpcLog,
) -> None:
    client = hostile_client
    task = None
    if case.needs_task:
        cid = f"host-{uuid.uuid4().hex[:8]}"
        container = client.create_container(cid, rootfs=busybox_rootfs, args=["sleep", "30"])
        request.addfinalizer(container.cleanup)
        task = container.new_task()
        task.start()
    ctx = Ctx(client=client, rootfs=busybox_rootfs, tmp=tmp_path, task=task)
    cwd = Path.cwd()
    before = _daemon_state(client)
    state_before = _files(state_dir)
    cwd_before = sorted(os.listdir(cwd))

    exc, elapsed, finished = _run_bounded(case.action, ctx, rpc_log)

    assert finished, f"no answer within {BOUND_S} s"
    assert exc is not None, "the hostile input was accepted"
    assert isinstance(exc, errors.ContainerdError), f"builtin {type(exc).__name__} escaped: {exc!r}"
    assert isinstance(exc, case.error), f"{type(exc).__name__}: {exc}"
    assert len(str(exc)) < 500, "the message echoes the whole input"
    assert elapsed < BOUND_S
    assert rpc_log.calls == [], "an RPC was made before the input was refused"
    assert _daemon_state(client) == before
    assert _files(state_dir) == state_before
    assert sorted(os.listdir(cwd)) == cwd_before
    if task is not None:
        assert task.exit_status is None  # the task is untouched: no kill got through
