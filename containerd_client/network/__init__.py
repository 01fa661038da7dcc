"""Container networking through CNI: a network namespace per container, published ports.

``Client.create_container(..., network="bridge", ports={80: None})`` asks for
it. The SDK then

1. makes a network namespace pinned under its state folder
   (``<state_dir>/_netns/<namespace>/<id>``, like ``ip netns add``),
2. runs the real CNI plugins on it (Debian's ``containernetworking-plugins``):
   ``loopback`` for ``lo``, then the network's configuration list for
   ``eth0`` (for ``"bridge"``, the SDK's own list, written to
   ``<state_dir>/_cni/net.d``: ``bridge`` with ``host-local`` addresses from
   :attr:`NetworkConfig.subnet`, ``portmap`` and ``firewall``),
3. points the OCI spec's network namespace at it.

Deleting the container (or leaving its ``with`` block) runs CNI DEL in
reverse order and removes the namespace, so no veth, iptables rule, address
allocation or namespace stays. What each attachment did is recorded in
``<state_dir>/_cni/attachments/<namespace>--<id>.json`` before the first
plugin runs, so :func:`detach` can undo it from another process too (after a
crash).

Published ports answer on :attr:`NetworkConfig.host_ip` (127.0.0.1): the
``portmap`` plugin DNATs locally made connections and, with ``snat``, sets
``route_localnet`` on the bridge so 127.0.0.1 can be forwarded.

Networks:
    ``None`` or ``"none"``: today's default, a private namespace with only ``lo``
    (made by runc, no CNI). ``"host"``: the host's network. ``"bridge"``: the
    SDK's bridge network. Any other name: a CNI network whose configuration
    (``.conflist``, ``.conf`` or ``.json``) is in :attr:`NetworkConfig.conf_dirs`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from containerd_client.errors import ConflictError, InvalidArgumentError
from containerd_client.network import _cni, _netns, _proxy
from containerd_client.network._cni import DEFAULT_PLUGIN_DIRS, CNIError, NetworkError, PluginNotFoundError
from containerd_client.network._pool import NamespacePool, Slot, new_slot_id, reusable

__all__ = [
    "HOST_RESOLV_CONFS",
    "NETWORK_LABEL",
    "PORTS_LABEL",
    "Attachment",
    "CNIError",
    "InvalidNetworkError",
    "NetworkConfig",
    "NetworkError",
    "NetworkPlan",
    "PendingAttachment",
    "PluginNotFoundError",
    "PortInUseError",
    "PortMapping",
    "attach",
    "attachments",
    "container_resolv_conf",
    "detach",
    "dnat_ports",
    "hosts_text",
    "parse_ports_label",
    "plan",
    "ports_label",
    "record",
    "recorded_address",
    "release_to_pool",
    "resolv_conf",
    "start_attach",
    "task_started",
    "write_hosts",
]

logger = logging.getLogger(__name__)

#: Container label naming the network the SDK attached it to.
NETWORK_LABEL = "containerd-client/network"
#: Container label listing its published ports: ``80/tcp=127.0.0.1:34567,...``.
PORTS_LABEL = "containerd-client/ports"
#: The SDK's own network's name, as ``network=`` takes it.
BRIDGE = "bridge"
_LOOPBACK = {"cniVersion": "1.0.0", "name": "cni-loopback", "plugins": [{"type": "loopback"}]}


class InvalidNetworkError(InvalidArgumentError, ValueError):
    """An unknown network name, a malformed CNI configuration, bad ports or subnet; checked before any RPC."""


class PortInUseError(ConflictError):
    """A host port asked for is taken (by a listening socket or another container of the SDK)."""


def _subnet(_inst: object, _attr: object, value: str) -> None:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except (TypeError, ValueError) as exc:
        raise InvalidNetworkError(f"subnet must be a network like 10.213.0.0/16, not {value!r}") from exc
    if net.version != 4 or net.prefixlen > 29:
        raise InvalidNetworkError(f"subnet must be IPv4 with a prefix of at most /29, not {value!r}")


def _bridge(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) < 16 or "/" in value or value.strip() != value:
        raise InvalidNetworkError(f"bridge must be an interface name of 1 to 15 characters, not {value!r}")


def _forwarding(_inst: object, _attr: object, value: str) -> None:
    if value not in ("portmap", "proxy"):
        raise InvalidNetworkError(f"port_forwarding must be 'portmap' or 'proxy', not {value!r}")


def _pool_size(_inst: object, _attr: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1024:
        raise InvalidNetworkError(f"namespace_pool must be a number from 0 to 1024, not {value!r}")


def _plugin_dirs() -> tuple[str, ...]:
    env = os.environ.get("CNI_PATH")
    return tuple(p for p in env.split(":") if p) if env else DEFAULT_PLUGIN_DIRS


@attrs.frozen
class NetworkConfig:
    """How the SDK's networks are set up (``Client(network_config=...)``).

    Two state folders on one host must use different subnets and bridges:
    each folder keeps its own address allocations.

    Attributes:
        subnet: Addresses of the ``"bridge"`` network (the SDK's own, configurable).
        bridge: The Linux bridge of the ``"bridge"`` network.
        host_ip: Where published ports answer.
        plugin_dirs: Folders holding the CNI plugins (``$CNI_PATH``, else
            ``/opt/cni/bin`` and ``/usr/lib/cni``).
        conf_dirs: Folders searched for named networks' configurations.
        port_forwarding: How published TCP ports reach the container:
            ``"portmap"`` (the CNI plugin's iptables DNAT; the ports keep
            working after this process ends) or ``"proxy"`` (a forwarder in
            this process, like ``docker-proxy``: no iptables rule per port, no
            plugin run to add or remove one, the host port held by a socket
            from the moment it is picked; the ports close with the process,
            which suits test services). UDP ports always use ``portmap``.
        namespace_pool: How many attached network namespaces of deleted
            containers a client keeps for its next ones (0: none). Only the
            ``"bridge"`` network with ports forwarded by ``"proxy"`` is pooled;
            see :mod:`containerd_client.network._pool` for what is reused.
    """

    subnet: str = attrs.field(default="10.213.0.0/16", validator=_subnet)
    bridge: str = attrs.field(default="ctrdc0", validator=_bridge)
    host_ip: str = "127.0.0.1"
    plugin_dirs: tuple[str, ...] = attrs.field(factory=_plugin_dirs, converter=tuple)
    conf_dirs: tuple[str, ...] = attrs.field(default=("/etc/cni/net.d",), converter=tuple)
    port_forwarding: str = attrs.field(default="portmap", validator=_forwarding)
    namespace_pool: int = attrs.field(default=0, validator=_pool_size)


@attrs.frozen
class PortMapping:
    """A published port.

    Attributes:
        container_port: The port inside the container.
        host_port: The port on the host (0 until one is picked).
        protocol: ``tcp`` or ``udp``.
        host_ip: The host address it answers on.
    """

    container_port: int
    host_port: int
    protocol: str = "tcp"
    host_ip: str = "127.0.0.1"


@attrs.frozen
class NetworkPlan:
    """A checked network request (from :func:`plan`), not yet set up."""

    kind: str  # "none", "host" or "cni"
    name: str = ""
    conflist: Mapping[str, Any] = attrs.field(factory=dict)
    ports: tuple[PortMapping, ...] = ()
    netns: str = ""
    state_root: str = ""
    namespace: str = ""
    container_id: str = ""
    plugin_dirs: tuple[str, ...] = ()
    session: str = ""
    forwarding: str = "portmap"
    # Attached through a namespace pool when the client has one (see _pool).
    pooled: bool = False

    def proxied(self, port: PortMapping) -> bool:
        """Whether ``port`` is forwarded in this process (else by ``portmap``)."""
        return self.forwarding == "proxy" and port.protocol == "tcp"


@attrs.frozen
class Attachment:
    """A container's CNI attachment.

    Attributes:
        network: The network name.
        netns: The namespace file.
        ports: Published ports, host ports picked.
        ip_address: The container's first IP address on the network, if any.
        result: The CNI ADD result.
    """

    network: str
    netns: str
    ports: tuple[PortMapping, ...]
    ip_address: str | None
    result: Mapping[str, Any]


# -- planning (no side effects) -------------------------------------------------


def _port_number(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise InvalidNetworkError(f"{what} must be a port number from 1 to 65535, not {value!r}")
    return value


def _parse_ports(ports: Mapping[Any, Any] | None, host_ip: str) -> tuple[PortMapping, ...]:
    if ports is None:
        return ()
    if not isinstance(ports, Mapping):
        raise InvalidNetworkError(f"ports must be a mapping like {{80: None}}, not {type(ports).__name__}")
    out: list[PortMapping] = []
    seen: set[tuple[int, str]] = set()
    for key, value in ports.items():
        proto = "tcp"
        number: object = key
        if isinstance(key, str):
            text, _, proto = key.partition("/")
            proto = proto or "tcp"
            if proto not in ("tcp", "udp") or not text.isdigit():
                raise InvalidNetworkError(f"port {key!r} must look like 80, '80/tcp' or '53/udp'")
            number = int(text)
        cport = _port_number(number, "container port")
        hport = 0 if value is None else _port_number(value, f"host port for {cport}/{proto}")
        if (cport, proto) in seen:
            raise InvalidNetworkError(f"port {cport}/{proto} is published twice")
        seen.add((cport, proto))
        out.append(PortMapping(cport, hport, proto, host_ip))
    hosts = [(p.host_port, p.protocol) for p in out if p.host_port]
    if len(hosts) != len(set(hosts)):
        raise InvalidNetworkError(f"a host port is asked for twice: {sorted(hosts)}")
    return tuple(out)


def _bridge_conflist(config: NetworkConfig, state_root: str, *, portmap: bool = True) -> dict[str, Any]:
    conflist: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "containerd-client",
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": config.subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    # Per bridge: two configs sharing a state folder (two test
                    # daemons side by side) keep their allocations apart.
                    "dataDir": os.path.join(state_root, "_cni", "ipam", config.bridge),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "firewall"},
        ],
    }
    if not portmap:  # every published port is forwarded in process: no plugin run for nothing
        del conflist["plugins"][1]
    return conflist


def _load_named(name: str, conf_dirs: tuple[str, ...]) -> dict[str, Any]:
    known: list[str] = []
    for folder in conf_dirs:
        try:
            files = sorted(os.listdir(folder))
        except OSError:
            continue
        for fname in files:
            if not fname.endswith((".conflist", ".conf", ".json")):
                continue
            try:
                with open(os.path.join(folder, fname), "rb") as fh:
                    doc = json.loads(fh.read(1 << 20))
            except (OSError, ValueError):
                logger.warning("skipping unreadable CNI configuration %s", os.path.join(folder, fname))
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
                continue
            known.append(doc["name"])
            if doc["name"] != name:
                continue
            if "plugins" not in doc:  # a single plugin's .conf
                doc = {"cniVersion": doc.get("cniVersion", "1.0.0"), "name": name, "plugins": [doc]}
            if not isinstance(doc["plugins"], list) or not all(isinstance(p, dict) for p in doc["plugins"]):
                raise InvalidNetworkError(f"CNI network {name!r} in {folder}/{fname}: 'plugins' is no list")
            return doc
    raise InvalidNetworkError(
        f"no network {name!r}: use 'none', 'host', 'bridge' or a CNI network from "
        f"{', '.join(conf_dirs) or '(no folders)'}"
        + (f" (found: {', '.join(sorted(known))})" if known else "")
    )


def _bind_error(port: PortMapping, exc: OSError) -> PortInUseError | InvalidNetworkError:
    """The typed error for a failed bind of ``port``'s host address."""
    where = f"{port.host_ip}:{port.host_port}/{port.protocol}"
    if exc.errno == errno.EADDRINUSE:
        return PortInUseError(f"host port {where} is already in use")
    return InvalidNetworkError(f"cannot publish on {where}: {exc.strerror or exc}")


def _check_host_port(port: PortMapping) -> None:
    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((port.host_ip, port.host_port))
        except OSError as exc:
            raise _bind_error(port, exc) from exc


def netns_path(state_root: str, namespace: str, container_id: str) -> str:
    """Where the namespace of container ``container_id`` of ``namespace`` is pinned."""
    # "_netns" is no valid containerd namespace, so it never meets a bundle folder.
    return os.path.join(state_root, "_netns", namespace, container_id)


def _record_path(state_root: str, namespace: str, container_id: str) -> str:
    # containerd ids never hold "--", so the name is unambiguous.
    return os.path.join(state_root, "_cni", "attachments", f"{namespace}--{container_id}.json")


def plan(
    network: str | None,
    ports: Mapping[Any, Any] | None,
    config: NetworkConfig,
    *,
    state_root: str,
    namespace: str,
    container_id: str,
    session: str = "",
) -> NetworkPlan:
    """Check a network request; nothing is made.

    ``session`` (the client's session id) is kept in the attachment's record,
    so a sweep can tell whose it is.

    Raises:
        InvalidNetworkError: Unknown network, malformed ports, or ports without a
            network that can publish them.
        PortInUseError: An explicit host port is taken.
        PluginNotFoundError: A plugin the network needs is not installed.
    """
    if network is not None and not isinstance(network, str):
        raise InvalidNetworkError(f"network must be a string, not {type(network).__name__}")
    parsed = _parse_ports(ports, config.host_ip)
    if network in (None, "none", "host"):
        if parsed:
            raise InvalidNetworkError(f"ports need a CNI network (network='bridge'), not network={network!r}")
        return NetworkPlan(kind="host" if network == "host" else "none")
    assert network is not None
    forwarding = config.port_forwarding
    mapped = [p for p in parsed if not (forwarding == "proxy" and p.protocol == "tcp")]
    if network == BRIDGE:
        conflist = _bridge_conflist(config, state_root, portmap=forwarding == "portmap" or bool(mapped))
    else:
        conflist = _load_named(network, config.conf_dirs)
    for plugin in [*conflist["plugins"], *_LOOPBACK["plugins"]]:
        _cni.find_plugin(str(plugin.get("type", "")), config.plugin_dirs)
    if mapped and not any((p.get("capabilities") or {}).get("portMappings") for p in conflist["plugins"]):
        raise InvalidNetworkError(f"network {network!r} has no plugin with the portMappings capability")
    for port in parsed:
        if port.host_port:
            _check_host_port(port)
    return NetworkPlan(
        kind="cni",
        name=network,
        conflist=conflist,
        ports=parsed,
        netns=netns_path(state_root, namespace, container_id),
        state_root=state_root,
        namespace=namespace,
        container_id=container_id,
        plugin_dirs=config.plugin_dirs,
        session=session,
        forwarding=forwarding,
        pooled=config.namespace_pool > 0 and network == BRIDGE and not mapped,
    )


# -- attach / detach --------------------------------------------------------------


@contextlib.contextmanager
def _locked(state_root: str) -> Any:
    folder = os.path.join(state_root, "_cni")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_json(path: str, doc: Mapping[str, Any]) -> None:
    _write_atomic(path, json.dumps(doc))


def _write_atomic(path: str, text: str, *, mode: int | None = None, folder_mode: int = 0o700) -> None:
    """Write ``text`` to ``path`` through a temp file and a rename: a reader sees all of it or none."""
    os.makedirs(os.path.dirname(path), mode=folder_mode, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def hosts_text(hostname: str, address: str | None = None) -> str:
    """The ``/etc/hosts`` of a container on a CNI network, as Docker writes it:
    ``localhost`` on the loopback addresses, and the container's hostname on
    its own address once CNI has given it one."""
    lines = [
        "# made by containerd-client",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    if address and hostname:
        lines.append(f"{address}\t{hostname}")
    return "\n".join(lines) + "\n"


def write_hosts(path: str, hostname: str, address: str | None = None) -> None:
    """Write a container's ``/etc/hosts`` (:func:`hosts_text`) at ``path``, in place.

    In place, not through a rename: the file is bind-mounted into the
    container when its task is created, which may be before CNI ADD has
    given it an address; the second write must reach the mounted file.
    """
    text = hosts_text(hostname, address).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)  # read by the container's user too
        os.ftruncate(fd, 0)
        os.write(fd, text)
    finally:
        os.close(fd)


def recorded_address(state_root: str, namespace: str, container_id: str) -> str | None:
    """The container's first IP address from its attachment record, once ADD has finished."""
    doc = record(state_root, namespace, container_id)
    return _first_ip(doc.get("result")) if doc else None


#: Where the host's name servers are read from, in turn: the first file with
#: one a container can reach wins (systemd-resolved's stub 127.0.0.53 is not).
HOST_RESOLV_CONFS = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")


def resolv_conf(host_text: str) -> str:
    """A container's ``resolv.conf`` made from the host's: what a container behind the bridge can use.

    As Docker does: name servers on loopback (a local cache, systemd-resolved's
    stub) cannot be reached from the container's namespace, nor IPv6 ones
    (the SDK's bridge has no IPv6), so they are dropped; ``search``,
    ``domain`` and ``options`` lines are kept. Unlike Docker, no public name
    server is put in when none is left: the container then resolves nothing,
    rather than asking a server the host never named.
    """
    kept: list[str] = []
    for raw in host_text.splitlines():
        line = raw.strip()
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver":
            if len(fields) < 2:
                continue
            try:
                address = ipaddress.ip_address(fields[1])
            except ValueError:
                continue
            if address.version == 4 and not address.is_loopback:
                kept.append(f"nameserver {address}")
        elif fields[0] in ("search", "domain", "options"):
            kept.append(" ".join(fields))
    return "# made by containerd-client from the host's resolv.conf\n" + "".join(f"{k}\n" for k in kept)


def container_resolv_conf(state_root: str, host_files: tuple[str, ...] = HOST_RESOLV_CONFS) -> str | None:
    """The path of a ``resolv.conf`` for containers on a CNI network, written under ``state_root``.

    Made from the first of ``host_files`` that names a name server a
    container can reach (:func:`resolv_conf`), else from the first that
    exists. Files are named by their content and shared by every container
    (never rewritten under a running one); None when the host has none.
    """
    made = None
    for path in host_files:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = resolv_conf(fh.read())
        except OSError:
            continue
        if made is None or "\nnameserver " in text:
            made = text
        if "\nnameserver " in text:
            break
    if made is None:
        return None
    digest = hashlib.sha256(made.encode()).hexdigest()[:16]
    target = os.path.join(state_root, "_cni", "resolv", f"{digest}.conf")
    if not os.path.exists(target):
        _write_atomic(target, made, mode=0o644, folder_mode=0o755)  # read by the container's user too
    return target


_DNAT_PROTO = re.compile(r"(?:^|\s)-p\s+(tcp|udp)\b")
_DNAT_PORTS = re.compile(r"--dports?\s+([0-9:,]+)")


def dnat_ports(save_output: str) -> set[tuple[int, str]]:
    """The ``(host port, protocol)`` pairs that ``iptables-save -t nat`` output DNATs.

    Rules of any tool count: CNI portmap's (``CNI-DN-*``, and the
    ``--dports`` jumps to them), Docker's (``DOCKER``), nerdctl's. A
    connection to such a port on this host goes to their container, not to
    a listener there, so a port picked for publishing must avoid them.
    Ranges (``a:b``) count up to 4096 ports each.
    """
    found: set[tuple[int, str]] = set()
    for line in save_output.splitlines():
        if not line.startswith("-A ") or not ("-j DNAT" in line or " -j CNI-DN-" in line):
            continue
        proto = _DNAT_PROTO.search(line)
        spec = _DNAT_PORTS.search(line)
        if proto is None or spec is None:
            continue
        for part in spec.group(1).split(","):
            low, _, high = part.partition(":")
            if not low.isdigit() or (high and not high.isdigit()):
                continue
            first, last = int(low), int(high or low)
            if 0 < first <= last < 65536 and last - first < 4096:
                found.update((n, proto.group(1)) for n in range(first, last + 1))
    return found


def _host_dnat_ports() -> set[tuple[int, str]]:
    """:func:`dnat_ports` of this host's nat table; empty when it cannot be read (no iptables, not root)."""
    binary = shutil.which("iptables-save", path=_cni.sbin_path())
    if binary is None:
        return set()
    try:
        out = subprocess.run(
            [binary, "-t", "nat"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("cannot read the nat table (%s): picked ports do not avoid other DNAT rules", exc)
        return set()
    return dnat_ports(out)


def _ports_taken(state_root: str, *, host_rules: bool = False) -> set[tuple[int, str]]:
    """The host ports published by this state folder's attachments (and, with
    ``host_rules``, every port a nat rule of the host DNATs)."""
    folder = os.path.join(state_root, "_cni", "attachments")
    taken: set[tuple[int, str]] = _host_dnat_ports() if host_rules else set()
    with contextlib.suppress(FileNotFoundError):
        for fname in os.listdir(folder):
            if not fname.endswith(".json"):
                continue
            try:
                with open(os.path.join(folder, fname)) as fh:
                    doc = json.load(fh)
                for p in [*(doc.get("ports") or []), *(doc.get("proxied") or [])]:
                    taken.add((int(p["hostPort"]), str(p["protocol"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return taken


def _published_error(port: PortMapping) -> PortInUseError:
    return PortInUseError(
        f"host port {port.host_port}/{port.protocol} is already published by another container"
        " (of this SDK, or a DNAT rule of another tool)"
    )


def _pick_ports(ports: tuple[PortMapping, ...], taken: set[tuple[int, str]]) -> tuple[PortMapping, ...]:
    out: list[PortMapping] = []
    for port in ports:
        if port.host_port:
            if (port.host_port, port.protocol) in taken:
                raise _published_error(port)
            out.append(port)
            continue
        kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
        for _ in range(100):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.bind((port.host_ip, 0))
                number = int(sock.getsockname()[1])
            if (number, port.protocol) not in taken:
                break
        else:  # pragma: no cover - 100 ephemeral ports in a row already published
            raise PortInUseError(f"no free host port for {port.container_port}/{port.protocol}")
        taken.add((number, port.protocol))
        out.append(attrs.evolve(port, host_port=number))
    return tuple(out)


def _cni_id(namespace: str, container_id: str) -> str:
    return f"{namespace}--{container_id}"


def _first_ip(result: Mapping[str, Any] | None) -> str | None:
    for entry in (result or {}).get("ips") or []:
        address = str(entry.get("address") or "")
        if address:
            return address.split("/", maxsplit=1)[0]
    return None


class PendingAttachment:
    """An attachment whose namespace exists and whose CNI ADD runs on a thread.

    The namespace is ready for runc at once (it only joins it), so the
    container's task can be created while the plugins configure its
    interfaces; :meth:`wait` joins them. A failed ADD is not undone on its
    thread: the caller of :meth:`wait` runs :func:`detach`.
    """

    def __init__(self, p: NetworkPlan, ports: tuple[PortMapping, ...], doc: dict[str, Any]) -> None:
        self.plan = p
        self.ports = ports
        #: The namespace the container joins.
        self.netns = getattr(self, "netns", p.netns)
        self._doc = doc
        self._result: Attachment | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"containerd-client-cni-{p.container_id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        p, doc = self.plan, self._doc
        try:
            cni_id = str(doc["cni_id"])
            _cni.run_list(
                "ADD", _LOOPBACK, container_id=cni_id, netns=p.netns, ifname="lo", plugin_dirs=p.plugin_dirs
            )
            result = _cni.run_list(
                "ADD",
                p.conflist,
                container_id=cni_id,
                netns=p.netns,
                ifname="eth0",
                plugin_dirs=p.plugin_dirs,
                runtime_config={"portMappings": doc["ports"]},
            )
            doc["result"] = result
            _write_json(_record_path(p.state_root, p.namespace, p.container_id), doc)
            address = _first_ip(result)
            proxied = {m.host_port: m.container_port for m in self.ports if p.proxied(m)}
            if proxied:
                if address is None:
                    raise NetworkError(
                        f"network {p.name!r} gave container {p.container_id} no IP address "
                        "to forward its published ports to"
                    )
                _proxy.forwarder().activate(
                    _proxy_key(p), {host: (address, port) for host, port in proxied.items()}
                )
            self._result = Attachment(p.name, p.netns, self.ports, address, result or {})
        except BaseException as exc:  # handed to wait()
            # Not undone here: runc may be joining the namespace right now, and
            # removing it under runc turns a clear CNI error into a runc one.
            # Whoever gets the error from wait() calls detach().
            self._error = exc

    def join(self) -> None:
        """Wait for ADD to finish, whatever its outcome (before DEL: they must not race)."""
        self._thread.join()

    def done(self) -> bool:
        """Whether ADD has finished (either way)."""
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> Attachment:
        """Wait for ADD and return the attachment.

        Raises:
            CNIError: A plugin failed (call :func:`detach` to undo the rest).
            NetworkError: ADD did not finish within ``timeout``.
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise NetworkError(f"CNI ADD for {self.plan.container_id} did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _undo(p: NetworkPlan) -> None:
    try:
        detach(p.state_root, p.namespace, p.container_id)
    except Exception:
        logger.warning("undoing the network of %s failed", p.container_id, exc_info=True)


def start_attach(p: NetworkPlan, pool: NamespacePool | None = None) -> PendingAttachment:
    """Reserve the ports, make the namespace, and start CNI ADD on a thread.

    With a ``pool`` and a plan that may use one (:attr:`NetworkPlan.pooled`),
    an idle attached namespace is taken from it instead (no CNI ADD), or a
    new one is attached under an id of its own for the pool to keep later.

    Raises:
        PortInUseError: An explicit host port is published by another container of the SDK.
        ConflictError: The container already has an attachment record.
        NetworkError: The namespace could not be made (not root?); nothing is left.
    """
    if pool is not None and p.pooled:
        return _start_pooled(p, pool)
    record_file = _record_path(p.state_root, p.namespace, p.container_id)
    with _locked(p.state_root):
        _refuse_existing(p, record_file)
        taken = _ports_taken(p.state_root, host_rules=bool(p.ports))
        ports = _pick_ports(tuple(m for m in p.ports if not p.proxied(m)), taken)
        try:
            ports = _reserve_ports(p, taken) + ports
            doc = _new_record(p, ports)
            # Written before anything is made, so detach can undo a half-made attachment.
            _write_json(record_file, doc)
        except BaseException:
            _proxy.release(_proxy_key(p))
            raise
    try:
        _netns.create(p.netns)
    except BaseException as exc:
        _undo(p)
        if isinstance(exc, OSError):
            raise NetworkError(
                f"cannot make a network namespace at {p.netns}: {exc.strerror or exc}"
            ) from exc
        raise
    order = {(m.container_port, m.protocol): i for i, m in enumerate(p.ports)}
    ports = tuple(sorted(ports, key=lambda m: order[(m.container_port, m.protocol)]))
    return PendingAttachment(p, ports, doc)


class _PooledAttachment(PendingAttachment):
    """A container's attachment through a pooled namespace: taken idle, or being attached."""

    def __init__(
        self,
        p: NetworkPlan,
        ports: tuple[PortMapping, ...],
        doc: dict[str, Any],
        *,
        slot: Slot | None,
        inner: PendingAttachment | None,
    ) -> None:
        self._slot = slot
        self._inner = inner
        self.netns = slot.netns if slot is not None else inner.netns if inner is not None else p.netns
        super().__init__(p, ports, doc)

    def _run(self) -> None:
        p = self.plan
        try:
            slot = self._slot
            if slot is None:
                assert self._inner is not None
                attached = self._inner.wait()
                slot = Slot(
                    p.state_root,
                    p.namespace,
                    self._inner.plan.container_id,
                    attached.netns,
                    attached.ip_address or "",
                    attached.result,
                )
            if not slot.address:
                raise NetworkError(f"pooled network namespace {slot.slot_id} has no IP address")
            proxied = {m.host_port: m.container_port for m in self.ports}
            if proxied:
                _proxy.forwarder().activate(
                    _proxy_key(p), {host: (slot.address, port) for host, port in proxied.items()}
                )
            self._result = Attachment(p.name, slot.netns, self.ports, slot.address, slot.result)
        except BaseException as exc:  # handed to wait(); the waiter detaches
            self._error = exc


def _start_pooled(p: NetworkPlan, pool: NamespacePool) -> PendingAttachment:
    """:func:`start_attach` through ``pool``: the container's record points at the slot it uses."""
    record_file = _record_path(p.state_root, p.namespace, p.container_id)
    slot: Slot | None = None
    with _locked(p.state_root):
        _refuse_existing(p, record_file)
        try:
            ports = _reserve_ports(p, _ports_taken(p.state_root, host_rules=bool(p.ports)))
            slot = pool.take(p.state_root, p.namespace, p.name)
            doc = _new_record(p, ports)
            doc["slot"] = slot.slot_id if slot is not None else new_slot_id()
            doc["conflist"] = {}
            _write_json(record_file, doc)
        except BaseException:
            _proxy.release(_proxy_key(p))
            if slot is not None and not pool.put(p.name, slot):
                _undo(attrs.evolve(p, container_id=slot.slot_id))
            raise
    inner = None
    if slot is None:
        slot_id = str(doc["slot"])
        slot_plan = attrs.evolve(
            p,
            container_id=slot_id,
            ports=(),
            netns=netns_path(p.state_root, p.namespace, slot_id),
            pooled=False,
        )
        try:
            inner = start_attach(slot_plan)
        except BaseException:
            _undo(p)  # the container's record and ports
            raise
    order = {(m.container_port, m.protocol): i for i, m in enumerate(p.ports)}
    ports = tuple(sorted(ports, key=lambda m: order[(m.container_port, m.protocol)]))
    return _PooledAttachment(p, ports, doc, slot=slot, inner=inner)


def release_to_pool(
    pool: NamespacePool, state_root: str, namespace: str, container_id: str, spec: Mapping[str, Any]
) -> bool:
    """Give a deleted container's pooled namespace back to ``pool`` instead of detaching it.

    Only a namespace attached without error, of a container whose ``spec``
    could not change it (:func:`~containerd_client.network._pool.reusable`),
    while the pool has room. Its proxied ports are closed and its record removed.

    Returns:
        Whether the pool took it; if not, call :func:`detach`.
    """
    doc = record(state_root, namespace, container_id)
    slot_id = None if doc is None else doc.get("slot")
    if not slot_id or not reusable(spec):
        return False
    slot_doc = record(state_root, namespace, str(slot_id))
    result = None if slot_doc is None else slot_doc.get("result")
    address = _first_ip(result)
    if slot_doc is None or not result or not address:
        return False
    _proxy.release((state_root, namespace, container_id))
    slot = Slot(state_root, namespace, str(slot_id), str(slot_doc["netns"]), address, result)
    assert doc is not None
    if not pool.put(str(doc.get("network") or BRIDGE), slot):
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_record_path(state_root, namespace, container_id))
    return True


def _refuse_existing(p: NetworkPlan, record_file: str) -> None:
    if os.path.exists(record_file):
        raise ConflictError(
            f"container {p.container_id} already has a network attachment ({record_file}): "
            "the id is in use, or a crashed process left it (network.detach removes it)"
        )


def _mapping(m: PortMapping) -> dict[str, Any]:
    return {
        "hostPort": m.host_port,
        "containerPort": m.container_port,
        "protocol": m.protocol,
        "hostIP": m.host_ip,
    }


def _new_record(p: NetworkPlan, ports: tuple[PortMapping, ...]) -> dict[str, Any]:
    return {
        "network": p.name,
        "conflist": dict(p.conflist),
        "netns": p.netns,
        "cni_id": _cni_id(p.namespace, p.container_id),
        "plugin_dirs": list(p.plugin_dirs),
        # What portmap is given (ADD and DEL): the ports it forwards.
        "ports": [_mapping(m) for m in ports if not p.proxied(m)],
        # Forwarded by the creating process (gone with it); kept so that no
        # other container of this state folder is given the same host port.
        "proxied": [_mapping(m) for m in ports if p.proxied(m)],
        "session": p.session,
        "result": None,
    }


def _proxy_key(p: NetworkPlan) -> tuple[str, str, str]:
    return (p.state_root, p.namespace, p.container_id)


def _reserve_ports(p: NetworkPlan, taken: set[tuple[int, str]]) -> tuple[PortMapping, ...]:
    """Bind the host ports of ``p``'s proxied ports (picking free ones for 0).

    Raises:
        PortInUseError: An explicit host port is taken.
        InvalidNetworkError: The host address cannot be bound (not this host's).
    """
    out: list[PortMapping] = []
    fwd = _proxy.forwarder()
    for port in p.ports:
        if not p.proxied(port):
            continue
        if port.host_port and (port.host_port, port.protocol) in taken:
            raise _published_error(port)
        for _ in range(100):
            try:
                number = fwd.reserve(_proxy_key(p), port.host_ip, port.host_port)
            except OSError as exc:
                raise _bind_error(port, exc) from exc
            if port.host_port or (number, port.protocol) not in taken:
                break
            # A port another process of this state folder published and has not bound
            # (a record whose process is gone): pick again, holding this one meanwhile.
        else:  # pragma: no cover - 100 picked ports in a row already published
            raise PortInUseError(f"no free host port for {port.container_port}/tcp")
        taken.add((number, port.protocol))
        out.append(attrs.evolve(port, host_port=number))
    return tuple(out)


def attach(p: NetworkPlan) -> Attachment:
    """Make the namespace and run CNI ADD (loopback, then the network); undone on failure.

    Raises:
        PortInUseError: An explicit host port is published by another container of the SDK.
        CNIError: A plugin failed (what was done is undone first).
        NetworkError: The namespace could not be made (not root?).
    """
    pending = start_attach(p)
    try:
        return pending.wait()
    except BaseException:
        # Ctrl-C while waiting: let ADD finish, then undo it.
        pending.join()
        _undo(p)
        raise


def detach(state_root: str, namespace: str, container_id: str) -> bool:
    """Run CNI DEL for the container's attachment and remove its namespace. Idempotent.

    Every step runs even when one fails; the record is removed only when DEL
    succeeded, so a later call can retry.

    Returns:
        Whether there was anything to undo.

    Raises:
        CNIError: A plugin's DEL failed (the namespace is removed anyway).
        NetworkError: The namespace could not be removed.
    """
    record_file = _record_path(state_root, namespace, container_id)
    netns = netns_path(state_root, namespace, container_id)
    _proxy.release((state_root, namespace, container_id))
    try:
        with open(record_file) as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        doc = None
    except ValueError:
        logger.warning("unreadable network record %s; removing only the namespace", record_file)
        doc = None
    if doc is not None and doc.get("slot"):
        # A container attached through a pooled namespace: detach that namespace.
        detach(state_root, namespace, str(doc["slot"]))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record_file)
        return True
    found = doc is not None or os.path.lexists(netns)
    failure: BaseException | None = None
    if doc is not None:
        cni_id = str(doc["cni_id"])
        dirs = tuple(doc.get("plugin_dirs") or DEFAULT_PLUGIN_DIRS)
        steps: list[tuple[Mapping[str, Any], str, Mapping[str, Any] | None]] = [
            (doc["conflist"], "eth0", doc.get("result")),
            (_LOOPBACK, "lo", None),
        ]
        for conflist, ifname, prev in steps:
            try:
                _cni.run_list(
                    "DEL",
                    conflist,
                    container_id=cni_id,
                    netns=netns,
                    ifname=ifname,
                    plugin_dirs=dirs,
                    runtime_config={"portMappings": doc.get("ports") or []},
                    prev_result=prev,
                )
            except NetworkError as exc:  # CNIError, or a plugin gone since ADD
                failure = failure or exc
    try:
        _netns.remove(netns)
    except OSError as exc:
        failure = failure or NetworkError(f"cannot remove network namespace {netns}: {exc.strerror or exc}")
    if failure is None and doc is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record_file)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(netns))  # the namespace's folder, once empty
    if failure is not None:
        raise failure
    return found


def task_started(state_root: str, namespace: str, container_id: str) -> None:
    """The container's task started: its proxied ports probe the server again from now.

    The proxy probes a container's port with growing pauses until it
    accepts; a server started now is found within milliseconds, not at the
    end of a pause that grew while the task was being created.
    """
    _proxy.nudge((state_root, namespace, container_id))


def record(state_root: str, namespace: str, container_id: str) -> dict[str, Any] | None:
    """The attachment record of a container (``session``, ``network``, ``ports``...), if any.

    For a sweep: compare ``record(...)["session"]`` with live sessions before :func:`detach`.
    """
    try:
        with open(_record_path(state_root, namespace, container_id)) as fh:
            doc = json.load(fh)
    except (FileNotFoundError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def attachments(state_root: str, namespace: str | None = None) -> list[tuple[str, str]]:
    """The ``(namespace, container id)`` pairs with an attachment record or a pinned namespace.

    For a sweep after a crash: :func:`detach` undoes each. Only this state
    folder is looked at; nothing is checked against the daemon.
    """
    found: set[tuple[str, str]] = set()
    records = os.path.join(state_root, "_cni", "attachments")
    with contextlib.suppress(FileNotFoundError):
        for fname in os.listdir(records):
            ns, sep, cid = fname.removesuffix(".json").partition("--")
            if sep and fname.endswith(".json") and (namespace is None or ns == namespace):
                found.add((ns, cid))
    pinned = os.path.join(state_root, "_netns")
    with contextlib.suppress(FileNotFoundError):
        for ns in os.listdir(pinned):
            if namespace is not None and ns != namespace:
                continue
            with contextlib.suppress(NotADirectoryError, FileNotFoundError):
                found.update((ns, cid) for cid in os.listdir(os.path.join(pinned, ns)))
    return sorted(found)


def ports_label(ports: tuple[PortMapping, ...]) -> str:
    """The :data:`PORTS_LABEL` value for ``ports``."""
    return ",".join(f"{p.container_port}/{p.protocol}={p.host_ip}:{p.host_port}" for p in ports)


def parse_ports_label(value: str) -> tuple[PortMapping, ...]:
    """Read a :data:`PORTS_LABEL` value; malformed entries are skipped."""
    out: list[PortMapping] = []
    for item in value.split(","):
        try:
            left, _, right = item.partition("=")
            cport, _, proto = left.partition("/")
            host_ip, _, hport = right.rpartition(":")
            out.append(PortMapping(int(cport), int(hport), proto or "tcp", host_ip))
        except ValueError:
            continue
    return tuple(out)
