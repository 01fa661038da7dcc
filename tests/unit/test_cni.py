"""The network package without a daemon: request checks, and the CNI protocol against fake plugins."""

from __future__ import annotations

import json
import os
import pickle
import socket
import stat
from pathlib import Path

import pytest

from containerd_client import errors, network
from containerd_client import spec as spec_opts
from containerd_client.network import _cni


def _fake_plugins(folder: Path, scripts: dict[str, str]) -> tuple[str, ...]:
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return (str(folder),)


def _plan(network_name: str | None, ports: object = None, **config: object) -> network.NetworkPlan:
    return network.plan(
        network_name,
        ports,  # type: ignore[arg-type]
        network.NetworkConfig(**config),  # type: ignore[arg-type]
        state_root="/nonexistent-state",
        namespace="ns",
        container_id="c1",
    )


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ({0: None}, "container port must be a port number"),
        ({70000: None}, "container port must be a port number"),
        ({True: None}, "container port must be a port number"),
        ({"80/sctp": None}, "must look like 80, '80/tcp' or '53/udp'"),
        ({"http": None}, "must look like"),
        ({80: "8080"}, "host port for 80/tcp must be a port number"),
        ({80: None, "80/tcp": None}, "published twice"),
        ({80: 8080, 81: 8080}, "asked for twice"),
        ([80], "ports must be a mapping"),
    ],
)
def test_bad_ports_are_refused(ports: object, message: str, tmp_path: Path) -> None:
    dirs = _fake_plugins(
        tmp_path / "bin",
        dict.fromkeys(("bridge", "portmap", "firewall", "loopback", "host-local"), "exit 0\n"),
    )
    with pytest.raises(network.InvalidNetworkError, match=message) as info:
        _plan("bridge", ports, plugin_dirs=dirs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, errors.InvalidArgumentError)


def test_none_and_host_take_no_ports() -> None:
    assert _plan(None).kind == "none"
    assert _plan("none").kind == "none"
    assert _plan("host").kind == "host"
    with pytest.raises(network.InvalidNetworkError, match="ports need a CNI network"):
        _plan("host", {80: None})
    with pytest.raises(network.InvalidNetworkError, match="network must be a string"):
        _plan(42)  # type: ignore[arg-type]


def test_bad_config_values() -> None:
    with pytest.raises(network.InvalidNetworkError, match="subnet"):
        network.NetworkConfig(subnet="10.0.0.1/16")
    with pytest.raises(network.InvalidNetworkError, match="IPv4"):
        network.NetworkConfig(subnet="fd00::/64")
    with pytest.raises(network.InvalidNetworkError, match="bridge"):
        network.NetworkConfig(bridge="a-very-long-bridge-name")


def test_missing_plugin_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        network.PluginNotFoundError, match=r"'bridge' not found .*containernetworking-plugins"
    ) as info:
        _plan("bridge", plugin_dirs=(str(tmp_path),))
    assert isinstance(info.value, errors.NotSupportedError)
    assert isinstance(info.value, network.NetworkError)


def test_named_network_from_conf_dirs(tmp_path: Path) -> None:
    dirs = _fake_plugins(tmp_path / "bin", {"ptp": "exit 0\n", "loopback": "exit 0\n"})
    conf = tmp_path / "net.d"
    conf.mkdir()
    (conf / "10-mine.conf").write_text(json.dumps({"cniVersion": "1.0.0", "name": "mine", "type": "ptp"}))
    (conf / "junk.conf").write_text("{not json")
    plan = _plan("mine", plugin_dirs=dirs, conf_dirs=(str(conf),))
    assert plan.kind == "cni"
    assert [p["type"] for p in plan.conflist["plugins"]] == ["ptp"]
    assert plan.netns == "/nonexistent-state/_netns/ns/c1"
    with pytest.raises(network.InvalidNetworkError, match=r"no network 'other'.*\(found: mine\)"):
        _plan("other", plugin_dirs=dirs, conf_dirs=(str(conf),))
    with pytest.raises(network.InvalidNetworkError, match="no plugin with the portMappings capability"):
        _plan("mine", {80: None}, plugin_dirs=dirs, conf_dirs=(str(conf),))


def test_taken_host_port_is_refused(tmp_path: Path) -> None:
    dirs = _fake_plugins(
        tmp_path / "bin", dict.fromkeys(("bridge", "portmap", "firewall", "loopback"), "exit 0\n")
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(network.PortInUseError, match=f"127.0.0.1:{port}/tcp is already in use") as info:
            _plan("bridge", {80: port}, plugin_dirs=dirs)
    assert isinstance(info.value, errors.ConflictError)


def test_cni_protocol_add_chains_results_and_del_runs_in_reverse(tmp_path: Path) -> None:
    log = tmp_path / "log"
    # Each fake plugin logs its command, env and stdin, and answers with a result naming itself.
    head = '"$(basename $0)" "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_NETNS"'
    answer = '{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.%s/24"}]}'
    body = (
        "conf=$(cat)\n"
        f'printf "%s %s %s %s %s\\n" {head} >> {log}\n'
        f'printf "%s\\n" "$conf" >> {log}\n'
        f'if [ "$CNI_COMMAND" = ADD ]; then printf \'{answer}\' "$(basename $0 | wc -c)"; fi\n'
    )
    dirs = _fake_plugins(tmp_path / "bin", {"one": body, "three": body})
    conflist = {
        "cniVersion": "1.0.0",
        "name": "n",
        "plugins": [{"type": "one"}, {"type": "three", "capabilities": {"portMappings": True}}],
    }
    mappings = [{"hostPort": 1, "containerPort": 2, "protocol": "tcp", "hostIP": "127.0.0.1"}]
    result = _cni.run_list(
        "ADD",
        conflist,
        container_id="cid",
        netns="/ns",
        ifname="eth0",
        plugin_dirs=dirs,
        runtime_config={"portMappings": mappings},
    )
    assert result == {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.6/24"}]}
    _cni.run_list(
        "DEL", conflist, container_id="cid", netns="/ns", ifname="eth0", plugin_dirs=dirs, prev_result=result
    )
    lines = log.read_text().splitlines()
    heads, confs = lines[0::2], [json.loads(c) for c in lines[1::2]]
    assert heads == [
        "one ADD cid eth0 /ns",
        "three ADD cid eth0 /ns",
        "three DEL cid eth0 /ns",
        "one DEL cid eth0 /ns",
    ]
    assert confs[0] == {"type": "one", "name": "n", "cniVersion": "1.0.0"}
    # The second plugin gets the first one's result and, having the capability, the ports.
    assert confs[1]["prevResult"] == {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.4/24"}]}
    assert confs[1]["runtimeConfig"] == {"portMappings": mappings}
    assert "capabilities" not in confs[1]
    assert confs[2]["prevResult"] == result
    assert confs[3]["prevResult"] == result
    assert "runtimeConfig" not in confs[3]


def test_plugin_error_json_becomes_cni_error_and_del_goes_on(tmp_path: Path) -> None:
    marker = tmp_path / "first-ran"
    error = json.dumps(
        {"cniVersion": "1.0.0", "code": 7, "msg": "invalid network config", "details": "no bridge"}
    )
    dirs = _fake_plugins(
        tmp_path / "bin",
        {
            "bad": f"cat >/dev/null; echo '{error}'; exit 1\n",
            "good": f"cat >/dev/null; touch {marker}\n",
            "crash": "cat >/dev/null; echo boom >&2; exit 2\n",
        },
    )
    conflist = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "good"}, {"type": "bad"}]}
    with pytest.raises(network.CNIError) as info:
        _cni.run_list("DEL", conflist, container_id="c", netns="/ns", ifname="eth0", plugin_dirs=dirs)
    assert marker.exists()  # DEL of the plugin before the failing one still ran
    err = info.value
    assert (err.plugin, err.command, err.code, err.msg, err.details) == (
        "bad",
        "DEL",
        7,
        "invalid network config",
        "no bridge",
    )
    assert str(err) == "CNI plugin bad DEL failed (code 7): invalid network config (no bridge)"
    assert pickle.loads(pickle.dumps(err)).details == "no bridge"
    with pytest.raises(network.CNIError, match="exit status 2: boom"):
        _cni.run_list(
            "ADD",
            {"name": "n", "plugins": [{"type": "crash"}]},
            container_id="c",
            netns="/ns",
            ifname="eth0",
            plugin_dirs=dirs,
        )


def test_ports_label_round_trip() -> None:
    ports = (network.PortMapping(80, 34567), network.PortMapping(53, 5353, "udp", "127.0.0.1"))
    assert network.parse_ports_label(network.ports_label(ports)) == ports
    assert network.parse_ports_label("garbage,80/tcp=127.0.0.1:8080") == (network.PortMapping(80, 8080),)


def test_spec_joins_the_namespace_path() -> None:
    spec = spec_opts.generate("c", "ns", spec_opts.with_network_namespace("/run/x/_netns/ns/c"))
    nets = [ns for ns in spec["linux"]["namespaces"] if ns["type"] == "network"]
    assert nets == [{"type": "network", "path": "/run/x/_netns/ns/c"}]
    with pytest.raises(errors.InvalidSpecError):
        spec_opts.with_network_namespace("relative")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may make namespaces")
def test_netns_without_privilege_fails_cleanly(tmp_path: Path) -> None:
    from containerd_client.network import _netns

    path = str(tmp_path / "ns")
    with pytest.raises(PermissionError, match="unshare"):
        _netns.create(path)
    assert not os.path.exists(path)


# A nat table as iptables-save prints it with CNI portmap, Docker and a range rule in it.
NAT_TABLE = """\
# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:CNI-DN-0123abcd - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A CNI-HOSTPORT-DNAT -p tcp -m multiport --dports 18080,18081 -j CNI-DN-0123abcd
-A CNI-DN-0123abcd -s 10.213.0.0/16 -p tcp -m tcp --dport 18080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-0123abcd -d 127.0.0.1/32 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.213.0.5:80
-A DOCKER ! -i docker0 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.17.0.2:53
-A OTHER -p tcp -m tcp --dport 20000:20002 -j DNAT --to-destination 10.0.0.9
-A OTHER -p tcp -m tcp --dport 1:65535 -j DNAT --to-destination 10.0.0.9
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A OTHER -p tcp --dport 9999 -j REDIRECT --to-ports 80
COMMIT
"""


def test_dnat_ports_are_read_from_any_tools_rules() -> None:
    assert network.dnat_ports(NAT_TABLE) == {
        (18080, "tcp"),
        (18081, "tcp"),  # from the multiport jump to the CNI-DN chain
        (5353, "udp"),  # Docker's
        (20000, "tcp"),
        (20001, "tcp"),
        (20002, "tcp"),
        # Not: a range of the whole port space (too wide to mean a published
        # port), MASQUERADE, REDIRECT (goes to this host, to a listener).
    }
    assert network.dnat_ports("") == set()
    assert network.dnat_ports("-A X -p tcp --dport notanumber -j DNAT") == set()


def test_a_picked_port_skips_ports_other_rules_dnat(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel hands out 40001 first (held by a DNAT rule of another tool), then 40002.
    handed = iter([40001, 40002])

    class Sock:
        def __init__(self, *args: object) -> None:
            self.port = next(handed)

        def __enter__(self) -> Sock:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def bind(self, address: object) -> None:
            pass

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(network.socket, "socket", Sock)
    (picked,) = network._pick_ports((network.PortMapping(80, 0),), {(40001, "tcp")})
    assert picked.host_port == 40002


def test_a_containers_resolv_conf_keeps_what_it_can_reach() -> None:
    host = (
        "# comment\n"
        "; also a comment\n"
        "nameserver 127.0.0.53\n"  # systemd-resolved's stub: loopback, unreachable from the container
        "nameserver ::1\n"
        "nameserver 2001:db8::53\n"  # IPv6: the SDK's bridge has none
        "nameserver 10.0.0.2\n"
        "nameserver not-an-address\n"
        "nameserver\n"
        "search  corp.example  example\n"
        "options ndots:2 timeout:1\n"
        "sortlist 10.0.0.0\n"
    )
    assert network.resolv_conf(host).splitlines()[1:] == [
        "nameserver 10.0.0.2",
        "search corp.example example",
        "options ndots:2 timeout:1",
    ]
    assert network.resolv_conf("nameserver 127.0.0.53\n").splitlines()[1:] == []


def test_the_resolv_conf_file_is_shared_by_content_and_falls_back_past_a_stub(tmp_path: Path) -> None:
    stub = tmp_path / "stub.conf"
    stub.write_text("nameserver 127.0.0.53\nsearch lan\n")
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("nameserver 192.0.2.1\n")
    state = tmp_path / "state"
    path = network.container_resolv_conf(str(state), (str(stub), str(upstream)))
    assert path is not None
    assert Path(path).read_text().splitlines()[1:] == ["nameserver 192.0.2.1"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # read by the container's user too
    assert network.container_resolv_conf(str(state), (str(stub), str(upstream))) == path
    # Only a stub: its search line is still worth having.
    only = network.container_resolv_conf(str(state), (str(stub), str(tmp_path / "missing")))
    assert only is not None
    assert only != path
    assert Path(only).read_text().splitlines()[1:] == ["search lan"]
    assert network.container_resolv_conf(str(state), (str(tmp_path / "missing"),)) is None
    assert sorted(os.listdir(state / "_cni" / "resolv")) == sorted(os.path.basename(p) for p in (path, only))


def test_a_containers_hosts_file_is_rewritten_in_place(tmp_path: Path) -> None:
    path = str(tmp_path / "etc-hosts")
    network.write_hosts(path, "web")
    before = os.stat(path)
    assert Path(path).read_text().splitlines()[1:] == [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    assert stat.S_IMODE(before.st_mode) == 0o644
    network.write_hosts(path, "web", "10.88.0.7")
    # The same inode: a bind mount of the file sees the address line.
    assert os.stat(path).st_ino == before.st_ino
    assert Path(path).read_text().splitlines()[-1] == "10.88.0.7\tweb"
    network.write_hosts(path, "web")  # shorter again: nothing of the old text is left
    assert "10.88.0.7" not in Path(path).read_text()
    assert network.hosts_text("", "10.88.0.7") == network.hosts_text("")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):  # O_NOFOLLOW
        network.write_hosts(str(link), "web")
    assert not (tmp_path / "elsewhere").exists()


def test_the_hosts_file_option_sets_a_hostname_only_where_the_spec_has_none() -> None:
    spec: dict[str, object] = {}
    spec_opts.with_hosts_file("/s/etc-hosts", hostname="web")(spec)
    assert spec["hostname"] == "web"
    assert spec["mounts"] == [
        {"destination": "/etc/hosts", "type": "bind", "source": "/s/etc-hosts", "options": ["rbind", "ro"]}
    ]
    named: dict[str, object] = {
        "hostname": "db",
        "mounts": [{"destination": "/etc/hosts", "source": "/mine"}],
    }
    spec_opts.with_hosts_file("/s/etc-hosts", hostname="web")(named)
    assert named == {"hostname": "db", "mounts": [{"destination": "/etc/hosts", "source": "/mine"}]}
    with pytest.raises(errors.InvalidSpecError):
        spec_opts.with_hosts_file("relative")
    with pytest.raises(errors.InvalidSpecError):
        spec_opts.with_hosts_file("/s/etc-hosts", hostname="bad name")
