"""Client.sweep: what a ``kill -9``'d session left goes, a live session's stays.

A "victim" process creates service containers (running tasks with FIFO
stdio) from an image and is SIGKILLed in the middle of creating the fifth
(inside its lease, its snapshot prepared, no record yet). A "survivor"
process holds containers of its own and stays alive during the sweep. A
third, new process runs ``client.sweep()``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from containerd_client import Client
from containerd_client._pb import api
from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
from containerd_client.client import SESSION_LABEL
from containerd_client.testing import build_busybox_archive

pytestmark = pytest.mark.containerd_leaks_ok("images", reason="the image is the tests' setup")

REPO = str(Path(__file__).resolve().parents[2])

# argv: address namespace state_dir image prefix count
_HOLDER = textwrap.dedent(
    """
    import json, sys
    from containerd_client import Client, cio

    address, namespace, state_dir, image, prefix, count = sys.argv[1:7]
    client = Client(address, namespace, state_dir=state_dir)
    held, pids = [], []
    for i in range(int(count)):
        c = client.create_container(f"{prefix}{i}", image=image, args=["sleep", "600"])
        held.append(c)
        t = c.new_task(stdout=cio.Capture(), stderr=cio.Capture())
        t.start()
        pids.append(t.pid)
    # The next container, caught half-way: its lease and snapshot exist, its record not yet.
    lease = client.lease(expire=600)
    lease.__enter__()
    image_obj = client.images.get(image)
    chain = client.images.unpack(image_obj)
    client.snapshots().prepare(f"{prefix}{count}", chain)
    print("READY " + json.dumps({"session": client.session, "pids": pids}), flush=True)
    sys.stdin.read()  # until the parent closes it (or kills us)
    # The snapshot first: once the lease is gone, containerd's collector may take it.
    client.snapshots().remove(f"{prefix}{count}")
    lease.__exit__(None, None, None)
    for c in held:
        c.delete(force=True)
    client.close()
    """
)

_SWEEPER = textwrap.dedent(
    """
    import json, sys, time
    from containerd_client import Client

    address, namespace, state_dir = sys.argv[1:4]
    with Client(address, namespace, state_dir=state_dir) as client:
        t0 = time.monotonic()
        report = client.sweep()
        seconds = time.monotonic() - t0
    print(json.dumps({
        "summary": report.summary(),
        "dead": list(report.dead_sessions),
        "failed": list(report.failed),
        "containers": [o.name for o in report.containers],
        "snapshots": [o.name for o in report.snapshots],
        "seconds": seconds,
    }))
    """
)


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def _ready(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"holder did not get ready: {line!r}\n{err[-3000:]}")
    return dict(json.loads(line[len("READY ") :]))


def _shims_of(namespace: str, ids: list[str]) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        shim = bool(args) and "containerd-shim" in os.path.basename(args[0])
        if shim and namespace in args and any(i in args for i in ids):
            found.append(int(entry))
    return found


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def _wait_until(check: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(check())  # type: ignore[operator]


def test_sweep_after_kill_9_removes_the_dead_session_and_nothing_of_a_live_one(
    containerd: Client, tmp_path: Path
) -> None:
    archive = build_busybox_archive(tmp_path / "busybox.tar")
    (image,) = containerd.images.import_archive(archive.path)
    state = str(tmp_path / "state")
    ns = containerd.namespace_name
    common = [containerd.address, ns, state, image.name]

    survivor = _spawn([*common, "live-", "2"])
    victim = _spawn([*common, "dead-", "4"])
    try:
        live = _ready(survivor)
        dead = _ready(victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)

        view = Client(containerd.address, ns, state_dir=state)
        with view:
            before_tasks = {t.id for t in view.call(api.Tasks.List, tasks_pb2.ListTasksRequest()).tasks}
            assert {"dead-0", "dead-3", "live-0", "live-1"} <= before_tasks
            leases = view.leases.list()
            dead_leases = [le.id for le in leases if le.labels.get(SESSION_LABEL) == dead["session"]]
            assert dead_leases, "the victim held a lease when it was killed"
            assert os.path.isdir(os.path.join(state, ns, "dead-0"))
            assert any(p.startswith("dead-0") for p in os.listdir(os.path.join(state, ns, "dead-0")))

        sweeper = subprocess.run(
            [sys.executable, "-c", _SWEEPER, containerd.address, ns, state],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            check=False,
        )
        assert sweeper.returncode == 0, sweeper.stderr[-3000:]
        report = json.loads(sweeper.stdout)
        print(f"sweep took {report['seconds']:.3f} s: {report['summary']}")
        assert report["failed"] == []
        assert report["dead"] == [dead["session"]]
        assert sorted(report["containers"]) == [f"dead-{i}" for i in range(4)]
        assert report["summary"]["tasks"] == 4
        assert report["summary"]["bundles"] == 4
        assert report["summary"]["fifos"] >= 8
        assert report["summary"]["leases"] == len(dead_leases)
        assert {f"overlayfs/dead-{i}" for i in range(5)} <= set(report["snapshots"])

        with Client(containerd.address, ns, state_dir=state) as view:
            tasks = {t.id for t in view.call(api.Tasks.List, tasks_pb2.ListTasksRequest()).tasks}
            containers = {c.id for c in view.containers()}
            leases = {le.labels.get(SESSION_LABEL) for le in view.leases.list()}
            snapshots = {s.name: s.labels.get(SESSION_LABEL) for s in view.snapshots().list()}
            # Nothing of the dead session ...
            assert not {i for i in tasks | containers if i.startswith("dead-")}
            assert dead["session"] not in leases
            assert dead["session"] not in snapshots.values()
            assert not [n for n in os.listdir(os.path.join(state, ns)) if n.startswith("dead-")]
            assert _wait_until(lambda: all(_gone(p) for p in dead["pids"])), "container processes"  # type: ignore[union-attr]
            assert _wait_until(lambda: not _shims_of(ns, [f"dead-{i}" for i in range(4)])), "shims"
            # ... and everything of the live one: running tasks, records, lease, snapshots, FIFOs.
            assert {"live-0", "live-1"} <= tasks
            assert {"live-0", "live-1"} <= containers
            assert live["session"] in leases
            assert {"live-0", "live-1", "live-2"} <= set(snapshots)
            for i in range(2):
                assert view.load_container(f"live-{i}").task().status().value == "running"
                assert os.listdir(os.path.join(state, ns, f"live-{i}"))
            assert all(not _gone(p) for p in live["pids"])  # type: ignore[union-attr]
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None and proc is victim:
                proc.kill()
        if survivor.poll() is None:
            assert survivor.stdin is not None
            survivor.stdin.close()
            survivor.wait(timeout=60)
        for proc in (victim, survivor):
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    stream.close()
    # The live session cleaned up after itself; the namespace's state folder is gone when empty.
    assert survivor.returncode == 0
    assert not os.path.exists(os.path.join(state, ns))


_IMPORTER = textwrap.dedent(
    """
    import sys
    from containerd_client import Client

    address, namespace, archive, name = sys.argv[1:5]
    with Client(address, namespace) as client:
        (image,) = client.images.import_archive(archive, name=name)
        print(client.session)
    """
)


def test_sweep_removes_a_dead_sessions_images_only_when_asked(containerd: Client, tmp_path: Path) -> None:
    archive = build_busybox_archive(tmp_path / "busybox.tar")
    mine = containerd.images.import_archive(archive.path, name="example.test/mine:1")[0]
    assert mine.labels[SESSION_LABEL] == containerd.session
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _IMPORTER,
            containerd.address,
            containerd.namespace_name,
            archive.path,
            "example.test/theirs:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = containerd.images.get("example.test/theirs:1")
    assert theirs.labels[SESSION_LABEL] == done.stdout.strip()

    assert containerd.sweep().images == ()
    # From another namespace: found only when every namespace is swept.
    other = containerd.namespace(f"{containerd.namespace_name}-x")
    assert other.sweep(images=True, dry_run=True).images == ()
    everywhere = other.sweep(images=True, dry_run=True, all_namespaces=True)
    assert containerd.namespace_name in everywhere.namespaces
    assert ("example.test/theirs:1", containerd.namespace_name) in [
        (o.name, o.namespace) for o in everywhere.images
    ]
    preview = containerd.sweep(images=True, dry_run=True)
    assert [o.name for o in preview.images] == ["example.test/theirs:1"]
    assert containerd.images.get("example.test/theirs:1").name == "example.test/theirs:1"
    report = containerd.sweep(images=True)
    assert [(o.name, o.session) for o in report.images] == [("example.test/theirs:1", done.stdout.strip())]
    assert [i.name for i in containerd.images.list()] == ["example.test/mine:1"]


# argv: address namespace state_dir image prefix subnet bridge
_NET_VICTIM = textwrap.dedent(
    """
    import sys
    from containerd_client import Client, network

    address, namespace, state_dir, image, prefix, subnet, bridge = sys.argv[1:8]
    config = network.NetworkConfig(subnet=subnet, bridge=bridge)
    client = Client(address, namespace, state_dir=state_dir, network_config=config)
    c = client.create_container(
        f"{prefix}0", image=image, args=["sleep", "600"], network="bridge", ports={80: None}
    )
    c.new_task().start()
    # The next one caught between CNI ADD and its container record.
    plan = network.plan(
        "bridge", {80: None}, config, state_root=c._state_root,
        namespace=namespace, container_id=f"{prefix}1", session=client.session,
    )
    network.attach(plan)
    print("READY", flush=True)
    sys.stdin.read()
    """
)


def _veths(bridge: str) -> int:
    """Veths on this test's own bridge (a run beside this one has its own)."""
    out = subprocess.run(
        ["ip", "-o", "link", "show", "master", bridge, "type", "veth"],
        capture_output=True,
        text=True,
        check=False,  # no bridge yet: none
    )
    return len(out.stdout.splitlines())


def test_sweep_removes_the_network_attachments_a_killed_session_left(
    containerd: Client, containerd_daemon: object, tmp_path: Path
) -> None:
    from containerd_client import network
    from containerd_client.containers import _state_root

    if not os.path.exists("/usr/lib/cni/bridge"):
        pytest.skip("containernetworking-plugins is not installed (scripts/bootstrap --test installs it)")
    archive = build_busybox_archive(tmp_path / "busybox.tar")
    (image,) = containerd.images.import_archive(archive.path)
    state_dir = str(tmp_path / "state")
    root = _state_root(state_dir)
    ns = containerd.namespace_name
    address = containerd.address
    # Warm the bridge and the plugins' shared chains, which stay by design.
    config = containerd.network_config
    warm = Client(address, ns, state_dir=state_dir, network_config=config)
    with warm:
        warm.create_container("warm", image=image.name, args=["true"], network="bridge").delete()
    veths_before = _veths(config.bridge)
    victim_net = [config.subnet, config.bridge]
    victim = subprocess.Popen(
        [sys.executable, "-c", _NET_VICTIM, address, ns, state_dir, image.name, "netv", *victim_net],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert victim.stdout is not None
        line = victim.stdout.readline()
        if not line.startswith("READY"):
            victim.kill()
            pytest.fail(f"victim did not get ready: {line!r}\n{victim.communicate(timeout=30)[1][-3000:]}")
        assert sorted(cid for _, cid in network.attachments(root, ns)) == ["netv0", "netv1"]
    finally:
        victim.kill()
        victim.communicate(timeout=30)  # reaps it and closes its pipes
    with Client(address, ns, state_dir=state_dir, network_config=config) as sweeper:
        report = sweeper.sweep()
    assert not report.failed, report.failed
    # netv0's attachment goes with its container; netv1 never got one.
    assert [o.name for o in report.containers] == ["netv0"]
    assert [o.name for o in report.networks] == ["netv1"]
    assert network.attachments(root, ns) == []
    assert not os.path.exists(network.netns_path(root, ns, "netv0"))
    assert _wait_until(lambda: _veths(config.bridge) == veths_before), (_veths(config.bridge), veths_before)
    assert containerd.containers() == []
