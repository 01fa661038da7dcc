"""What the objects layer and the IO creators agree on: IOConfig, ProcessIO, IOCreator, PIPE."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from containerd_client.errors import ContainerdError


class IOSetupError(ContainerdError):
    """The FIFOs (or their folder) could not be created or opened.

    Attributes:
        path: The path that failed.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.path))


class _Pipe(enum.Enum):
    PIPE = "PIPE"

    def __repr__(self) -> str:
        return "cio.PIPE"


#: Stdin source meaning "I will call ``io.stdin_write()`` and ``io.close_stdin()``".
PIPE: Literal[_Pipe.PIPE] = _Pipe.PIPE


@attrs.frozen
class IOConfig:
    """The stdio fields of containerd's Tasks.Create / Tasks.Exec requests.

    Attributes:
        stdin: Path of the stdin FIFO, or "" for none.
        stdout: Path of the stdout FIFO, a ``file://`` or ``binary://`` URI, or "".
        stderr: Same as ``stdout``; "" with a terminal (it merges into stdout).
        terminal: Whether the process gets a TTY.
    """

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@runtime_checkable
class ProcessIO(Protocol):
    """The stdio of one process, as the objects layer drives it.

    Lifecycle: built by an :class:`IOCreator` before the create/exec RPC,
    :meth:`start` after it succeeded, :meth:`close` at the end (also when the
    RPC failed). Every method is safe to call from any thread.
    """

    @property
    def config(self) -> IOConfig:
        """What goes into the create/exec request."""
        ...

    def start(self) -> None:
        """Begin copying; never blocks."""
        ...

    def on_stdin_eof(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once, when our stdin write end was closed after its source ended.

        Runs at once if that already happened. Never runs if there is no stdin,
        if the copy was cancelled, or if the reader went away first. This is
        the moment to send containerd's CloseIO (the shim keeps a writer of
        its own on the FIFO, so the process sees EOF only after CloseIO).
        """
        ...

    def close_stdin(self) -> None:
        """End stdin early (or, with :data:`PIPE`, after what was written)."""
        ...

    def stdin_write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Queue data for stdin (only with ``stdin=cio.PIPE``; else ValueError)."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until stdout and stderr reached EOF and were copied; False on timeout or cancel."""
        ...

    def cancel(self) -> None:
        """Stop waiting for peers and stop copying, promptly; does not block."""
        ...

    def close(self) -> None:
        """Cancel what still runs, join threads, close fds, remove our FIFOs. Idempotent."""
        ...

    def __enter__(self) -> ProcessIO: ...

    def __exit__(self, *exc_info: object) -> None: ...


class IOCreator(Protocol):
    """Builds the :class:`ProcessIO` of one process.

    Called with the folder to put FIFOs in (the container's bundle folder)
    and the process id (the container id for the init process, the exec id
    for an exec).
    """

    def __call__(self, fifo_dir: str, process_id: str) -> ProcessIO: ...
