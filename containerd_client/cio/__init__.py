"""Process stdio for containerd tasks and execs: FIFOs, log files, log drivers.

containerd's shim does not talk stdio over gRPC. ``Tasks.Create`` and
``Tasks.Exec`` carry three strings (and a terminal flag), :class:`IOConfig`,
and the shim opens what they name:

* paths of FIFOs that this module creates and copies to and from
  (:func:`stdio`, :func:`attach`);
* ``file:///abs/path``: the shim appends stdout and stderr to a file
  (:func:`log_file`);
* ``binary:///abs/path?k=v``: the shim starts a logging binary
  (:func:`binary_io`);
* nothing at all (:func:`null_io`).

The objects layer asks an :class:`IOCreator` for a :class:`ProcessIO` before
the create/exec RPC, puts ``io.config`` into the request, calls
:meth:`ProcessIO.start` once the RPC succeeded (or :meth:`ProcessIO.close` if
it failed) and :meth:`ProcessIO.close` after the process was deleted::

    creator = cio.stdio(stdin=b"hello\\n", stdout=out, stderr=err)
    io = creator(bundle_dir, process_id)   # FIFOs exist, nothing blocks
    ... Tasks.Create(stdin=io.config.stdin, ...) ...
    io.start()                             # copy threads run
    io.on_stdin_eof(send_close_io)         # CloseIO once our write end closed
    ... wait for exit ...
    io.wait(2.0)                           # output fully copied
    io.close()                             # threads joined, FIFOs removed

Nothing in here makes an RPC and nothing blocks the caller on a FIFO peer:
opening a FIFO normally waits for the other side, and the shim may never
come (the create failed). Read ends are opened non-blocking and polled
together with a cancel eventfd; the stdin write end is opened from the copy
thread once the shim has its reader (see ``_fifo.open_writer``). Linux
only.
"""

from __future__ import annotations

from containerd_client.cio._creators import StdioCreator, attach, stdio
from containerd_client.cio._engine import CLOSE_TIMEOUT as CLOSE_TIMEOUT  # FifoIO.close's default
from containerd_client.cio._engine import FifoIO
from containerd_client.cio._logs import LogFile
from containerd_client.cio._protocol import PIPE, IOConfig, IOCreator, IOSetupError, ProcessIO
from containerd_client.cio._sinks import Capture, Lines, OutputSink
from containerd_client.cio._sources import StdinSource
from containerd_client.cio._static import StaticIO, binary_io, log_file, null_io

__all__ = [
    "PIPE",
    "Capture",
    "FifoIO",
    "IOConfig",
    "IOCreator",
    "IOSetupError",
    "Lines",
    "LogFile",
    "OutputSink",
    "ProcessIO",
    "StaticIO",
    "StdinSource",
    "StdioCreator",
    "attach",
    "binary_io",
    "log_file",
    "null_io",
    "stdio",
]


#: How many bytes :meth:`FifoIO.stdin_write` queues before it blocks (read when
#: each FifoIO is built, so setting ``cio.STDIN_QUEUE_LIMIT`` takes effect).
STDIN_QUEUE_LIMIT = 4 << 20
#: Bound of the log file kept with ``stdio(logs=True)`` (``new_task(logs=True)``);
#: past it the oldest lines are dropped. Read when each log is made.
LOG_MAX_BYTES = 8 << 20

# Where things live: _protocol (IOConfig, ProcessIO, IOCreator, PIPE,
# IOSetupError), _sinks (stdout/stderr targets), _sources (stdin feeds),
# _static (null_io, log_file, binary_io), _engine (FifoIO, the copy threads),
# _creators (stdio, attach), _fifo (non-blocking FIFO syscalls), _logs (the
# bounded log file behind Task.logs()).
