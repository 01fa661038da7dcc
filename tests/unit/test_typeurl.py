"""The Any registry: containerd's bare type URLs, JSON spec types, errors."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2

from containerd_client import _typeurl
from containerd_client._pb.containerd.cgroups.v1 import metrics_pb2 as v1
from containerd_client._pb.containerd.cgroups.v2 import metrics_pb2 as v2
from containerd_client._pb.containerd.events import container_pb2, task_pb2
from containerd_client._pb.containerd.runc.options import oci_pb2


@pytest.mark.parametrize(
    ("message", "url"),
    [
        (task_pb2.TaskExit(container_id="c", id="c", pid=7, exit_status=3), "containerd.events.TaskExit"),
        (task_pb2.TaskOOM(container_id="c"), "containerd.events.TaskOOM"),
        (container_pb2.ContainerCreate(id="c", image="i"), "containerd.events.ContainerCreate"),
        (oci_pb2.Options(binary_name="runc", root="/r"), "containerd.runc.v1.Options"),
        (oci_pb2.CheckpointOptions(exit=True), "containerd.runc.v1.CheckpointOptions"),
        (v1.Metrics(pids=v1.PidsStat(current=2, limit=9)), "io.containerd.cgroups.v1.Metrics"),
        (v2.Metrics(pids=v2.PidsStat(current=2, limit=9)), "io.containerd.cgroups.v2.Metrics"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_round_trip_with_bare_urls(message: object, url: str) -> None:
    packed = _typeurl.pack(message)  # type: ignore[arg-type]
    assert packed.type_url == url
    assert "/" not in packed.type_url
    back = _typeurl.unpack(packed)
    assert type(back) is type(message)
    assert back == message


def test_protobuf_style_url_is_accepted_too() -> None:
    msg = task_pb2.TaskStart(container_id="c", pid=1)
    any_msg = any_pb2.Any(
        type_url="type.googleapis.com/containerd.events.TaskStart", value=msg.SerializeToString()
    )
    assert _typeurl.unpack(any_msg) == msg


@pytest.mark.parametrize(
    "url",
    [_typeurl.OCI_SPEC, _typeurl.OCI_PROCESS, _typeurl.OCI_RESOURCES],
    ids=lambda u: u.rsplit("/", 1)[1],
)
def test_json_types_round_trip(url: str) -> None:
    value = {"ociVersion": "1.0.2", "process": {"args": ["sh"], "env": ["A=b"]}, "nested": [1, 2.5, None]}
    packed = _typeurl.pack_json(url, value)
    assert packed.type_url == url
    assert _typeurl.unpack(packed) == value


def test_unknown_url_is_a_typed_error() -> None:
    with pytest.raises(_typeurl.UnknownTypeError, match="no type registered"):
        _typeurl.unpack(any_pb2.Any(type_url="example.Nope", value=b""))


def test_bad_bytes_are_a_typed_error() -> None:
    with pytest.raises(_typeurl.UnknownTypeError, match="cannot decode"):
        _typeurl.unpack(any_pb2.Any(type_url="containerd.events.TaskExit", value=b"\xff\xff\xff"))
    with pytest.raises(_typeurl.UnknownTypeError, match="invalid JSON"):
        _typeurl.unpack(any_pb2.Any(type_url=_typeurl.OCI_SPEC, value=b"{nope"))


def test_register_custom_type_and_json_url() -> None:
    _typeurl.register(task_pb2.TaskPaused, "example.com/custom/Paused")
    got = _typeurl.unpack(any_pb2.Any(type_url="example.com/custom/Paused", value=b"\n\x01x"))
    assert got == task_pb2.TaskPaused(container_id="x")
    _typeurl.register_json("example.com/custom/Json")
    assert _typeurl.unpack(_typeurl.pack_json("example.com/custom/Json", [1])) == [1]
