"""The OCI runtime spec: containerd's default Linux spec and options that shape it.

A spec is a plain ``dict`` (the JSON document runc reads). :func:`generate`
builds containerd's default spec (``oci.populateDefaultUnixSpec``) and applies
options in order; each option is a callable taking the spec and changing it,
so users can write their own next to the ones here::

    spec = generate("web", "default", with_args("sh", "-c", "echo hi"), with_memory_limit(64 << 20))
"""

from __future__ import annotations

import copy
import os
import signal as _signal
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_PATH",
    "SpecOpt",
    "generate",
    "parse_user_database",
    "resolve_user",
    "with_annotations",
    "with_args",
    "with_bind_mount",
    "with_capabilities",
    "with_cpu",
    "with_cwd",
    "with_env",
    "with_host_network",
    "with_hostname",
    "with_image_config",
    "with_memory_limit",
    "with_pids_limit",
    "with_privileged",
    "with_process_args",
    "with_readonly_rootfs",
    "with_rootfs",
    "with_tmpfs",
    "with_tty",
    "with_user",
]

Spec = dict[str, Any]
SpecOpt = Callable[[Spec], None]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: containerd's (and Docker's) default capability set.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

_MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
]
_READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]

_DEFAULT_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {
        "destination": "/run",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
]


def _default_spec(container_id: str, namespace: str) -> Spec:
    caps = list(DEFAULT_CAPABILITIES)
    return {
        "ociVersion": "1.0.2-dev",
        "root": {"path": "rootfs"},
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": [],
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "permitted": list(caps), "effective": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "mounts": copy.deepcopy(_DEFAULT_MOUNTS),
        "linux": {
            "maskedPaths": list(_MASKED_PATHS),
            "readonlyPaths": list(_READONLY_PATHS),
            "cgroupsPath": f"/{namespace}/{container_id}",
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network"},
            ],
        },
    }


def generate(
    container_id: str, namespace: str, *opts: SpecOpt, base: Mapping[str, Any] | None = None
) -> Spec:
    """Build a spec: containerd's default Linux spec (or a copy of ``base``) with ``opts`` applied.

    Args:
        container_id: Used for the default cgroup path ``/<namespace>/<id>``.
        namespace: The containerd namespace.
        *opts: Options applied in order.
        base: Start from this spec instead of the default.
    """
    spec = copy.deepcopy(dict(base)) if base is not None else _default_spec(container_id, namespace)
    for opt in opts:
        opt(spec)
    return spec


def with_args(*args: str) -> SpecOpt:
    """Set the process arguments (the command line)."""
    return with_process_args(args)


def with_process_args(args: Iterable[str]) -> SpecOpt:
    """Set the process arguments from an iterable."""
    values = [str(a) for a in args]

    def opt(spec: Spec) -> None:
        spec.setdefault("process", {})["args"] = values

    return opt


def with_env(env: Mapping[str, str] | Iterable[str]) -> SpecOpt:
    """Add or replace environment variables (``{"K": "v"}`` or ``["K=v"]``)."""
    items = [f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping) else list(env)

    def opt(spec: Spec) -> None:
        current: list[str] = spec.setdefault("process", {}).setdefault("env", [])
        for item in items:
            key = item.split("=", 1)[0]
            current[:] = [e for e in current if e.split("=", 1)[0] != key]
            current.append(item)

    return opt


def with_cwd(cwd: str) -> SpecOpt:
    """Set the working directory."""

    def opt(spec: Spec) -> None:
        spec.setdefault("process", {})["cwd"] = cwd

    return opt


def with_tty(tty: bool = True) -> SpecOpt:
    """Give the process a terminal (stderr then merges into stdout)."""

    def opt(spec: Spec) -> None:
        process = spec.setdefault("process", {})
        process["terminal"] = tty
        if tty:
            process.setdefault("env", [])
            if not any(e.startswith("TERM=") for e in process["env"]):
                process["env"].append("TERM=xterm")

    return opt


def with_hostname(name: str) -> SpecOpt:
    """Set the container's hostname."""

    def opt(spec: Spec) -> None:
        spec["hostname"] = name

    return opt


def with_user(uid: int, gid: int | None = None, additional_gids: Iterable[int] = ()) -> SpecOpt:
    """Run the process as numeric ``uid``/``gid``."""

    def opt(spec: Spec) -> None:
        user: dict[str, Any] = {"uid": int(uid), "gid": int(gid if gid is not None else uid)}
        extra = [int(g) for g in additional_gids]
        if extra:
            user["additionalGids"] = extra
        spec.setdefault("process", {})["user"] = user

    return opt


def with_rootfs(path: str, *, readonly: bool = False) -> SpecOpt:
    """Use a host folder (absolute path) as the root filesystem."""
    if not os.path.isabs(path):
        raise ValueError(f"rootfs path must be absolute: {path!r}")

    def opt(spec: Spec) -> None:
        spec["root"] = {"path": path, "readonly": readonly}

    return opt


def with_readonly_rootfs(readonly: bool = True) -> SpecOpt:
    """Mount the root filesystem read-only."""

    def opt(spec: Spec) -> None:
        spec.setdefault("root", {"path": "rootfs"})["readonly"] = readonly

    return opt


def with_bind_mount(source: str, destination: str, *, readonly: bool = False) -> SpecOpt:
    """Bind-mount a host path into the container."""

    def opt(spec: Spec) -> None:
        options = ["rbind", "ro" if readonly else "rw"]
        spec.setdefault("mounts", []).append(
            {"destination": destination, "type": "bind", "source": source, "options": options}
        )

    return opt


def with_tmpfs(destination: str, *, size: int | None = None, mode: int = 0o1777) -> SpecOpt:
    """Mount a tmpfs at ``destination``."""

    def opt(spec: Spec) -> None:
        options = ["nosuid", "nodev", f"mode={mode:o}"]
        if size is not None:
            options.append(f"size={int(size)}")
        spec.setdefault("mounts", []).append(
            {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": options}
        )

    return opt


def _resources(spec: Spec) -> dict[str, Any]:
    return spec.setdefault("linux", {}).setdefault("resources", {})  # type: ignore[no-any-return]


def with_memory_limit(limit: int, *, swap: int | None = None) -> SpecOpt:
    """Limit memory (bytes); swap defaults to the same value (no extra swap)."""

    def opt(spec: Spec) -> None:
        mem = _resources(spec).setdefault("memory", {})
        mem["limit"] = int(limit)
        mem["swap"] = int(swap if swap is not None else limit)

    return opt


def with_cpu(
    *,
    shares: int | None = None,
    quota: int | None = None,
    period: int | None = None,
    cpus: float | None = None,
) -> SpecOpt:
    """Limit CPU: ``cpus=1.5`` or raw CFS ``quota``/``period`` and ``shares``."""

    def opt(spec: Spec) -> None:
        cpu = _resources(spec).setdefault("cpu", {})
        if cpus is not None:
            cpu["period"] = period or 100_000
            cpu["quota"] = int(cpus * cpu["period"])
        else:
            if quota is not None:
                cpu["quota"] = int(quota)
            if period is not None:
                cpu["period"] = int(period)
        if shares is not None:
            cpu["shares"] = int(shares)

    return opt


def with_pids_limit(limit: int) -> SpecOpt:
    """Limit the number of processes in the container."""

    def opt(spec: Spec) -> None:
        _resources(spec)["pids"] = {"limit": int(limit)}

    return opt


def with_capabilities(add: Iterable[str] = (), drop: Iterable[str] = ()) -> SpecOpt:
    """Add or drop capabilities (``"NET_ADMIN"`` or ``"CAP_NET_ADMIN"``; ``"ALL"`` drops all)."""

    def norm(name: str) -> str:
        name = name.upper()
        return name if name.startswith("CAP_") or name == "ALL" else f"CAP_{name}"

    adds = [norm(c) for c in add]
    drops = [norm(c) for c in drop]

    def opt(spec: Spec) -> None:
        caps = spec.setdefault("process", {}).setdefault("capabilities", {})
        for kind in ("bounding", "permitted", "effective"):
            current: list[str] = caps.setdefault(kind, [])
            if "CAP_ALL" in drops or "ALL" in drops:
                current.clear()
            else:
                current[:] = [c for c in current if c not in drops]
            for c in adds:
                if c not in current:
                    current.append(c)

    return opt


def with_privileged() -> SpecOpt:
    """Give the container every capability and device, like ``docker run --privileged``."""

    def opt(spec: Spec) -> None:
        all_caps = sorted(f"CAP_{name}" for name in _all_capabilities())
        spec.setdefault("process", {})["capabilities"] = {
            "bounding": all_caps,
            "permitted": list(all_caps),
            "effective": list(all_caps),
        }
        linux = spec.setdefault("linux", {})
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
        linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
        for m in spec.get("mounts", []):
            if m.get("type") == "sysfs":
                m["options"] = [o for o in m.get("options", []) if o != "ro"]
        spec["process"]["noNewPrivileges"] = False

    return opt


def _all_capabilities() -> list[str]:
    # The kernel's capability names, up to what this host knows (cap_last_cap).
    names = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ]  # fmt: skip
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read().strip())
    except (OSError, ValueError):
        last = len(names) - 1
    return names[: last + 1]


def with_host_network() -> SpecOpt:
    """Share the host's network namespace (no network isolation)."""

    def opt(spec: Spec) -> None:
        linux = spec.setdefault("linux", {})
        linux["namespaces"] = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "network"]
        mounts = spec.setdefault("mounts", [])
        for path in ("/etc/hosts", "/etc/resolv.conf"):
            if os.path.exists(path) and not any(m.get("destination") == path for m in mounts):
                mounts.append(
                    {"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]}
                )

    return opt


def with_annotations(annotations: Mapping[str, str]) -> SpecOpt:
    """Add OCI annotations."""

    def opt(spec: Spec) -> None:
        spec.setdefault("annotations", {}).update(annotations)

    return opt


def signal_number(value: int | str) -> int:
    """Resolve a stop-signal name from an image config ("SIGTERM", "TERM", "15")."""
    if isinstance(value, int):
        return value
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    return int(_signal.Signals[text])


def parse_user_database(text: str | bytes | None) -> dict[str, tuple[int, int]]:
    """Parse ``/etc/passwd`` (name → (uid, gid)) or ``/etc/group`` (name → (gid, gid)) text."""
    if text is None:
        return {}
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 3 or line.startswith("#"):
            continue
        try:
            first = int(parts[2])
            second = int(parts[3]) if len(parts) > 3 and parts[3].strip().isdigit() else first
        except ValueError:
            continue
        out.setdefault(parts[0], (first, second))
    return out


def resolve_user(
    user: str, passwd: str | bytes | None = None, group: str | bytes | None = None
) -> tuple[int, int]:
    """Resolve an image config's ``User`` (``"1000"``, ``"1000:1000"``, ``"app"``, ``"app:staff"``).

    Names are looked up in the image's own ``/etc/passwd`` and ``/etc/group``
    text (read through the content store, never from the host).

    Raises:
        ValueError: A name is not in the given databases.
    """
    users = parse_user_database(passwd)
    groups = parse_user_database(group)
    name, _, grp = user.partition(":")
    if name.isdigit():
        uid = int(name)
        gid = next((g for u, g in users.values() if u == uid), 0)
    elif name in users:
        uid, gid = users[name]
    else:
        raise ValueError(f"user {name!r} is not in the image's /etc/passwd")
    if grp:
        if grp.isdigit():
            gid = int(grp)
        elif grp in groups:
            gid = groups[grp][0]
        else:
            raise ValueError(f"group {grp!r} is not in the image's /etc/group")
    return uid, gid


def with_image_config(
    config: Mapping[str, Any],
    *,
    args: Iterable[str] | None = None,
    passwd: str | bytes | None = None,
    group: str | bytes | None = None,
) -> SpecOpt:
    """Apply an OCI image config: entrypoint and cmd, env, working dir, user, stop signal.

    Args:
        config: The image config document (its ``config`` member is used).
        args: Replace the image's ``Cmd`` (the entrypoint stays), as ``docker run`` does.
        passwd: The image's ``/etc/passwd`` text, for named users.
        group: The image's ``/etc/group`` text, for named groups.
    """
    cfg = dict(config.get("config") or {})
    entrypoint = list(cfg.get("Entrypoint") or [])
    cmd = list(args) if args is not None else list(cfg.get("Cmd") or [])
    env = list(cfg.get("Env") or [])
    workdir = cfg.get("WorkingDir") or "/"
    user = cfg.get("User") or ""
    uid_gid = resolve_user(user, passwd, group) if user else None

    def opt(spec: Spec) -> None:
        process = spec.setdefault("process", {})
        process["args"] = entrypoint + cmd
        if env:
            with_env(env)(spec)
            if not any(e.startswith("PATH=") for e in process["env"]):
                process["env"].insert(0, f"PATH={DEFAULT_PATH}")
        process["cwd"] = workdir
        if uid_gid is not None:
            process["user"] = {"uid": uid_gid[0], "gid": uid_gid[1]}
        stop = cfg.get("StopSignal")
        if stop:
            spec.setdefault("annotations", {})["org.opencontainers.image.stopSignal"] = str(stop)

    return opt
