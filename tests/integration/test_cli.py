"""The command line end to end, on the session's private daemon.

A few cases run the real ``python -m containerd_client`` process (``run --rm
... echo hi``, a detached container that outlives the process that made it,
``rm`` from another process); the rest call :func:`containerd_client.cli.main`
in-process with captured streams, to keep the file fast.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import termios
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from containerd_client import Client, network
from containerd_client.cli import main
from containerd_client.client import SESSION_LABEL
from containerd_client.testing import ContainerdDaemon, build_busybox_archive

ROOT = Path(__file__).resolve().parents[2]


@attrs.frozen
class Result:
    code: int
    out: str
    err: str


@attrs.frozen
class Cli:
    """The command line pointed at the test's daemon and namespace."""

    daemon: ContainerdDaemon
    namespace: str
    image: str
    tmp: Path

    @property
    def base(self) -> list[str]:
        cfg = self.daemon.network_config
        return [
            "-a",
            self.daemon.address,
            "-n",
            self.namespace,
            "--cni-bridge",
            cfg.bridge,
            "--cni-subnet",
            cfg.subnet,
        ]

    def __call__(self, *argv: str) -> Result:
        """In-process, with a stdout that has a binary buffer (as a real one)."""
        raw = io.BytesIO()
        out = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
        err = io.StringIO()
        code = main([*self.base, *argv], stdout=out, stderr=err)
        out.flush()
        return Result(code, raw.getvalue().decode("utf-8", "replace"), err.getvalue())

    def process(self, *argv: str, stdin: bytes | None = None, timeout: float = 60) -> Result:
        """As a real process (``python -m containerd_client``)."""
        proc = subprocess.run(
            [sys.executable, "-m", "containerd_client", *self.base, *argv],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            cwd=ROOT,
            check=False,
        )
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture(scope="module")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_busybox_archive(tmp_path_factory.mktemp("cli-image") / "busybox.tar").path)


@pytest.fixture
def cli(
    containerd: Client, containerd_daemon: ContainerdDaemon, busybox_archive: str, tmp_path: Path
) -> Iterator[Cli]:
    (image,) = containerd.images.import_archive(busybox_archive)
    yield Cli(containerd_daemon, containerd.namespace_name, image.name, tmp_path)
    for img in containerd.images.list():  # the test's images (imported, pulled) go with it
        containerd.images.delete(img.name)


def _until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _TerminalText(io.StringIO):
    """A stderr that says it is a terminal (as the command line's, run by a person)."""

    def isatty(self) -> bool:
        return True


def _needs_cni() -> None:
    if os.geteuid() != 0:
        pytest.skip("CNI needs root")
    if not any(os.path.exists(os.path.join(d, "portmap")) for d in network.NetworkConfig().plugin_dirs):
        pytest.skip("CNI plugins missing (apt-get install containernetworking-plugins)")


# -- run --------------------------------------------------------------------------------


def test_run_rm_echo_hi_in_a_real_process(cli: Cli, containerd: Client) -> None:
    r = cli.process("run", "--rm", cli.image, "echo", "hi")
    assert (r.code, r.out, r.err) == (0, "hi\n", "")
    assert containerd.containers() == []


def test_run_exit_code_env_stdin_and_streams(cli: Cli, containerd: Client) -> None:
    r = cli("run", "--rm", "-e", "FOO=bar", cli.image, "sh", "-c", 'echo "$FOO"; echo oops >&2; exit 7')
    assert (r.code, r.out, r.err) == (7, "bar\n", "oops\n")
    r = cli.process("run", "--rm", "-i", cli.image, "cat", stdin=b"from stdin\n")
    assert (r.code, r.out) == (0, "from stdin\n")
    r = cli("run", "--rm", "-t", cli.image, "sh", "-c", "test -t 1 && echo tty")
    assert r.code == 0
    assert r.out.replace("\r\n", "\n") == "tty\n"
    r = cli("run", "--rm", "--net", "host", cli.image, "sh", "-c", "test -e /sys/class/net/lo && echo ok")
    assert (r.code, r.out) == (0, "ok\n")
    assert containerd.containers() == []


def _read_until(fd: int, token: bytes, seen: bytearray, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while token not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return token in seen


def test_run_it_on_a_terminal_sends_keys_and_the_window_size(
    cli: Cli, containerd: Client, tmp_path: Path
) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "containerd_client", *cli.base, "run", "--rm", "-it", cli.image, "sh"],
            stdin=slave,
            stdout=slave,
            stderr=err,
            cwd=ROOT,
            start_new_session=True,
        )
    os.close(slave)
    seen = bytearray()
    try:
        assert _read_until(master, b"# ", seen), bytes(seen)  # the container's shell prompt
        os.write(master, b"stty size; echo X$((40+2))Y; exit 3\r")
        assert _read_until(master, b"X42Y", seen), bytes(seen)
        assert proc.wait(timeout=20) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert b"33 101" in seen  # our terminal's size reached the container's
    assert (tmp_path / "stderr").read_bytes() == b""  # no thread stuck on stdin at exit
    assert containerd.containers() == []


def test_ctrl_c_in_run_rm_stops_and_removes_the_container(cli: Cli, containerd: Client) -> None:
    script = "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"
    proc = subprocess.Popen(
        [sys.executable, "-m", "containerd_client", *cli.base, "run", "--rm", cli.image, "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"  # the container runs: now Ctrl-C
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert out == b"got-term\n"
    assert err.decode().strip().splitlines() == ["containerd-client: interrupted"]
    assert containerd.containers() == []


def test_run_failures_have_docker_exit_codes_and_one_line(cli: Cli, containerd: Client) -> None:
    r = cli("run", "--rm", cli.image, "no-such-command")
    assert r.code == 127, r
    assert len(r.err.strip().splitlines()) == 1
    assert "Traceback" not in r.err
    r = cli("run", "--rm", "--pull", "never", "nosuch/image:1", "true")
    assert r.code == 125
    assert "NotFoundError" in r.err
    assert len(r.err.strip().splitlines()) == 1
    # Refused before anything is made.
    r = cli("run", "--rm", "-d", cli.image, "true")
    assert r.code == 2
    assert "--rm and -d" in r.err
    r = cli("run", "--rm", "--name", "bad/name", cli.image, "true")
    assert r.code == 2
    assert "InvalidIdError" in r.err
    r = cli("run", "--rm", "-p", "99999", cli.image, "true")
    assert r.code == 2
    assert "-p" in r.err
    r = cli("--debug", "rm", "nosuch")
    assert r.code == 1
    assert "Traceback" in r.err
    assert containerd.containers() == []


def test_run_without_rm_keeps_the_container_its_exit_code_and_output(cli: Cli, containerd: Client) -> None:
    r = cli("run", "--name", "kept", cli.image, "sh", "-c", "echo kept-out; exit 3")
    assert (r.code, r.out) == (3, "kept-out\n")
    (c,) = containerd.containers()
    assert SESSION_LABEL not in c.info().labels
    ps = cli("--json", "ps", "-a")
    (entry,) = json.loads(ps.out)
    assert (entry["id"], entry["status"], entry["exit_code"]) == ("kept", "exited", 3)
    assert cli("ps").out.splitlines()[1:] == []  # not running
    assert cli("logs", "kept").out == "kept-out\n"
    assert cli("rm", "kept").code == 0
    assert containerd.containers() == []


# -- detached ---------------------------------------------------------------------------


def test_detached_container_outlives_its_process_and_a_sweep(cli: Cli, containerd: Client) -> None:
    script = (
        "trap 'echo bye; exit 3' TERM; echo ready; i=0; "
        "while true; do i=$((i+1)); echo line$i; sleep 0.2; done"
    )
    r = cli.process("run", "-d", "--name", "bg", cli.image, "sh", "-c", script)
    assert (r.code, r.out) == (0, "bg\n"), r
    c = containerd.load_container("bg")
    labels = c.info().labels
    assert SESSION_LABEL not in labels
    assert SESSION_LABEL not in containerd.snapshots(c.info().snapshotter).stat(c.info().snapshot_key).labels
    # The process that made it is gone: a sweep must not take it for a leftover.
    report = containerd.sweep()
    assert report.containers == ()
    assert report.tasks == ()
    assert c.task().status().value == "running"
    _until(lambda: "line2" in cli("logs", "bg").out, what="log output")
    assert cli("logs", "bg").out.startswith("ready\nline1\n")
    assert cli("logs", "--tail", "1", "bg").out.count("\n") == 1
    ps = cli("ps")
    assert ps.code == 0
    assert "bg" in ps.out
    assert "Running" in ps.out
    assert cli("exec", "bg", "sh", "-c", "echo in-exec; exit 4") == Result(4, "in-exec\n", "")
    assert cli.process("exec", "-i", "bg", "cat", stdin=b"piped\n") == Result(0, "piped\n", "")
    r = cli("exec", "-t", "bg", "sh", "-c", "test -t 0 && echo tty")
    assert r.code == 0
    assert r.out.replace("\r\n", "\n") == "tty\n"
    # exec -d: started, no stdio, and it goes on after the command returned.
    assert cli.process("exec", "-d", "bg", "sh", "-c", "echo detached > /tmp/d; exec sleep 30") == Result(
        0, "", ""
    )
    _until(lambda: cli("exec", "bg", "cat", "/tmp/d").out == "detached\n", what="the detached exec's file")
    # Its sleep outlived the CLI process: an exec's process (bg's own loop runs
    # short-lived sleeps beside its init, so counting all pids would not tell).
    execs = [p.pid for p in c.task().pids() if p.info is not None]
    assert len(execs) == 1, c.task().pids()
    with open(f"/proc/{execs[0]}/comm") as f:
        assert f.read().strip() == "sleep"
    assert cli("exec", "-d", "bg", "no-such-binary").code == 127
    r = cli("exec", "-d", "-t", "bg", "true")
    assert r.code == 2
    assert "neither -t nor -i" in r.err
    stats = json.loads(cli("--json", "stats", "bg").out)
    assert stats[0]["id"] == "bg"
    assert stats[0]["pids"] >= 1
    assert stats[0]["memory"] > 0
    assert "bg" in cli("stats").out
    # --stream: a sample per interval with the CPU % since the last (bg prints a line a second).
    r = cli("--json", "stats", "--stream", "--interval", "0.2", "--count", "3", "bg")
    samples = [json.loads(line) for line in r.out.splitlines()]
    assert (r.code, [v["id"] for v in samples]) == (0, ["bg"] * 3), r
    assert all(0.0 <= v["cpu_percent"] < 400 for v in samples)
    table = cli("stats", "-s", "--interval", "0.1", "-c", "2")
    assert table.out.count("CPU %") == 2
    assert "bg" in table.out
    assert cli("stats", "--count", "2").code == 2  # --count goes with --stream
    # rm refuses a running container without -f.
    r = cli("rm", "bg")
    assert r.code == 1
    assert "rm -f" in r.err
    assert cli("kill", "-s", "SIGSTOP", "bg").code == 0  # a signal it cannot ignore or die of
    _until(lambda: c.task().pids() != [] and _state(c) == "T", what="stopped process")
    assert cli("kill", "-s", "SIGCONT", "bg").code == 0
    assert cli("stop", "-t", "5", "bg").code == 0
    (entry,) = json.loads(cli("--json", "ps", "-a").out)
    assert entry["status"] == "exited"
    assert entry["exit_code"] == 3
    assert cli("logs", "--tail", "1", "bg").out == "bye\n"
    bundle = c.bundle_dir
    assert cli("rm", "bg") == Result(0, "bg\n", "")
    assert containerd.containers() == []
    assert not os.path.exists(bundle)


def _state(c: object) -> str:
    pid = c.task().pid  # type: ignore[attr-defined]
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_detached_with_a_terminal_logs_through_the_shims_logger(cli: Cli, containerd: Client) -> None:
    # The shims cannot copy a terminal to a file: a logging binary does it (containerd 1.6 to 2.x).
    r = cli("run", "-d", "-t", "--name", "dt", cli.image, "sh", "-c", "tty; echo hello; sleep 60")
    assert r == Result(0, "dt\n", "")
    _until(lambda: "hello" in cli("logs", "dt").out, what="terminal output in the log")
    assert cli("logs", "dt").out.replace("\r\n", "\n").startswith("/dev/pts/")
    assert cli("rm", "-f", "dt").code == 0
    assert containerd.containers() == []


def test_logs_follow_ends_when_the_container_exits(cli: Cli, containerd: Client) -> None:
    # The container waits for a file that the test makes once `logs -f` printed the first line.
    r = cli(
        "run",
        "-d",
        "--name",
        "f",
        cli.image,
        "sh",
        "-c",
        "echo one; while ! test -e /go; do sleep 0.05; done; echo two",
    )
    assert r.code == 0
    c = containerd.load_container("f")
    _until(lambda: cli("logs", "f").out == "one\n", what="first line")
    result: list[Result] = []
    t = threading.Thread(target=lambda: result.append(cli("logs", "-f", "f")))
    t.start()
    proc = c.task().exec("go", ["touch", "/go"])
    proc.start()
    proc.wait(10)
    proc.delete()
    t.join(20)
    assert not t.is_alive()
    assert result[0].code == 0
    assert result[0].out == "one\ntwo\n"
    assert cli("rm", "f").code == 0


def test_published_port_outlives_the_cli_and_rm_from_another_process_tears_it_down(
    cli: Cli, containerd: Client
) -> None:
    _needs_cni()
    r = cli.process(
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "80",
        cli.image,
        "sh",
        "-c",
        "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 80 -h /www",
    )
    assert r.code == 0, r
    (entry,) = json.loads(cli("--json", "ps").out)
    (port,) = entry["ports"]
    host_port = int(port.split(":")[1].split("->")[0])
    state_root = containerd.load_container("web").bundle_dir.rsplit("/", 2)[0]
    assert network.attachments(state_root, cli.namespace) == [(cli.namespace, "web")]

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/", timeout=2) as resp:
                return resp.read() == b"served\n"
        except OSError:
            return False

    _until(answers, what="httpd behind the published port")
    r = cli.process("rm", "-f", "web")
    assert r.code == 0, r
    assert network.attachments(state_root, cli.namespace) == []
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", host_port)) != 0
    assert containerd.containers() == []


# -- the rest ---------------------------------------------------------------------------


def test_version_namespaces_and_images_ls(cli: Cli, containerd: Client) -> None:
    v = json.loads(cli("--json", "version").out)
    assert v["server"]["version"] == containerd.version().version
    assert "Server:  containerd" in cli("version").out
    names = [n["name"] for n in json.loads(cli("--json", "namespaces").out)]
    assert cli.namespace in names
    assert cli.namespace in cli("namespaces").out.split()
    (img,) = json.loads(cli("--json", "images", "ls").out)
    assert img["name"] == cli.image
    assert img["size"] > 0
    table = cli("images").out.splitlines()
    assert table[0].split()[:2] == ["NAME", "DIGEST"]
    assert table[1].startswith(cli.image)


def test_images_export_rm_import_round_trip(cli: Cli, containerd: Client, tmp_path: Path) -> None:
    before = containerd.images.get(cli.image).target.digest
    out = tmp_path / "out.tar"
    assert cli("images", "export", str(out), cli.image).code == 0
    assert cli("images", "rm", cli.image) == Result(0, f"{cli.image}\n", "")
    assert containerd.images.list() == []
    r = cli("images", "rm", cli.image)
    assert r.code == 1
    assert "NotFoundError" in r.err
    r = cli("--json", "images", "import", str(out))
    assert r.code == 0
    assert json.loads(r.out) == [{"name": cli.image, "digest": before}]
    # An imported image is the user's: no session label for a sweep to judge.
    assert SESSION_LABEL not in containerd.images.get(cli.image).labels


def test_images_pull_from_a_local_registry(
    cli: Cli, containerd: Client, containerd_daemon: ContainerdDaemon, busybox_archive: str
) -> None:
    import shutil

    if shutil.which("docker-registry") is None:
        pytest.skip("needs docker-registry")
    from containerd_client.testing._registry import LocalRegistry, push_with_ctr

    with LocalRegistry() as registry:
        ref = f"{registry.host}/cli/busybox:1"
        push_with_ctr(containerd_daemon, ref, namespace=f"{cli.namespace}-push")
        Client(containerd_daemon.address, f"{cli.namespace}-push").close()
        r = cli("--json", "images", "pull", ref)
        assert r.code == 0, r
        assert json.loads(r.out)["name"] == ref
        assert SESSION_LABEL not in containerd.images.get(ref).labels
        # On a terminal, each blob gets a bar that ends full; -q draws none.
        for quiet in ([], ["-q"]):
            containerd.images.delete(ref)
            terminal = _TerminalText()
            code = main([*cli.base, "pull", *quiet, ref], stdout=io.StringIO(), stderr=terminal)
            assert code == 0, terminal.getvalue()
            bars = [line for line in terminal.getvalue().replace("\r", "\n").splitlines() if "100%" in line]
            assert bool(bars) != bool(quiet), terminal.getvalue()
    with Client(containerd_daemon.address, f"{cli.namespace}-push") as push:
        from containerd_client.testing.plugin import sweep_namespace

        sweep_namespace(push)


def test_events_prints_what_happens(cli: Cli) -> None:
    result: list[Result] = []
    t = threading.Thread(
        target=lambda: result.append(cli("--json", "events", "-c", "1", "-f", 'topic=="/containers/create"'))
    )
    t.start()
    # The subscription starts at some point after the thread: make events until it saw one.
    deadline = time.monotonic() + 20
    while t.is_alive() and time.monotonic() < deadline:
        assert cli("run", "--rm", cli.image, "true").code == 0
        t.join(0.2)
    assert not t.is_alive()
    (line,) = result[0].out.splitlines()
    event = json.loads(line)
    assert event["topic"] == "/containers/create"
    assert event["namespace"] == cli.namespace


def test_sweep_removes_a_dead_sessions_container(cli: Cli, containerd: Client, busybox_rootfs: str) -> None:
    code = (
        "import sys; from containerd_client import Client; "
        "c = Client(sys.argv[1], sys.argv[2]); c.create_container('left', rootfs=sys.argv[3]); c.close()"
    )
    subprocess.run(
        [sys.executable, "-c", code, cli.daemon.address, cli.namespace, busybox_rootfs], check=True, cwd=ROOT
    )
    dry = json.loads(cli("--json", "sweep", "--dry-run").out)
    assert dry["dry_run"]
    assert dry["removed"]["containers"] == 1
    assert [c.id for c in containerd.containers()] == ["left"]
    r = cli("sweep")
    assert r.code == 0
    assert "1 containers" in r.out
    assert containerd.containers() == []


def test_cp_both_ways_on_a_stopped_and_a_running_container(cli: Cli, containerd: Client) -> None:
    site = cli.tmp / "site"
    site.mkdir()
    (site / "index.html").write_text("hello")
    # Stopped (kept after it exited): its snapshot is mounted for each copy.
    assert cli("run", "--name", "cpbox", cli.image, "true").code == 0
    assert cli("cp", str(site), "cpbox:/tmp") == Result(0, "", "")
    assert cli("cp", "cpbox:/tmp/site/index.html", str(cli.tmp / "copy.html")).code == 0
    assert (cli.tmp / "copy.html").read_text() == "hello"
    # A tar on stdout, and one on stdin (a real process: its own stdin).
    r = cli("cp", "cpbox:/tmp/site", "-")
    assert r.code == 0
    with tarfile.open(fileobj=io.BytesIO(r.out.encode())) as tar:  # an all-ASCII tar: decoded losslessly
        assert sorted(tar.getnames()) == ["site", "site/index.html"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("from-stdin.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"in"))
    r = cli.process("cp", "-", "cpbox:/etc", stdin=buf.getvalue())
    assert (r.code, r.err) == (0, ""), r
    assert containerd.load_container("cpbox").read_file("/etc/from-stdin.txt") == b"in"
    assert cli("rm", "cpbox").code == 0
    # Running: reached through the task's root, and the task sees the file.
    assert cli.process("run", "-d", "--name", "cplive", cli.image, "sleep", "60").code == 0
    assert cli("cp", str(site / "index.html"), "cplive:/index.html").code == 0
    r = cli("exec", "cplive", "cat", "/index.html")
    assert (r.code, r.out) == (0, "hello")
    # Errors: one line each, nothing written.
    r = cli("cp", "cplive:/no/such/file", str(cli.tmp / "x"))
    assert (r.code, len(r.err.splitlines())) == (1, 1)
    assert "NotFoundError" in r.err
    assert not (cli.tmp / "x").exists()
    r = cli("cp", str(site), "nosuch:/tmp")
    assert (r.code, len(r.err.splitlines())) == (1, 1)
    assert "NotFoundError" in r.err
    assert cli("rm", "-f", "cplive").code == 0
    assert containerd.containers() == []


def test_inspect_gives_the_record_task_and_network(cli: Cli, containerd: Client) -> None:
    assert cli("run", "--name", "insp", "-e", "K=V", cli.image, "sh", "-c", "exit 4").code == 4
    r = cli("inspect", "insp")
    assert r.code == 0, r
    (entry,) = json.loads(r.out)
    assert (entry["id"], entry["image"]) == ("insp", cli.image)
    assert (entry["status"], entry["exit_code"]) == ("exited", 4)
    assert entry["spec"]["process"]["args"] == ["sh", "-c", "exit 4"]
    assert "K=V" in entry["spec"]["process"]["env"]
    assert entry["runtime"]["name"].startswith("io.containerd.runc")
    assert (entry["pid"], entry["network"], entry["ports"]) == (None, None, [])
    # One missing: a line for it, the others still printed, exit code 1.
    r = cli("inspect", "nosuch", "insp")
    assert r.code == 1
    assert [e["id"] for e in json.loads(r.out)] == ["insp"]
    assert "NotFoundError" in r.err
    assert len(r.err.splitlines()) == 1
    assert cli("rm", "insp").code == 0


def test_unreachable_daemon_is_one_line_and_exit_69(tmp_path: Path) -> None:
    err = io.StringIO()
    code = main(["-a", str(tmp_path / "nothing.sock"), "version"], stdout=io.StringIO(), stderr=err)
    assert code == 69, err.getvalue()
    assert len(err.getvalue().strip().splitlines()) == 1
    assert "Traceback" not in err.getvalue()
