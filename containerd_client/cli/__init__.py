"""The command line: ``containerd-client`` (also ``ctrc``) and ``python -m containerd_client``.

In the spirit of nerdctl, on the SDK's own objects::

    containerd-client version
    containerd-client images pull|import|export|ls|rm
    containerd-client run --rm -e K=V busybox echo hi
    containerd-client run -d --name web -p 8080:80 busybox httpd -f
    containerd-client ps -a | logs -f web | exec web ls | stop web | kill web | rm web
    containerd-client cp ./site web:/www | cp web:/etc/passwd . | inspect web
    containerd-client stats | events | sweep | namespaces

Global options: ``-a/--address`` (``$CONTAINERD_ADDRESS``, also ``ssh://``),
``-n/--namespace`` (``$CONTAINERD_NAMESPACE``, else ``default``), ``--json``
(machine-readable output), ``--debug`` (tracebacks and SDK logs).

Exit codes: 0 success; the container's own code for ``run`` (without ``-d``)
and ``exec``; 1 an error from containerd or the host; 2 bad usage or an
argument the SDK refused before any call; 69 the daemon is unreachable; 124 a
deadline passed; 125 ``run`` failed before the command started; 126 the
command cannot be invoked; 127 the command was not found; 130 interrupted.
Errors are one line on stderr (a traceback only with ``--debug``).

Only argparse, os and sys are imported here: each command imports what it
needs when it runs, so ``--help`` and quick commands start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from containerd_client.client import Client

__all__ = ["EXIT_CODES", "CommandError", "Context", "UsageError", "build_parser", "exit_code_for", "main"]

PROG = "containerd-client"

#: Exit codes besides a container's own (see the module docstring).
EXIT_CODES = {
    "ok": 0,
    "error": 1,
    "usage": 2,
    "unavailable": 69,
    "timeout": 124,
    "run_failed": 125,
    "cannot_invoke": 126,
    "not_found_command": 127,
    "interrupted": 130,
}


class UsageError(Exception):
    """A combination of options that cannot go together (exit code 2)."""


class CommandError(Exception):
    """A command failed with ``exit_code``; the error it wraps is its ``__cause__``.

    ``run`` raises it when the container's command never ran (125), cannot be
    invoked (126) or was not found (127), as docker does.
    """

    def __init__(self, exit_code: int, message: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Context:
    """What every command gets: the global options, the output streams, a lazy client."""

    def __init__(self, args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.json: bool = args.json
        #: The host IP of published ports (``run -p IP:...``), None for the SDK's default.
        self.host_ip: str | None = None
        self._client: Client | None = None

    def client(self, *, session_label: bool = True) -> Client:
        """The client for the global options (made on first use, closed by :func:`main`).

        Args:
            session_label: False for a command that creates what must outlive
                this process (``run -d``, ``run`` without ``--rm``, ``images pull``):
                then :meth:`Client.sweep` never takes it for a dead session's leftover.
        """
        if self._client is None:
            from containerd_client.client import Client

            network_config = None
            if self.args.cni_bridge or self.args.cni_subnet or self.host_ip:
                from containerd_client.network import NetworkConfig

                kw = {}
                if self.args.cni_bridge:
                    kw["bridge"] = self.args.cni_bridge
                if self.args.cni_subnet:
                    kw["subnet"] = self.args.cni_subnet
                if self.host_ip:
                    kw["host_ip"] = self.host_ip
                network_config = NetworkConfig(**kw)
            self._client = Client(
                self.args.address,
                self.args.namespace,
                state_dir=self.args.state_dir,
                network_config=network_config,
                session_label=session_label,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def out(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(text if text.endswith("\n") else text + "\n")
        self.stderr.flush()

    def report(self, exc: BaseException) -> None:
        """One line about ``exc`` on stderr (after its traceback with ``--debug``)."""
        if self.args.debug:
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__, file=self.stderr)
        self.err(error_line(exc))

    def emit(self, value: Any, *, columns: Sequence[str] = (), rows: Sequence[Sequence[Any]] = ()) -> None:
        """``value`` as JSON with ``--json``, else a table of ``columns`` and ``rows``."""
        from containerd_client.cli import _format

        if self.json:
            _format.print_json(value, self.stdout)
        else:
            self.out(_format.table(columns, rows))


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and exit code 2)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a",
        "--address",
        default=os.environ.get("CONTAINERD_ADDRESS") or None,
        help="containerd's socket, or ssh://user@host ($CONTAINERD_ADDRESS; /run/containerd/containerd.sock)",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default=os.environ.get("CONTAINERD_NAMESPACE") or "default",
        help="containerd namespace ($CONTAINERD_NAMESPACE; default)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and the SDK's debug log")
    parser.add_argument(
        "--state-dir",
        default=None,
        help="the SDK's state folder for FIFOs, logs and CNI records "
        "($CONTAINERD_CLIENT_STATE_DIR; /run/containerd-client)",
    )
    parser.add_argument("--cni-bridge", default=None, help="bridge of the 'bridge' network (ctrdc0)")
    parser.add_argument("--cni-subnet", default=None, help="subnet of the 'bridge' network (10.213.0.0/16)")


def _pull_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref")
    parser.add_argument("--platform", default=None)
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars (on a terminal, with tqdm installed)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line's parser (every subcommand; no SDK import)."""
    p = _Parser(prog=PROG, description="A command line for containerd, built on containerd-client.")
    _global_options(p)
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sub.add_parser("version", help="client and daemon versions")

    ns = sub.add_parser("namespaces", aliases=["namespace", "ns"], help="list namespaces")
    ns.add_argument("action", nargs="?", choices=["ls", "list"], default="ls")

    img = sub.add_parser("images", aliases=["image"], help="list, pull, import, export, remove images")
    isub = img.add_subparsers(dest="images_command", metavar="ACTION", parser_class=_Parser)
    isub.add_parser("ls", aliases=["list"], help="list images")
    pull = isub.add_parser("pull", help="pull an image from a registry")
    _pull_options(pull)
    imp = isub.add_parser("import", aliases=["load"], help="import an OCI or docker-save tar ('-': stdin)")
    imp.add_argument("file")
    imp.add_argument("--name", default=None, help="name for the (single) image")
    imp.add_argument("--platform", default=None)
    exp = isub.add_parser("export", aliases=["save"], help="export images as an OCI tar ('-': stdout)")
    exp.add_argument("file")
    exp.add_argument("names", nargs="+", metavar="IMAGE")
    exp.add_argument("--platform", default=None)
    irm = isub.add_parser("rm", aliases=["remove", "rmi"], help="remove images")
    irm.add_argument("names", nargs="+", metavar="IMAGE")
    _pull_options(sub.add_parser("pull", help="same as 'images pull'"))

    run = sub.add_parser("run", help="run a command in a new container")
    run.add_argument("--rm", action="store_true", help="remove the container when it exits")
    run.add_argument("-d", "--detach", action="store_true", help="run in the background, print its id")
    run.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    run.add_argument("-i", "--interactive", action="store_true", help="keep stdin open and send it")
    run.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set a variable")
    run.add_argument("--name", default=None, help="the container id (random by default)")
    run.add_argument(
        "--net",
        "--network",
        dest="net",
        default=None,
        help="none (default), host, bridge, or a CNI network name; -p implies bridge",
    )
    run.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:][HOST:]PORT[/PROTO]",
        help="publish a port on 127.0.0.1",
    )
    run.add_argument("-w", "--workdir", default=None)
    run.add_argument("--pull", choices=["missing", "never", "always"], default="missing")
    run.add_argument("--snapshotter", default="overlayfs")
    run.add_argument("image")
    run.add_argument("command", nargs=argparse.REMAINDER)

    ps = sub.add_parser("ps", aliases=["ls", "container"], help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="also containers whose task is not running")
    ps.add_argument("-q", "--quiet", action="store_true", help="only ids")

    ex = sub.add_parser("exec", help="run a command in a running container")
    ex.add_argument(
        "-d", "--detach", action="store_true", help="start it without stdio and return (it outlives us)"
    )
    ex.add_argument("-t", "--tty", action="store_true")
    ex.add_argument("-i", "--interactive", action="store_true")
    ex.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    ex.add_argument("-w", "--workdir", default=None)
    ex.add_argument("container")
    ex.add_argument("command", nargs=argparse.REMAINDER)

    logs = sub.add_parser("logs", help="show a container's output")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until it exits")
    logs.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines")
    logs.add_argument("container")

    stop = sub.add_parser("stop", help="stop containers (stop signal, then SIGKILL)")
    stop.add_argument("-t", "--time", type=float, default=10.0, help="seconds before SIGKILL (10)")
    stop.add_argument("containers", nargs="+", metavar="CONTAINER")

    kill = sub.add_parser("kill", help="send a signal to containers")
    kill.add_argument("-s", "--signal", default="SIGKILL")
    kill.add_argument("containers", nargs="+", metavar="CONTAINER")

    rm = sub.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true", help="kill a running one first")
    rm.add_argument("containers", nargs="+", metavar="CONTAINER")

    insp = sub.add_parser("inspect", help="a container's record, task and network as JSON")
    insp.add_argument("containers", nargs="+", metavar="CONTAINER")

    cpp = sub.add_parser(
        "cp",
        help="copy files between a container and the host",
        description="Copy a file or folder between a container (running or not) and the host. "
        "One side is CONTAINER:PATH; '-' is a tar on stdin (to a container) or stdout (from one). "
        "A host path with a colon starts with / or ./.",
    )
    cpp.add_argument("src", metavar="SRC")
    cpp.add_argument("dest", metavar="DEST")

    stats = sub.add_parser("stats", help="CPU, memory and pids of running containers")
    stats.add_argument(
        "-s", "--stream", action="store_true", help="sample every --interval seconds, with CPU %%"
    )
    stats.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between samples (1)")
    stats.add_argument("-c", "--count", type=int, default=None, metavar="N", help="--stream: stop after N")
    stats.add_argument("containers", nargs="*", metavar="CONTAINER")

    ev = sub.add_parser("events", help="print containerd's events as they happen")
    ev.add_argument("-f", "--filter", action="append", default=[], help="containerd event filter")
    ev.add_argument("-c", "--count", type=int, default=None, help="stop after N events")

    sw = sub.add_parser("sweep", help="remove what dead SDK sessions left behind")
    sw.add_argument("--dry-run", action="store_true", help="only say what would go")
    sw.add_argument("--images", action="store_true", help="also images dead sessions pulled")
    sw.add_argument("--all-namespaces", action="store_true")
    return p


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an error (see the module docstring)."""
    from containerd_client import errors

    if isinstance(exc, UsageError):
        return EXIT_CODES["usage"]
    if isinstance(exc, errors.InvalidArgumentError | errors.InvalidTimeoutError):
        return EXIT_CODES["usage"]
    if isinstance(exc, errors.UnavailableError | errors.ClosedError):
        return EXIT_CODES["unavailable"]
    if isinstance(exc, errors.DeadlineExceededError):
        return EXIT_CODES["timeout"]
    return EXIT_CODES["error"]


def error_line(exc: BaseException) -> str:
    """One line saying what failed: ``containerd-client: NotFoundError: ...``."""
    if isinstance(exc, CommandError) and exc.__cause__ is not None and not str(exc):
        exc = exc.__cause__
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{PROG}: {type(exc).__name__}: {text}"


def main(
    argv: Sequence[str] | None = None, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None
) -> int:
    """Run the command line and return its exit code (never raises, but on Ctrl-C twice).

    Args:
        argv: The arguments (``sys.argv[1:]`` by default).
        stdout: Where output goes (``sys.stdout``); binary output goes to its ``buffer``.
        stderr: Where errors go (``sys.stderr``).
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err  # argparse writes help and errors there
        try:
            args = parser.parse_args(argv)
        finally:
            sys.stdout, sys.stderr = old_out, old_err
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_CODES["usage"]
    if args.subcommand in ("images", "image") and not args.images_command:
        args.images_command = "ls"
    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=err, format="%(name)s: %(message)s")
    ctx = Context(args, out, err)
    from containerd_client.cli import _commands

    try:
        return _commands.dispatch(ctx)
    except KeyboardInterrupt:
        ctx.err(f"{PROG}: interrupted")
        return EXIT_CODES["interrupted"]
    except BrokenPipeError:
        # The reader went away (``| head``): not an error of ours.
        _silence_stdout()
        return EXIT_CODES["ok"]
    except Exception as exc:  # the one place that turns errors into a line
        from containerd_client.errors import ContainerdError

        ctx.report(exc)
        known = ContainerdError | UsageError | CommandError | OSError | ValueError
        if not args.debug and not isinstance(exc, known):
            ctx.err(f"{PROG}: an unexpected error: --debug shows where; please report it")
        return getattr(exc, "exit_code", None) or exit_code_for(exc)
    finally:
        try:
            ctx.close()
        except Exception as exc:  # closing must not hide the result
            ctx.err(error_line(exc))


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def console_main() -> None:
    """The console script's (and ``python -m``'s) entry point: :func:`main`, then a quick exit.

    Everything the command made is closed by then (the client in :func:`main`'s
    ``finally``, files, subscriptions), so the process ends with
    :func:`os._exit` once stdout and stderr are flushed: the interpreter's
    shutdown (joining grpc's threads, finalizing ~350 modules) took 150-250 ms
    of a 500 ms ``run --rm`` on this machine, for nothing.
    """
    import contextlib

    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that went away
            stream.flush()
    os._exit(code)
