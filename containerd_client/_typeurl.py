"""Packing and unpacking of containerd's ``google.protobuf.Any`` values.

containerd names protobuf types in ``Any`` by their bare full name
(``containerd.events.TaskExit``) where protobuf's own ``Any.Unpack`` expects
``type.googleapis.com/...``, and it sends the OCI runtime spec and its parts
as JSON under slash-separated URLs. This module is the one registry for both.

Message modules are imported on the first lookup, not at import time, so that
``import containerd_client`` stays cheap.
"""

from __future__ import annotations

import importlib
import json
import threading
from typing import Any as _Any

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from containerd_client.errors import ContainerdError

__all__ = [
    "OCI_PROCESS",
    "OCI_RESOURCES",
    "OCI_SPEC",
    "UnknownTypeError",
    "pack",
    "pack_json",
    "register",
    "register_json",
    "unpack",
]

OCI_SPEC = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
OCI_PROCESS = "types.containerd.io/opencontainers/runtime-spec/1/Process"
OCI_RESOURCES = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
OCI_WINDOWS_RESOURCES = "types.containerd.io/opencontainers/runtime-spec/1/WindowsResources"

# Modules whose every message may travel inside an Any.
_MESSAGE_MODULES = (
    "containerd_client._pb.containerd.events.container_pb2",
    "containerd_client._pb.containerd.events.content_pb2",
    "containerd_client._pb.containerd.events.image_pb2",
    "containerd_client._pb.containerd.events.namespace_pb2",
    "containerd_client._pb.containerd.events.snapshot_pb2",
    "containerd_client._pb.containerd.events.task_pb2",
    "containerd_client._pb.containerd.events.sandbox_pb2",
    "containerd_client._pb.containerd.runc.options.oci_pb2",
    "containerd_client._pb.containerd.cgroups.v1.metrics_pb2",
    "containerd_client._pb.containerd.cgroups.v2.metrics_pb2",
    "containerd_client._pb.containerd.types.task.task_pb2",
    "containerd_client._pb.containerd.types.transfer.imagestore_pb2",
    "containerd_client._pb.containerd.types.transfer.importexport_pb2",
    "containerd_client._pb.containerd.types.transfer.progress_pb2",
    "containerd_client._pb.containerd.types.transfer.registry_pb2",
    "containerd_client._pb.containerd.types.transfer.streaming_pb2",
    "containerd_client._pb.containerd.services.streaming.v1.streaming_pb2",
)

_JSON_TYPES = (OCI_SPEC, OCI_PROCESS, OCI_RESOURCES, OCI_WINDOWS_RESOURCES)


class UnknownTypeError(ContainerdError, LookupError):
    """An ``Any`` carries a type URL this registry does not know, or bytes that do not decode."""


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: dict[str, type[Message]] = {}
        self._json: set[str] = set(_JSON_TYPES)
        self._loaded = False

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            for name in _MESSAGE_MODULES:
                try:
                    module = importlib.import_module(name)
                except ImportError:  # pragma: no cover - only if the generated tree is incomplete
                    continue
                for attr in vars(module).values():
                    if isinstance(attr, type) and issubclass(attr, Message) and attr is not Message:
                        self._register_tree(attr)
            self._loaded = True

    def _register_tree(self, cls: type[Message]) -> None:
        self._messages.setdefault(cls.DESCRIPTOR.full_name, cls)
        for nested in cls.DESCRIPTOR.nested_types:
            nested_cls = getattr(cls, nested.name, None)
            if isinstance(nested_cls, type) and issubclass(nested_cls, Message):
                self._register_tree(nested_cls)

    def register(self, cls: type[Message], url: str | None = None) -> None:
        self._load()
        with self._lock:
            self._messages[url or cls.DESCRIPTOR.full_name] = cls

    def register_json(self, url: str) -> None:
        with self._lock:
            self._json.add(url)

    def lookup(self, url: str) -> type[Message] | None:
        cls = self._messages.get(url)
        if cls is None and not self._loaded:
            self._load()
            cls = self._messages.get(url)
        if cls is None and "/" in url:
            # Accept the protobuf convention (type.googleapis.com/<name>) too.
            cls = self._messages.get(url.rsplit("/", 1)[1])
        return cls

    def is_json(self, url: str) -> bool:
        return url in self._json


_registry = _Registry()


def register(cls: type[Message], url: str | None = None) -> None:
    """Register a protobuf message class for :func:`unpack`.

    Args:
        cls: The generated message class.
        url: The type URL; containerd's convention (the full name) by default.
    """
    _registry.register(cls, url)


def register_json(url: str) -> None:
    """Declare that values under ``url`` are JSON documents (like the OCI spec)."""
    _registry.register_json(url)


def pack(message: Message) -> any_pb2.Any:
    """Wrap a protobuf message in an ``Any`` with containerd's bare type URL."""
    return any_pb2.Any(type_url=message.DESCRIPTOR.full_name, value=message.SerializeToString())


def pack_json(url: str, value: object) -> any_pb2.Any:
    """Wrap a JSON-serialisable value (an OCI spec or part of one) in an ``Any``.

    Args:
        url: One of the ``OCI_*`` type URLs, or another registered JSON URL.
        value: A mapping (or attrs value converted by the caller) to encode.
    """
    data = json.dumps(value, separators=(",", ":"), sort_keys=False).encode()
    return any_pb2.Any(type_url=url, value=data)


def unpack(value: any_pb2.Any) -> _Any:
    """Decode an ``Any`` by its type URL.

    Returns:
        A protobuf message for registered message types, or the decoded JSON
        (usually a dict) for JSON types.

    Raises:
        UnknownTypeError: The URL is not registered or the bytes do not decode.
    """
    url = value.type_url
    if _registry.is_json(url):
        try:
            return json.loads(value.value or b"null")
        except ValueError as exc:
            raise UnknownTypeError(f"invalid JSON in Any of type {url!r}: {exc}") from exc
    cls = _registry.lookup(url)
    if cls is None:
        raise UnknownTypeError(f"no type registered for Any type URL {url!r}")
    try:
        return cls.FromString(value.value)
    except DecodeError as exc:
        raise UnknownTypeError(f"cannot decode Any of type {url!r}: {exc}") from exc
