"""The OCI runtime spec: containerd's default Linux spec and options that shape it.

A spec is a plain ``dict`` (the JSON document runc reads). :func:`generate`
builds containerd's default spec (``oci.populateDefaultUnixSpec``) and applies
options in order; each option is a callable taking the spec and changing it,
so users can write their own next to the ones here::

    spec = generate("web", "default", with_args("sh", "-c", "echo hi"), with_memory_limit(64 << 20))

Every option checks its arguments when it is made (and the image-config
option what it reads from the image), so a value runc or the kernel would
refuse raises :class:`~containerd_client.errors.InvalidSpecError` before
anything is sent to the daemon.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import re
import shlex
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from containerd_client.errors import InvalidSpecError, UnknownSignalError

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_PATH",
    "Command",
    "SpecOpt",
    "check_exec_options",
    "command_args",
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
    "with_hosts_file",
    "with_image_config",
    "with_memory_limit",
    "with_network_namespace",
    "with_pids_limit",
    "with_privileged",
    "with_process_args",
    "with_readonly_rootfs",
    "with_resolv_conf",
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


# -- argument checks --------------------------------------------------------------------

#: Largest uid/gid: 2**32 - 1 is the kernel's "no id" (-1).
_MAX_ID = 2**32 - 2
_INT64_MAX = 2**63 - 1
#: The kernel's CFS bounds (kernel/sched/core.c): period 1 ms..1 s, quota at least 1 ms.
_CFS_PERIOD_RANGE = (1_000, 1_000_000)
_CFS_QUOTA_MIN = 1_000
#: cgroup v1 cpu.shares bounds (v2 weights are converted from these by runc).
_SHARES_RANGE = (2, 262_144)
#: HOST_NAME_MAX; sethostname refuses longer names.
_HOSTNAME_MAX = 64
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: object, what: str, *, empty: bool = False) -> str:
    """A string without NUL (runc passes these to C), non-empty unless ``empty``."""
    if not isinstance(value, str):
        raise InvalidSpecError(f"{what} must be a string, not {type(value).__name__}")
    if "\x00" in value:
        raise InvalidSpecError(f"{what} {_short(value)} contains a NUL character")
    if not value and not empty:
        raise InvalidSpecError(f"{what} must not be empty")
    return value


def _path(value: object, what: str) -> str:
    """An absolute path (``os.PathLike`` allowed) without NUL."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = _text(value, what)
    if not text.startswith("/"):
        raise InvalidSpecError(f"{what} must be an absolute path: {_short(text)}")
    return text


def _int(value: object, what: str, low: int, high: int = _INT64_MAX, *, also: tuple[int, ...] = ()) -> int:
    """An integer (not a bool or float) in ``[low, high]`` or one of ``also``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidSpecError(f"{what} must be an integer, not {type(value).__name__}")
    number = int(value)
    if number in also or low <= number <= high:
        return number
    allowed = f"{low}..{high}" + "".join(f" or {a}" for a in also)
    raise InvalidSpecError(f"{what} must be {allowed}, not {number}")


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidSpecError(f"{what} must be True or False, not {_short(value)}")
    return value


def _strings(values: object, what: str) -> list[str]:
    """A list of strings from an iterable that is not itself a string."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidSpecError(f"{what} must be a list of strings, not {type(values).__name__}")
    return [_text(v, f"an item of {what}", empty=True) for v in values]


def _arg_list(args: object) -> list[str]:
    """Process arguments: a list (not a string) of strings or paths, without NUL."""
    if isinstance(args, (str, bytes)) or not isinstance(args, Iterable):
        raise InvalidSpecError(f"process args must be a list of strings, not {type(args).__name__}")
    return _strings([os.fspath(a) if isinstance(a, os.PathLike) else a for a in args], "process args")


#: A command line as the high-level calls take it: ``["echo", "hi"]``, or
#: ``"echo hi"``, split as a POSIX shell would (``shlex.split``, as docker-py does).
Command = str | Sequence[str]


def command_args(command: Command) -> list[str]:
    """The argument list of ``command``: a string is split like a shell would, without running one.

    ``"sh -c 'echo hi'"`` becomes ``["sh", "-c", "echo hi"]``; there is no
    expansion of variables, globs or redirections.

    Raises:
        InvalidSpecError: The string is empty or its quotes do not close, or a
            list item is not a string or holds a NUL character.
    """
    if isinstance(command, str):
        try:
            args = shlex.split(command)
        except ValueError as exc:
            raise InvalidSpecError(f"command {_short(command)} cannot be split: {exc}") from exc
        if not args:
            raise InvalidSpecError("command is empty")
        return _arg_list(args)
    return _arg_list(command)


def _env_items(env: object) -> list[str]:
    """``KEY=value`` strings, checked as runc checks them (a '=', a key, no NUL)."""
    items: list[str] = []
    if isinstance(env, Mapping):
        for key, value in env.items():
            _text(key, "environment variable name")
            if "=" in key:
                raise InvalidSpecError(f"environment variable name {_short(key)} contains '='")
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise InvalidSpecError(
                    f"environment variable {key} must have a string value, not {type(value).__name__}"
                )
            items.append(f"{key}={_text(str(value), f'environment variable {key}', empty=True)}")
        return items
    for item in _strings(env, "environment"):
        key, sep, _ = item.partition("=")
        if not sep:
            raise InvalidSpecError(f"environment entry {_short(item)} has no '=' (use KEY=value)")
        if not key:
            raise InvalidSpecError(f"environment entry {_short(item)} has an empty name")
        items.append(item)
    return items


def _capability(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidSpecError(f"a capability must be a string, not {type(name).__name__}")
    upper = name.strip().upper()
    if upper in ("ALL", "CAP_ALL"):
        return "ALL"
    bare = upper[4:] if upper.startswith("CAP_") else upper
    if bare not in _CAPABILITY_NAMES:
        raise InvalidSpecError(f"unknown capability {_short(name)}")
    return f"CAP_{bare}"


def check_exec_options(args: object, env: object = None, cwd: object = None, user: object = None) -> None:
    """Check an exec's command line, environment, folder and ``(uid, gid)`` as the options do.

    Raises:
        InvalidSpecError: A value runc would refuse.
    """
    if isinstance(args, str):
        command_args(args)
    else:
        _arg_list(args)
    if env:
        _env_items(env)
    if cwd is not None:
        _path(cwd, "working directory")
    if user is not None:
        if not isinstance(user, tuple) or len(user) != 2:
            raise InvalidSpecError(f"user must be a (uid, gid) pair, not {_short(user)}")
        _int(user[0], "uid", 0, _MAX_ID)
        _int(user[1], "gid", 0, _MAX_ID)


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
    """Set the process arguments from an iterable (strings or paths).

    Raises:
        InvalidSpecError: ``args`` is a string (not a list), or an argument is
            not a string or holds a NUL character.
    """
    values = _arg_list(args)

    def opt(spec: Spec) -> None:
        spec.setdefault("process", {})["args"] = values

    return opt


def with_env(env: Mapping[str, str] | Iterable[str]) -> SpecOpt:
    """Add or replace environment variables (``{"K": "v"}`` or ``["K=v"]``).

    Raises:
        InvalidSpecError: A name is empty or holds ``=``, an entry has no
            ``=``, or anything holds a NUL character.
    """
    items = _env_items(env)

    def opt(spec: Spec) -> None:
        current: list[str] = spec.setdefault("process", {}).setdefault("env", [])
        for item in items:
            key = item.split("=", 1)[0]
            current[:] = [e for e in current if e.split("=", 1)[0] != key]
            current.append(item)

    return opt


def with_cwd(cwd: str) -> SpecOpt:
    """Set the working directory (an absolute path).

    Raises:
        InvalidSpecError: ``cwd`` is relative, empty or holds a NUL.
    """
    cwd = _path(cwd, "working directory")

    def opt(spec: Spec) -> None:
        spec.setdefault("process", {})["cwd"] = cwd

    return opt


def with_tty(tty: bool = True) -> SpecOpt:
    """Give the process a terminal (stderr then merges into stdout)."""
    tty = _bool(tty, "tty")

    def opt(spec: Spec) -> None:
        process = spec.setdefault("process", {})
        process["terminal"] = tty
        if tty:
            process.setdefault("env", [])
            if not any(e.startswith("TERM=") for e in process["env"]):
                process["env"].append("TERM=xterm")

    return opt


def with_hostname(name: str) -> SpecOpt:
    """Set the container's hostname.

    Raises:
        InvalidSpecError: Empty, longer than 64 characters, or not made of
            letters, digits, ``.``, ``_`` and ``-``.
    """
    _text(name, "hostname")
    if len(name) > _HOSTNAME_MAX or not _HOSTNAME_RE.fullmatch(name):
        raise InvalidSpecError(
            f"hostname {_short(name)} is invalid: up to {_HOSTNAME_MAX} letters, digits, '.', '_' or '-'"
        )

    def opt(spec: Spec) -> None:
        spec["hostname"] = name

    return opt


def with_user(uid: int, gid: int | None = None, additional_gids: Iterable[int] = ()) -> SpecOpt:
    """Run the process as numeric ``uid``/``gid``.

    Raises:
        InvalidSpecError: An id is not an integer in 0..4294967294.
    """
    uid = _int(uid, "uid", 0, _MAX_ID)
    gid = _int(gid if gid is not None else uid, "gid", 0, _MAX_ID)
    if isinstance(additional_gids, (str, bytes)) or not isinstance(additional_gids, Iterable):
        raise InvalidSpecError("additional_gids must be a list of integers")
    extra = [_int(g, "additional gid", 0, _MAX_ID) for g in additional_gids]

    def opt(spec: Spec) -> None:
        user: dict[str, Any] = {"uid": uid, "gid": gid}
        if extra:
            user["additionalGids"] = extra
        spec.setdefault("process", {})["user"] = user

    return opt


def with_rootfs(path: str, *, readonly: bool = False) -> SpecOpt:
    """Use a host folder (absolute path) as the root filesystem.

    Raises:
        InvalidSpecError: ``path`` is relative, empty or holds a NUL.
    """
    path = _path(path, "rootfs path")
    readonly = _bool(readonly, "readonly")

    def opt(spec: Spec) -> None:
        spec["root"] = {"path": path, "readonly": readonly}

    return opt


def with_readonly_rootfs(readonly: bool = True) -> SpecOpt:
    """Mount the root filesystem read-only."""
    readonly = _bool(readonly, "readonly")

    def opt(spec: Spec) -> None:
        spec.setdefault("root", {"path": "rootfs"})["readonly"] = readonly

    return opt


def with_bind_mount(source: str, destination: str, *, readonly: bool = False) -> SpecOpt:
    """Bind-mount a host path into the container.

    Raises:
        InvalidSpecError: A path is relative, empty or holds a NUL.
    """
    source = _path(source, "bind mount source")
    destination = _path(destination, "bind mount destination")
    readonly = _bool(readonly, "readonly")

    def opt(spec: Spec) -> None:
        options = ["rbind", "ro" if readonly else "rw"]
        spec.setdefault("mounts", []).append(
            {"destination": destination, "type": "bind", "source": source, "options": options}
        )

    return opt


def with_tmpfs(destination: str, *, size: int | None = None, mode: int = 0o1777) -> SpecOpt:
    """Mount a tmpfs at ``destination``.

    Args:
        destination: Absolute path in the container.
        size: Size limit in bytes (0: tmpfs's own default, half the RAM).
        mode: Permission bits of its root (at most 0o7777).

    Raises:
        InvalidSpecError: A relative destination, a negative size or a bad mode.
    """
    destination = _path(destination, "tmpfs destination")
    mode = _int(mode, "tmpfs mode", 0, 0o7777)
    size = None if size is None else _int(size, "tmpfs size", 0)

    def opt(spec: Spec) -> None:
        options = ["nosuid", "nodev", f"mode={mode:o}"]
        if size is not None:
            options.append(f"size={size}")
        spec.setdefault("mounts", []).append(
            {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": options}
        )

    return opt


def _resources(spec: Spec) -> dict[str, Any]:
    return spec.setdefault("linux", {}).setdefault("resources", {})  # type: ignore[no-any-return]


def with_memory_limit(limit: int, *, swap: int | None = None) -> SpecOpt:
    """Limit memory (bytes); swap defaults to the same value (no extra swap).

    Args:
        limit: Bytes of memory, above zero.
        swap: Memory plus swap in bytes, at least ``limit``; -1 for unlimited swap.

    Raises:
        InvalidSpecError: ``limit`` is not a positive integer, or ``swap`` is
            below it (runc refuses that).
    """
    limit = _int(limit, "memory limit", 1)
    swap = limit if swap is None else _int(swap, "memory+swap limit", limit, also=(-1,))

    def opt(spec: Spec) -> None:
        mem = _resources(spec).setdefault("memory", {})
        mem["limit"] = limit
        mem["swap"] = swap

    return opt


def with_cpu(
    *,
    shares: int | None = None,
    quota: int | None = None,
    period: int | None = None,
    cpus: float | None = None,
) -> SpecOpt:
    """Limit CPU: ``cpus=1.5`` or raw CFS ``quota``/``period`` and ``shares``.

    Args:
        shares: Relative weight, 2..262144.
        quota: Microseconds of CPU per period, at least 1000.
        period: CFS period in microseconds, 1000..1000000 (100000 by default with ``cpus``).
        cpus: How many CPUs' worth of time; the quota it gives must be at least 1000.

    Raises:
        InvalidSpecError: A value outside the kernel's bounds, or not a number.
    """
    shares = None if shares is None else _int(shares, "cpu shares", *_SHARES_RANGE)
    quota = None if quota is None else _int(quota, "cpu quota", _CFS_QUOTA_MIN)
    period = None if period is None else _int(period, "cpu period", *_CFS_PERIOD_RANGE)
    if cpus is not None:
        value: object = cpus
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise InvalidSpecError(f"cpus must be a finite number, not {_short(cpus)}")
        # Whole numbers stay exact: float(2**52 + 1) * 100000 would round.
        product = cpus * (period or 100_000) if isinstance(cpus, int) else float(cpus) * (period or 100_000)
        if not product < _INT64_MAX:
            raise InvalidSpecError(f"cpus={cpus} is too large")
        if not product >= _CFS_QUOTA_MIN:  # also -inf, which int() cannot take
            raise InvalidSpecError(f"cpus={cpus} is too small: a quota of at least {_CFS_QUOTA_MIN} us")
        quota = int(product)
        if quota < _CFS_QUOTA_MIN:
            raise InvalidSpecError(f"cpus={cpus} is too small: quota {quota} us is below {_CFS_QUOTA_MIN}")
        period = period or 100_000

    def opt(spec: Spec) -> None:
        cpu = _resources(spec).setdefault("cpu", {})
        if quota is not None:
            cpu["quota"] = quota
        if period is not None:
            cpu["period"] = period
        if shares is not None:
            cpu["shares"] = shares

    return opt


def with_pids_limit(limit: int) -> SpecOpt:
    """Limit the number of processes in the container (-1: no limit).

    Raises:
        InvalidSpecError: ``limit`` is not a positive integer or -1.
    """
    limit = _int(limit, "pids limit", 1, also=(-1,))

    def opt(spec: Spec) -> None:
        _resources(spec)["pids"] = {"limit": limit}

    return opt


def with_capabilities(add: Iterable[str] = (), drop: Iterable[str] = ()) -> SpecOpt:
    """Add or drop capabilities (``"NET_ADMIN"`` or ``"CAP_NET_ADMIN"``; ``"ALL"`` for all).

    Raises:
        InvalidSpecError: A name that is not a Linux capability.
    """
    for what, names in (("add", add), ("drop", drop)):
        if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
            raise InvalidSpecError(f"capabilities to {what} must be a list, not {type(names).__name__}")
    drops = [_capability(c) for c in drop]
    adds: list[str] = []
    for name in add:
        cap = _capability(name)
        adds.extend([f"CAP_{n}" for n in _all_capabilities()] if cap == "ALL" else [cap])

    def opt(spec: Spec) -> None:
        caps = spec.setdefault("process", {}).setdefault("capabilities", {})
        for kind in ("bounding", "permitted", "effective"):
            current: list[str] = caps.setdefault(kind, [])
            if "ALL" in drops:
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


# The kernel's capability names, in number order.
_CAPABILITY_NAMES = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]  # fmt: skip


def _all_capabilities() -> list[str]:
    # Up to what this host knows (cap_last_cap).
    names = _CAPABILITY_NAMES
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
        for path in ("/etc/hosts", "/etc/resolv.conf"):
            if os.path.exists(path):
                _add_file_mount(spec, path, path)

    return opt


def with_resolv_conf(source: str) -> SpecOpt:
    """Mount the host file ``source`` read-only on ``/etc/resolv.conf``, unless a mount already goes there.

    The SDK gives containers on a CNI network the host's name servers this
    way (see :func:`containerd_client.network.resolv_conf`).

    Raises:
        InvalidSpecError: ``source`` is relative, empty or holds a NUL.
    """
    source = _path(source, "resolv.conf source")

    def opt(spec: Spec) -> None:
        _add_file_mount(spec, source, "/etc/resolv.conf")

    return opt


def with_hosts_file(source: str, *, hostname: str | None = None) -> SpecOpt:
    """Mount the host file ``source`` read-only on ``/etc/hosts``, unless a mount already goes there.

    With ``hostname``, also set the container's hostname when the spec has
    none. The SDK gives containers on a CNI network a hosts file of their
    own this way (see :func:`containerd_client.network.write_hosts`).

    Raises:
        InvalidSpecError: ``source`` is relative, empty or holds a NUL, or
            ``hostname`` is not a valid hostname.
    """
    source = _path(source, "hosts file source")
    name_opt = None if hostname is None else with_hostname(hostname)

    def opt(spec: Spec) -> None:
        if name_opt is not None and not spec.get("hostname"):
            name_opt(spec)
        _add_file_mount(spec, source, "/etc/hosts")

    return opt


def _add_file_mount(spec: Spec, source: str, destination: str) -> None:
    """A read-only bind of ``source`` on ``destination``; a mount the spec already has there wins."""
    mounts = spec.setdefault("mounts", [])
    if not any(m.get("destination") == destination for m in mounts):
        options = ["rbind", "ro"]
        mounts.append({"destination": destination, "type": "bind", "source": source, "options": options})


def with_network_namespace(path: str) -> SpecOpt:
    """Join the network namespace pinned at ``path`` (a bind-mounted nsfs file, as ``ip netns`` makes).

    Raises:
        InvalidSpecError: ``path`` is not an absolute path.
    """
    path = _path(path, "network namespace path")

    def opt(spec: Spec) -> None:
        linux = spec.setdefault("linux", {})
        namespaces = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "network"]
        namespaces.append({"type": "network", "path": path})
        linux["namespaces"] = namespaces

    return opt


def with_annotations(annotations: Mapping[str, str]) -> SpecOpt:
    """Add OCI annotations (string keys and values).

    Raises:
        InvalidSpecError: An empty or non-string key, or a non-string value.
    """
    if not isinstance(annotations, Mapping):
        raise InvalidSpecError(f"annotations must be a mapping, not {type(annotations).__name__}")
    values = {}
    for key, value in annotations.items():
        values[_text(key, "annotation key")] = _text(value, f"annotation {_short(key)}", empty=True)

    def opt(spec: Spec) -> None:
        spec.setdefault("annotations", {}).update(values)

    return opt


def parse_signal(sig: int | str | signal.Signals) -> int:
    """Turn ``9``, ``"SIGKILL"``, ``"KILL"`` or ``signal.SIGKILL`` into a number.

    Raises:
        UnknownSignalError: The name or number is not a signal on this host.
    """
    if isinstance(sig, signal.Signals):
        return int(sig)
    if isinstance(sig, bool):
        raise UnknownSignalError(f"unknown signal {sig!r}")
    if isinstance(sig, int):
        if 1 <= sig <= int(signal.SIGRTMAX):
            return sig
        raise UnknownSignalError(f"unknown signal number {sig}")
    if isinstance(sig, str):
        text = sig.strip().upper()
        if text.isdigit():
            # isdigit() also holds for "²" and other non-ASCII digits, which int() refuses.
            if not text.isascii() or len(text) > 3:
                raise UnknownSignalError(f"unknown signal {sig[:20]!r}")
            return parse_signal(int(text))
        name = text if text.startswith("SIG") else f"SIG{text}"
        try:
            return int(signal.Signals[name])
        except KeyError:
            raise UnknownSignalError(f"unknown signal name {sig!r}") from None
    raise UnknownSignalError(f"unknown signal {sig!r}")


def signal_number(value: int | str) -> int:
    """Resolve a stop-signal name from an image config ("SIGTERM", "TERM", "15").

    Raises:
        UnknownSignalError: Not a signal this host knows.
    """
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return parse_signal(value)
    raise UnknownSignalError(f"unknown signal {_short(value)}")


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
        InvalidSpecError: A name is not in the given databases, or a number
            is not a valid id (``InvalidSpecError`` is also a ``ValueError``).
    """
    users = parse_user_database(passwd)
    groups = parse_user_database(group)
    name, _, grp = user.partition(":")
    if not isinstance(user, str) or not name:
        raise InvalidSpecError(f"invalid user {_short(user)}")
    if name.isascii() and name.isdigit():
        uid = _int(int(name[:12]) if len(name) <= 12 else -1, "uid", 0, _MAX_ID)
        gid = next((g for u, g in users.values() if u == uid), 0)
    elif name in users:
        uid, gid = users[name]
    else:
        raise InvalidSpecError(f"user {_short(name)} is not in the image's /etc/passwd")
    if grp:
        if grp.isascii() and grp.isdigit():
            gid = _int(int(grp) if len(grp) <= 12 else -1, "gid", 0, _MAX_ID)
        elif grp in groups:
            gid = groups[grp][0]
        else:
            raise InvalidSpecError(f"group {_short(grp)} is not in the image's /etc/group")
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

    Raises:
        InvalidSpecError: The config is malformed (a command that is not a
            list of strings, a bad environment entry, a relative working
            folder, an unknown user).
    """
    raw = config.get("config") if isinstance(config, Mapping) else None
    if raw is not None and not isinstance(raw, Mapping):
        raise InvalidSpecError(f"image config: 'config' must be an object, not {type(raw).__name__}")
    cfg = dict(raw or {})
    entrypoint = _strings(cfg.get("Entrypoint") or [], "image config Entrypoint")
    cmd = _arg_list(args) if args is not None else _strings(cfg.get("Cmd") or [], "image config Cmd")
    env = _env_items(cfg.get("Env") or [])
    workdir = _path(cfg.get("WorkingDir") or "/", "image config WorkingDir")
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
