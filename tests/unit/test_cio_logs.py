"""Unit tests of the kept log (cio._logs) and of text sinks without a descriptor.

Real FIFOs, with a shell playing the shim, as in test_cio.py.
"""

from __future__ import annotations

import gc
import io
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_client import cio
from containerd_client.cio import _logs

pytestmark = pytest.mark.timeout(30)

BOTH = frozenset({_logs.STDOUT, _logs.STDERR})


def _run(proc_io: cio.ProcessIO, script: str) -> None:
    cfg = proc_io.config
    proc = subprocess.Popen(
        ["sh", "-c", script, "sh", cfg.stdin or "-", cfg.stdout or "-", cfg.stderr or "-"]
    )
    proc_io.start()
    try:
        assert proc_io.wait(10)
    finally:
        proc.wait(10)


@pytest.fixture
def no_fd_leaks() -> Iterator[None]:
    """Fail if a test leaves a file descriptor (the log's own, say) open."""
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    yield
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before


def _log(proc_io: cio.ProcessIO) -> cio.LogFile:
    assert isinstance(proc_io, cio.FifoIO)
    log = proc_io.log
    assert log is not None
    return log


# -- the kept log ------------------------------------------------------------------------------------


def test_log_keeps_streams_apart_and_together_in_order(tmp_path: Path, no_fd_leaks: None) -> None:
    creator = cio.stdio(stdin=cio.PIPE, logs=True)
    with creator(str(tmp_path / "b"), "p") as proc_io:
        cfg = proc_io.config
        # Each line is written only after the previous one reached the log.
        script = 'exec 2>"$3" >"$2" <"$1"; read x; echo out1; read x; echo err1 >&2; '
        script += "read x; echo out2; printf tail"
        proc = subprocess.Popen(["sh", "-c", script, "sh", cfg.stdin, cfg.stdout, cfg.stderr])
        proc_io.start()
        log = _log(proc_io)
        follower = log.follow(BOTH, None, lambda: False)
        for expected in (b"out1\n", b"err1\n", b"out2\n"):
            proc_io.stdin_write(b"go\n")
            assert next(follower) == expected
        proc_io.close_stdin()
        assert list(follower) == [b"tail"]
        assert proc_io.wait(10)
        proc.wait(10)
        assert log.read(frozenset({_logs.STDOUT})) == [b"out1\n", b"out2\n", b"tail"]
        assert log.read(frozenset({_logs.STDERR})) == [b"err1\n"]
        assert log.read(BOTH) == [b"out1\n", b"err1\n", b"out2\n", b"tail"]
        assert log.read(BOTH, tail=2) == [b"out2\n", b"tail"]
        assert log.read(BOTH, tail=0) == []
        assert log.done
    # The log outlives the FIFOs (it goes with the container's folder).
    assert os.listdir(tmp_path / "b") == ["p-log"]


def test_log_tees_to_the_callers_sinks(tmp_path: Path) -> None:
    out = cio.Capture()
    rfd, wfd = os.pipe()
    with open(wfd, "wb") as pipe_sink, open(rfd, "rb") as reader:
        creator = cio.stdio(stdout=pipe_sink, stderr=out, logs=True)
        with creator(str(tmp_path / "b"), "p") as proc_io:
            _run(proc_io, 'exec 2>"$3" >"$2"; echo to-fd; echo to-capture >&2')
            assert sorted(_log(proc_io).read(BOTH)) == [b"to-capture\n", b"to-fd\n"]
        pipe_sink.close()
        assert reader.read() == b"to-fd\n"
    assert out.getvalue() == b"to-capture\n"


def test_log_cuts_long_lines_and_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_fd_leaks: None
) -> None:
    monkeypatch.setattr(cio, "LOG_MAX_BYTES", 100_000)
    creator = cio.stdio(logs=True)
    with creator(str(tmp_path / "b"), "p") as proc_io:
        # 2000 numbered lines of ~100 bytes, then one line of 40 KiB with no newline.
        _run(
            proc_io,
            'exec >"$2" 2>"$3"; i=0; while [ $i -lt 2000 ]; do printf "%099d\\n" $i; i=$((i+1)); done;'
            " head -c 40960 /dev/zero | tr '\\0' x",
        )
        log = _log(proc_io)
        records = log.read(BOTH)
    size = os.path.getsize(tmp_path / "b" / "p-log")
    assert size <= 100_000
    # The newest survive, the oldest were dropped, the long line is in pieces.
    assert records[-3:] == [
        b"x" * _logs.MAX_RECORD,
        b"x" * _logs.MAX_RECORD,
        b"x" * (40960 - 2 * _logs.MAX_RECORD),
    ]
    numbered = [int(r) for r in records if not r.startswith(b"x")]
    # What is left of the numbered lines is a contiguous run ending at the last one.
    assert numbered == list(range(2000 - len(numbered), 2000))
    assert 0 < len(numbered) < 2000  # some were dropped, the newest kept
    assert len(records) < 2003


def test_follow_yields_new_lines_and_ends_when_the_streams_end(tmp_path: Path) -> None:
    creator = cio.stdio(stdin=cio.PIPE, logs=True)
    with creator(str(tmp_path / "b"), "p") as proc_io:
        cfg = proc_io.config
        proc = subprocess.Popen(
            ["sh", "-c", 'exec 2>"$3" >"$2" <"$1"; cat', "sh", cfg.stdin, cfg.stdout, cfg.stderr]
        )
        proc_io.start()
        got: list[bytes] = []
        it = _log(proc_io).follow(BOTH, None, lambda: False)
        proc_io.stdin_write(b"one\n")
        got.append(next(it))
        proc_io.stdin_write(b"two\n")
        got.append(next(it))
        proc_io.close_stdin()
        got.extend(it)  # ends: cat exits, both streams reach EOF
        proc.wait(10)
    assert got == [b"one\n", b"two\n"]


def test_follow_ends_on_stop_even_if_a_stream_stays_open(tmp_path: Path, no_fd_leaks: None) -> None:
    creator = cio.stdio(logs=True)
    stop = threading.Event()
    with creator(str(tmp_path / "b"), "p") as proc_io:
        cfg = proc_io.config
        # stdout stays open until we close the shell's stdin.
        proc = subprocess.Popen(
            ["sh", "-c", 'exec 2>"$3" >"$2"; echo hello; read x', "sh", "-", cfg.stdout, cfg.stderr],
            stdin=subprocess.PIPE,
        )
        proc_io.start()
        it = _log(proc_io).follow(BOTH, None, stop.is_set)
        assert next(it) == b"hello\n"
        stop.set()
        assert list(it) == []
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


def test_failed_setup_removes_the_log(tmp_path: Path, no_fd_leaks: None) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "p-stderr").mkdir()  # the stderr FIFO cannot be made
    with pytest.raises(cio.IOSetupError):
        cio.stdio(logs=True)(str(folder), "p")
    assert os.listdir(folder) == ["p-stderr"]


def test_read_log_reads_a_file_without_its_writer(tmp_path: Path) -> None:
    with cio.stdio(logs=True)(str(tmp_path / "b"), "p") as proc_io:
        _run(proc_io, 'exec 2>"$3" >"$2"; echo a; echo b')
    assert _logs.read_log(str(tmp_path / "b" / "p-log"), BOTH, tail=1) == [b"b\n"]


# -- text sinks without a usable descriptor (Jupyter) ------------------------------------------------


class _NoFdText:
    """A text stream like ipykernel's when it has no original fd: not an io class, fileno raises."""

    encoding = "UTF-8"

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.parts.append(s)
        return len(s)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


class _KernelStream(io.TextIOBase):
    """Like ipykernel's OutStream with echo: fileno() is the kernel's original stdout, not the cell."""

    def __init__(self, original_fd: int) -> None:
        self._fd = original_fd
        self.parts: list[str] = []

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "UTF-8"

    def write(self, s: str) -> int:
        self.parts.append(s)
        return len(s)

    def fileno(self) -> int:
        return self._fd


def test_text_stream_whose_fileno_raises_gets_decoded_text(tmp_path: Path) -> None:
    sink = _NoFdText()
    with cio.stdio(stdout=sink, stderr=sink)(str(tmp_path / "b"), "p") as proc_io:
        _run(proc_io, 'exec 2>"$3" >"$2"; echo "héllo"; echo err >&2')
        assert proc_io.errors == ()
    assert sorted("".join(sink.parts).splitlines()) == ["err", "héllo"]


def test_kernel_stream_gets_text_not_its_servers_terminal(tmp_path: Path) -> None:
    rfd, wfd = os.pipe()
    sink = _KernelStream(wfd)
    try:
        with cio.stdio(stdout=sink)(str(tmp_path / "b"), "p") as proc_io:
            _run(proc_io, 'exec 2>"$3" >"$2"; echo cell')
        os.close(wfd)
        wfd = -1
        with open(rfd, "rb") as terminal:
            rfd = -1
            assert terminal.read() == b""  # nothing went to the "server's terminal"
    finally:
        for fd in (rfd, wfd):
            if fd >= 0:
                os.close(fd)
    assert "".join(sink.parts) == "cell\n"


def test_real_text_file_still_uses_its_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with open(path, "w", encoding="utf-8") as f, cio.stdio(stdout=f)(str(tmp_path / "b"), "p") as proc_io:
        _run(proc_io, 'exec 2>"$3" >"$2"; echo direct')
        out = next(o for o in proc_io._outputs if o.name == "stdout")
        assert out.plan.fd == f.fileno()
    assert path.read_text() == "direct\n"
