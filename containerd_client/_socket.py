"""Why containerd's socket cannot be reached, in words that say what to do.

The two commonest first-day mistakes both surface from gRPC as UNAVAILABLE
with a transport message ("failed to connect to all addresses ... No such
file or directory"): no daemon at the address, and a socket the user may not
open. :func:`diagnose_socket` looks at the path and says which it is;
:func:`explain_unavailable` turns the first call's UNAVAILABLE on a
connection that never answered into an error carrying that explanation.
Nothing here talks gRPC; a diagnosis costs a few ``stat`` calls and one
local ``connect``, and runs only when a call already failed.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import stat

from containerd_client.errors import PermissionDeniedError, RPCError, StatusCode, UnavailableError

__all__ = ["diagnose_socket", "explain_unavailable", "socket_path"]

_WHERE = "Client(address=...) or the CONTAINERD_ADDRESS environment variable"


def socket_path(address: str) -> str | None:
    """The filesystem path of an address, or None for a target that is no unix socket.

    As the connection reads addresses: a ``unix://`` URI or a bare path.
    """
    if "://" not in address:
        return address or None
    if address.startswith("unix://"):
        return address[len("unix://") :] or None
    return None


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _access(path: str, mode: int) -> bool:
    # connect(2) checks the effective ids, as does os.access with effective_ids.
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)


def _not_running(path: str, why: str) -> str:
    return (
        f"containerd is not running at {path}: {why}. Start containerd, or point the client at "
        f"the socket containerd listens on with {_WHERE}."
    )


def _denied(what: str, info: os.stat_result) -> str:
    group = _group_name(info.st_gid)
    owner = _user_name(info.st_uid)
    mode = stat.S_IMODE(info.st_mode)
    head = (
        f"permission denied on {what} (owner {owner}, group {group}, mode {mode:04o}) "
        f"for uid {os.geteuid()}: run as root (sudo)"
    )
    if info.st_gid == 0:
        return (
            f"{head}, or have containerd give its socket a group of its own ([grpc] gid in "
            "its config.toml) and join that group."
        )
    return f"{head}, or join the group {group!r} (sudo usermod -aG {group} $USER, then log in again)."


def _blocking_folder(path: str) -> str | None:
    """The first folder above ``path``, from the root down, that this process may not search."""
    head = "/"
    for part in os.path.dirname(os.path.abspath(path)).split("/")[1:]:
        head = os.path.join(head, part)
        if not _access(head, os.X_OK):
            return head
    return None


def _diagnose(path: str) -> tuple[bool, str] | None:
    """``(denied, explanation)``, or None when the path looks like a live socket."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False, _not_running(path, "there is no socket at that path")
    except NotADirectoryError:
        return False, _not_running(path, "a part of the path is not a folder")
    except PermissionError:
        # stat needs search permission on every folder above the socket.
        folder = _blocking_folder(path) or os.path.dirname(os.path.abspath(path))
        try:
            folder_info = os.stat(folder)
        except OSError:
            return (
                True,
                f"permission denied on a folder above containerd's socket {path}: run as root (sudo).",
            )
        return True, _denied(f"the folder {folder} above containerd's socket {path}", folder_info)
    except OSError as exc:
        return False, _not_running(path, f"its path cannot be read ({exc.strerror})")
    if not stat.S_ISSOCK(info.st_mode):
        kind = (
            "folder" if stat.S_ISDIR(info.st_mode) else "file" if stat.S_ISREG(info.st_mode) else "non-socket"
        )
        return False, _not_running(path, f"it is a {kind}, not a socket")
    # Permission on the socket itself is read from connect(2), not os.access():
    # a restarting daemon replaces its socket between our stat and a second
    # look, and os.access() answers False for the vanished path as it would
    # for a forbidden one.
    return _probe(path, info)


def _probe(path: str, info: os.stat_result) -> tuple[bool, str] | None:
    """Connect once: a socket file that nobody listens on refuses at once."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            code = sock.connect_ex(path)
        except OSError as exc:  # a path too long for sun_path
            code = exc.errno or 0
    if code == errno.ECONNREFUSED:
        return False, _not_running(
            path, "the socket exists but nothing listens on it (left by a daemon that stopped)"
        )
    if code in (errno.EACCES, errno.EPERM):
        return True, _denied(f"containerd's socket {path}", info)
    if code == errno.ENOENT:  # replaced or removed since the stat: a daemon (re)starting or gone
        return False, _not_running(path, "there is no socket at that path")
    return None


def diagnose_socket(path: str) -> str | None:
    """Say why containerd's socket at ``path`` cannot be reached, or None if it looks fine.

    Covers a missing path, something that is no socket, a socket nobody
    listens on, and a socket (or a folder above it) this process may not
    open; the text names the path, and what to do: start containerd or set
    ``CONTAINERD_ADDRESS`` / ``address=``, or run as root or join the
    socket's group.
    """
    found = _diagnose(path)
    return None if found is None else found[1]


def explain_unavailable(address: str, err: RPCError) -> RPCError:
    """Replace an UNAVAILABLE from a connection that never answered with what to do.

    Returns ``err`` itself when it is not UNAVAILABLE, the address is no unix
    socket, or the socket looks fine; else an :class:`UnavailableError` (no
    daemon there) or a :class:`PermissionDeniedError` (not allowed to open
    it) whose message explains, with ``err``'s cause.
    """
    if err.code is not StatusCode.UNAVAILABLE:
        return err
    path = socket_path(address)
    found = None if path is None else _diagnose(path)
    if found is None:
        return err
    denied, message = found
    better: RPCError = PermissionDeniedError(message) if denied else UnavailableError(message)
    better.__cause__ = err.__cause__
    return better
