"""``run`` and ``exec``: a container's stdio on this terminal, or a detached one with a log file.

* ``run --rm``: the container carries this process's session label (a crash
  of this process leaves it to :meth:`Client.sweep`), its output is copied to
  our stdout/stderr, and it is deleted when it exits. The exit code is the
  container's.
* ``run`` without ``--rm``: the same, but the container is kept (without the
  session label) and its output is also kept in the SDK's log file, so
  ``logs`` shows it later; its task is deleted when it exits and the exit code
  is put on the record (``ps -a`` shows it).
* ``run -d``: the container must outlive this process: no session label (a
  sweep never takes it for a leftover), the shim itself appends stdout and
  stderr to ``<state folder>/<namespace>/<id>/<id>-stdio.log`` (no FIFO, no
  thread of ours), published ports go through CNI portmap (iptables rules, no
  proxy process), and ``rm`` from any process tears the network down from its
  record in the state folder.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from containerd_client.cli import EXIT_CODES, CommandError, Context, UsageError, error_line
from containerd_client.cli._commands import COMMAND_LABEL, DETACHED_LOG, EXIT_LABEL

if TYPE_CHECKING:
    from containerd_client.client import Client
    from containerd_client.containers import Container
    from containerd_client.errors import ContainerdError
    from containerd_client.tasks import Process, Task


def parse_env(items: list[str], environ: Any = None) -> dict[str, str]:
    """``-e K=V`` values (``-e K`` takes K from this process's environment, as docker does).

    Raises:
        UsageError: An empty name.
    """
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"bad -e {item!r}: expected NAME=VALUE")
        if not eq:
            if key not in environ:
                continue
            value = environ[key]
        env[key] = value
    return env


def parse_ports(items: list[str]) -> tuple[dict[int | str, int | None], str | None]:
    """``-p`` values -> (``{"80/tcp": 8080 or None}``, host IP or None).

    Accepted: ``PORT``, ``HOST:PORT``, ``IP:HOST:PORT``, ``IP::PORT``, each
    with an optional ``/tcp`` or ``/udp``. All ports must use one host IP.

    Raises:
        UsageError: A malformed value, a port out of range, or two host IPs.
    """
    ports: dict[int | str, int | None] = {}
    host_ip: str | None = None
    for item in items:
        spec, _, proto = item.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp"):
            raise UsageError(f"bad -p {item!r}: protocol must be tcp or udp")
        parts = spec.rsplit(":", 2)
        ip = None
        if len(parts) == 3:
            ip, host, cport = parts
        elif len(parts) == 2:
            host, cport = parts
        else:
            host, cport = "", parts[0]

        container_port = _port_number(item, cport, "the container port")
        host_port = _port_number(item, host, "the host port") if host else None
        if ip:
            import ipaddress

            try:
                ipaddress.IPv4Address(ip)
            except ValueError:
                raise UsageError(f"bad -p {item!r}: {ip!r} is no IPv4 address") from None
            if host_ip is not None and ip != host_ip:
                raise UsageError("all -p values must use the same host IP")
            host_ip = ip
        key: int | str = container_port if proto == "tcp" else f"{container_port}/{proto}"
        if key in ports:
            raise UsageError(f"port {container_port}/{proto} is published twice")
        ports[key] = host_port
    return ports, host_ip


def _port_number(item: str, text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"bad -p {item!r}: {what} must be a number from 1 to 65535")
    return int(text)


def _classify_start_error(exc: ContainerdError) -> int:
    """125, or 126/127 when runc says the command cannot be run / is not there (as docker)."""
    text = str(exc)
    if 'exec: "' not in text:
        return EXIT_CODES["run_failed"]  # not about the command itself
    if "executable file not found" in text or "no such file or directory" in text:
        return EXIT_CODES["not_found_command"]
    if "permission denied" in text or "is a directory" in text:
        return EXIT_CODES["cannot_invoke"]
    return EXIT_CODES["run_failed"]


def _check_run_options(a: Any) -> None:
    if a.rm and a.detach:
        raise UsageError("--rm and -d cannot go together (nothing would be left to remove it)")
    if a.interactive and a.detach:
        raise UsageError("-i and -d cannot go together")
    if a.net is not None and a.net in ("none", "host") and a.publish:
        raise UsageError(f"-p needs a CNI network (--net bridge), not --net {a.net}")


def run(ctx: Context) -> int:
    """``run``: see the module docstring."""
    from containerd_client import spec as _spec
    from containerd_client.errors import ContainerdError, InvalidArgumentError

    a = ctx.args
    _check_run_options(a)
    env = parse_env(a.env)
    ports, host_ip = parse_ports(a.publish)
    net = a.net or ("bridge" if ports else None)
    if net == "none":
        net = None
    if a.name is not None:
        from containerd_client._ids import validate_id

        validate_id(a.name, what="container name")
    ctx.host_ip = host_ip
    client = ctx.client(session_label=a.rm)
    opts = []
    if env:
        opts.append(_spec.with_env(env))
    if a.workdir:
        opts.append(_spec.with_cwd(a.workdir))
    if a.tty:
        opts.append(_spec.with_tty(True))
    args = list(a.command) if a.command else None
    if args:
        _spec.command_args(args)  # checked before anything is made
    cid = a.name or uuid.uuid4().hex[:12]
    labels = {COMMAND_LABEL: " ".join(args)} if args else {}
    try:
        image = _image(ctx, client, a.image, a.pull)
        container = client.create_container(
            cid,
            image=image,
            args=args,
            spec=opts,
            labels=labels,
            snapshotter=a.snapshotter,
            network=net,
            ports=ports or None,
        )
    except InvalidArgumentError:
        raise  # bad input: exit code 2
    except ContainerdError as exc:
        # As docker: the command never ran (no image, a taken name, CNI failed...).
        raise CommandError(EXIT_CODES["run_failed"]) from exc
    if a.detach:
        return _run_detached(ctx, container)
    return _run_attached(ctx, container, remove=a.rm)


def _image(ctx: Context, client: Client, ref: str, policy: str) -> Any:
    from containerd_client.errors import NotFoundError

    if policy != "always":
        try:
            return client.images.get(ref)
        except NotFoundError:
            if policy == "never":
                raise
    # The pulled image is the user's, whatever the container: no session label.
    saved = client._label_session
    client._label_session = False
    try:
        if not ctx.json:
            ctx.err(f"pulling {ref} ...")
        return client.pull(ref)
    finally:
        client._label_session = saved


# Run by the shim with the terminal's output on fd 3 (fd 4 unused with a TTY);
# closing fd 5 says it is ready.
_TTY_LOGGER = "exec 5>&- 4<&-; exec cat <&3 >> {log}"


def _run_detached(ctx: Context, container: Container) -> int:
    from containerd_client import cio
    from containerd_client.errors import ContainerdError

    log = os.path.join(container.bundle_dir, DETACHED_LOG.format(id=container.id))
    creator = cio.log_file(log)
    if ctx.args.tty:
        # The shims copy a terminal to a logging binary but not to a file:
        # a shell (started by the shim, outliving us) appends it to the same file.
        uri = cio.binary_io("/bin/sh", **{"-c": _TTY_LOGGER.format(log=shlex.quote(log))})
        config = cio.IOConfig(stdout=uri("", "").config.stdout, terminal=True)

        def creator(fifo_dir: str, process_id: str) -> cio.ProcessIO:
            return cio.StaticIO(config)

    try:
        task = container.new_task(io=creator, tty=ctx.args.tty)
        task.start()
    except ContainerdError as exc:
        container.cleanup()
        raise CommandError(_classify_start_error(exc)) from exc
    except BaseException:
        container.cleanup()
        raise
    if ctx.json:
        from containerd_client.cli._format import print_json

        ports = [
            {"host_ip": p.host_ip, "host_port": p.host_port, "container_port": p.container_port}
            | {"protocol": p.protocol}
            for p in container.ports
        ]
        print_json({"id": container.id, "pid": task.pid, "ports": ports}, ctx.stdout)
    else:
        ctx.out(f"{container.id}\n")
    return 0


def _run_attached(ctx: Context, container: Container, *, remove: bool) -> int:
    from containerd_client.errors import ContainerdError

    a = ctx.args
    stdin = _stdin() if a.interactive else None
    out = _binary(ctx.stdout)
    err = out if a.tty else _binary(ctx.stderr)
    task: Task | None = None
    ran = False
    interrupts = _Interrupts()
    try:
        with interrupts:
            try:
                task = container.new_task(stdin=stdin, stdout=out, stderr=err, tty=a.tty, logs=not remove)
                interrupts.check()
                task.start()
            except ContainerdError as exc:
                raise CommandError(_classify_start_error(exc)) from exc
            ran = True
            interrupts.started(task)
            with _terminal(task if a.tty else None, a.interactive):
                status = task.wait()
        interrupts.check()
        code: int = status.exit_code
        if not remove:
            # Keep the record, not the task (its shim would stay): the exit code goes on a label.
            try:
                container.set_labels({EXIT_LABEL: str(code)})
                task.delete()
            except ContainerdError as exc:
                ctx.err(error_line(exc))
        return code
    except BaseException:
        if not ran:
            container.cleanup()  # nothing ran: nothing to keep
        elif task is not None and not remove:
            with contextlib.suppress(ContainerdError):
                task.force_delete()
        raise
    finally:
        if remove:
            container.cleanup()


class _Interrupts:
    """Ctrl-C and SIGTERM while a process of ours runs: stop it, then raise KeyboardInterrupt.

    The signal is never raised inside the SDK: the handler only records it
    and starts the stop (the stop signal, SIGKILL after 2 s) on a thread, so
    the wait returns once the process ended and its last output was copied;
    :meth:`check` raises then. Before the process started, the start is
    skipped instead. A second signal raises at once. Only the main thread
    can have signal handlers; elsewhere (an in-process caller's thread) the
    default behaviour stays.
    """

    def __init__(self) -> None:
        import threading

        self._event = threading.Event()
        self._proc: Task | Process | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._saved.items():
            signal.signal(sig, old)
        self._saved.clear()

    def _handler(self, signum: int, frame: object) -> None:
        if self._event.is_set():
            raise KeyboardInterrupt
        self._event.set()
        self._stop_in_background()

    def started(self, proc: Task | Process) -> None:
        """``proc`` runs now: a signal stops it (one that came before already does)."""
        self._proc = proc
        if self._event.is_set():
            self._stop_in_background()

    def check(self) -> None:
        """Raise KeyboardInterrupt if a signal came."""
        if self._event.is_set():
            raise KeyboardInterrupt

    def _stop_in_background(self) -> None:
        import threading

        proc = self._proc
        if proc is not None:
            name = "containerd-client-cli-stop"
            threading.Thread(target=_stop, args=(proc,), name=name, daemon=True).start()


def _stop(proc: Task | Process) -> None:
    from containerd_client.tasks import Task

    with contextlib.suppress(Exception):
        if isinstance(proc, Task):
            proc.stop(2.0)
        else:
            proc.kill(signal.SIGKILL)


def _stdin() -> Any:
    """This process's stdin as an unbuffered file on descriptor 0.

    The SDK then copies from the descriptor with polls it can cancel: a
    buffered ``sys.stdin.buffer`` would be read by a blocking call that keeps
    its lock at exit (Python aborts) and holds the exit up.
    """
    return open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)


def _binary(stream: Any) -> Any:
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        return _TextSink(stream)
    stream.flush()
    return buffer


class _TextSink:
    """Bytes to a text-only stream (an in-process caller's StringIO)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __call__(self, data: bytes) -> None:
        self._stream.write(data.decode("utf-8", "replace"))
        self._stream.flush()


@contextlib.contextmanager
def _terminal(proc: Task | Process | None, interactive: bool) -> Iterator[None]:
    """This terminal in raw mode (with ``-it``) and its size sent to ``proc`` as it changes."""
    if proc is None or not os.isatty(sys.stdout.fileno()):
        yield
        return

    def resize(*_: object) -> None:
        with contextlib.suppress(Exception):
            size = os.get_terminal_size(sys.stdout.fileno())
            proc.resize(size.columns, size.lines)

    resize()
    old_handler = signal.signal(signal.SIGWINCH, resize)
    saved = None
    if interactive and os.isatty(sys.stdin.fileno()):
        import termios
        import tty

        saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setraw(sys.stdin.fileno())
    try:
        yield
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, old_handler)


def exec_(ctx: Context) -> int:
    """``exec``: run a command in a running container; the exit code is the command's."""
    from containerd_client import spec as _spec
    from containerd_client.errors import ContainerdError

    a = ctx.args
    if not a.command:
        raise UsageError("exec needs a command")
    if a.detach and (a.tty or a.interactive):
        raise UsageError("exec -d runs without stdio: it takes neither -t nor -i")
    args = _spec.command_args(list(a.command))
    env = parse_env(a.env)
    client = ctx.client()
    task = client.load_container(a.container).task()
    exec_id = f"exec-{uuid.uuid4().hex[:12]}"
    if a.detach:
        # No stdio and no wait: the process is the shim's now. Its exit is
        # kept by the shim until the task is deleted, as for ``ctr task exec --detach``.
        detached = task.exec(exec_id, args, env=env or None, cwd=a.workdir)
        try:
            detached.start()
        except ContainerdError as exc:
            raise CommandError(_classify_start_error(exc)) from exc
        return 0
    stdin = _stdin() if a.interactive else None
    out = _binary(ctx.stdout)
    err = out if a.tty else _binary(ctx.stderr)
    proc = task.exec(
        exec_id, args, stdin=stdin, stdout=out, stderr=err, tty=a.tty, env=env or None, cwd=a.workdir
    )
    interrupts = _Interrupts()
    try:
        with interrupts:
            try:
                interrupts.check()
                proc.start()
            except ContainerdError as exc:
                raise CommandError(_classify_start_error(exc)) from exc
            interrupts.started(proc)
            with _terminal(proc if a.tty else None, a.interactive):
                status = proc.wait()
        interrupts.check()
        exit_code: int = status.exit_code
        return exit_code
    finally:
        proc.cleanup()
