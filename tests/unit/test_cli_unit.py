"""The command line without a daemon: argument parsing, refusals before any call, output formatting."""

from __future__ import annotations

import ast
import datetime as _dt
import io
import json
import pathlib

import pytest

from containerd_client import errors
from containerd_client.cli import (
    EXIT_CODES,
    CommandError,
    UsageError,
    build_parser,
    error_line,
    exit_code_for,
    main,
)
from containerd_client.cli import _format as fmt
from containerd_client.cli._commands import split_copy_path
from containerd_client.cli._run import parse_env, parse_ports


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# -- parsing ------------------------------------------------------------------------------


def test_globals_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERD_ADDRESS", "ssh://me@host")
    monkeypatch.setenv("CONTAINERD_NAMESPACE", "k8s.io")
    args = build_parser().parse_args(["ps"])
    assert (args.address, args.namespace, args.json, args.debug) == ("ssh://me@host", "k8s.io", False, False)
    monkeypatch.delenv("CONTAINERD_ADDRESS")
    monkeypatch.delenv("CONTAINERD_NAMESPACE")
    args = build_parser().parse_args(["-a", "/x.sock", "--json", "ps", "-a"])
    assert (args.address, args.namespace, args.json, args.all) == ("/x.sock", "default", True, True)


def test_run_keeps_the_command_and_its_own_options_apart() -> None:
    args = build_parser().parse_args(
        [
            "run",
            "--rm",
            "-it",
            "-e",
            "A=1",
            "-p",
            "8080:80",
            "--name",
            "x",
            "busybox",
            "sh",
            "-c",
            "ls -l",
            "-e",
        ]
    )
    assert (args.rm, args.interactive, args.tty, args.name, args.image) == (True, True, True, "x", "busybox")
    assert args.env == ["A=1"]
    assert args.publish == ["8080:80"]
    # Everything after the image is the container's command, its dashes included.
    assert args.command == ["sh", "-c", "ls -l", "-e"]
    assert args.subcommand == "run"


def test_bad_usage_is_one_line_and_exit_2() -> None:
    code, out, err = run_main("run")
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "error:" in err
    code, _, err = run_main("nosuchcommand")
    assert code == 2
    assert "invalid choice" in err


def test_help_exits_0() -> None:
    code, out, _ = run_main("--help")
    assert code == 0
    for name in (
        "version",
        "images",
        "run",
        "ps",
        "exec",
        "logs",
        "stop",
        "kill",
        "rm",
        "stats",
        "events",
        "sweep",
        "inspect",
        "cp",
    ):
        assert name in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--rm", "-d", "img"], "--rm and -d"),
        (["run", "-i", "-d", "img"], "-i and -d"),
        (["run", "--net", "host", "-p", "80", "img"], "-p needs a CNI network"),
        (["run", "-p", "0", "img"], "from 1 to 65535"),
        (["run", "-p", "80/sctp", "img"], "tcp or udp"),
        (["run", "-e", "=x", "img"], "NAME=VALUE"),
        (["run", "--name", "a/b", "img"], "InvalidIdError"),
        (["stop", "-t", "-1", "c"], "must not be negative"),
        (["logs", "--tail", "-3", "c"], "must not be negative"),
        (["events", "-c", "0"], "at least 1"),
        (["exec", "c"], "needs a command"),
        (["exec", "-d", "-i", "c", "cat"], "neither -t nor -i"),
        (["stats", "--interval", "0", "--stream"], "more than 0"),
        (["stats", "-c", "3"], "goes with --stream"),
        (["stats", "-s", "-c", "0"], "at least 1"),
        (["cp", "./a", "/b"], "exactly one of SRC and DEST"),
        (["cp", "c:/a", "d:/b"], "exactly one of SRC and DEST"),
    ],
)
def test_bad_combinations_are_refused_before_any_call(argv: list[str], needle: str) -> None:
    # The address names nothing: a refusal that needed the daemon would fail otherwise.
    code, out, err = run_main("-a", "/nonexistent/containerd.sock", *argv)
    assert code == 2, err
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert out == ""


# -- values -----------------------------------------------------------------------------


def test_cp_paths_split_as_docker_cp() -> None:
    assert split_copy_path("web:/etc/passwd") == ("web", "/etc/passwd")
    assert split_copy_path("web:") == ("web", "")  # refused later as an empty path
    assert split_copy_path("/tmp/a:b") == (None, "/tmp/a:b")
    assert split_copy_path("./a:b") == (None, "./a:b")
    assert split_copy_path("site") == (None, "site")
    assert split_copy_path("-") == (None, "-")


def test_parse_env() -> None:
    assert parse_env(["A=1", "B=", "C=x=y", "HOME", "MISSING"], {"HOME": "/root"}) == {
        "A": "1",
        "B": "",
        "C": "x=y",
        "HOME": "/root",
    }
    with pytest.raises(UsageError):
        parse_env(["=1"], {})


def test_parse_ports() -> None:
    assert parse_ports(["80", "8080:81", "53/udp", "127.0.0.1:9000:90", "127.0.0.1::91"]) == (
        {80: None, 81: 8080, "53/udp": None, 90: 9000, 91: None},
        "127.0.0.1",
    )
    assert parse_ports([]) == ({}, None)
    for bad in (["x"], ["65536"], ["1:2:3:4"], ["80", "80"], ["127.0.0.1:1:80", "127.0.0.2:2:81"]):
        with pytest.raises(UsageError):
            parse_ports(bad)


def test_table_aligns_columns_and_shows_none_as_dash() -> None:
    text = fmt.table(
        ("ID", "IMAGE", "STATUS"), [("a", "busybox:latest", "Running"), ("long-id", None, "x\ny")]
    )
    assert text.splitlines() == [
        "ID        IMAGE            STATUS",
        "a         busybox:latest   Running",
        "long-id   -                x y",
    ]
    assert fmt.table(("A",), []) == "A\n"


def test_json_output_is_sorted_and_knows_datetimes() -> None:
    out = io.StringIO()
    when = _dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=_dt.timezone.utc)
    fmt.print_json({"b": when, "a": (1, 2)}, out)
    assert json.loads(out.getvalue()) == {"a": [1, 2], "b": "2026-01-02T03:04:05+00:00"}
    assert out.getvalue().index('"a"') < out.getvalue().index('"b"')
    lines = io.StringIO()
    fmt.print_json({"x": 1}, lines, lines=True)
    fmt.print_json({"x": 2}, lines, lines=True)
    assert [json.loads(line) for line in lines.getvalue().splitlines()] == [{"x": 1}, {"x": 2}]


def test_sizes_ages_digests() -> None:
    assert [fmt.human_size(n) for n in (None, 0, 1023, 1536, 5 << 20, 3 << 40)] == [
        "-",
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 TiB",
    ]
    now = _dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=_dt.timezone.utc)
    ago = [fmt.age(now - _dt.timedelta(seconds=s), now) for s in (1, 59, 60, 7200, 86400 * 3)]
    assert ago == ["1 second ago", "59 seconds ago", "1 minute ago", "2 hours ago", "3 days ago"]
    assert fmt.age(None) == "-"
    assert fmt.short_digest("sha256:0123456789abcdef0123") == "0123456789ab"
    assert fmt.labels_text({"b": "2", "a": "1"}) == "a=1,b=2"


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.NotFoundError("gone", errors.StatusCode.NOT_FOUND), 1),
        (errors.InvalidIdError("bad id"), 2),
        (errors.InvalidTimeoutError("bad"), 2),
        (errors.UnavailableError("down", errors.StatusCode.UNAVAILABLE), 69),
        (errors.ClosedError("closed"), 69),
        (errors.DeadlineExceededError("slow", errors.StatusCode.DEADLINE_EXCEEDED), 124),
        (errors.ConflictError("taken", errors.StatusCode.ALREADY_EXISTS), 1),
        (UsageError("no"), 2),
    ],
)
def test_errors_map_to_exit_codes(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ('exec: "nope": executable file not found in $PATH: unknown', 127),
        ('exec: "/nope": stat /nope: no such file or directory: unknown', 127),
        ('exec: "/etc/passwd": permission denied: unknown', 126),
        ("failed to start console copy: stat /x: no such file or directory: unknown", 125),
        ("snapshot sha256:abc: not found", 125),
    ],
)
def test_start_errors_map_to_docker_codes(message: str, code: int) -> None:
    from containerd_client.cli._run import _classify_start_error

    assert _classify_start_error(errors.UnknownError(message, errors.StatusCode.UNKNOWN)) == code


def test_error_line_is_one_line_and_names_the_wrapped_error() -> None:
    line = error_line(errors.NotFoundError("no such\ncontainer  x", errors.StatusCode.NOT_FOUND))
    assert line == "containerd-client: NotFoundError: no such container x"
    outer = CommandError(EXIT_CODES["run_failed"])
    outer.__cause__ = errors.NotFoundError("image y", errors.StatusCode.NOT_FOUND)
    assert error_line(outer) == "containerd-client: NotFoundError: image y"
    assert outer.exit_code == 125


def test_the_package_module_imports_nothing_of_the_sdk_at_the_top() -> None:
    # `--help` and argument errors must not pay for grpc, attrs or the SDK's objects.
    root = pathlib.Path(__file__).resolve().parents[2] / "containerd_client" / "cli" / "__init__.py"
    tree = ast.parse(root.read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    modules = {alias.name for n in top if isinstance(n, ast.Import) for alias in n.names}
    modules |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
    assert modules <= {"__future__", "argparse", "os", "sys", "collections.abc", "typing"}


def test_console_scripts_point_at_a_main_that_exits_with_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    import configparser

    from containerd_client import cli

    cfg = configparser.ConfigParser()
    cfg.read(pathlib.Path(__file__).resolve().parents[2] / "setup.cfg")
    scripts = dict(
        line.split(" = ", 1) for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    assert scripts == {
        "containerd-client": "containerd_client.cli:console_main",
        "ctrc": "containerd_client.cli:console_main",
    }
    monkeypatch.setattr("sys.argv", ["containerd-client", "run"])

    class Stream(io.StringIO):
        flushed = False

        def flush(self) -> None:
            self.flushed = True
            super().flush()

    out, err = Stream(), Stream()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    exits: list[int] = []
    # The real one ends the process without the interpreter's shutdown.
    monkeypatch.setattr("containerd_client.cli.os._exit", exits.append)
    cli.console_main()
    assert exits == [2]
    assert "error:" in err.getvalue()
    assert out.flushed
    assert err.flushed


def test_a_client_without_session_label_labels_nothing_and_its_views_follow(tmp_path: pathlib.Path) -> None:
    from containerd_client import Client
    from containerd_client.client import SESSION_LABEL

    with Client(str(tmp_path / "none.sock"), "a") as labelled:
        assert labelled._session_labels == {SESSION_LABEL: labelled.session}
        assert labelled.snapshots()._labels({"k": "v"}) == {SESSION_LABEL: labelled.session, "k": "v"}
    with Client(str(tmp_path / "none.sock"), "a", session_label=False) as kept:
        assert kept._session_labels == {}
        assert kept.namespace("b")._session_labels == {}
        assert kept.snapshots()._labels({"k": "v"}) == {"k": "v"}
