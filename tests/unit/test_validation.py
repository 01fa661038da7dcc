"""Argument validation without a daemon: each bad value is a typed error, raised before any RPC.

The Client here points at a socket that does not exist and retries nothing:
a check that let a value through would end in ``UnavailableError`` (an RPC
was attempted) instead of the invalid-argument error asserted.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from typing import Any

import pytest

from containerd_client import Client, errors, spec
from containerd_client._ids import validate_timeout
from containerd_client._retry import NO_RETRY
from containerd_client.tasks import parse_signal

NOWHERE = "/nonexistent/containerd-client-validation.sock"


@pytest.fixture
def client() -> Any:
    with Client(NOWHERE, "ns", retry=NO_RETRY, timeout=1) as c:
        yield c


# -- Client constructor ----------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["né", "../x", "a/b", "a" * 77, "a\x00b", "-lead", "two..dots", " sp"])
def test_constructor_validates_namespace_like_namespace_view(namespace: str) -> None:
    with pytest.raises(errors.InvalidIdError):
        Client(NOWHERE, namespace)
    with Client(NOWHERE, "ok") as root, pytest.raises(errors.InvalidIdError):
        root.namespace(namespace)


def test_constructor_validates_namespace_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERD_NAMESPACE", "bad name")
    with pytest.raises(errors.InvalidIdError, match="namespace"):
        Client(NOWHERE)


@pytest.mark.parametrize("timeout", [-1, 0, math.nan, math.inf, -math.inf, "5", True, 1e300])
def test_constructor_refuses_bad_default_timeout(timeout: Any) -> None:
    with pytest.raises(errors.InvalidTimeoutError):
        Client(NOWHERE, "ns", timeout=timeout)


# -- timeouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-0.001, math.nan, math.inf, -math.inf, "1", b"1", True, [1], 1e300])
def test_validate_timeout_refuses(value: Any) -> None:
    with pytest.raises(errors.InvalidTimeoutError) as info:
        validate_timeout(value, what="wait timeout")
    assert "wait timeout" in str(info.value)
    assert isinstance(info.value, errors.InvalidArgumentError)


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, 0.0), (2, 2.0), (0.25, 0.25)])
def test_validate_timeout_accepts(value: Any, expected: float | None) -> None:
    assert validate_timeout(value, what="t") == expected


def test_validate_timeout_none_can_be_refused() -> None:
    with pytest.raises(errors.InvalidTimeoutError):
        validate_timeout(None, what="t", allow_none=False)
    with pytest.raises(errors.InvalidTimeoutError):
        validate_timeout(0, what="t", positive=True)


@pytest.mark.parametrize("expire", [-5, math.nan, math.inf, 0, "60"])
def test_lease_expiry_is_checked_before_the_rpc(client: Client, expire: Any) -> None:
    with pytest.raises(errors.InvalidTimeoutError):
        client.leases.create(expire=expire)
    with pytest.raises(errors.InvalidTimeoutError), client.lease(expire=expire):
        pass


@pytest.mark.parametrize("lease_id", ["../x", "a b", "", "a" * 77])
def test_lease_id_is_checked_before_the_rpc(client: Client, lease_id: str) -> None:
    with pytest.raises(errors.InvalidIdError):
        client.leases.create(lease_id=lease_id)


@pytest.mark.parametrize("timeout", [-1, math.nan, math.inf])
def test_run_timeout_is_checked_before_anything(client: Client, timeout: float) -> None:
    with pytest.raises(errors.InvalidTimeoutError):
        client.run("localhost/x:1", ["true"], timeout=timeout, pull=False)


# -- signals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig",
    ["", "SIG", "BOGUS", "²", "٣", "9" * 5000, "-9", "9.0", "+9", 0, -1, 10_000, 9.0, None, b"9", True],
)
def test_parse_signal_refuses(sig: Any) -> None:
    with pytest.raises(errors.UnknownSignalError):
        parse_signal(sig)


@pytest.mark.parametrize(("sig", "number"), [("KILL", 9), ("sigterm", 15), (" 9 ", 9), (signal.SIGHUP, 1)])
def test_parse_signal_accepts(sig: Any, number: int) -> None:
    assert parse_signal(sig) == number


@pytest.mark.parametrize("value", ["BOGUS", "²", "", 0, "9" * 5000])
def test_stop_signal_of_image_config_is_typed(value: Any) -> None:
    with pytest.raises(errors.UnknownSignalError):
        spec.signal_number(value)


# -- spec options -------------------------------------------------------------------------

BAD_OPTIONS: dict[str, Callable[[], Any]] = {
    "env-key-with-equals": lambda: spec.with_env({"A=B": "c"}),
    "env-empty-key": lambda: spec.with_env({"": "c"}),
    "env-nul-value": lambda: spec.with_env({"A": "b\x00c"}),
    "env-nul-key": lambda: spec.with_env({"A\x00": "b"}),
    "env-item-without-equals": lambda: spec.with_env(["NOEQUALS"]),
    "env-item-empty-key": lambda: spec.with_env(["=x"]),
    "env-non-string-key": lambda: spec.with_env({1: "x"}),
    "env-none-value": lambda: spec.with_env({"A": None}),
    "env-not-iterable": lambda: spec.with_env(5),
    "cpu-negative-quota": lambda: spec.with_cpu(quota=-5),
    "cpu-tiny-quota": lambda: spec.with_cpu(quota=10),
    "cpu-zero-period": lambda: spec.with_cpu(quota=50_000, period=0),
    "cpu-huge-period": lambda: spec.with_cpu(period=10**9),
    "cpu-negative-cpus": lambda: spec.with_cpu(cpus=-1),
    "cpu-nan-cpus": lambda: spec.with_cpu(cpus=math.nan),
    "cpu-inf-cpus": lambda: spec.with_cpu(cpus=math.inf),
    "cpu-tiny-cpus": lambda: spec.with_cpu(cpus=0.001),
    "cpu-shares-one": lambda: spec.with_cpu(shares=1),
    "cpu-shares-huge": lambda: spec.with_cpu(shares=10**9),
    "cpu-string": lambda: spec.with_cpu(cpus="2"),
    "memory-negative": lambda: spec.with_memory_limit(-1),
    "memory-zero": lambda: spec.with_memory_limit(0),
    "memory-swap-below-limit": lambda: spec.with_memory_limit(64 << 20, swap=1 << 20),
    "memory-float": lambda: spec.with_memory_limit(1.5e9),
    "memory-bool": lambda: spec.with_memory_limit(True),
    "pids-zero": lambda: spec.with_pids_limit(0),
    "pids-negative": lambda: spec.with_pids_limit(-7),
    "pids-string": lambda: spec.with_pids_limit("10"),
    "caps-unknown-add": lambda: spec.with_capabilities(add=["BOGUS"]),
    "caps-unknown-drop": lambda: spec.with_capabilities(drop=["CAP_NOPE"]),
    "caps-string-not-list": lambda: spec.with_capabilities(add="NET_ADMIN"),
    "caps-non-string": lambda: spec.with_capabilities(add=[5]),
    "user-negative": lambda: spec.with_user(-1),
    "user-too-big": lambda: spec.with_user(2**32),
    "user-name": lambda: spec.with_user("root"),
    "user-bad-gid": lambda: spec.with_user(1000, -2),
    "user-bad-extra-gid": lambda: spec.with_user(1000, 1000, [2**40]),
    "cwd-relative": lambda: spec.with_cwd("rel"),
    "cwd-nul": lambda: spec.with_cwd("/a\x00b"),
    "cwd-empty": lambda: spec.with_cwd(""),
    "hostname-too-long": lambda: spec.with_hostname("a" * 65),
    "hostname-space": lambda: spec.with_hostname("bad host"),
    "hostname-slash": lambda: spec.with_hostname("a/b"),
    "hostname-empty": lambda: spec.with_hostname(""),
    "rootfs-relative": lambda: spec.with_rootfs("rel"),
    "rootfs-nul": lambda: spec.with_rootfs("/a\x00"),
    "args-nul": lambda: spec.with_args("sh", "a\x00b"),
    "args-non-string": lambda: spec.with_process_args(["sh", None]),
    "args-string-not-list": lambda: spec.with_process_args("sh -c true"),
    "bind-relative-source": lambda: spec.with_bind_mount("rel", "/x"),
    "bind-relative-destination": lambda: spec.with_bind_mount("/x", "rel"),
    "bind-nul": lambda: spec.with_bind_mount("/x\x00", "/y"),
    "tmpfs-negative-size": lambda: spec.with_tmpfs("/t", size=-1),
    "tmpfs-relative": lambda: spec.with_tmpfs("t"),
    "tmpfs-bad-mode": lambda: spec.with_tmpfs("/t", mode=0o20000),
    "tmpfs-float-size": lambda: spec.with_tmpfs("/t", size=1.5),
    "annotation-empty-key": lambda: spec.with_annotations({"": "v"}),
    "annotation-non-string-value": lambda: spec.with_annotations({"k": 1}),
    "tty-not-bool": lambda: spec.with_tty("yes"),
    "readonly-not-bool": lambda: spec.with_readonly_rootfs("no"),
    "image-user-unknown": lambda: spec.with_image_config(
        {"config": {"User": "ghost"}}, passwd="root:x:0:0::/:/bin/sh"
    ),
    "image-cmd-string": lambda: spec.with_image_config({"config": {"Cmd": "echo hi"}}),
    "image-env-bad": lambda: spec.with_image_config({"config": {"Env": ["NOEQUALS"]}}),
    "image-workdir-relative": lambda: spec.with_image_config({"config": {"WorkingDir": "app"}}),
    "image-config-not-mapping": lambda: spec.with_image_config({"config": ["x"]}),
}


def _apply(make: Callable[[], Any]) -> dict[str, Any]:
    # Some checks may run when the option is made, others when it is applied:
    # both happen inside generate(), before anything is sent.
    return spec.generate("c1", "ns", make())


@pytest.mark.parametrize("make", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_spec_option_is_typed(make: Callable[[], Any]) -> None:
    with pytest.raises(errors.InvalidSpecError) as info:
        _apply(make)
    assert isinstance(info.value, errors.InvalidArgumentError)


@pytest.mark.parametrize("make", list(BAD_OPTIONS.values())[:12], ids=list(BAD_OPTIONS)[:12])
def test_bad_spec_option_never_reaches_the_daemon(client: Client, make: Callable[[], Any]) -> None:
    with pytest.raises(errors.InvalidSpecError):
        client.create_container("c1", rootfs="/", spec=[make()])


def test_relative_rootfs_is_typed_before_any_rpc(client: Client) -> None:
    with pytest.raises(errors.InvalidSpecError, match="absolute"):
        client.create_container("c1", rootfs="rel", args=["true"])


def test_good_options_still_build_the_expected_spec() -> None:
    doc = spec.generate(
        "c1",
        "ns",
        spec.with_env({"A": "1", "B": ""}),
        spec.with_env(["C=x=y"]),
        spec.with_cpu(cpus=1.5),
        spec.with_cpu(shares=512),
        spec.with_memory_limit(64 << 20),
        spec.with_memory_limit(64 << 20, swap=-1),
        spec.with_pids_limit(-1),
        spec.with_pids_limit(100),
        spec.with_capabilities(add=["net_admin"], drop=["CAP_KILL"]),
        spec.with_user(1000, 1000, [5]),
        spec.with_cwd("/srv"),
        spec.with_hostname("web-1.local"),
        spec.with_tmpfs("/t", size=0),
        spec.with_bind_mount("/etc/hosts", "/etc/hosts", readonly=True),
        spec.with_annotations({"k": "v"}),
        spec.with_args("sh", "-c", "true"),
    )
    process = doc["process"]
    assert process["env"][-3:] == ["A=1", "B=", "C=x=y"]
    assert doc["linux"]["resources"]["cpu"] == {"period": 100_000, "quota": 150_000, "shares": 512}
    assert doc["linux"]["resources"]["memory"] == {"limit": 64 << 20, "swap": -1}
    assert doc["linux"]["resources"]["pids"] == {"limit": 100}
    assert "CAP_NET_ADMIN" in process["capabilities"]["bounding"]
    assert "CAP_KILL" not in process["capabilities"]["effective"]
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [5]}
    assert (process["cwd"], doc["hostname"], process["args"]) == ("/srv", "web-1.local", ["sh", "-c", "true"])
    assert doc["mounts"][-2]["options"][-1] == "size=0"


def test_add_all_capabilities_means_every_known_one() -> None:
    doc = spec.generate("c1", "ns", spec.with_capabilities(drop=["ALL"]), spec.with_capabilities(add=["ALL"]))
    bounding = doc["process"]["capabilities"]["bounding"]
    assert not {"ALL", "CAP_ALL"} & set(bounding)
    assert {"CAP_SYS_ADMIN", "CAP_CHOWN"} <= set(bounding)


# -- image names for import_archive --------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "a\x00b", "has space:1", "../../x", "localhost/../../x", "x" * 100_000, "UPPER/Case:1", "a:b:c", 5],
)
def test_import_archive_refuses_bad_names_before_reading(client: Client, name: Any, tmp_path: Any) -> None:
    # The archive does not exist: a name that got past the check would end in OSError.
    with pytest.raises(errors.InvalidArgumentError) as info:
        client.images.import_archive(str(tmp_path / "missing.tar"), name=name)
    assert len(str(info.value)) < 400
