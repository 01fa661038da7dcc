"""CNI networking against a real daemon and the real plugins: published ports, teardown.

Each test counts what networking leaves on the host (pinned namespaces,
veths, iptables rules, host-local allocations, attachment records) before and
after, and asserts the counts are equal. The shared chains the plugins make
once per host (``CNI-HOSTPORT-DNAT``, ``CNI-FORWARD``...) and the bridge stay,
as Docker's ``DOCKER`` chains and ``docker0`` do: :func:`warm` makes them
before the first count.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import attrs
import pytest

from containerd_client import Client, cio, network, wait
from containerd_client import spec as spec_opts
from containerd_client.errors import NotFoundError
from containerd_client.testing import ContainerdDaemon
from containerd_client.testing._census import state_folder

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and CNI need root"),
    pytest.mark.skipif(
        not any(os.path.exists(os.path.join(d, "bridge")) for d in network.NetworkConfig().plugin_dirs),
        reason="CNI plugins missing (apt-get install containernetworking-plugins)",
    ),
]

HTTPD = ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]


def _state_root(client: Client) -> str:
    return os.path.dirname(state_folder(client))


def _lines(cmd: list[str]) -> list[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()


def _own_iptables(subnet: str) -> list[str]:
    """The iptables lines of this test's network: those naming its subnet's
    addresses, and every line of the per-container chains they jump to or
    live in (another daemon's network, run side by side, is left out)."""
    prefix = subnet.rsplit(".", 2)[0] + "."  # "10.230." for 10.230.0.0/16
    lines = [
        re.sub(r"\[\d+:\d+\]", "", line) for line in _lines(["iptables-save"]) if not line.startswith("#")
    ]
    chains = set()
    for line in lines:
        if prefix in line:
            chains.update(re.findall(r"\b(CNI-(?:DN-)?[0-9a-f]{16,})\b", line))
    return [line for line in lines if prefix in line or any(re.search(rf"\b{c}\b", line) for c in chains)]


def host_network_state(client: Client) -> dict[str, list[str]]:
    """What this client's network holds on the host, by kind (sorted names or lines).

    Its own bridge's veths and its own subnet's iptables rules: the test
    daemon gives each session a network of its own, so a run beside this one
    (another containerd version, an xdist worker) does not show up here.
    """
    root = _state_root(client)
    config = client.network_config
    ns = client.namespace_name
    # This client's bridge and namespace only: the state folder is shared by
    # every daemon on the host (the 1.7 and 2.x runs go side by side).
    ipam = os.path.join(root, "_cni", "ipam", config.bridge)
    allocations = []
    for folder, _dirs, files in os.walk(ipam):
        # host-local keeps one file per allocated address, plus a lock and a cursor.
        allocations += [
            os.path.join(folder, f) for f in files if f != "lock" and not f.startswith("last_reserved_ip")
        ]
    netns = []
    for folder, _dirs, files in os.walk(os.path.join(root, "_netns", ns)):
        netns += [os.path.join(folder, f) for f in files]
    records = os.path.join(root, "_cni", "attachments")
    veths = []
    with contextlib.suppress(subprocess.CalledProcessError):  # no bridge yet
        veths = [
            line.split(":")[1].strip()
            for line in _lines(["ip", "-o", "link", "show", "master", config.bridge, "type", "veth"])
        ]
    return {
        "netns": sorted(netns),
        "ip netns": sorted(_lines(["ip", "netns", "list"])),
        "veths": sorted(veths),
        "iptables": sorted(_own_iptables(config.subnet)),
        "ipam": sorted(allocations),
        "records": sorted(f for f in os.listdir(records) if f.startswith(f"{ns}--"))
        if os.path.isdir(records)
        else [],
    }


@pytest.fixture(autouse=True)
def portmap(containerd: Client) -> None:
    """This module checks the portmap plugin's rules: its client forwards published ports
    through it (the test daemon's default is the in-process proxy, tested below)."""
    containerd._network_config = attrs.evolve(containerd.network_config, port_forwarding="portmap")


@pytest.fixture
def warm(containerd: Client) -> None:
    """Make the host-wide CNI chains and the bridge once, so counts compare per-container state."""
    root = _state_root(containerd)
    plan = network.plan(
        "bridge",
        {80: None},
        containerd.network_config,
        state_root=root,
        namespace=containerd.namespace_name,
        container_id="warm-up",
    )
    network.attach(plan)
    network.detach(root, containerd.namespace_name, "warm-up")


@pytest.fixture
def www(tmp_path: Path) -> Path:
    folder = tmp_path / "www"
    folder.mkdir()
    (folder / "index.html").write_text("hello from a container\n")
    return folder


def _wait_http(url: str, deadline: float) -> bytes:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bytes(resp.read())
        except OSError as exc:  # refused until httpd listens
            last = exc
            time.sleep(0.02)  # polling with a deadline, not synchronisation
    raise AssertionError(f"{url} never answered: {last}")


def test_httpd_published_port_answers_on_localhost_and_leaves_nothing(
    containerd: Client, busybox_rootfs: str, www: Path, warm: None
) -> None:
    before = host_network_state(containerd)
    with containerd.create_container(
        "web",
        rootfs=busybox_rootfs,
        args=HTTPD,
        spec=[spec_opts.with_bind_mount(str(www), "/www", readonly=True)],
        network="bridge",
        ports={80: None},
    ) as container:
        port = container.host_port(80)
        assert container.network == "bridge"
        assert container.ports == (network.PortMapping(80, port, "tcp", "127.0.0.1"),)
        namespaces = container.spec()["linux"]["namespaces"]
        netns = [ns for ns in namespaces if ns["type"] == "network"]
        assert netns == [
            {
                "type": "network",
                "path": network.netns_path(_state_root(containerd), containerd.namespace_name, "web"),
            }
        ]
        attachment = container.wait_network()
        assert attachment is not None
        assert ipaddress.ip_address(attachment.ip_address or "") in ipaddress.ip_network(
            containerd.network_config.subnet
        )
        during = host_network_state(containerd)
        assert len(during["veths"]) == len(before["veths"]) + 1
        assert len(during["ipam"]) == len(before["ipam"]) + 1
        assert len(during["netns"]) == len(before["netns"]) + 1
        assert during["iptables"] != before["iptables"]
        task = container.new_task()
        task.start()
        body = _wait_http(f"http://127.0.0.1:{port}/", time.monotonic() + 10)
        assert body == b"hello from a container\n"
        task.kill(signal.SIGKILL)  # httpd as pid 1 has no SIGTERM handler
        task.wait(10)
        doc = network.record(_state_root(containerd), containerd.namespace_name, "web")
        assert doc is not None
        assert doc["session"] == containerd.session
        # A loaded handle sees the same ports, from the record's labels.
        assert containerd.load_container("web").host_port(80) == port
        with pytest.raises(NotFoundError, match="443/tcp"):
            container.host_port(443)
    assert host_network_state(containerd) == before


def test_published_port_through_the_proxy_adds_no_iptables_rule_and_leaves_nothing(
    containerd: Client, busybox_rootfs: str, www: Path, warm: None
) -> None:
    containerd._network_config = attrs.evolve(containerd.network_config, port_forwarding="proxy")
    before = host_network_state(containerd)
    with containerd.create_container(
        "web-proxied",
        rootfs=busybox_rootfs,
        args=HTTPD,
        spec=[spec_opts.with_bind_mount(str(www), "/www", readonly=True)],
        network="bridge",
        ports={80: None},
    ) as container:
        port = container.host_port(80)
        # Held by this process from the moment it was picked, refusing until httpd listens.
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert container.wait_network() is not None
        during = host_network_state(containerd)
        assert len(during["veths"]) == len(before["veths"]) + 1
        # The firewall and masquerading rules of the address, but no DNAT for the port.
        assert [line for line in during["iptables"] if "DNAT" in line or "HOSTPORT" in line] == []
        task = container.new_task()
        task.start()
        task.wait_for(wait.http(port), timeout=10)
        body = _wait_http(f"http://127.0.0.1:{port}/", time.monotonic() + 10)
        assert body == b"hello from a container\n"
        task.kill(signal.SIGKILL)
        task.wait(10)
    assert host_network_state(containerd) == before
    with socket.socket() as again:  # the port is free again (connections may be in TIME_WAIT)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


def _cat_resolv_conf(containerd: Client, busybox_rootfs: str, name: str, *opts: spec_opts.SpecOpt) -> bytes:
    with containerd.create_container(
        name, rootfs=busybox_rootfs, args=["cat", "/etc/resolv.conf"], spec=list(opts), network="bridge"
    ) as container:
        out = cio.Capture()
        task = container.new_task(stdout=out)
        task.start()
        assert task.wait(30).exit_code == 0
        return out.getvalue()


def test_a_bridge_container_gets_the_hosts_name_servers_and_a_users_mount_wins(
    containerd: Client, busybox_rootfs: str, tmp_path: Path, warm: None
) -> None:
    # Made here from the host's own files, as the SDK does (their content differs per machine).
    expected = None
    for path in network.HOST_RESOLV_CONFS:
        if os.path.exists(path):
            with open(path) as fh:
                made = network.resolv_conf(fh.read())
            expected = expected or made
            if "\nnameserver " in made:
                expected = made
                break
    if expected is None:
        pytest.skip("this host has no resolv.conf")
    before = host_network_state(containerd)
    assert _cat_resolv_conf(containerd, busybox_rootfs, "dns").decode() == expected
    mine = tmp_path / "resolv.conf"
    mine.write_text("nameserver 192.0.2.53\n")
    own = spec_opts.with_bind_mount(str(mine), "/etc/resolv.conf", readonly=True)
    assert _cat_resolv_conf(containerd, busybox_rootfs, "dns-own", own) == b"nameserver 192.0.2.53\n"
    assert host_network_state(containerd) == before


def test_a_bridge_container_resolves_localhost_and_its_own_name(
    containerd: Client, busybox_rootfs: str, www: Path, warm: None
) -> None:
    """As on Docker: ``/etc/hosts`` names localhost, and the hostname (the id) on the container's address."""
    script = (
        "httpd -p 80 -h /www && hostname && cat /etc/hosts && "
        "wget -q -O - http://localhost/ && wget -q -O - http://$(hostname)/"
    )
    with containerd.create_container(
        "named-web",
        rootfs=busybox_rootfs,
        args=["sh", "-c", script],
        spec=[spec_opts.with_bind_mount(str(www), "/www", readonly=True)],
        network="bridge",
    ) as container:
        out, err = cio.Capture(), cio.Capture()
        task = container.new_task(stdout=out, stderr=err)
        address = container.wait_network().ip_address  # type: ignore[union-attr]
        task.start()
        status = task.wait(30)
        assert status.exit_code == 0, (out.getvalue(), err.getvalue())
        lines = out.getvalue().decode().splitlines()
        assert lines[0] == "named-web"
        assert "127.0.0.1\tlocalhost" in lines
        assert f"{address}\tnamed-web" in lines
        assert lines[-2:] == ["hello from a container"] * 2
    assert not os.path.exists(os.path.join(_state_root(containerd), containerd.namespace_name, "named-web"))


def test_a_hostname_of_the_spec_wins_and_so_does_a_users_hosts_mount(
    containerd: Client, busybox_rootfs: str, tmp_path: Path, warm: None
) -> None:
    mine = tmp_path / "hosts"
    mine.write_text("192.0.2.1 elsewhere\n")

    def run(name: str, *opts: spec_opts.SpecOpt) -> str:
        with containerd.create_container(
            name,
            rootfs=busybox_rootfs,
            args=["sh", "-c", "hostname; cat /etc/hosts"],
            spec=list(opts),
            network="bridge",
        ) as container:
            out = cio.Capture()
            task = container.new_task(stdout=out)
            task.start()
            assert task.wait(30).exit_code == 0
            return out.getvalue().decode()

    named = run("h1", spec_opts.with_hostname("db.example"))
    assert named.splitlines()[0] == "db.example"
    assert "\tdb.example" in named
    own = run("h2", spec_opts.with_bind_mount(str(mine), "/etc/hosts", readonly=True))
    assert own.splitlines()[1:] == ["192.0.2.1 elsewhere"]


def test_explicit_host_port(containerd: Client, busybox_rootfs: str, www: Path, warm: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        wanted = probe.getsockname()[1]
    before = host_network_state(containerd)
    with containerd.create_container(
        "web-fixed",
        rootfs=busybox_rootfs,
        args=HTTPD,
        spec=[spec_opts.with_bind_mount(str(www), "/www", readonly=True)],
        network="bridge",
        ports={"80/tcp": wanted},
    ) as container:
        assert container.host_port(80) == wanted
        task = container.new_task()
        task.start()
        assert _wait_http(f"http://127.0.0.1:{wanted}/", time.monotonic() + 10) == b"hello from a container\n"
        # The SDK's own containers cannot publish the same host port twice.
        with pytest.raises(network.PortInUseError, match=str(wanted)):
            containerd.create_container(
                "web-twice", rootfs=busybox_rootfs, network="bridge", ports={80: wanted}
            )
        assert [c.id for c in containerd.containers()] == ["web-fixed"]
    assert host_network_state(containerd) == before


def test_port_taken_on_host_is_refused_before_anything(
    containerd: Client, busybox_rootfs: str, warm: None
) -> None:
    before = host_network_state(containerd)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(network.PortInUseError, match=f"127.0.0.1:{taken}/tcp is already in use"):
            containerd.create_container("taken", rootfs=busybox_rootfs, network="bridge", ports={80: taken})
    assert containerd.containers() == []
    assert host_network_state(containerd) == before


def test_port_another_tool_dnats_is_refused_before_anything(
    containerd: Client, busybox_rootfs: str, warm: None
) -> None:
    # Docker, nerdctl or a crashed run's portmap may DNAT a port nothing listens
    # on: a container published there would never see its connections. The
    # rule sits in a chain of its own that nothing jumps to, so it diverts nothing.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chain = f"CCTEST-{os.getpid()}"
    subprocess.run(["iptables", "-t", "nat", "-N", chain], check=True)
    try:
        rule = ["-p", "tcp", "--dport", str(port), "-j", "DNAT", "--to-destination", "10.255.255.1:80"]
        subprocess.run(["iptables", "-t", "nat", "-A", chain, *rule], check=True)
        before = host_network_state(containerd)
        for forwarding in ("portmap", "proxy"):
            containerd._network_config = attrs.evolve(containerd.network_config, port_forwarding=forwarding)
            with pytest.raises(network.PortInUseError, match=f"{port}/tcp .*DNAT rule of another tool"):
                containerd.create_container("dnat", rootfs=busybox_rootfs, network="bridge", ports={80: port})
            assert containerd.containers() == []
            assert host_network_state(containerd) == before
    finally:
        subprocess.run(["iptables", "-t", "nat", "-F", chain], check=False)
        subprocess.run(["iptables", "-t", "nat", "-X", chain], check=False)


def test_unknown_network_is_refused_before_anything(containerd: Client, busybox_rootfs: str) -> None:
    before = host_network_state(containerd)
    with pytest.raises(network.InvalidNetworkError, match="no network 'nosuch'"):
        containerd.create_container("c", rootfs=busybox_rootfs, network="nosuch")
    with pytest.raises(network.InvalidNetworkError, match="ports need a CNI network"):
        containerd.create_container("c", rootfs=busybox_rootfs, ports={80: None})
    assert containerd.containers() == []
    assert host_network_state(containerd) == before


def test_failure_after_attach_tears_the_network_down(containerd: Client, warm: None) -> None:
    # The image is looked up after the namespace and CNI ADD: its absence must undo them.
    before = host_network_state(containerd)
    with pytest.raises(NotFoundError):
        containerd.create_container(
            "no-image", image="example.invalid/none:1", network="bridge", ports={80: None}
        )
    assert containerd.containers() == []
    assert host_network_state(containerd) == before


def test_failing_plugin_gives_cni_error_and_leaves_nothing(
    containerd: Client, busybox_rootfs: str, tmp_path: Path, warm: None
) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    # A real plugin chain whose second plugin fails on ADD (a sysctl that does not
    # exist), so what bridge's ADD made (veth, address) must be undone by DEL.
    broken = {
        "cniVersion": "1.0.0",
        "name": "broken",
        "plugins": [
            {
                "type": "bridge",
                "bridge": containerd.network_config.bridge,
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": containerd.network_config.subnet}]],
                    "dataDir": os.path.join(
                        _state_root(containerd), "_cni", "ipam", containerd.network_config.bridge
                    ),
                },
            },
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}},
        ],
    }
    (conf_dir / "broken.conflist").write_text(json.dumps(broken))
    before = host_network_state(containerd)
    with Client(
        containerd.address,
        containerd.namespace_name,
        network_config=attrs.evolve(containerd.network_config, conf_dirs=(str(conf_dir),)),
    ) as client:
        # ADD runs while the record and the task are made; new_task reports its failure.
        with client.create_container(
            "broken", rootfs=busybox_rootfs, args=["/bin/busybox", "true"], network="broken"
        ) as container:
            with pytest.raises(network.CNIError) as info:
                container.new_task()
            assert info.value.plugin == "tuning"
            assert info.value.command == "ADD"
            assert info.value.msg
            with pytest.raises(NotFoundError):
                container.task()  # the task made while ADD ran is gone again
        assert client.containers() == []
    assert host_network_state(containerd) == before


def test_cleanup_after_a_running_task_removes_the_network(
    containerd: Client, busybox_rootfs: str, warm: None
) -> None:
    # No explicit kill: leaving the block kills and deletes the task, then the network.
    before = host_network_state(containerd)
    with containerd.create_container(
        "sleeper", rootfs=busybox_rootfs, args=["/bin/busybox", "sleep", "60"], network="bridge"
    ) as container:
        container.new_task().start()
        assert container.ports == ()
    assert host_network_state(containerd) == before


def test_attachments_left_by_a_crash_are_listed_and_detached(containerd: Client, warm: None) -> None:
    # What a process killed between CNI ADD and the container's creation leaves:
    # a record and a pinned namespace with a veth; detach undoes it from here.
    root, ns = _state_root(containerd), containerd.namespace_name
    before = host_network_state(containerd)
    plan = network.plan(
        "bridge", {80: None}, containerd.network_config, state_root=root, namespace=ns, container_id="orphan"
    )
    network.attach(plan)
    assert network.attachments(root, ns) == [(ns, "orphan")]
    assert len(host_network_state(containerd)["veths"]) == len(before["veths"]) + 1
    for namespace, cid in network.attachments(root, ns):
        assert network.detach(root, namespace, cid) is True
    assert network.attachments(root, ns) == []
    assert network.detach(root, ns, "orphan") is False
    assert host_network_state(containerd) == before


def test_the_leak_check_sees_an_attachment_without_container_and_the_sweep_removes_it(
    containerd: Client, warm: None
) -> None:
    from containerd_client.testing.plugin import find_leaks, sweep_namespace

    root, ns = _state_root(containerd), containerd.namespace_name
    before = host_network_state(containerd)
    plan = network.plan(
        "bridge", None, containerd.network_config, state_root=root, namespace=ns, container_id="stray"
    )
    network.attach(plan)
    assert find_leaks(containerd).get("networks") == ["stray"]
    assert "network:stray" in sweep_namespace(containerd)
    assert host_network_state(containerd) == before


def test_ctrl_c_in_a_plugin_run_leaves_nothing(
    containerd: Client, busybox_rootfs: str, monkeypatch: pytest.MonkeyPatch, warm: None
) -> None:
    from containerd_client.network import _cni

    real = _cni._exec

    def interrupted(plugin: str, binary: str, conf: dict[str, object], env: dict[str, str]) -> object:
        if plugin == "portmap" and env["CNI_COMMAND"] == "ADD":
            raise KeyboardInterrupt  # after bridge made the veth and took an address
        return real(plugin, binary, conf, env)

    monkeypatch.setattr(_cni, "_exec", interrupted)
    before = host_network_state(containerd)
    with (
        pytest.raises(KeyboardInterrupt),
        containerd.create_container(
            "interrupted", rootfs=busybox_rootfs, args=["/bin/busybox", "true"], network="bridge"
        ) as container,
    ):
        container.new_task()
    assert containerd.containers() == []
    assert host_network_state(containerd) == before


def test_ctrl_c_while_add_runs_in_the_background_leaves_nothing(
    containerd: Client, busybox_rootfs: str, monkeypatch: pytest.MonkeyPatch, warm: None
) -> None:
    # Ctrl-C lands in the caller's thread while the record is being made and
    # CNI ADD runs on its own: create_container must wait for ADD, then undo it.
    from containerd_client import containers
    from containerd_client.network import _cni

    real_exec = _cni._exec
    add_started = threading.Event()

    def exec_and_signal(plugin: str, binary: str, conf: dict[str, object], env: dict[str, str]) -> object:
        add_started.set()
        return real_exec(plugin, binary, conf, env)

    def interrupted_create(*args: object, **kwargs: object) -> object:
        assert add_started.wait(10)
        raise KeyboardInterrupt

    monkeypatch.setattr(_cni, "_exec", exec_and_signal)
    monkeypatch.setattr(containers, "_create_container", interrupted_create)
    before = host_network_state(containerd)
    with pytest.raises(KeyboardInterrupt):
        containerd.create_container("interrupted", rootfs=busybox_rootfs, network="bridge", ports={80: None})
    assert containerd.containers() == []
    assert host_network_state(containerd) == before


@pytest.mark.containerd_leaks_ok("images", reason="the imported image is the test's setup")
def test_run_with_bridge_network_sees_eth0(containerd: Client, tmp_path: Path, warm: None) -> None:
    from containerd_client.testing import build_busybox_archive

    (image,) = containerd.images.import_archive(build_busybox_archive(tmp_path / "bb.tar").path)
    before = host_network_state(containerd)
    assert b"eth0" not in containerd.run(image, ["cat", "/proc/net/dev"]).stdout
    result = containerd.run(image, ["cat", "/proc/net/dev"], network="bridge")
    assert result.exit_code == 0
    assert b"eth0" in result.stdout
    with pytest.raises(network.InvalidNetworkError, match="no network 'nosuch'"):
        containerd.run("example.invalid/never-pulled:1", ["true"], network="nosuch")
    assert containerd.containers() == []
    assert host_network_state(containerd) == before


def test_a_pooled_namespace_serves_the_next_container_and_goes_at_close(
    containerd_daemon: ContainerdDaemon, busybox_rootfs: str, www: Path
) -> None:
    from containerd_client.network import _pool

    config = attrs.evolve(containerd_daemon.network_config, port_forwarding="proxy", namespace_pool=2)
    namespace = f"pool-{uuid.uuid4().hex[:8]}"
    client = Client(containerd_daemon.address, namespace, network_config=config)
    warm_up = network.plan(
        "bridge", None, config, state_root=_state_root(client), namespace=namespace, container_id="warm"
    )
    network.attach(warm_up)
    network.detach(_state_root(client), namespace, "warm")
    before = host_network_state(client)
    seen = []
    try:
        for name in ("first", "second"):
            with client.create_container(
                name,
                rootfs=busybox_rootfs,
                args=HTTPD,
                spec=[spec_opts.with_bind_mount(str(www), "/www", readonly=True)],
                network="bridge",
                ports={80: None},
            ) as container:
                seen.append(container.spec()["linux"]["namespaces"])
                task = container.new_task()
                task.start()
                port = container.host_port(80)
                task.wait_for(wait.http(port), timeout=10)
                assert _wait_http(f"http://127.0.0.1:{port}/", time.monotonic() + 10) == (
                    b"hello from a container\n"
                )
            pool = client._netns_pool(create=False)
            assert pool is not None
            assert len(pool.idle()) == 1  # kept, still attached
        # The second container joined the namespace the first one left.
        assert seen[0] == seen[1]
        # One that may change its namespace does not give it back.
        with client.create_container(
            "admin",
            rootfs=busybox_rootfs,
            args=["sleep", "60"],
            spec=[spec_opts.with_capabilities(add=["CAP_NET_ADMIN"])],
            network="bridge",
        ) as container:
            assert container.spec()["linux"]["namespaces"] == seen[0]  # the pool's one was taken...
            assert container.wait_network() is not None
        assert pool.idle() == []  # ...and not given back
        assert not _pool.reusable({"process": {"capabilities": {"bounding": ["CAP_NET_ADMIN"]}}})
    finally:
        client.close()
    assert host_network_state(client) == before
