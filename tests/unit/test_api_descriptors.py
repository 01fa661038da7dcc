"""The generated typed RPC descriptors (``containerd_client._pb.api``) match the protos."""

from __future__ import annotations

import importlib
import inspect

import pytest

from containerd_client._pb import api

SERVICES = [
    obj
    for name, obj in vars(api).items()
    if inspect.isclass(obj)
    and not issubclass(obj, api.Method)
    and not name.startswith("_")
    and obj.__module__ == api.__name__
]
KINDS = {
    (False, False): api.Unary,
    (False, True): api.ServerStream,
    (True, False): api.ClientStream,
    (True, True): api.BidiStream,
}


def _service_descriptor(service_cls: type) -> object:
    """The service as protoc compiled it, from protobuf's default descriptor pool."""
    import pkgutil

    from google.protobuf import descriptor_pool

    import containerd_client._pb

    for info in pkgutil.walk_packages(containerd_client._pb.__path__, "containerd_client._pb."):
        if info.name.endswith("_pb2"):
            importlib.import_module(info.name)
    importlib.import_module("grpc_health.v1.health_pb2")
    full = next(m for m in vars(service_cls).values() if isinstance(m, api.Method)).service
    return descriptor_pool.Default().FindServiceByName(full)


def test_every_service_is_there() -> None:
    names = {cls.__name__ for cls in SERVICES}
    assert {"Containers", "Content", "Events", "Health", "Images", "Leases", "Namespaces"} <= names
    assert {"Snapshots", "Tasks", "Version", "Introspection", "Transfer", "Streaming", "Diff"} <= names


@pytest.mark.parametrize("service_cls", SERVICES, ids=lambda c: c.__name__)
def test_descriptors_match_the_protos(service_cls: type) -> None:
    svc = _service_descriptor(service_cls)
    ours = {name: m for name, m in vars(service_cls).items() if isinstance(m, api.Method)}
    theirs = {m.name: m for m in svc.methods}  # type: ignore[attr-defined]
    if service_cls is api.Health:  # not ours: the methods we use, whatever the package's release has
        assert set(ours) == {"Check", "Watch"} <= set(theirs)
    else:
        assert set(ours) == set(theirs), "every RPC of the service, and no other"
    for name, method in ours.items():
        proto = theirs[name]
        assert method.path == f"/{svc.full_name}/{name}"  # type: ignore[attr-defined]
        assert method.request.DESCRIPTOR.full_name == proto.input_type.full_name
        assert method.response.DESCRIPTOR.full_name == proto.output_type.full_name
        shape = (proto.client_streaming, proto.server_streaming)
        assert type(method) is KINDS[shape], (
            f"{method.path} is {type(method).__name__}, not {KINDS[shape].__name__}"
        )


def test_importing_api_loads_no_message_module() -> None:
    """The descriptors name their messages; only a call imports them (import time stays flat)."""
    import subprocess
    import sys

    code = (
        "import sys; from containerd_client._pb import api; "
        "print(sorted(m for m in sys.modules if m.endswith('_pb2')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
