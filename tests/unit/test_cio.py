"""Unit tests of containerd_client.cio: real FIFOs, a shell playing the shim."""

from __future__ import annotations

import errno
import gc
import io
import itertools
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from containerd_client import cio
from containerd_client.errors import ClosedError, ContainerdError, InvalidIdError

pytestmark = pytest.mark.timeout(30)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail if a test leaves a thread or a file descriptor behind."""
    gc.collect()
    fds, threads = _fd_count(), threading.active_count()
    yield
    gc.collect()
    assert threading.active_count() == threads, [t.name for t in threading.enumerate()]
    assert _fd_count() == fds


def _shim(proc_io: cio.ProcessIO, script: str) -> subprocess.Popen[bytes]:
    """Run ``script`` with $1, $2, $3 = the stdin, stdout and stderr FIFOs, like the shim."""
    cfg = proc_io.config
    return subprocess.Popen(
        ["sh", "-c", script, "sh", cfg.stdin or "-", cfg.stdout or "-", cfg.stderr or "-"]
    )


CAT = 'exec 2>"$3"; cat <"$1" >"$2"'


def _run(proc_io: cio.ProcessIO, script: str, timeout: float = 10.0) -> int:
    proc = _shim(proc_io, script)
    proc_io.start()
    try:
        assert proc_io.wait(timeout)
    finally:
        proc.wait(timeout)
    return proc.returncode


# -- never blocking, cancel, close ------------------------------------------------------------------


@pytest.mark.parametrize("stdin", [None, b"data", cio.PIPE])
def test_nothing_blocks_when_the_peer_never_comes(
    tmp_path: Path, no_leaks: None, stdin: cio.StdinSource | None
) -> None:
    lines = cio.Lines()
    begin = time.monotonic()
    proc_io = cio.stdio(stdin=stdin, stdout=lines, stderr=cio.Capture())(str(tmp_path), "p")
    proc_io.start()
    assert time.monotonic() - begin < 0.5
    assert not proc_io.wait(0.05)
    begin = time.monotonic()
    proc_io.cancel()
    assert not proc_io.wait(1.0)
    proc_io.close()
    assert time.monotonic() - begin < 1.0
    assert proc_io.cancelled
    assert list(lines) == []  # iteration ends after cancel
    assert os.listdir(tmp_path) == []


def test_close_without_start_removes_everything(tmp_path: Path, no_leaks: None) -> None:
    lines = cio.Lines()
    creator: cio.IOCreator = cio.stdio(stdin=b"x", stdout=lines)
    proc_io: cio.ProcessIO = creator(str(tmp_path), "p")
    assert isinstance(proc_io, cio.ProcessIO)
    assert sorted(os.listdir(tmp_path)) == ["p-stderr", "p-stdin", "p-stdout"]
    for path in (proc_io.config.stdin, proc_io.config.stdout, proc_io.config.stderr):
        assert stat.S_ISFIFO(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
    proc_io.close()
    proc_io.close()  # idempotent
    assert list(lines) == []
    assert os.listdir(tmp_path) == []
    with pytest.raises(ClosedError):
        proc_io.start()


def test_an_existing_fifo_is_reused_and_removed(tmp_path: Path, no_leaks: None) -> None:
    os.mkfifo(tmp_path / "p-stdout", 0o700)
    out = cio.Capture()
    with cio.stdio(stdout=out)(str(tmp_path), "p") as proc_io:
        _run(proc_io, 'exec 2>"$3" >"$2"; echo hi')
    assert out.getvalue() == b"hi\n"
    assert os.listdir(tmp_path) == []


def test_close_tolerates_fifos_already_removed(tmp_path: Path, no_leaks: None) -> None:
    proc_io = cio.stdio(stdout=cio.Capture())(str(tmp_path), "p")
    proc_io.start()
    for name in os.listdir(tmp_path):
        os.unlink(tmp_path / name)
    proc_io.close()


def test_missing_fifo_folder_is_created_and_removed(tmp_path: Path, no_leaks: None) -> None:
    folder = tmp_path / "a" / "b"
    with cio.stdio(stdout=cio.Capture())(str(folder), "p") as proc_io:
        assert proc_io.config.stdout == str(folder / "p-stdout")
    assert os.listdir(tmp_path) == []


def test_failed_setup_leaves_nothing(tmp_path: Path, no_leaks: None) -> None:
    (tmp_path / "p-stderr").mkdir()  # mkfifo fails after stdin and stdout exist
    lines = cio.Lines()
    unfed = cio.Lines()  # the stderr feed is never opened: it must end too
    with pytest.raises(cio.IOSetupError) as info:
        cio.stdio(stdin=b"x", stdout=lines, stderr=unfed)(str(tmp_path), "p")
    assert isinstance(info.value, ContainerdError)
    assert info.value.path == str(tmp_path / "p-stderr")
    assert os.listdir(tmp_path) == ["p-stderr"]
    assert list(lines) == []
    assert list(unfed) == []


def test_invalid_process_id(tmp_path: Path) -> None:
    for bad in ("", "..", "a/b"):
        with pytest.raises(InvalidIdError):
            cio.stdio()(str(tmp_path), bad)


def test_bad_source_and_sink_types() -> None:
    with pytest.raises(TypeError):
        cio.stdio(stdin=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cio.stdio(stdout=42)  # type: ignore[arg-type]


def test_many_cycles_leak_nothing(tmp_path: Path, no_leaks: None) -> None:
    creator = cio.stdio(stdin=cio.PIPE, stdout=cio.Capture(), stderr=None)
    for i in range(200):
        proc_io = creator(str(tmp_path), f"p{i}")
        if i % 2:
            proc_io.start()
        proc_io.close()
    assert os.listdir(tmp_path) == []


def test_threads_are_named_and_daemonic(tmp_path: Path, no_leaks: None) -> None:
    with cio.stdio(stdin=b"x", stdout=cio.Capture())(str(tmp_path), "web") as proc_io:
        proc_io.start()
        names = {t.name: t.daemon for t in threading.enumerate() if t.name.startswith("cio-")}
    assert names == {"cio-web-stdin": True, "cio-web-stdout": True, "cio-web-stderr": True}


def test_unclosed_io_warns(tmp_path: Path, no_leaks: None) -> None:
    proc_io = cio.stdio(stdout=cio.Capture())(str(tmp_path), "p")
    config = proc_io.config
    # __del__ only warns (no I/O there), so the test releases what leaked.
    leaked = [out.fd for out in proc_io._outputs] + [proc_io._canceller.fd]
    with pytest.warns(ResourceWarning, match="unclosed"):
        del proc_io  # no reference cycle: this runs __del__
    for fd in leaked:
        os.close(fd)
    for path in (config.stdout, config.stderr):
        os.unlink(path)


# -- copying ----------------------------------------------------------------------------------------


def test_one_mib_round_trip(tmp_path: Path, no_leaks: None) -> None:
    data = os.urandom(1 << 20)
    out, err = cio.Capture(), cio.Capture()
    with cio.stdio(stdin=data, stdout=out, stderr=err)(str(tmp_path), "p") as proc_io:
        assert _run(proc_io, CAT + "; echo done >&2") == 0
        assert proc_io.errors == ()
    assert out.getvalue() == data
    assert err.text() == "done\n"
    assert os.listdir(tmp_path) == []


def test_stdin_eof_callback_runs_once_and_at_once_when_late(tmp_path: Path, no_leaks: None) -> None:
    calls: list[str] = []
    fired = threading.Event()
    with cio.stdio(stdin="hi\n", stdout=cio.Capture())(str(tmp_path), "p") as proc_io:
        proc_io.on_stdin_eof(lambda: (calls.append("early"), fired.set()))
        _run(proc_io, CAT)
        # On the stdin thread, just after it closed the end cat saw EOF on: maybe after _run.
        assert fired.wait(10)
        proc_io.close_stdin()  # after EOF: nothing more happens
        assert calls == ["early"]
        proc_io.on_stdin_eof(lambda: calls.append("late"))
        assert calls == ["early", "late"]


def test_close_stdin_before_start_sends_nothing(tmp_path: Path, no_leaks: None) -> None:
    calls: list[int] = []
    out = cio.Capture()
    with cio.stdio(stdin=b"never sent", stdout=out)(str(tmp_path), "p") as proc_io:
        proc_io.on_stdin_eof(lambda: calls.append(1))
        proc_io.close_stdin()
        _run(proc_io, CAT)
    assert out.getvalue() == b""
    assert calls == [1]


def test_eof_callback_errors_are_logged(
    tmp_path: Path, no_leaks: None, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    with cio.stdio(stdin=b"x", stdout=cio.Capture())(str(tmp_path), "p") as proc_io:
        proc_io.on_stdin_eof(boom)
        _run(proc_io, CAT)
        proc_io.on_stdin_eof(boom)
    assert [r.levelname for r in caplog.records if "callback" in r.getMessage()] == ["ERROR", "ERROR"]


def test_pipe_stdin(tmp_path: Path, no_leaks: None) -> None:
    out = cio.Capture()
    calls: list[int] = []
    with cio.stdio(stdin=cio.PIPE, stdout=out)(str(tmp_path), "p") as proc_io:
        proc_io.on_stdin_eof(lambda: calls.append(1))
        proc_io.stdin_write(b"before start\n")  # queued until the reader comes
        proc = _shim(proc_io, CAT)
        proc_io.start()
        proc_io.stdin_write("text\n")
        proc_io.stdin_write(bytearray(b"x" * 300_000))
        proc_io.close_stdin()
        with pytest.raises(ClosedError):
            proc_io.stdin_write(b"late")
        assert proc_io.wait(10)
        assert proc.wait(10) == 0
    assert out.getvalue() == b"before start\ntext\n" + b"x" * 300_000
    assert calls == [1]


def test_stdin_write_needs_pipe(tmp_path: Path, no_leaks: None) -> None:
    with cio.stdio(stdin=b"x")(str(tmp_path), "p") as proc_io, pytest.raises(ValueError, match="PIPE"):
        proc_io.stdin_write(b"y")


def test_cancel_unblocks_a_full_stdin_queue(
    tmp_path: Path, no_leaks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cio, "STDIN_QUEUE_LIMIT", 10)
    with cio.stdio(stdin=cio.PIPE)(str(tmp_path), "p") as proc_io:
        proc_io.start()
        proc_io.stdin_write(b"x" * 20)
        timer = threading.Timer(0.1, proc_io.cancel)
        timer.start()
        with pytest.raises(ClosedError):
            proc_io.stdin_write(b"blocked")
        timer.join()


def test_close_stdin_ends_an_endless_source(tmp_path: Path, no_leaks: None) -> None:
    calls: list[int] = []
    out = cio.Capture()
    endless = itertools.repeat(b"y" * 4096)
    with cio.stdio(stdin=endless, stdout=out)(str(tmp_path), "p") as proc_io:
        proc_io.on_stdin_eof(lambda: calls.append(1))
        proc = _shim(proc_io, CAT)
        proc_io.start()
        deadline = time.monotonic() + 5
        while len(out.getvalue()) < 100_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc_io.close_stdin()
        assert proc_io.wait(5)  # cat saw EOF and exited
        assert proc.wait(5) == 0
    assert calls == [1]
    assert set(out.getvalue()) == {ord("y")}


def test_reader_gone_breaks_stdin_without_callback(tmp_path: Path, no_leaks: None) -> None:
    calls: list[int] = []
    with cio.stdio(stdin=cio.PIPE, stdout=cio.Capture())(str(tmp_path), "p") as proc_io:
        proc_io.on_stdin_eof(lambda: calls.append(1))
        # The "shim" opens stdin, then exits without reading.
        proc = _shim(proc_io, 'exec 2>"$3" >"$2" <"$1"; exit 0')
        proc_io.start()
        chunk = b"z" * 65536

        def write_until_broken() -> None:
            for _ in range(10_000):
                proc_io.stdin_write(chunk)

        with pytest.raises(ClosedError):
            write_until_broken()
        assert proc_io.wait(5)
        proc.wait(5)
    assert calls == []


def _regular_file(tmp_path: Path, data: bytes) -> io.BufferedReader:
    path = tmp_path / "src"
    path.write_bytes(data)
    return open(path, "rb")


@pytest.mark.parametrize(
    "kind",
    ["str", "bytearray", "file", "partly-read-file", "raw-file", "bytesio", "lines", "textfile", "pipe"],
)
def test_stdin_sources(tmp_path: Path, no_leaks: None, kind: str) -> None:
    data = b"".join(b"line %d\n" % i for i in range(20_000))
    expected = data
    closers: list[object] = []
    source: object
    src_dir = tmp_path / "src-dir"
    src_dir.mkdir()
    if kind == "str":
        source = data.decode()
    elif kind == "bytearray":
        source = bytearray(data)
    elif kind == "file":
        source = _regular_file(src_dir, data)
    elif kind == "partly-read-file":
        source = _regular_file(src_dir, data)
        source.readline()  # the buffer read ahead far more than this line
        expected = data[len(b"line 0\n") :]
    elif kind == "raw-file":
        source = _regular_file(src_dir, data).detach()
    elif kind == "bytesio":
        source = io.BytesIO(data)
    elif kind == "lines":
        source = iter(data.decode().splitlines(keepends=True))
    elif kind == "textfile":
        (src_dir / "src").write_bytes(data)
        source = open(src_dir / "src", encoding="utf-8")  # noqa: SIM115
    else:
        rfd, wfd = os.pipe()
        source = open(rfd, "rb", buffering=0)  # noqa: SIM115

        def feed() -> None:
            os.write(wfd, data)
            os.close(wfd)

        feeder = threading.Thread(target=feed)
        feeder.start()
        closers.append(feeder)
    if hasattr(source, "close"):
        closers.append(source)
    out = cio.Capture()
    with cio.stdio(stdin=source, stdout=out)(str(tmp_path), "p") as proc_io:
        _run(proc_io, CAT)
    for item in closers:
        if isinstance(item, threading.Thread):
            item.join()
        else:
            item.close()  # type: ignore[attr-defined]
    assert out.getvalue() == expected


def test_capture_lines_and_callable_sinks(tmp_path: Path, no_leaks: None) -> None:
    lines = cio.Lines()
    chunks: list[bytes] = []
    seen: list[str] = []
    consumer = threading.Thread(target=lambda: seen.extend(lines))
    consumer.start()
    script = 'exec 2>"$3" >"$2"; for i in 1 2 3; do echo "out $i"; echo "err $i" >&2; sleep 0.02; done'
    script += "; printf tail"
    with cio.stdio(stdout=lines, stderr=chunks.append)(str(tmp_path), "p") as proc_io:
        _run(proc_io, script)
    consumer.join(5)
    assert seen == ["out 1", "out 2", "out 3", "tail"]
    assert b"".join(chunks) == b"err 1\nerr 2\nerr 3\n"


def test_lines_options_and_shared_sinks(tmp_path: Path, no_leaks: None) -> None:
    lines = cio.Lines(keepends=True)
    both = cio.Capture()
    script = 'exec 2>"$3" >"$2"; printf "a\\r\\nb\\n"; printf "c" >&2'
    with cio.stdio(stdout=lines, stderr=lines)(str(tmp_path), "p") as proc_io:
        _run(proc_io, script)
    assert sorted(lines) == ["a\r\n", "b\n", "c"]  # ends only after both streams did
    with cio.stdio(stdout=both, stderr=both)(str(tmp_path), "q") as proc_io:
        _run(proc_io, script)
    assert sorted(both.getvalue()) == sorted(b"a\r\nb\nc")
    plain = cio.Lines()
    with cio.stdio(stdout=plain)(str(tmp_path), "r") as proc_io:
        _run(proc_io, 'exec 2>"$3" >"$2"; printf "a\\r\\n\\nb\\n"')
    assert list(plain) == ["a", "", "b"]


def test_lines_decode_split_characters(tmp_path: Path, no_leaks: None) -> None:
    lines = cio.Lines()
    with cio.stdio(stdout=lines)(str(tmp_path), "p") as proc_io:
        # "é" is two bytes, written one at a time.
        _run(proc_io, 'exec 2>"$3" >"$2"; printf "\\303"; sleep 0.05; printf "\\251\\n"')
    assert list(lines) == ["é"]


@pytest.mark.parametrize("mode", ["wb", "ab", "raw"])
def test_file_sink_with_descriptor(tmp_path: Path, no_leaks: None, mode: str) -> None:
    data = os.urandom(3 << 20)
    src = tmp_path / "data"
    src.write_bytes(data)
    target = tmp_path / "out"
    if mode == "raw":
        sink: IO[bytes] = open(target, "wb", buffering=0)  # noqa: SIM115
    else:
        sink = open(target, mode)  # noqa: SIM115  (O_APPEND refuses splice: the fallback runs)
        sink.write(b"head\n")  # buffered: must land before the copy
    fifo_dir = tmp_path / "fifos"
    with sink, cio.stdio(stdout=sink)(str(fifo_dir), "p") as proc_io:
        _run(proc_io, f'exec 2>"$3"; cat "{src}" >"$2"')
        assert proc_io.errors == ()
    expected = data if mode == "raw" else b"head\n" + data
    assert target.read_bytes() == expected


def test_pipe_and_text_sinks(tmp_path: Path, no_leaks: None) -> None:
    rfd, wfd = os.pipe()
    received: list[bytes] = []

    def read_all() -> None:
        with open(rfd, "rb") as reader:
            received.append(reader.read())

    reader = threading.Thread(target=read_all)
    reader.start()
    text = io.StringIO()
    data = os.urandom(1 << 20)
    src = tmp_path / "data"
    src.write_bytes(data)
    with (
        open(wfd, "wb") as pipe_sink,
        cio.stdio(stdout=pipe_sink, stderr=text)(str(tmp_path / "f"), "p") as proc_io,
    ):
        _run(proc_io, f'exec 2>"$3"; cat "{src}" >"$2"; echo "ünïcode" >&2')
    reader.join(5)
    assert received == [data]
    assert text.getvalue() == "ünïcode\n"


def test_terminal_sink(tmp_path: Path, no_leaks: None) -> None:
    master, slave = os.openpty()
    size = 200_000
    received = bytearray()

    def read_master() -> None:
        while len(received) < size:
            received.extend(os.read(master, 65536))

    reader = threading.Thread(target=read_master)
    reader.start()
    with (
        open(slave, "wb", buffering=0) as tty,
        cio.stdio(stdout=tty)(str(tmp_path), "p") as proc_io,
    ):
        _run(proc_io, f'exec 2>"$3" >"$2"; head -c {size} /dev/zero | tr "\\0" x')
        assert proc_io.errors == ()
    reader.join(5)
    os.close(master)
    assert bytes(received) == b"x" * size


def test_sink_refusing_splice_falls_back_then_fails_cleanly(tmp_path: Path, no_leaks: None) -> None:
    # /dev/full refuses splice (EINVAL), so the write(2) fallback runs and
    # gets ENOSPC: recorded, and the stream is drained to its end.
    with (
        open("/dev/full", "wb", buffering=0) as full,
        cio.stdio(stdout=full)(str(tmp_path), "p") as proc_io,
    ):
        assert _run(proc_io, 'exec 2>"$3" >"$2"; head -c 4194304 /dev/zero') == 0
        assert [getattr(e, "errno", None) for e in proc_io.errors] == [errno.ENOSPC]


def test_bytesio_sink(tmp_path: Path, no_leaks: None) -> None:
    sink = io.BytesIO()
    with cio.stdio(stdout=sink)(str(tmp_path), "p") as proc_io:
        _run(proc_io, 'exec 2>"$3" >"$2"; echo hello')
    assert sink.getvalue() == b"hello\n"


def test_unread_streams_are_drained(tmp_path: Path, no_leaks: None) -> None:
    # 4 MiB on each stream would block the writer if nobody read them.
    script = 'exec 2>"$3" >"$2"; head -c 4194304 /dev/zero; head -c 4194304 /dev/zero >&2'
    with cio.stdio()(str(tmp_path), "p") as proc_io:
        assert _run(proc_io, script) == 0


def test_failing_sink_is_recorded_and_the_stream_drained(
    tmp_path: Path, no_leaks: None, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(data: bytes) -> None:
        raise OSError("disk full")

    script = 'exec 2>"$3" >"$2"; head -c 4194304 /dev/zero'
    with cio.stdio(stdout=broken)(str(tmp_path), "p") as proc_io:
        assert _run(proc_io, script) == 0
        assert [str(e) for e in proc_io.errors] == ["disk full"]
    assert any("discarding the rest" in r.getMessage() for r in caplog.records)


def test_failing_stdin_source_still_ends_stdin(tmp_path: Path, no_leaks: None) -> None:
    def source() -> Iterator[bytes]:
        yield b"partial\n"
        raise RuntimeError("source broke")

    calls: list[int] = []
    out = cio.Capture()
    with cio.stdio(stdin=source(), stdout=out)(str(tmp_path), "p") as proc_io:
        proc_io.on_stdin_eof(lambda: calls.append(1))
        _run(proc_io, CAT)
        assert [str(e) for e in proc_io.errors] == ["source broke"]
    assert out.getvalue() == b"partial\n"
    assert calls == [1]


def test_wait_after_a_writer_that_never_writes(tmp_path: Path, no_leaks: None) -> None:
    with cio.stdio(stdout=cio.Capture())(str(tmp_path), "p") as proc_io:
        proc = _shim(proc_io, 'exec 2>"$3" >"$2"; sleep 5')
        proc_io.start()
        assert not proc_io.wait(0.1)
        begin = time.monotonic()
        proc_io.close()
        assert time.monotonic() - begin < 1.0
        proc.kill()
        proc.wait()


# -- terminal, static configs -----------------------------------------------------------------------


def test_terminal_has_no_stderr_fifo(tmp_path: Path, no_leaks: None) -> None:
    err_lines = cio.Lines()
    with cio.stdio(stdout=cio.Capture(), stderr=err_lines, terminal=True)(str(tmp_path), "t") as proc_io:
        assert proc_io.config == cio.IOConfig(stdout=str(tmp_path / "t-stdout"), terminal=True)
        assert os.listdir(tmp_path) == ["t-stdout"]
        assert list(err_lines) == []  # nothing will ever feed it


def test_static_configs(tmp_path: Path, no_leaks: None) -> None:
    null = cio.null_io()(str(tmp_path), "p")
    assert null.config == cio.IOConfig()
    log = cio.log_file("/var/log/my app/x.log")(str(tmp_path), "p").config
    assert log == cio.IOConfig(
        stdout="file:///var/log/my%20app/x.log", stderr="file:///var/log/my%20app/x.log"
    )
    binary = cio.binary_io(Path("/usr/bin/../bin/logger"), tag="a b", id="c&d")(str(tmp_path), "p").config
    assert binary.stdout == binary.stderr == "binary:///usr/bin/logger?id=c%26d&tag=a+b"
    assert cio.binary_io("/bin/x")(str(tmp_path), "p").config.stdout == "binary:///bin/x"
    with pytest.raises(ValueError, match="absolute"):
        cio.log_file("rel/x.log")
    with pytest.raises(ValueError, match="absolute"):
        cio.binary_io("logger")
    calls: list[int] = []
    with null as static:
        static.start()
        static.on_stdin_eof(lambda: calls.append(1))
        static.close_stdin()
        assert static.wait(0)
        static.cancel()
    assert calls == []
    assert os.listdir(tmp_path) == []
    assert isinstance(null, cio.ProcessIO)


# -- attach -----------------------------------------------------------------------------------------


def _keepalive(path: str) -> int:
    # What the shim does: it holds a read end of its own output FIFOs.
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)


@pytest.mark.parametrize("remove", [False, True])
def test_attach_reads_what_the_shim_buffered(tmp_path: Path, no_leaks: None, remove: bool) -> None:
    config = cio.IOConfig(str(tmp_path / "a-stdin"), str(tmp_path / "a-stdout"), str(tmp_path / "a-stderr"))
    for path in (config.stdin, config.stdout, config.stderr):
        os.mkfifo(path, 0o700)
    keep = [_keepalive(config.stdout), _keepalive(config.stderr)]
    # The process wrote while no client was attached, and goes on after. It says
    # "wrote" on a pipe of its own once "before" is in the FIFO.
    ready_r, ready_w = os.pipe()
    script = 'exec 2>"$3" >"$2"; echo before; echo wrote >/dev/fd/"$4"; read line <"$1"; echo "got $line"'
    peer = subprocess.Popen(
        ["sh", "-c", script, "sh", config.stdin, config.stdout, config.stderr, str(ready_w)],
        pass_fds=(ready_w,),
    )
    os.close(ready_w)
    try:
        assert os.read(ready_r, 64) == b"wrote\n"
    finally:
        os.close(ready_r)
    out = cio.Capture()
    calls: list[int] = []
    fired = threading.Event()
    try:
        with cio.attach(config, stdin=b"hello\n", stdout=out, stderr=None, remove=remove) as proc_io:
            proc_io.on_stdin_eof(lambda: (calls.append(1), fired.set()))
            proc_io.start()
            assert peer.wait(10) == 0
            for fd in keep:
                os.close(fd)
            keep = []
            assert proc_io.wait(10)
            assert proc_io.config is config
            # The callback runs on the stdin thread once it closed its end, which
            # under load can come after the output's EOF (wait() is about output);
            # leaving the block before then would cancel it.
            assert fired.wait(10)
    finally:
        for fd in keep:
            os.close(fd)
    assert out.getvalue() == b"before\ngot hello\n"
    assert calls == [1]
    left = sorted(os.listdir(tmp_path))
    assert left == ([] if remove else ["a-stderr", "a-stdin", "a-stdout"])


def test_attach_recreates_a_missing_folder(
    tmp_path: Path, no_leaks: None, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "bundle"
    config = cio.IOConfig(stdout=str(folder / "x-stdout"), stderr=str(folder / "x-stderr"))
    lines = cio.Lines()
    with cio.attach(config, stdout=lines) as proc_io:
        assert stat.S_ISFIFO(os.stat(config.stdout).st_mode)
        proc_io.start()
    assert list(lines) == []
    assert not folder.exists()  # we created it, so we removed it
    assert any("missing" in r.getMessage() for r in caplog.records)


def test_attach_skips_uris_and_non_fifos(
    tmp_path: Path, no_leaks: None, caplog: pytest.LogCaptureFixture
) -> None:
    regular = tmp_path / "x-stderr"
    regular.write_text("log")
    config = cio.IOConfig(stdout="file:///var/log/x.log", stderr=str(regular))
    lines = cio.Lines()
    with cio.attach(config, stdout=cio.Capture(), stderr=lines) as proc_io:
        proc_io.start()
        assert proc_io.wait(1)
    assert list(lines) == []
    assert regular.read_text() == "log"
    assert any("not a FIFO" in r.getMessage() for r in caplog.records)


def test_public_names() -> None:
    assert sorted(cio.__all__) == sorted(
        [
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
    )
