"""containerd_client.testing against real daemons: start, restart, cleanup, images.

They run against the session's daemon: the machine's containerd, or the one
in ``CONTAINERD_BIN_DIR`` (scripts/test runs the suite once per version).
``CONTAINERD_BIN_DIRS`` (folders separated by ``:``) adds more to one run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_client.containers import _default_state_dir
from containerd_client.errors import ContainerdError
from containerd_client.network import NetworkConfig
from containerd_client.testing import (
    ContainerdDaemon,
    DaemonStartError,
    Directory,
    File,
    ImageArchive,
    ImageLayer,
    LayerSpec,
    Symlink,
    Whiteout,
    _netslot,
    _reaper,
    build_busybox_archive,
    build_image_archive,
)

pytestmark = pytest.mark.integration


def _bin_dir_params() -> list[object]:
    # The daemon under test is the session's (scripts/test runs the suite once
    # per containerd version, naming it in CONTAINERD_BIN_DIR); CONTAINERD_BIN_DIRS
    # lists more folders to try in the same run.
    params: list[object] = [pytest.param(os.environ.get("CONTAINERD_BIN_DIR") or None, id="session")]
    listed = os.environ.get("CONTAINERD_BIN_DIRS", "")
    for i, bin_dir in enumerate(d for d in listed.split(os.pathsep) if d):
        present = os.path.isfile(os.path.join(bin_dir, "containerd"))
        params.append(
            pytest.param(
                bin_dir,
                id=f"dir{i}",
                marks=pytest.mark.skipif(not present, reason=f"no containerd in {bin_dir}"),
            )
        )
    return params


@pytest.fixture(params=_bin_dir_params())
def bin_dir(request: pytest.FixtureRequest) -> str | None:
    value: str | None = request.param
    return value


@pytest.fixture(scope="module")
def busybox_oci(tmp_path_factory: pytest.TempPathFactory) -> ImageArchive:
    return build_busybox_archive(tmp_path_factory.mktemp("img") / "busybox-oci.tar")


@pytest.fixture(scope="module")
def busybox_docker(tmp_path_factory: pytest.TempPathFactory) -> ImageArchive:
    return build_busybox_archive(
        tmp_path_factory.mktemp("img") / "busybox-docker.tar",
        name="localhost/containerd-client/busybox-docker:1",
        fmt="docker",
        gzip=True,
    )


@pytest.fixture
def daemon(bin_dir: str | None) -> Iterator[ContainerdDaemon]:
    with ContainerdDaemon(bin_dir=bin_dir) as d:
        yield d


# -- helpers that look at the machine, not at the daemon object --------------


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and _running(int(entry)):
            pids.append(int(entry))
    return pids


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Zombies wait for their reaper (pid 1 here); they hold nothing.
    return stat[stat.rfind(")") + 2] not in "ZX"


def _mounts_mentioning(text: str) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if text in line]


def _task_pid(d: ContainerdDaemon, cid: str) -> int:
    for line in d.ctr("tasks", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            assert fields[2] == "RUNNING", line
            return int(fields[1])
    raise AssertionError(f"no task {cid} in {d.ctr('tasks', 'ls').stdout!r}")


def _assert_nothing_left(d: ContainerdDaemon, pids: list[int]) -> None:
    assert not d.running
    assert not os.path.exists(d.base_dir)
    assert not os.path.exists(d.address)
    assert _processes_mentioning(d.address) == []
    assert [p for p in pids if _running(p)] == []
    assert _mounts_mentioning(d.base_dir) == []
    assert not os.path.exists(f"/run/containerd/runc/{d.namespace}")
    assert list(Path("/sys/fs/cgroup").glob(f"*/{d.namespace}")) == []


# -- the daemon --------------------------------------------------------------


def test_start_serves_and_stop_leaves_nothing(daemon: ContainerdDaemon) -> None:
    expected = subprocess.run([daemon.binary, "--version"], capture_output=True, text=True, check=True)
    assert daemon.version in expected.stdout
    assert daemon.major == daemon.version_info[0] in (1, 2)
    assert daemon.namespace.startswith("cctest-")
    assert daemon.running
    assert daemon.pid is not None
    assert len(daemon.address) <= 101
    out = daemon.ctr("version").stdout
    assert f"Server:\n  Version:  {daemon.version}" in out
    config = Path(daemon.config_path).read_text()
    assert f"version = {3 if daemon.major >= 2 else 2}" in config
    assert "io.containerd.grpc.v1.cri" in config
    pid = daemon.pid

    daemon.stop()
    _assert_nothing_left(daemon, [pid])
    assert "containerd successfully booted" in daemon.logs()
    daemon.stop()  # idempotent
    assert not daemon.running


def _bridge_leftovers(bridge: str, subnet: str) -> dict[str, object]:
    """What a test network's containers can leave on the host, for ``bridge``."""
    root = os.path.abspath(_default_state_dir())
    ipam = Path(root, "_cni", "ipam", bridge)
    prefix = subnet.rsplit(".", 2)[0] + "."
    nat = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    link = subprocess.run(["ip", "link", "show", bridge], capture_output=True, check=False)
    return {
        "attachments": _netslot.detach_order(root, bridge),
        # host-local keeps one file per address in a folder per network, plus a lock and a cursor.
        "ipam": sorted(
            str(p)
            for p in ipam.rglob("*")
            if p.is_file() and p.name != "lock" and not p.name.startswith("last_reserved_ip")
        ),
        "iptables": [line for line in nat.splitlines() if prefix in line],
        "bridge": link.returncode == 0,
    }


_NETWORK_LEFT_RUNNING = """
import json, os, signal, sys
from containerd_client import Client
from containerd_client.testing import ContainerdDaemon, _netslot
rootfs, bin_dir = sys.argv[1], sys.argv[2] or None
_netslot.SLOTS_DIR = sys.argv[4]
for name, value in json.loads(sys.argv[5]).items():
    setattr(_netslot, name, value)
d = ContainerdDaemon(bin_dir=bin_dir)
d.start()
c = Client(d.address, d.namespace, network_config=d.network_config)
for name in ("served", "created"):
    ct = c.create_container(name, rootfs=rootfs, args=["sleep", "60"], network="bridge", ports={80: None})
    if name == "served":
        ct.new_task().start()
ct.wait_network()
net = {"bridge": d.network_config.bridge, "subnet": d.network_config.subnet, "namespace": d.namespace,
       "base": d.base_dir}
print(json.dumps(net), flush=True)
if sys.argv[3] == "stop":
    d.stop()  # with both containers still there
else:
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup at all
"""


@pytest.mark.parametrize("end", ["stop", "sigkill"])
def test_containers_left_on_the_daemons_network_are_detached(
    end: str, bin_dir: str | None, busybox_rootfs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0 or not any(
        os.path.exists(os.path.join(d, "bridge")) for d in NetworkConfig().plugin_dirs
    ):
        pytest.skip("needs root and the CNI plugins")
    # The child claims its slot from a folder of this test's own, so that the
    # test knows which slot is the dead owner's. Its subnet is that of a real
    # slot this test holds meanwhile: no suite running beside it (the 1.7 and
    # 2.x runs go side by side) can use the same addresses.
    held = _netslot.claim()
    try:
        private = {"BRIDGE_PREFIX": f"cckill{held.index}n", "FIRST": _netslot.FIRST + held.index}
        slots = tmp_path / "slots"
        monkeypatch.setattr(_netslot, "SLOTS_DIR", str(slots))
        for name, value in private.items():
            monkeypatch.setattr(_netslot, name, value)
        _run_network_left_running(busybox_rootfs, bin_dir, end, slots, private)
    finally:
        held.release()


def _run_network_left_running(
    busybox_rootfs: str, bin_dir: str | None, end: str, slots: Path, private: dict[str, object]
) -> None:
    argv = [busybox_rootfs, bin_dir or "", end, str(slots), json.dumps(private)]
    proc = subprocess.run(
        [sys.executable, "-c", _NETWORK_LEFT_RUNNING, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout, proc.stderr[-3000:]
    net = json.loads(proc.stdout.splitlines()[0])
    if end == "sigkill":
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        assert net["bridge"] == f"{private['BRIDGE_PREFIX']}0"
        assert (slots / "0").exists()  # the dead owner's claim
        # The next claim takes the dead owner's slot over, and clears its bridge first.
        slot = _netslot.claim()
        assert slot.index == 0
        slot.release()
        # The next daemon start reaps the dead owner's daemon (its watchdog killed it).
        # The suites running beside this one start daemons too: one of them may
        # have claimed the reaping first, and its last step removes the folder.
        _reaper.reap_stale(tempfile.gettempdir())
        deadline = time.monotonic() + 60
        while os.path.exists(net["base"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(net["base"]), "the dead owner's daemon folder was not reaped"
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert _bridge_leftovers(net["bridge"], net["subnet"]) == {
        "attachments": [],
        "ipam": [],
        "iptables": [],
        "bridge": False,
    }
    # The SDK's state folder of the namespace, with the empty folders of the containers never deleted.
    assert not os.path.exists(os.path.join(_default_state_dir(), net["namespace"]))


def test_busybox_oci_runs_and_survives_daemon_kill(
    daemon: ContainerdDaemon, busybox_oci: ImageArchive
) -> None:
    imported = daemon.ctr("images", "import", busybox_oci.path)
    # ctr 2.x prints its import progress only now and then (it came out empty
    # in one CI run): the listing below is what proves the predicted digest.
    assert imported.returncode == 0
    listed = daemon.ctr("images", "ls").stdout
    assert busybox_oci.name in listed
    assert busybox_oci.manifest_digest in listed

    run = daemon.ctr("run", "--rm", busybox_oci.name, "echo-1", "sh", "-c", "echo hi; id -un")
    assert run.stdout.split() == ["hi", "root"]
    # Tests often use a namespace per test: its runc state and cgroups must go too.
    other_ns = daemon.namespace + "-b"
    daemon.ctr("images", "import", busybox_oci.path, namespace=other_ns)
    assert daemon.ctr("run", "--rm", busybox_oci.name, "e", "echo", "b", namespace=other_ns).stdout == "b\n"

    daemon.ctr("run", "-d", "--null-io", busybox_oci.name, "sleeper", "sleep", "600")
    container_pid = _task_pid(daemon, "sleeper")
    shim_pids = [p for p in _processes_mentioning(daemon.address) if p != daemon.pid]
    assert shim_pids, "the shim serving the sleeper should name our socket"

    # The daemon alone dies; its shim and container go on, and a new daemon
    # on the same root and socket finds them again.
    old_pid = daemon.pid
    daemon.kill()
    assert not daemon.running
    assert _running(container_pid)
    assert all(_running(p) for p in shim_pids)
    daemon.start()
    assert daemon.pid != old_pid
    assert _task_pid(daemon, "sleeper") == container_pid

    daemon.restart()
    assert _task_pid(daemon, "sleeper") == container_pid

    # stop() must take the running container, its shim and its mounts too.
    assert _mounts_mentioning(daemon.base_dir)
    daemon.stop()
    _assert_nothing_left(daemon, [container_pid, *shim_pids])
    assert not os.path.exists(f"/run/containerd/runc/{other_ns}")
    assert list(Path("/sys/fs/cgroup").glob(f"*/{other_ns}")) == []


def test_docker_archive_imports_with_predicted_digest(
    daemon: ContainerdDaemon, busybox_docker: ImageArchive
) -> None:
    daemon.ctr("images", "import", busybox_docker.path)
    listed = daemon.ctr("images", "ls").stdout
    assert busybox_docker.name in listed
    assert busybox_docker.manifest_digest in listed
    assert "application/vnd.docker.distribution.manifest.v2+json" in listed
    run = daemon.ctr("run", "--rm", busybox_docker.name, "echo-d", "echo", "hi")
    assert run.stdout == "hi\n"


def test_two_daemons_keep_their_containers_apart(busybox_oci: ImageArchive) -> None:
    with ContainerdDaemon() as a, ContainerdDaemon() as b:
        assert a.namespace != b.namespace
        assert a.address != b.address
        for d in (a, b):
            d.ctr("images", "import", busybox_oci.path)
            # The same container id in both: unique namespaces keep runc's state apart.
            d.ctr("run", "-d", "--null-io", busybox_oci.name, "same", "sleep", "600")
        a_pid, b_pid = _task_pid(a, "same"), _task_pid(b, "same")
        a.stop()
        assert not _running(a_pid)
        assert _running(b_pid)
        assert _task_pid(b, "same") == b_pid
    assert not _running(b_pid)


def test_restart_after_kill_keeps_images(busybox_oci: ImageArchive) -> None:
    with ContainerdDaemon() as d:
        d.ctr("images", "import", busybox_oci.path)
        d.kill(signal.SIGKILL)
        with pytest.raises(subprocess.CalledProcessError):
            d.ctr("version", timeout=10)
        d.start()
        assert busybox_oci.name in d.ctr("images", "ls", "-q").stdout
        with pytest.raises(RuntimeError, match="already running"):
            d.start()


def test_bogus_binary_raises_with_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "containerd"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then\n'
        '  echo "containerd github.com/containerd/containerd v1.6.99 abc"; exit 0\n'
        "fi\n"
        'echo "fake-containerd: refusing to start: $*" >&2\n'
        "exit 3\n"
    )
    fake.chmod(0o755)
    d = ContainerdDaemon(str(fake), start_timeout=5)
    assert d.version == "1.6.99"
    assert d.major == 1
    with pytest.raises(DaemonStartError, match="exited with code 3") as info:
        d.start()
    assert "fake-containerd: refusing to start: --config" in str(info.value)
    assert isinstance(info.value, ContainerdError)
    assert not os.path.exists(d.base_dir)
    assert "refusing to start" in d.logs()


def test_missing_or_silent_binary_raises(tmp_path: Path) -> None:
    with pytest.raises(DaemonStartError, match="does not exist"):
        ContainerdDaemon(str(tmp_path / "nope")).start()
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\necho no version here\n")
    silent.chmod(0o755)
    with pytest.raises(DaemonStartError, match="no containerd version"):
        ContainerdDaemon(str(silent)).start()


def test_daemon_that_never_serves_times_out_and_is_killed(tmp_path: Path) -> None:
    fake = tmp_path / "containerd"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "containerd x 2.1.0"; exit 0; fi\n'
        'echo $$ > "$(dirname "$0")/pid"\n'
        "echo waiting-forever\n"
        "exec sleep 300\n"
    )
    fake.chmod(0o755)
    d = ContainerdDaemon(str(fake), start_timeout=0.5, stop_timeout=2)
    started = time.monotonic()
    with pytest.raises(DaemonStartError, match="did not serve within") as info:
        d.start()
    assert time.monotonic() - started < 5
    assert "waiting-forever" in str(info.value)
    assert not d.running
    assert not _running(int((tmp_path / "pid").read_text()))


def test_bad_extra_config_raises_with_daemon_message(bin_dir: str | None) -> None:
    d = ContainerdDaemon(bin_dir=bin_dir, extra_config="[grpc\nbroken =")
    with pytest.raises(DaemonStartError, match="TOML"):
        d.start()
    assert not d.running
    assert not os.path.exists(d.base_dir)


def test_extra_config_and_given_base_dir(tmp_path: Path) -> None:
    base = tmp_path / "daemon"
    extra = "[grpc]\n  max_recv_message_size = 33554432\n"
    d = ContainerdDaemon(base_dir=str(base), namespace="given-ns", extra_config=extra, log_level="debug")
    with d:
        assert d.namespace == "given-ns"
        assert d.base_dir == str(base)
        assert d.runc_root.startswith(str(base))
        assert "max_recv_message_size = 33554432" in Path(d.config_path).read_text()
        d.ctr("version")
    # A given folder stays, with config and log, but the daemon's data goes.
    assert sorted(p.name for p in base.iterdir()) == ["config.toml", "containerd.log"]
    assert "level=debug" in d.logs()


def test_dropped_daemon_is_cleaned_up_with_resource_warning() -> None:
    d = ContainerdDaemon()
    d.start()
    pid, base = d.pid, d.base_dir
    assert pid is not None
    with pytest.warns(ResourceWarning, match="without stop"):
        del d
    assert not _running(pid)
    assert not os.path.exists(base)


# -- image archives ----------------------------------------------------------


def test_archives_are_deterministic(tmp_path: Path) -> None:
    layers: list[LayerSpec] = [
        {"/a/b.txt": b"x", "/c": Symlink("a/b.txt")},
        ImageLayer({"/a/b.txt": Whiteout()}, gzip=True),
    ]
    one = build_image_archive(tmp_path / "1.tar", name="localhost/t/det:1", layers=layers)
    two = build_image_archive(tmp_path / "2.tar", name="localhost/t/det:1", layers=layers)
    assert one.manifest_digest == two.manifest_digest
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()
    assert one.layer_digests[0] == one.diff_ids[0]
    assert one.layer_digests[1] != one.diff_ids[1]
    bb1 = build_busybox_archive(tmp_path / "bb1.tar", cache_dir=tmp_path / "cache")
    bb2 = build_busybox_archive(tmp_path / "bb2.tar", cache_dir=tmp_path / "cache")
    assert bb1.manifest_digest == bb2.manifest_digest
    assert (tmp_path / "bb1.tar").read_bytes() == (tmp_path / "bb2.tar").read_bytes()
    with pytest.raises(ValueError, match=r"\.\."):
        build_image_archive(tmp_path / "bad.tar", name="x:1", layers=[{"../etc": b""}])


def test_layers_whiteouts_modes_and_users_in_a_container(tmp_path: Path, bin_dir: str | None) -> None:
    image = build_busybox_archive(
        tmp_path / "layered.tar",
        name="localhost/containerd-client/layered:1",
        passwd=["app:x:1000:1000::/home/app:/bin/sh"],
        group=["app:x:1000:"],
        user="app",
        workdir="/home/app",
        env={"GREETING": "hello"},
        extra_layers=[
            {
                "/etc/motd": b"first\n",
                "/opt/tool": File(b"#!/bin/sh\necho tool-ran\n", mode=0o755),
                "/opt/gone/file": b"x",
                "/opt/keep": b"kept\n",
                "/home/app": Directory(mode=0o750, uid=1000, gid=1000),
            },
            ImageLayer(
                {
                    "/opt/gone": Whiteout(),
                    "/opt/link": Symlink("/opt/keep"),
                    "/etc/motd": b"second\n",
                },
                gzip=True,
            ),
        ],
    )
    script = (
        'echo "$GREETING $(id -un) $(pwd)"; cat /etc/motd; /opt/tool; cat /opt/link; '
        "ls /opt; stat -c %a:%u /home/app /tmp"
    )
    with ContainerdDaemon(bin_dir=bin_dir) as d:
        d.ctr("images", "import", image.path)
        out = d.ctr("run", "--rm", image.name, "layered", "sh", "-c", script).stdout
    assert out.splitlines() == [
        "hello app /home/app",
        "second",
        "tool-ran",
        "kept",
        "keep",
        "link",
        "tool",
        "750:1000",
        "1777:0",
    ]
