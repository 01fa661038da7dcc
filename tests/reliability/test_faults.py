"""Faults: containerd SIGKILLed (and restarted) at each step, a shim killed, a stuck
consumer, the client process killed mid-operation.

Each fault is injected at a precise point: the test wraps the client's stubs
so that the chosen RPC first SIGKILLs the daemon (which is then started again
by a restarter thread, as a supervisor would) and only then is sent. For each
fault the test checks what the SDK reports (a typed error or success), that
every exit is delivered exactly once, and that once the SDK's own cleanup and
a retry of the operation ran, nothing is left: no container, task, lease,
ingest, snapshot or content beyond what the test kept on purpose, and no FIFO
or bundle folder in the client's state folder.

The module runs its own daemon (it is killed many times); the session daemon
other tests use is never touched. The wait step belongs to the exits suite.
A summary line (faults survived, exits lost/duplicated, leaks) is printed at
the end of the module.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import grpc
import pytest
from _fakes import service_key

from containerd_client import Client, errors
from containerd_client._pb import api
from containerd_client.client import SESSION_LABEL
from containerd_client.testing import ContainerdDaemon, ImageArchive, build_busybox_archive
from containerd_client.testing.plugin import sweep_namespace

pytestmark = pytest.mark.timeout(180)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Bound for anything that must not hang: a wait, a cleanup, a restart.
BOUND = 30.0

TALLY: dict[str, int] = {
    "faults": 0,
    "survived": 0,
    "exits": 0,
    "exits_lost": 0,
    "exits_duplicated": 0,
    "leaks": 0,
}


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(request: pytest.FixtureRequest) -> Iterator[ContainerdDaemon]:
    d = ContainerdDaemon(bin_dir=os.environ.get("CONTAINERD_BIN_DIR") or None)
    d.start()
    try:
        yield d
    finally:
        d.stop()
        line = (
            f"faults on containerd {d.version}: survived {TALLY['survived']}/{TALLY['faults']}, "
            f"exits checked {TALLY['exits']}: lost {TALLY['exits_lost']}, "
            f"duplicated {TALLY['exits_duplicated']}, "
            f"leaks {TALLY['leaks']}"
        )
        plugins = request.config.pluginmanager
        reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n" + line)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> ImageArchive:
    return build_busybox_archive(tmp_path_factory.mktemp("faults-image") / "busybox.tar")


def _unique_archive(folder: Path) -> ImageArchive:
    from containerd_client.testing import File

    noise = File(os.urandom(3 << 20))
    return build_busybox_archive(
        folder / "unique.tar",
        name=f"localhost/faults/unique:{uuid.uuid4().hex[:8]}",
        extra_layers=[{"noise": noise}],
    )


@pytest.fixture
def unique_archive(tmp_path: Path) -> ImageArchive:
    """An image with a 3 MiB layer of its own: its blobs are in no namespace yet,
    so writing them really streams data (blobs another namespace holds are not sent again)."""
    return _unique_archive(tmp_path)


@attrs.define
class Env:
    daemon: ContainerdDaemon
    client: Client
    state_dir: Path
    faults: Faults
    baseline: dict[str, set[str]] = attrs.field(factory=dict)
    image: Any = None

    def import_image(self, archive: ImageArchive) -> None:
        (self.image,) = self.client.images.import_archive(archive.path)
        self.baseline = inventory(self.client, self.state_dir)


@pytest.fixture
def env(daemon: ContainerdDaemon, tmp_path: Path) -> Iterator[Env]:
    if not daemon.running:
        daemon.start()
    state_dir = tmp_path / "state"
    client = Client(daemon.address, f"f-{uuid.uuid4().hex[:10]}", state_dir=str(state_dir))
    faults = Faults(daemon, client)
    TALLY["faults"] += 1
    try:
        yield Env(daemon, client, state_dir, faults)
    finally:
        faults.disarm()
        faults.join()
        if not daemon.running:
            daemon.start()
        try:
            sweep_namespace(client)
        finally:
            client.close()


# -- fault injection ----------------------------------------------------------------


def survived() -> None:
    """Called at the end of a fault test that got this far: the fault was survived."""
    TALLY["survived"] += 1


class Faults:
    """Makes a chosen RPC SIGKILL the daemon just before it is sent; restarts it."""

    def __init__(self, daemon: ContainerdDaemon, client: Client, *, restart: bool = True) -> None:
        self.daemon = daemon
        self.client = client
        #: Start the daemon again at once (a supervisor); else the test does it.
        self.restart = restart
        self._real_callable = client._connection.callable
        self._armed: dict[tuple[str, str], int] = {}
        self._restarts: list[threading.Thread] = []
        self.crashes = 0
        #: Set when a call through the client fails with UNAVAILABLE.
        self.unavailable = threading.Event()
        client._connection.callable = self._callable  # type: ignore[method-assign]

    def crash_before(self, service: str, method: str, *, nth: int = 1) -> None:
        """The ``nth`` call of ``service.method`` from now on kills the daemon first."""
        self._armed[(service, method)] = nth

    def crash_mid_write(self) -> None:
        """The first content write that sends a second chunk kills the daemon first."""
        self._armed[("content", "Write")] = -1

    def disarm(self) -> None:
        self._armed.clear()

    def crash(self) -> None:
        self.crashes += 1
        self.daemon.kill(signal.SIGKILL)
        if not self.restart:
            return
        restarter = threading.Thread(target=self.daemon.start, name="faults-restart")
        restarter.start()
        self._restarts.append(restarter)

    def join(self) -> None:
        for t in self._restarts:
            t.join(BOUND)
            assert not t.is_alive(), "the daemon did not come back"
        self._restarts.clear()

    def _callable(self, method: Any) -> Any:
        return _Method(self, (service_key(method), method.name), self._real_callable(method))

    def _trigger(self, key: tuple[str, str]) -> bool:
        left = self._armed.get(key)
        if left is None or left < 0:
            return False
        if left > 1:
            self._armed[key] = left - 1
            return False
        del self._armed[key]
        return True


class _Method:
    """A stub method (call, ``future``, ``with_call``) with the fault in front of it."""

    def __init__(self, faults: Faults, key: tuple[str, str], real: Any) -> None:
        self._faults = faults
        self._key = key
        self._real = real

    def _before(self, request: Any) -> Any:
        faults = self._faults
        if faults._trigger(self._key):
            faults.crash()
        elif faults._armed.get(self._key) == -1:
            request = _crash_on_second_chunk(faults, self._key, request)
        return request

    def _note(self, exc: grpc.RpcError) -> None:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            self._faults.unavailable.set()

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        request = self._before(request)
        try:
            return self._real(request, *args, **kwargs)
        except grpc.RpcError as exc:
            self._note(exc)
            raise

    def future(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._real.future(self._before(request), *args, **kwargs)

    def with_call(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._real.with_call(self._before(request), *args, **kwargs)


def _crash_on_second_chunk(faults: Faults, key: tuple[str, str], requests: Iterator[Any]) -> Iterator[Any]:
    from containerd_client._pb.containerd.services.content.v1 import content_pb2

    for req in requests:
        if req.action == content_pb2.WRITE and req.offset > 0 and faults._armed.get(key) == -1:
            del faults._armed[key]
            faults.crash()  # the ingest holds the first chunk by now
        yield req


def await_restart(env: Env) -> None:
    env.faults.join()
    env.client.wait_ready(BOUND)


# -- inventory and leaks --------------------------------------------------------------


def inventory(client: Client, state_dir: Path) -> dict[str, set[str]]:
    """What the namespace and the state folder hold, by kind."""
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

    files: set[str] = set()
    ns_dir = state_dir / client.namespace_name
    if ns_dir.exists():
        files = {str(p.relative_to(state_dir)) for p in ns_dir.rglob("*")}
    return {
        "containers": {c.id for c in client.containers()},
        "tasks": {t.id for t in client.call(api.Tasks.List, tasks_pb2.ListTasksRequest()).tasks},
        "leases": {le.id for le in client.leases.list()},
        "ingests": {s.ref for s in client.content.statuses()},
        "snapshots": {f"{s.kind.name.lower()}:{s.name}" for s in client.snapshots().list()},
        "content": {c.digest for c in client.content.list()},
        "images": {i.name for i in client.images.list()},
        "files": files,
    }


def collect_garbage(client: Client) -> None:
    """Run containerd's garbage collection now (it runs on deleting a lease with sync)."""
    tmp = client.leases.create(expire=None)
    client.leases.delete(tmp.id, sync=True)


def leaks(env: Env, *, keep: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """What is there beyond the baseline (and ``keep``), after GC settled."""
    client = env.client
    collect_garbage(client)
    now = inventory(client, env.state_dir)
    extra: dict[str, set[str]] = {}
    for kind, items in now.items():
        left = items - env.baseline.get(kind, set()) - (keep or {}).get(kind, set())
        if left:
            extra[kind] = left
    TALLY["leaks"] += sum(len(v) for v in extra.values())
    return extra


class ExitCounter:
    """Counts exit deliveries per process: each must arrive exactly once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: dict[str, list[int]] = {}
        self.expected: set[str] = set()
        self.arrived = threading.Condition(self._lock)

    def watch(self, name: str, process: Any) -> None:
        self.expected.add(name)
        self.seen.setdefault(name, [])

        def got(status: Any) -> None:
            with self.arrived:
                self.seen[name].append(status.exit_code)
                self.arrived.notify_all()

        process.on_exit(got)

    def settle(self, timeout: float = BOUND) -> tuple[int, int]:
        """Wait for every expected exit; return (lost, duplicated)."""
        with self.arrived:
            self.arrived.wait_for(lambda: all(self.seen[n] for n in self.expected), timeout)
            lost = sum(1 for n in self.expected if not self.seen[n])
            dup = sum(len(self.seen[n]) - 1 for n in self.expected if len(self.seen[n]) > 1)
        TALLY["exits"] += len(self.expected)
        TALLY["exits_lost"] += lost
        TALLY["exits_duplicated"] += dup
        return lost, dup


# -- 1. import ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["mid-write", "apply"])
def test_crash_during_import_leaves_nothing_after_the_retry(
    env: Env, unique_archive: ImageArchive, where: str
) -> None:
    archive = unique_archive
    env.baseline = inventory(env.client, env.state_dir)
    if where == "mid-write":
        env.faults.crash_mid_write()
    else:
        env.faults.crash_before("diff", "Apply")
    with pytest.raises(errors.UnavailableError):
        env.client.images.import_archive(archive.path)
    assert env.faults.crashes == 1
    await_restart(env)

    (image,) = env.client.images.import_archive(archive.path)
    assert image.name == archive.name
    assert {i.name for i in env.client.images.list()} == {archive.name}
    # With the image deleted nothing may hold its blobs or snapshots, the
    # crashed attempt's lease, ingest or extract snapshot included.
    env.client.images.delete(archive.name, sync=True)
    left = leaks(env)
    assert left == {}, f"left by the crashed attempt: {left}"
    assert env.client.deferred_cleanups == []
    survived()


# -- 2. create --------------------------------------------------------------------------


@pytest.mark.parametrize("method", [("snapshots", "Prepare"), ("containers", "Create")], ids="/".join)
def test_crash_during_create_from_image(env: Env, archive: ImageArchive, method: tuple[str, str]) -> None:
    env.import_image(archive)
    env.faults.crash_before(*method)
    with pytest.raises(errors.UnavailableError):
        env.client.create_container("c1", image=env.image, args=["true"])
    await_restart(env)

    # The retry with the same id must not trip over the crashed attempt's snapshot.
    with env.client.create_container("c1", image=env.image, args=["sh", "-c", "exit 4"]) as c:
        assert c.info().labels[SESSION_LABEL] == env.client.session
        exits = ExitCounter()
        task = c.new_task()
        exits.watch("init", task)
        task.start()
        assert task.wait(BOUND).exit_code == 4
        assert exits.settle() == (0, 0)
    assert leaks(env) == {}
    survived()


# -- 3. start -----------------------------------------------------------------------------


def test_crash_during_start(env: Env, archive: ImageArchive) -> None:
    env.import_image(archive)
    with env.client.create_container("c1", image=env.image, args=["sh", "-c", "exit 5"]) as c:
        task = c.new_task()
        env.faults.crash_before("tasks", "Start")
        with pytest.raises(errors.UnavailableError):
            task.start()
        await_restart(env)
    # Leaving the block removed the created task and its container; the retry starts afresh.
    assert leaks(env) == {}
    with env.client.create_container("c1", image=env.image, args=["sh", "-c", "exit 5"]) as c:
        task = c.new_task()
        exits = ExitCounter()
        exits.watch("init", task)
        task.start()
        assert task.wait(BOUND).exit_code == 5
        assert exits.settle() == (0, 0)
    assert leaks(env) == {}
    survived()


# -- 4. exec -------------------------------------------------------------------------------


def test_crash_during_exec(env: Env, archive: ImageArchive) -> None:
    env.import_image(archive)
    with env.client.create_container("c1", image=env.image, args=["sleep", "60"]) as c:
        task = c.new_task()
        exits = ExitCounter()
        exits.watch("init", task)
        task.start()
        env.faults.crash_before("tasks", "Exec")
        with pytest.raises(errors.UnavailableError):
            task.run(["echo", "lost"], exec_id="e1")
        await_restart(env)
        result = task.run(["echo", "again"], exec_id="e2", timeout=BOUND)
        assert (result.exit_code, result.stdout) == (0, b"again\n")
        task.kill(signal.SIGKILL)
        assert task.wait(BOUND).exit_code == 137
        assert exits.settle() == (0, 0)
    assert leaks(env) == {}
    survived()


# -- 5. delete --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [("tasks", "Delete"), ("containers", "Delete")], ids="/".join)
def test_crash_during_delete(env: Env, archive: ImageArchive, method: tuple[str, str]) -> None:
    env.import_image(archive)
    c = env.client.create_container("c1", image=env.image, args=["sh", "-c", "exit 6"])
    task = c.new_task()
    exits = ExitCounter()
    exits.watch("init", task)
    task.start()
    assert task.wait(BOUND).exit_code == 6
    env.faults.crash_before(*method)
    with pytest.raises(errors.UnavailableError):
        c.delete(force=True)
    await_restart(env)
    # Deleting again finishes the job (containerd 1.7+ may have forgotten the exited task).
    c.cleanup()
    assert exits.settle() == (0, 0)
    assert leaks(env) == {}
    survived()


# -- 6. pull --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry_ref(daemon: ContainerdDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("docker-registry") is None:
        pytest.skip("needs docker-registry (apt-get install docker-registry)")
    from containerd_client.testing._registry import LocalRegistry, push_with_ctr

    archive = _unique_archive(tmp_path_factory.mktemp("faults-pull"))
    with LocalRegistry() as registry:
        ref = f"{registry.host}/faults/busybox:1"
        namespace = f"push-{uuid.uuid4().hex[:8]}"
        push_with_ctr(daemon, ref, archive=archive, namespace=namespace)
        # No namespace may hold the blobs: the pull must send them.
        with Client(daemon.address, namespace) as pusher:
            sweep_namespace(pusher)
        yield ref


def test_crash_during_pull(env: Env, registry_ref: str) -> None:
    collect_garbage(env.client)  # the pusher's copy of the blobs goes: the pull must send them
    env.baseline = inventory(env.client, env.state_dir)
    env.faults.crash_mid_write()
    with pytest.raises(errors.ContainerdError):
        env.client.pull(registry_ref, via="client", plain_http=True)
    assert env.faults.crashes == 1
    await_restart(env)
    image = env.client.pull(registry_ref, via="client", plain_http=True)
    assert {i.name for i in env.client.images.list()} == {image.name}
    env.client.images.delete(image.name, sync=True)
    left = leaks(env)
    assert left == {}, f"left by the crashed pull: {left}"
    survived()


# -- 7. run -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [("tasks", "Create"), ("tasks", "Start")], ids="/".join)
def test_crash_during_run(env: Env, archive: ImageArchive, method: tuple[str, str]) -> None:
    env.import_image(archive)
    env.faults.crash_before(*method)
    with pytest.raises(errors.UnavailableError):
        env.client.run(env.image, ["sh", "-c", "exit 7"], container_id="r1")
    await_restart(env)
    # The retry reuses the id: the crashed run's container must be gone by then.
    result = env.client.run(env.image, ["sh", "-c", "echo ok; exit 7"], container_id="r1", timeout=BOUND)
    assert (result.exit_code, result.stdout) == (7, b"ok\n")
    assert leaks(env) == {}
    survived()


def test_daemon_down_through_the_cleanup_of_a_failed_run(env: Env, archive: ImageArchive) -> None:
    """No supervisor: the daemon stays away while run() cleans up, so the cleanup waits for it."""
    env.import_image(archive)
    with Client(
        env.daemon.address, env.client.namespace_name, timeout=2.0, state_dir=str(env.state_dir)
    ) as client:
        faults = Faults(env.daemon, client, restart=False)
        faults.crash_before("tasks", "Start")
        with pytest.raises(errors.UnavailableError):
            client.run(env.image, ["sh", "-c", "exit 7"], container_id="r1")
        assert client.deferred_cleanups, "the failed cleanup should wait for the daemon"
        env.daemon.start()
        client.wait_ready(BOUND)  # seeing the daemon serve again runs the deferred cleanup
        assert client.deferred_cleanups == []
        result = client.run(env.image, ["sh", "-c", "echo ok; exit 7"], container_id="r1", timeout=BOUND)
        assert (result.exit_code, result.stdout) == (7, b"ok\n")
        assert client.deferred_cleanups == []
    assert leaks(env) == {}
    survived()


# -- 8. the shim dies -----------------------------------------------------------------------


def _shim_of(pid: int) -> int:
    """The shim is the parent (and subreaper) of the task's init process."""
    ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert "containerd-shim" in Path(f"/proc/{ppid}/cmdline").read_bytes().decode(errors="replace")
    return ppid


def test_shim_killed_under_a_running_task(env: Env, archive: ImageArchive) -> None:
    env.import_image(archive)
    with env.client.create_container("c1", image=env.image, args=["sleep", "60"]) as c:
        task = c.new_task()
        exits = ExitCounter()
        exits.watch("init", task)
        task.start()
        os.kill(_shim_of(task.pid), signal.SIGKILL)
        # The Wait call dies with the shim: a typed error, or the status containerd made up.
        outcome: Any
        try:
            outcome = task.wait(BOUND).exit_code
        except errors.ContainerdError as exc:
            outcome = exc
        assert outcome != 0
        assert not isinstance(outcome, errors.DeadlineExceededError), outcome
        # The dispatcher still delivers the exit that containerd publishes for a dead shim.
        assert exits.settle() == (0, 0)
    assert leaks(env) == {}
    survived()


# -- 9. a consumer that stops reading --------------------------------------------------------


def test_stuck_stdout_consumer_does_not_block_kill_and_delete(env: Env, archive: ImageArchive) -> None:
    env.import_image(archive)
    first = threading.Event()
    release = threading.Event()

    def sink(data: bytes) -> None:
        first.set()
        release.wait(BOUND * 2)  # stops reading until the test lets go

    done = threading.Event()
    outcome: list[BaseException | int] = []

    def scenario() -> None:
        try:
            with env.client.create_container("c1", image=env.image, args=["sh", "-c", "yes"]) as c:
                task = c.new_task(stdout=sink)
                task.start()
                assert first.wait(BOUND)
                task.kill(signal.SIGKILL)
                outcome.append(task.wait(BOUND, drain_io=False).exit_code)
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=scenario, name="stuck-consumer")
    worker.start()
    try:
        # Kill, wait and delete finish while the sink is still stuck.
        assert done.wait(BOUND), "kill/delete hung behind a consumer that stopped reading"
        assert outcome == [137]
    finally:
        release.set()
        worker.join(BOUND)
    assert leaks(env) == {}
    survived()


# -- 10. the client process dies --------------------------------------------------------------


CHILD = textwrap.dedent(
    """
    import os
    import sys
    from containerd_client import Client

    address, namespace, image = sys.argv[1:4]
    client = Client(address, namespace)
    real_callable = client._connection.callable

    def create(*args, **kwargs):
        print("READY", os.getpid(), flush=True)
        sys.stdin.read()  # the parent kills us here

    def callable(method):
        if method.path == "/containerd.services.containers.v1.Containers/Create":
            return create
        return real_callable(method)

    client._connection.callable = callable
    client.create_container("doomed", image=image, args=["true"])
    """
)


def test_client_killed_mid_create_leaves_labelled_leftovers(env: Env, archive: ImageArchive) -> None:
    env.import_image(archive)
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, env.daemon.address, env.client.namespace_name, env.image.name],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            line = child.stdout.readline().split()
            assert line == ["READY", str(child.pid)], line
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(BOUND)
    leases = env.client.leases.list()
    assert len(leases) == 1, leases
    # "<pid>-<start time>@<host>:<pid namespace>": a sweep can tell this dead process from a live one.
    session = leases[0].labels.get(SESSION_LABEL, "")
    assert re.fullmatch(rf"{child.pid}-[0-9]+@{re.escape(socket.gethostname())}:[0-9]+", session), session
    left = leaks(env)
    TALLY["leaks"] -= sum(len(v) for v in left.values())  # expected: they are the sweep's to take
    assert left.get("leases"), "the killed client's lease should still be there"
    assert left.get("snapshots") == {"active:doomed"}
    # Every leftover names the dead process's session.
    for lease in env.client.leases.list():
        assert lease.labels.get(SESSION_LABEL) == session
    assert env.client.snapshots().stat("doomed").labels.get(SESSION_LABEL) == session
    found = env.client.leases.list(f'labels."{SESSION_LABEL}"=={session}')
    assert {le.id for le in found} == left["leases"]
    # A sweep by label takes them.
    for lease in found:
        env.client.leases.delete(lease.id, sync=True)
    # Only the lease held the snapshot: garbage collection took it with the lease.
    assert leaks(env) == {}
    survived()


# -- 11. idempotent calls ride out a restart -----------------------------------------------


def test_idempotent_call_issued_during_a_restart_succeeds(env: Env) -> None:
    # The client has talked to this daemon: an UNAVAILABLE now is a restart to
    # ride out. (A client that never reached its daemon gives up after a few
    # quick tries instead: see RetryPolicy.) Without this call the test passed
    # only when an attempt happened to wait in CONNECTING until the daemon was back.
    env.client.version()
    env.daemon.kill(signal.SIGKILL)
    results: list[Any] = []
    started = threading.Event()

    def ask() -> None:
        started.set()
        try:
            results.append(env.client.version())
        except BaseException as exc:
            results.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    assert started.wait(BOUND)
    assert env.faults.unavailable.wait(BOUND)  # its first attempt failed
    # A non-idempotent call fails fast while the daemon is away.
    t0 = time.monotonic()
    with pytest.raises(errors.UnavailableError):
        env.client.leases.create()
    assert time.monotonic() - t0 < 2.0
    # Away for longer than a few quick tries last (about 0.4 s), as a slow restart is.
    time.sleep(1.5)
    env.daemon.start()
    asker.join(BOUND)
    assert len(results) == 1
    assert not isinstance(results[0], BaseException), results[0]
    assert results[0].version
    survived()


def test_daemon_down_during_a_background_teardown(env: Env, archive: ImageArchive) -> None:
    """A background teardown that meets an absent daemon is not a failure: it waits in the deferred queue."""
    env.import_image(archive)
    with Client(
        env.daemon.address,
        env.client.namespace_name,
        timeout=2.0,
        state_dir=str(env.state_dir),
        background_teardown=True,
    ) as client:
        faults = Faults(env.daemon, client, restart=False)
        faults.crash_before("tasks", "Delete")  # the first call of the background teardown
        result = client.run(env.image, ["sh", "-c", "echo ok"], container_id="b1")
        assert (result.exit_code, result.stdout) == (0, b"ok\n")
        assert client.join_teardowns(BOUND) == []
        assert faults.crashes == 1
        assert client.deferred_cleanups, "the teardown should wait for the daemon"
        env.daemon.start()
        client.wait_ready(BOUND)  # seeing the daemon serve again runs the deferred teardown
        assert client.deferred_cleanups == []
    assert leaks(env) == {}
    survived()
