"""Static IO: the shim does everything (no stdio, a log file, a logging binary)."""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from collections.abc import Callable

import attrs

from containerd_client.cio._protocol import IOConfig, IOCreator


@attrs.define(eq=False)
class StaticIO:
    """A ProcessIO with nothing on our side: no stdio, a log file or a log binary."""

    config: IOConfig

    def start(self) -> None:
        """Nothing to copy."""

    def on_stdin_eof(self, callback: Callable[[], object]) -> None:
        """Never runs ``callback``: there is no stdin."""

    def close_stdin(self) -> None:
        """Nothing to close."""

    def stdin_write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Refuse: there is no stdin.

        Raises:
            ValueError: Always.
        """
        raise ValueError("stdin_write() needs stdin=cio.PIPE")

    def wait(self, timeout: float | None = None) -> bool:
        """Return True: nothing to copy."""
        return True

    def cancel(self) -> None:
        """Nothing to cancel."""

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> StaticIO:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@attrs.frozen
class _StaticCreator:
    config: IOConfig

    def __call__(self, fifo_dir: str, process_id: str) -> StaticIO:
        return StaticIO(self.config)


def null_io() -> IOCreator:
    """No stdio at all: the shim connects the process to /dev/null.

    All three fields are empty; a FIFO for stdout without one for stderr
    would make the shim fail ("opening file \\"\\" failed").
    """
    return _StaticCreator(IOConfig())


def _abs_uri_path(path: str) -> str:
    path = os.fspath(path)
    if not posixpath.isabs(path):
        raise ValueError(f"{path!r} must be absolute")
    return urllib.parse.quote(posixpath.normpath(path))


def log_file(path: str | os.PathLike[str]) -> IOCreator:
    """Have the shim append stdout and stderr to a file on the host.

    The shim creates the file and its folder.

    Raises:
        ValueError: ``path`` is not absolute.
    """
    uri = "file://" + _abs_uri_path(os.fspath(path))
    return _StaticCreator(IOConfig(stdout=uri, stderr=uri))


def binary_io(path: str | os.PathLike[str], **args: str) -> IOCreator:
    """Have the shim start a logging binary that receives stdout and stderr.

    The URI is ``binary:///abs/path?k=v`` with the arguments sorted by key,
    as containerd's Go client builds it.

    Raises:
        ValueError: ``path`` is not absolute.
    """
    uri = "binary://" + _abs_uri_path(os.fspath(path))
    if args:
        uri += "?" + urllib.parse.urlencode(sorted(args.items()))
    return _StaticCreator(IOConfig(stdout=uri, stderr=uri))
