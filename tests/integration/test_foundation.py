"""The foundation against a real containerd: version, namespaces, leases, errors."""

from __future__ import annotations

import pytest

from containerd_client import Client, _typeurl, errors
from containerd_client._pb import api
from containerd_client._pb.containerd.services.containers.v1 import containers_pb2
from containerd_client.testing import ContainerdDaemon


def test_version_and_server_info(containerd: Client, containerd_daemon: ContainerdDaemon) -> None:
    version = containerd.version()
    assert version.version.lstrip("v").startswith(f"{containerd_daemon.major}.")
    assert version.major == containerd_daemon.major
    info = containerd.server()
    assert len(info.uuid) >= 32
    assert containerd.is_serving()
    containerd.wait_ready(timeout=5)


def test_plugins_lists_runtime_and_snapshotters(containerd: Client) -> None:
    plugins = containerd.plugins()
    types = {p.type for p in plugins}
    assert "io.containerd.snapshotter.v1" in types
    tasks = containerd.plugins("type==io.containerd.grpc.v1,id==tasks")
    assert [p.id for p in tasks] == ["tasks"]


def test_namespaces_create_label_list_delete(containerd: Client) -> None:
    ns = containerd.namespace_name + "-extra"
    created = containerd.namespaces.create(ns, labels={"team": "a"})
    assert created.labels == {"team": "a"}
    assert containerd.namespaces.set_labels(ns, {"team": "b", "env": "ci"}) == {"team": "b", "env": "ci"}
    assert containerd.namespaces.set_labels(ns, {"env": ""}) == {"team": "b"}
    assert ns in {n.name for n in containerd.namespaces.list()}
    with pytest.raises(errors.AlreadyExistsError):
        containerd.namespaces.create(ns)
    containerd.namespaces.delete(ns)
    with pytest.raises(errors.NotFoundError):
        containerd.namespaces.get(ns)


def test_namespace_view_sends_its_namespace(containerd: Client) -> None:
    other = containerd.namespace_name + "-view"
    with containerd.namespace(other) as view:
        view.create_container(
            "in-view", spec={"ociVersion": "1.0.2", "process": {"args": ["true"], "cwd": "/"}}
        )
        assert [c.id for c in view.containers()] == ["in-view"]
        assert containerd.containers() == []
        view.load_container("in-view").delete()
        view.namespaces.delete(other)
    assert not containerd.closed


def test_lease_header_applies_inside_block(containerd: Client) -> None:
    with containerd.lease(expire=60, labels={"purpose": "test"}) as lease:
        assert ("containerd-lease", lease.id) in containerd.metadata
        leases = {le.id: le for le in containerd.leases.list()}
        assert leases[lease.id].labels["purpose"] == "test"
        assert "containerd.io/gc.expire" in leases[lease.id].labels
        # A container created inside the block is referenced by the lease.
        containerd.call(
            api.Containers.Create,
            containers_pb2.CreateContainerRequest(
                container=containers_pb2.Container(
                    id="leased",
                    runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2"),
                    spec=_typeurl.pack_json(_typeurl.OCI_SPEC, {"ociVersion": "1.0.2"}),
                )
            ),
        )
    assert all((k != "containerd-lease") for k, _ in containerd.metadata)
    assert lease.id not in {le.id for le in containerd.leases.list()}
    containerd.load_container("leased").delete()


def test_raw_container_create_get_delete_and_error_mapping(containerd: Client) -> None:
    stub = containerd.services.containers
    md = containerd.metadata
    record = containers_pb2.Container(
        id="raw1",
        runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2"),
        spec=_typeurl.pack_json(_typeurl.OCI_SPEC, {"ociVersion": "1.0.2"}),
    )
    stub.Create(containers_pb2.CreateContainerRequest(container=record), metadata=md)
    got = containerd.call(api.Containers.Get, containers_pb2.GetContainerRequest(id="raw1"))
    assert got.container.id == "raw1"

    with pytest.raises(errors.AlreadyExistsError) as dup:
        containerd.call(api.Containers.Create, containers_pb2.CreateContainerRequest(container=record))
    assert dup.value.code is errors.StatusCode.ALREADY_EXISTS
    assert "raw1" in dup.value.message

    containerd.call(api.Containers.Delete, containers_pb2.DeleteContainerRequest(id="raw1"))
    with pytest.raises(errors.NotFoundError) as missing:
        containerd.call(api.Containers.Get, containers_pb2.GetContainerRequest(id="raw1"))
    assert "raw1" in missing.value.message
    assert "not found" in missing.value.message
    import grpc

    assert isinstance(missing.value.__cause__, grpc.RpcError)


def test_sdk_maps_duplicate_id_to_conflict(containerd: Client) -> None:
    with containerd.create_container("dup", spec={"ociVersion": "1.0.2"}):
        with pytest.raises(errors.ConflictError) as info:
            containerd.create_container("dup", spec={"ociVersion": "1.0.2"})
        assert isinstance(info.value, errors.AlreadyExistsError)
        assert "id already in use" in str(info.value)
    with pytest.raises(errors.NotFoundError) as missing:
        containerd.load_container("dup")
    assert "dup" in str(missing.value)


def test_features_from_the_live_daemon(containerd: Client, containerd_daemon: ContainerdDaemon) -> None:
    features = containerd.features()
    assert features.version[0] == containerd_daemon.major
    assert features is containerd.features()  # cached
    if containerd_daemon.major >= 2:
        assert features.has("transfer")
        assert features.has("transfer-pull-plain-http")
        assert not features.has("runtime-v1")
    elif features.version >= (1, 7):
        assert features.has("transfer")
    else:
        assert not features.has("transfer")
        with pytest.raises(errors.NotSupportedError):
            features.require("transfer")
