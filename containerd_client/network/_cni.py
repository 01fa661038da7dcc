"""CNI plugins run as the CNI specification says: one process per plugin and command.

The network configuration goes on stdin, the parameters in ``CNI_*``
environment variables, the result (or an error object) comes back on stdout.
A configuration list runs its plugins in order for ADD, each getting the
previous one's result as ``prevResult``, and in reverse order for DEL, each
getting the cached ADD result (libcni's behaviour). Capabilities a plugin
declares (``portMappings``) are passed in its ``runtimeConfig``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from containerd_client.errors import ContainerdError, NotSupportedError

__all__ = ["CNIError", "NetworkError", "PluginNotFoundError", "find_plugin", "run_list"]

#: How long one plugin may run.
PLUGIN_TIMEOUT = 60.0
#: Folders searched for plugins when none are given (upstream's, then Debian's).
DEFAULT_PLUGIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")


class NetworkError(ContainerdError):
    """A network namespace, CNI configuration or CNI step failed."""


class CNIError(NetworkError):
    """A CNI plugin failed; its error object is kept.

    Attributes:
        plugin: The plugin type (``bridge``, ``portmap``...).
        command: ``ADD`` or ``DEL``.
        code: The CNI error code (1-99 are the specification's, 100+ the plugin's; 0 if none).
        msg: The plugin's message.
        details: The plugin's details (may be empty).
    """

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        text = f"CNI plugin {plugin} {command} failed (code {code}): {msg}"
        if details:
            text += f" ({details})"
        super().__init__(text)
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.plugin, self.command, self.code, self.msg, self.details))


class PluginNotFoundError(NotSupportedError, NetworkError):
    """A CNI plugin binary is not installed (Debian: ``containernetworking-plugins``)."""


def find_plugin(name: str, dirs: Sequence[str]) -> str:
    """The path of plugin ``name`` in ``dirs``.

    Raises:
        PluginNotFoundError: No executable of that name there.
    """
    if not name or "/" in name or name in (".", ".."):
        raise PluginNotFoundError(f"invalid CNI plugin type {name!r}")
    for folder in dirs:
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise PluginNotFoundError(
        f"CNI plugin {name!r} not found in {':'.join(dirs)} "
        "(Debian and Ubuntu: apt-get install containernetworking-plugins)"
    )


def sbin_path() -> str:
    """This process's ``PATH`` with ``/usr/sbin`` and ``/sbin`` added where
    missing: iptables lives there, and a user's shell may not list them."""
    path = os.environ.get("PATH") or "/usr/bin:/bin"
    for extra in ("/usr/sbin", "/sbin"):
        if extra not in path.split(":"):
            path += ":" + extra
    return path


def _plugin_env(
    command: str, container_id: str, netns: str, ifname: str, dirs: Sequence[str]
) -> dict[str, str]:
    return {
        "PATH": sbin_path(),  # plugins run iptables
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": ":".join(dirs),
    }


def _exec(
    plugin: str,
    binary: str,
    conf: Mapping[str, Any],
    env: Mapping[str, str],
) -> dict[str, Any] | None:
    command = env["CNI_COMMAND"]
    try:
        proc = subprocess.run(
            [binary],
            input=json.dumps(conf).encode(),
            env=dict(env),
            capture_output=True,
            timeout=PLUGIN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CNIError(plugin, command, 0, f"no answer within {PLUGIN_TIMEOUT:g} s") from exc
    except OSError as exc:
        raise CNIError(plugin, command, 0, f"could not run {binary}: {exc}") from exc
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
        except ValueError:
            err = None
        if isinstance(err, dict):
            raise CNIError(
                plugin,
                command,
                int(err.get("code") or 0),
                str(err.get("msg") or ""),
                str(err.get("details") or ""),
            )
        text = (out or proc.stderr.decode(errors="replace")).strip()[-500:]
        raise CNIError(plugin, command, 0, f"exit status {proc.returncode}: {text}")
    if not out:
        return None
    try:
        result = json.loads(out)
    except ValueError as exc:
        raise CNIError(plugin, command, 0, f"result is not JSON: {out[:200]!r}") from exc
    if not isinstance(result, dict):
        raise CNIError(plugin, command, 0, f"result is not an object: {out[:200]!r}")
    return result


def _plugin_conf(
    conflist: Mapping[str, Any],
    plugin: Mapping[str, Any],
    prev: Mapping[str, Any] | None,
    runtime_config: Mapping[str, Any],
) -> dict[str, Any]:
    conf = dict(plugin)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist.get("cniVersion", "1.0.0")
    if prev is not None:
        conf["prevResult"] = prev
    caps = plugin.get("capabilities") or {}
    wanted = {key: value for key, value in runtime_config.items() if caps.get(key)}
    if wanted:
        conf["runtimeConfig"] = wanted
    conf.pop("capabilities", None)
    return conf


def run_list(
    command: str,
    conflist: Mapping[str, Any],
    *,
    container_id: str,
    netns: str,
    ifname: str,
    plugin_dirs: Sequence[str],
    runtime_config: Mapping[str, Any] | None = None,
    prev_result: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Run ``command`` (``ADD`` or ``DEL``) over the plugins of ``conflist``.

    ADD stops at the first failure (the caller then runs DEL); DEL goes on
    past failures, so every plugin gets to release what it holds, and raises
    the first one at the end.

    Returns:
        The result of ADD (the last plugin's); None for DEL.

    Raises:
        PluginNotFoundError: A plugin binary is missing (checked before any runs).
        CNIError: A plugin failed.
    """
    plugins = list(conflist.get("plugins") or [])
    binaries = [find_plugin(str(p.get("type", "")), plugin_dirs) for p in plugins]
    env = _plugin_env(command, container_id, netns, ifname, plugin_dirs)
    rc = runtime_config or {}
    if command == "ADD":
        prev: dict[str, Any] | None = None
        for plugin, binary in zip(plugins, binaries, strict=True):
            result = _exec(str(plugin["type"]), binary, _plugin_conf(conflist, plugin, prev, rc), env)
            if result is not None:
                prev = result
        return prev
    first: CNIError | None = None
    for plugin, binary in reversed(list(zip(plugins, binaries, strict=True))):
        try:
            _exec(str(plugin["type"]), binary, _plugin_conf(conflist, plugin, prev_result, rc), env)
        except CNIError as exc:
            first = first or exc
    if first is not None:
        raise first
    return None
