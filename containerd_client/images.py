"""Images: names pointing at content, and the work around them (``containerd.services.images.v1``).

:class:`ImageStore` lists, creates and deletes image records, walks an
image's index to the manifest of a platform, reads files out of its layers
without mounting anything, unpacks its layers into snapshots, and imports and
exports image archives (OCI image layouts and ``docker save`` tars).

Every multi-step operation runs inside a lease (the caller's, if a
``client.lease()`` block is active, else one of its own), so containerd's
garbage collector cannot remove a blob or snapshot between two steps. What
must outlive the lease is tied to the image with containerd's gc labels:
``containerd.io/gc.ref.content.*`` on indexes and manifests,
``containerd.io/gc.ref.snapshot.<snapshotter>`` on the config of an unpacked
image.

Errors added here::

    NotFoundError
    └── PlatformNotFoundError      no manifest for the platform asked for
    InvalidArgumentError
    └── ImageFormatError           a malformed or unsupported index/manifest/config
        └── ArchiveError           a malformed archive (not a tar, files missing)
            └── UnsafeArchiveError a member escapes the archive (absolute, '..', links)

plus :class:`~containerd_client.content.DigestMismatchError` for data that
does not match its digest or size, and
:class:`~containerd_client.errors.DecompressionBombError` for archives and
layers that expand past their limits.

Reading archives and layers is bounded: decompressed data comes in pieces of
at most 1 MiB, a compressed archive or layer may expand to at most
:func:`expansion_limit` of its size (100 times, at least 64 MiB, at most
64 GiB; ``max_uncompressed=`` changes it per call), tar headers are capped at
1 MiB and archives at 65,536 entries.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, TypeVar

import attrs

from containerd_client import _rpc
from containerd_client._archive import (
    ArchiveError,
    ArchiveReader,
    ImageFormatError,
    IterReader,
    UnsafeArchiveError,
    chain_ids,
    expansion_limit,
    find_file,
    ref_tag,
)
from containerd_client._convert import from_timestamp
from containerd_client._pb import api
from containerd_client._registry import InvalidReferenceError, normalize_reference
from containerd_client.content import ContentStore
from containerd_client.errors import (
    AlreadyExistsError,
    ContainerdError,
    DigestMismatchError,
    NotFoundError,
    UnavailableError,
)
from containerd_client.snapshots import DEFAULT_SNAPSHOTTER, SnapshotStore
from containerd_client.types import Descriptor, Platform

if TYPE_CHECKING:
    from containerd_client.client import Client
    from containerd_client.pull import ProgressCallback

__all__ = [
    "ANNOTATION_IMAGE_NAME",
    "ANNOTATION_REF_NAME",
    "DEFAULT_MAX_FILE",
    "MEDIA_TYPE_DOCKER_CONFIG",
    "MEDIA_TYPE_DOCKER_LAYER",
    "MEDIA_TYPE_DOCKER_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_MANIFEST",
    "MEDIA_TYPE_DOCKER_MANIFEST_LIST",
    "MEDIA_TYPE_OCI_CONFIG",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_LAYER",
    "MEDIA_TYPE_OCI_LAYER_GZIP",
    "MEDIA_TYPE_OCI_LAYER_ZSTD",
    "MEDIA_TYPE_OCI_MANIFEST",
    "ArchiveError",
    "Descriptor",
    "Image",
    "ImageFormatError",
    "ImageStore",
    "Platform",
    "PlatformNotFoundError",
    "UnsafeArchiveError",
    "chain_ids",
    "expansion_limit",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

#: Annotation with an image's full name, in archives containerd writes and reads.
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
#: OCI's name annotation: in practice just the tag.
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_INDEX_TYPES = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})
_MANIFEST_TYPES = frozenset({MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
_GC_SNAPSHOT_LABEL = "containerd.io/gc.ref.snapshot."
_UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
# Indexes, manifests and configs are small; anything bigger is not one.
_JSON_CACHE_SIZE = 256
_MAX_JSON = 16 << 20
_MAX_INDEX_DEPTH = 8
_IMPORT_EPOCH = 0
#: Largest file :meth:`ImageStore.read_file` returns unless told otherwise.
DEFAULT_MAX_FILE = 16 << 20


class PlatformNotFoundError(NotFoundError):
    """The image has no manifest for the platform asked for."""


class _Progress:
    """Reports one operation's bytes to a progress callback (never raises)."""

    def __init__(self, callback: ProgressCallback | None, ref: str, total: int) -> None:
        self.callback = callback
        self.ref = ref
        self.total = total
        self.done = 0

    def emit(self, status: str) -> None:
        if self.callback is None:
            return
        from containerd_client.pull import ProgressEvent

        try:
            self.callback(ProgressEvent(self.ref, self.done, self.total, status, "client"))
        except Exception:
            logger.warning("progress callback failed", exc_info=True)

    def add(self, nbytes: int, status: str) -> None:
        self.done += nbytes
        self.emit(status)

    def counted(self, chunks: Iterator[bytes], status: str) -> Iterator[bytes]:
        for chunk in chunks:
            # Counted when handed over: a reader that stops at the blob's
            # size never asks for more, so a count after the yield would be lost.
            self.add(len(chunk), status)
            yield chunk


@attrs.frozen
class Image:
    """An image record: a name pointing at a root descriptor (index or manifest)."""

    name: str
    target: Descriptor
    labels: Mapping[str, str] = attrs.field(factory=dict)
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None

    def __repr__(self) -> str:
        from containerd_client._html import short_digest, shorten

        return f"<Image {shorten(self.name, 100)!r} {short_digest(self.target.digest)}>"

    def _repr_html_(self) -> str:
        from containerd_client import _html

        media = self.target.media_type
        kind = "index" if media in _INDEX_TYPES else "manifest" if media in _MANIFEST_TYPES else media
        rows = [
            ("digest", _html.code(_html.short_digest(self.target.digest, 16))),
            ("kind", _html.esc(_html.shorten(kind, 80))),
            ("created", _html.esc(_html.age(self.created_at)) + " ago" if self.created_at else "-"),
            ("labels", _html.esc(len(self.labels))),
        ]
        return _html.card("Image", _html.shorten(self.name, 120), rows)

    @classmethod
    def _from_proto(cls, msg: Any) -> Image:
        return cls(
            msg.name,
            Descriptor.from_proto(msg.target),
            dict(msg.labels),
            from_timestamp(msg.created_at),
            from_timestamp(msg.updated_at),
        )


ImageRef = Image | Descriptor | str
PlatformLike = Platform | str | None


def _platform(value: PlatformLike) -> Platform | None:
    if value is None or isinstance(value, Platform):
        return value
    return Platform.parse(value)


def _json_bytes_go(value: Any) -> bytes:
    # Key order as given, no spaces: what Go's encoding/json writes for a struct.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _check_digest(data: bytes, digest: str, what: str) -> None:
    algorithm, _, expected = digest.partition(":")
    try:
        actual = hashlib.new(algorithm, data).hexdigest()
    except ValueError as exc:
        raise ImageFormatError(f"{what}: unsupported digest algorithm {algorithm!r}") from exc
    if actual != expected:
        raise DigestMismatchError(f"{what}: content has digest {algorithm}:{actual}, expected {digest}")


def _parse_json(data: bytes, what: str, error: type[ImageFormatError] = ImageFormatError) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise error(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise error(f"{what} nests too deeply to be an image document") from None


def _kind_of(desc: Descriptor, doc: Mapping[str, Any]) -> str:
    """``"index"`` or ``"manifest"``, from the media type or, if it has none, the document."""
    media_type = desc.media_type or str(doc.get("mediaType", ""))
    if media_type in _INDEX_TYPES:
        return "index"
    if media_type in _MANIFEST_TYPES:
        return "manifest"
    if not media_type:
        if "manifests" in doc:
            return "index"
        if "layers" in doc or "config" in doc:
            return "manifest"
    raise ImageFormatError(f"{desc.digest} has unsupported media type {media_type!r}")


def _descriptors(doc: Mapping[str, Any], key: str, what: str) -> list[Descriptor]:
    try:
        return [Descriptor.from_oci(d) for d in doc.get(key) or ()]
    except (ValueError, TypeError, AttributeError) as exc:
        raise ImageFormatError(f"{what}: bad {key}: {exc}") from exc


def _config_descriptor(manifest: Mapping[str, Any], what: str) -> Descriptor:
    config = manifest.get("config")
    if not isinstance(config, Mapping):
        raise ImageFormatError(f"{what} has no config")
    try:
        return Descriptor.from_oci(config)
    except ValueError as exc:
        raise ImageFormatError(f"{what}: bad config: {exc}") from exc


def _gc_labels(kind: str, doc: Mapping[str, Any], what: str) -> dict[str, str]:
    """containerd's gc labels that keep an index's or a manifest's children alive."""
    labels: dict[str, str] = {}
    if kind == "index":
        for i, child in enumerate(_descriptors(doc, "manifests", what)):
            labels[f"containerd.io/gc.ref.content.m.{i}"] = child.digest
    else:
        labels["containerd.io/gc.ref.content.config"] = _config_descriptor(doc, what).digest
        for i, layer in enumerate(_descriptors(doc, "layers", what)):
            labels[f"containerd.io/gc.ref.content.l.{i}"] = layer.digest
    return labels


def _archive_name(name: str) -> str:
    """An image name found in an archive, normalised as Docker does (``busybox`` is
    ``docker.io/library/busybox:latest``); kept as it is when it is no reference."""
    try:
        return normalize_reference(name.strip())
    except InvalidReferenceError:
        return name


def _by_either_name(name: str, fn: Callable[[str], T]) -> T:
    """``fn`` on the normalised name (Docker's reading); on NotFound, on ``name`` as written.

    A name that is no reference (containerd stores any string) is used as written.
    """
    try:
        normalized = normalize_reference(name)
    except InvalidReferenceError:
        return fn(name)
    if normalized == name:
        return fn(name)
    try:
        return fn(normalized)
    except NotFoundError as exc:
        first = exc
    try:
        return fn(name)
    except NotFoundError:
        raise NotFoundError(f"image {name!r} ({normalized}): not found") from first


def _repository(name: str) -> str:
    """``name`` without its tag or digest."""
    name = name.split("@", 1)[0]
    head, slash, last = name.rpartition("/")
    if ":" in last:
        last = last.rsplit(":", 1)[0]
    return head + slash + last


# -- import planning (no RPC) ------------------------------------------------------


@attrs.define
class _Blob:
    desc: Descriptor
    member: str | None = None
    data: bytes | None = None
    labels: dict[str, str] = attrs.field(factory=dict)


@attrs.define
class _Plan:
    blobs: dict[str, _Blob] = attrs.field(factory=dict)
    # (archive name or None, tag or None, target)
    entries: list[tuple[str | None, str | None, Descriptor]] = attrs.field(factory=list)


def _blob_member(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


def _plan_oci(arc: ArchiveReader) -> _Plan:
    plan = _Plan()
    index = _parse_json(arc.read("index.json", _MAX_JSON), "index.json", ArchiveError)
    if not isinstance(index, Mapping):
        raise ArchiveError("index.json is not an object")
    for desc in _descriptors(index, "manifests", "index.json"):
        _walk_oci(arc, plan, desc, depth=0, required=True, maybe_json=True)
        annotations = desc.annotations
        full = annotations.get(ANNOTATION_IMAGE_NAME)
        ref = annotations.get(ANNOTATION_REF_NAME)
        tag = None
        if not full and ref:
            # A ref.name with a repository in it is a whole name; else a tag.
            if "/" in ref or ":" in ref or "@" in ref:
                full = ref
            else:
                tag = ref
        plan.entries.append((_archive_name(full) if full else None, tag, attrs.evolve(desc, annotations={})))
    return plan


def _walk_oci(
    arc: ArchiveReader, plan: _Plan, desc: Descriptor, *, depth: int, required: bool, maybe_json: bool = False
) -> bool:
    """Add ``desc`` and what it references to the plan; False if it is absent and optional."""
    if desc.digest in plan.blobs:
        return True
    member = _blob_member(desc.digest)
    if not arc.has(member):
        if required:
            raise ArchiveError(f"archive lacks blob {desc.digest} ({desc.media_type or 'unknown type'})")
        logger.debug("archive lacks optional blob %s", desc.digest)
        return False
    size = arc.size(member)
    if size != desc.size:
        raise DigestMismatchError(
            f"blob {desc.digest} is {size} bytes in the archive; its descriptor says {desc.size}"
        )
    blob = _Blob(attrs.evolve(desc, annotations={}, platform=None), member=member)
    structured = desc.media_type in _INDEX_TYPES or desc.media_type in _MANIFEST_TYPES
    if structured or (maybe_json and not desc.media_type):
        data = arc.read(member, _MAX_JSON)
        _check_digest(data, desc.digest, f"blob {desc.digest}")
        doc = _parse_json(data, f"blob {desc.digest}")
        if not isinstance(doc, Mapping):
            raise ImageFormatError(f"blob {desc.digest} is not a JSON object")
        kind = _kind_of(desc, doc)
        if depth > _MAX_INDEX_DEPTH:
            raise ImageFormatError(f"indexes nest deeper than {_MAX_INDEX_DEPTH}")
        blob.labels = _gc_labels(kind, doc, f"blob {desc.digest}")
        if not blob.desc.media_type:
            blob.desc = attrs.evolve(blob.desc, media_type=str(doc.get("mediaType") or ""))
        what = f"{kind} {desc.digest}"
        if kind == "index":
            for child in _descriptors(doc, "manifests", what):
                # A multi-platform index may come with only some platforms' content.
                _walk_oci(arc, plan, child, depth=depth + 1, required=False, maybe_json=True)
        else:
            _walk_oci(arc, plan, _config_descriptor(doc, what), depth=depth + 1, required=True)
            for layer in _descriptors(doc, "layers", what):
                _walk_oci(arc, plan, layer, depth=depth + 1, required=not layer.urls)
    plan.blobs[desc.digest] = blob
    return True


def _layer_digest(arc: ArchiveReader, member: str) -> tuple[str, str]:
    """Digest and media type of a ``docker save`` layer, hashing it only when compressed."""
    with arc.open(member) as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        media_type = MEDIA_TYPE_DOCKER_LAYER_GZIP
    elif head == b"\x28\xb5\x2f\xfd":
        media_type = MEDIA_TYPE_OCI_LAYER_ZSTD
    else:
        return "", MEDIA_TYPE_DOCKER_LAYER
    hasher = hashlib.sha256()
    with arc.open(member) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest(), media_type


def _plan_docker(arc: ArchiveReader) -> _Plan:
    plan = _Plan()
    items = _parse_json(arc.read("manifest.json", _MAX_JSON), "manifest.json", ArchiveError)
    if not isinstance(items, list):
        raise ArchiveError("manifest.json is not a list")
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("Config"), str):
            raise ArchiveError(f"manifest.json entry without Config: {item!r}")
        config_bytes = arc.read(item["Config"], _MAX_JSON)
        config_desc = Descriptor(
            MEDIA_TYPE_DOCKER_CONFIG, "sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes)
        )
        config = _parse_json(config_bytes, item["Config"], ArchiveError)
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        diff_ids = (rootfs.get("diff_ids") or []) if isinstance(rootfs, dict) else []
        if not isinstance(diff_ids, list):
            raise ArchiveError(f"{item['Config']}: rootfs.diff_ids is not a list")
        members = item.get("Layers") or []
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ArchiveError(f"manifest.json entry {item['Config']!r}: Layers is not a list of file names")
        tags = item.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ArchiveError(f"manifest.json entry {item['Config']!r}: RepoTags is not a list of names")
        layers: list[Descriptor] = []
        for i, member in enumerate(members):
            digest, media_type = _layer_digest(arc, member)
            if not digest:
                if i >= len(diff_ids):
                    raise ArchiveError(f"{item['Config']} lists fewer diff_ids than the archive has layers")
                # An uncompressed layer's digest is its diff id; the daemon
                # checks it when the layer is written.
                digest = str(diff_ids[i])
            desc = Descriptor(media_type, digest, arc.size(member))
            layers.append(desc)
            plan.blobs.setdefault(digest, _Blob(desc, member=member))
        plan.blobs.setdefault(config_desc.digest, _Blob(config_desc, data=config_bytes))
        # The bytes containerd's own importer writes (Go field order), so both
        # give the same manifest digest.
        manifest = _json_bytes_go(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
                "config": _go_desc(config_desc),
                "layers": [_go_desc(d) for d in layers],
            }
        )
        labels = {"containerd.io/gc.ref.content.config": config_desc.digest}
        labels.update({f"containerd.io/gc.ref.content.l.{i}": d.digest for i, d in enumerate(layers)})
        manifest_desc = Descriptor(
            MEDIA_TYPE_DOCKER_MANIFEST, "sha256:" + hashlib.sha256(manifest).hexdigest(), len(manifest)
        )
        plan.blobs.setdefault(manifest_desc.digest, _Blob(manifest_desc, data=manifest, labels=labels))
        if not tags:
            plan.entries.append((None, None, manifest_desc))
        for tag in tags:
            plan.entries.append((_archive_name(tag), None, manifest_desc))
    return plan


def _go_desc(desc: Descriptor) -> dict[str, Any]:
    return {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}


def _name_entries(plan: _Plan, name: str | None) -> list[tuple[str, Descriptor]]:
    """Decide the image names: the archive's own, ``name`` for a lone or unnamed image."""
    if name is not None and len(plan.entries) == 1:
        return [(name, plan.entries[0][2])]
    out: list[tuple[str, Descriptor]] = []
    for full, tag, desc in plan.entries:
        if full:
            out.append((full, desc))
        elif tag and name:
            out.append((f"{_repository(name)}:{tag}", desc))
        elif name:
            out.append((name, desc))
        else:
            logger.warning("skipping unnamed image %s in archive; pass name= to import it", desc.digest)
    if not out:
        raise ArchiveError("the archive names no image; pass name= to import it")
    return out


# -- the store ---------------------------------------------------------------------


class ImageStore:
    """Images of the client's namespace, and what can be done with them.

    Args:
        client: The client whose namespace (and active lease) calls use.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._content = ContentStore(client)

    def __repr__(self) -> str:
        return f"<ImageStore namespace={self._client.namespace_name!r}>"

    # -- records -------------------------------------------------------------------

    def list(self, *filters: str) -> builtins.list[Image]:
        """All images, optionally filtered (``"name~=busybox"``, ``"labels.env==ci"``).

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.images.v1 import images_pb2

        resp = self._client.call(
            api.Images.List, images_pb2.ListImagesRequest(filters=list(filters)), idempotent=True
        )
        return [Image._from_proto(i) for i in resp.images]

    def get(self, name: str) -> Image:
        """One image by name.

        A short name is looked up as Docker reads it (``busybox`` is
        ``docker.io/library/busybox:latest``, ``user/app`` is
        ``docker.io/user/app:latest``), then as written, for a record
        created under that literal name.

        Raises:
            NotFoundError: No such image.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.images.v1 import images_pb2

        def get(one: str) -> Any:
            return self._client.call(api.Images.Get, images_pb2.GetImageRequest(name=one), idempotent=True)

        resp = _by_either_name(name, get)
        return Image._from_proto(resp.image)

    def create(
        self,
        name: str,
        target: Descriptor,
        labels: Mapping[str, str] | None = None,
        *,
        _session_label: bool = False,
    ) -> Image:
        """Point ``name`` at ``target``; an existing image of that name is updated.

        The target's content should already be in the store (and tied to it
        with gc labels); otherwise the garbage collector may remove it.

        Args:
            name: The image name (``"docker.io/library/busybox:latest"``).
            target: The root descriptor (index or manifest).
            labels: Image labels; ``None`` keeps an existing image's labels.

        Raises:
            InvalidArgumentError: The name is not a valid image reference.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.images.v1 import images_pb2

        record = images_pb2.Image(name=name, target=target.to_proto(), labels=dict(labels or {}))
        new = images_pb2.Image()
        new.CopyFrom(record)
        if _session_label and self._client._label_session:
            # Only a new record gets the session of the import or pull that made
            # it (Client.sweep(images=True) looks at it); an update keeps its labels.
            from containerd_client.client import SESSION_LABEL

            new.labels[SESSION_LABEL] = new.labels.get(SESSION_LABEL) or self._client.session
        try:
            resp = self._client.call(api.Images.Create, images_pb2.CreateImageRequest(image=new))
        except AlreadyExistsError:
            from google.protobuf import field_mask_pb2

            paths = ["target"] if labels is None else ["target", "labels"]
            req = images_pb2.UpdateImageRequest(
                image=record, update_mask=field_mask_pb2.FieldMask(paths=paths)
            )
            return Image._from_proto(self._client.call(api.Images.Update, req).image)
        return Image._from_proto(resp.image)

    def set_labels(self, name: str, labels: Mapping[str, str]) -> dict[str, str]:
        """Set labels on an image record (an empty value removes one; others stay); return all its labels.

        Raises:
            InvalidArgumentError: A key is empty, or a key or value is not a string.
            NotFoundError: No such image.
            RPCError: The call failed.
        """
        from containerd_client._convert import label_update
        from containerd_client._pb.containerd.services.images.v1 import images_pb2

        values, mask = label_update(labels) if labels else ({}, None)
        current = self.get(name)
        if mask is None:
            return dict(current.labels)
        # The mask keeps the target as it is, but containerd 1.7 dereferences
        # the request's target unchecked (a missing one kills the daemon).
        record = images_pb2.Image(name=name, target=current.target.to_proto(), labels=values)
        req = images_pb2.UpdateImageRequest(image=record, update_mask=mask)
        resp = self._client.call(api.Images.Update, req)
        return dict(Image._from_proto(resp.image).labels)

    def delete(self, name: str, *, sync: bool = False) -> None:
        """Delete an image record; content only it referenced becomes garbage.

        Args:
            name: The image; a short name is read as in :meth:`get`.
            sync: Wait for containerd's garbage collection to finish.

        Raises:
            NotFoundError: No such image.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.images.v1 import images_pb2

        def delete(one: str) -> None:
            self._client.call(api.Images.Delete, images_pb2.DeleteImageRequest(name=one, sync=sync))

        _by_either_name(name, delete)

    # -- reading images ------------------------------------------------------------

    def _target(self, image: ImageRef) -> Descriptor:
        if isinstance(image, Image):
            return image.target
        if isinstance(image, Descriptor):
            return image
        return self.get(image).target

    def _json(self, desc: Descriptor) -> Any:
        # Content is addressed by digest, so a parsed document never goes
        # stale: keep a few per client (manifests and configs are read on
        # every run of an image).
        cache = self._client._base._json_cache
        doc = cache.get(desc.digest)
        if doc is not None:
            return copy.deepcopy(doc)
        data = self._content.read_all(desc.digest, max_size=_MAX_JSON)
        doc = _parse_json(data, f"{desc.media_type or 'blob'} {desc.digest}")
        if not isinstance(doc, Mapping):
            raise ImageFormatError(f"{desc.digest} is not a JSON object")
        if len(cache) >= _JSON_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[desc.digest] = copy.deepcopy(doc)
        return doc

    def _resolve(self, target: Descriptor, platform: Platform | None) -> tuple[Descriptor, dict[str, Any]]:
        """Walk from ``target`` to the manifest for ``platform`` (the host's if None)."""
        want = platform or Platform.host()
        desc = target
        chosen_by_index = False
        for _ in range(_MAX_INDEX_DEPTH):
            doc = self._json(desc)
            if _kind_of(desc, doc) == "manifest":
                if platform is not None and not chosen_by_index:
                    self._check_config_platform(doc, desc, platform)
                return desc, dict(doc)
            children = _descriptors(doc, "manifests", f"index {desc.digest}")
            nested = [c for c in children if c.media_type in _INDEX_TYPES]
            exact = [c for c in children if c.platform is not None and c.platform == want]
            loose = [c for c in children if c.platform is not None and want.matches(c.platform)]
            unlabelled = [c for c in children if c.platform is None and c.media_type not in _INDEX_TYPES]
            candidates = exact or loose or unlabelled or nested
            if not candidates:
                offered = sorted({str(c.platform) for c in children if c.platform is not None})
                raise PlatformNotFoundError(
                    f"image {target.digest} has no manifest for {want} "
                    f"(it has: {', '.join(offered) or 'none'})"
                )
            desc = candidates[0]
            chosen_by_index = desc.platform is not None
        raise ImageFormatError(f"indexes of {target.digest} nest deeper than {_MAX_INDEX_DEPTH}")

    def _check_config_platform(self, manifest: Mapping[str, Any], desc: Descriptor, want: Platform) -> None:
        config = self._json(_config_descriptor(manifest, f"manifest {desc.digest}"))
        have = Platform(
            str(config.get("os", "")), str(config.get("architecture", "")), str(config.get("variant", ""))
        )
        if not want.matches(have):
            raise PlatformNotFoundError(f"manifest {desc.digest} is for {have}, not {want}")

    def manifest(self, image: ImageRef, platform: PlatformLike = None) -> dict[str, Any]:
        """The image's manifest for ``platform`` (the host's by default), walking any index.

        An image whose target is a single manifest is returned as is unless a
        platform is asked for explicitly, which its config must then match.

        Args:
            image: An :class:`Image`, its name, or a root descriptor.
            platform: ``Platform`` or ``"os/arch[/variant]"``.

        Raises:
            PlatformNotFoundError: No manifest matches the platform.
            ImageFormatError: The index or manifest is malformed.
            NotFoundError: The image or one of its blobs is missing.
            RPCError: A call failed.
        """
        return self._resolve(self._target(image), _platform(platform))[1]

    def config(self, image: ImageRef, platform: PlatformLike = None) -> dict[str, Any]:
        """The image's config (``{"architecture":..., "config": {"Env": ...}, "rootfs": ...}``).

        Raises:
            PlatformNotFoundError: No manifest matches the platform.
            ImageFormatError: The manifest or config is malformed.
            NotFoundError: The image or one of its blobs is missing.
            RPCError: A call failed.
        """
        mdesc, manifest = self._resolve(self._target(image), _platform(platform))
        return dict(self._json(_config_descriptor(manifest, f"manifest {mdesc.digest}")))

    def layers(self, image: ImageRef, platform: PlatformLike = None) -> builtins.list[Descriptor]:
        """The layer descriptors of the image's manifest, lowest first.

        Raises:
            PlatformNotFoundError: No manifest matches the platform.
            ImageFormatError: The manifest is malformed.
            NotFoundError: The image or its manifest is missing.
            RPCError: A call failed.
        """
        mdesc, manifest = self._resolve(self._target(image), _platform(platform))
        return _descriptors(manifest, "layers", f"manifest {mdesc.digest}")

    def read_file(
        self,
        image: ImageRef,
        path: str,
        platform: PlatformLike = None,
        *,
        max_size: int = DEFAULT_MAX_FILE,
        max_uncompressed: int | None = None,
    ) -> bytes | None:
        """Read a file (``/etc/passwd``) from the image's layers, without mounting anything.

        Layers are read from the content store, top first, honouring
        whiteouts, opaque directories and symlinks as the container would see
        them. Each layer is streamed: only the file asked for is held in
        memory, and a compressed layer may only expand so far (a gzip bomb
        ends in :class:`~containerd_client.errors.DecompressionBombError`
        within a bounded time and memory).

        Args:
            image: An :class:`Image`, its name, or a root descriptor.
            path: The file's path in the image.
            platform: ``Platform`` or ``"os/arch[/variant]"``; the host's by default.
            max_size: Largest file returned (16 MiB by default).
            max_uncompressed: Most bytes one compressed layer may expand to;
                by default :func:`expansion_limit` of the layer's size (100
                times it, at least 64 MiB, at most 64 GiB).

        Returns:
            The file's bytes, or ``None`` if it does not exist, was deleted by
            an upper layer, or is not a regular file.

        Raises:
            BlobTooLargeError: The file is larger than ``max_size``.
            DecompressionBombError: A layer expands past its limit or has an
                oversized tar header.
            ArchiveError: A layer is not a tar, or its compression is corrupt.
            PlatformNotFoundError: No manifest matches the platform.
            NotSupportedError: A layer is zstd-compressed and no zstd decoder is installed.
            NotFoundError: The image or one of its blobs is missing.
            RPCError: A call failed.
        """
        layers = builtins.list(reversed(self.layers(image, platform)))

        def opener(desc: Descriptor) -> Any:
            # No more than the manifest declares, even if the store holds more.
            return lambda: self._content.read(desc.digest, size=desc.size or None)

        limits = [expansion_limit(d.size) if max_uncompressed is None else max_uncompressed for d in layers]
        return find_file([opener(d) for d in layers], path, max_size=max_size, max_uncompressed=limits)

    # -- unpack --------------------------------------------------------------------

    def _lease_id(self) -> str:
        """The lease active for this client's calls in this context, or ``""``."""
        return next((value for key, value in self._client.metadata if key == _rpc.LEASE_HEADER), "")

    @contextlib.contextmanager
    def _leased(self, *, sync: bool = False, nbytes: int = 0) -> Iterator[str]:
        """Run the block in the caller's lease if one is active, else in a new one; yield its id.

        A new lease expires on the scale of the operation moving ``nbytes``
        (its steps' deadlines added up), not a day: if this process dies
        half-way, containerd collects what the attempt left soon after. If
        the daemon dies half-way, the lease's deletion is retried once it is
        back (see ``Client.lease``).
        """
        active = self._lease_id()
        if active:
            yield active
            return
        with self._client.lease(expire=self._client._operation_expiry(nbytes), sync_delete=sync) as lease:
            yield lease.id

    def unpack(
        self, image: ImageRef, *, snapshotter: str = DEFAULT_SNAPSHOTTER, platform: PlatformLike = None
    ) -> str:
        """Unpack the image's layers into committed snapshots; return the top chain id.

        Layers already unpacked (a committed snapshot named by their chain id
        exists) are skipped. Each missing one is prepared on its parent,
        filled by the daemon's diff service from the layer blob, checked
        against the config's diff id, and committed under its chain id. The
        config blob then gets the ``containerd.io/gc.ref.snapshot.<snapshotter>``
        label, which keeps the snapshots for as long as the image exists.

        Raises:
            PlatformNotFoundError: No manifest matches the platform.
            ImageFormatError: Layers and diff ids do not pair up.
            DigestMismatchError: A layer unpacked to other content than its diff id.
            NotFoundError: The image or one of its blobs is missing.
            RPCError: A call failed.
        """
        target = self._target(image)
        want = _platform(platform)
        nbytes = 0 if self._lease_id() else sum(layer.size for layer in self.layers(target, want))
        with self._leased(nbytes=nbytes):
            return self._unpack(target, snapshotter, want)

    def _unpack(self, target: Descriptor, snapshotter: str, platform: Platform | None) -> str:
        mdesc, manifest = self._resolve(target, platform)
        what = f"manifest {mdesc.digest}"
        config_desc = _config_descriptor(manifest, what)
        config = self._json(config_desc)
        layers = _descriptors(manifest, "layers", what)
        diff_ids = [str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or ()]
        if len(diff_ids) != len(layers):
            raise ImageFormatError(f"{what} has {len(layers)} layers but its config {len(diff_ids)} diff ids")
        snapshots = SnapshotStore(self._client, snapshotter)
        chain = chain_ids(diff_ids)
        top = chain[-1] if chain else ""
        done = (config_desc.digest, snapshotter, top)
        labelled = self._client._base._unpacked
        if top and done in labelled and snapshots.exists(top):
            # Unpacked and labelled earlier by this client; a committed top
            # snapshot implies its parents.
            return top
        parent = ""
        for layer, diff_id, chain_id in zip(layers, diff_ids, chain, strict=True):
            if not snapshots.exists(chain_id):
                self._apply_layer(snapshots, layer, diff_id, chain_id, parent)
                self._content.set_labels(layer.digest, {_UNCOMPRESSED_LABEL: diff_id})
            parent = chain_id
        if top:
            self._content.set_labels(config_desc.digest, {_GC_SNAPSHOT_LABEL + snapshotter: top})
            labelled.add(done)
        return top

    def _apply_layer(
        self, snapshots: SnapshotStore, layer: Descriptor, diff_id: str, chain_id: str, parent: str
    ) -> None:
        from containerd_client._pb.containerd.services.diff.v1 import diff_pb2
        from containerd_client.client import SESSION_LABEL

        # A unique key: two unpacks of the same image must not share an active snapshot.
        key = f"extract-{uuid.uuid4().hex[:16]} {chain_id}"
        committed = False
        try:
            mounts = snapshots.prepare(key, parent, labels={SESSION_LABEL: self._client.session})
        except UnavailableError:
            # The daemon may have made it before it went away.
            self._defer_remove(snapshots, key)
            raise
        try:
            req = diff_pb2.ApplyRequest(diff=layer.to_proto(), mounts=[m.to_proto() for m in mounts])
            # Applying streams the whole layer through the daemon: give big
            # layers time in proportion to their size.
            timeout = 120.0 + layer.size / float(8 << 20)
            applied = self._client.call(api.Diff.Apply, req, timeout=timeout).applied
            if applied.digest != diff_id:
                raise DigestMismatchError(
                    f"layer {layer.digest} unpacked to {applied.digest}, but the config says {diff_id}"
                )
            try:
                snapshots.commit(chain_id, key)
                committed = True
            except AlreadyExistsError:
                logger.debug("snapshot %s was committed by another unpack", chain_id)
        finally:
            if not committed:
                try:
                    snapshots.remove(key)
                except UnavailableError:
                    self._defer_remove(snapshots, key)
                except ContainerdError:
                    logger.debug("could not remove snapshot %s", key, exc_info=True)

    def _defer_remove(self, snapshots: SnapshotStore, key: str) -> None:
        """Remove the (randomly named) snapshot ``key`` once the daemon is back."""
        name = snapshots.snapshotter

        def remove(client: Client) -> None:
            with contextlib.suppress(NotFoundError):
                SnapshotStore(client, name).remove(key)

        self._client._defer(f"remove snapshot {name}/{key}", remove)

    # -- import --------------------------------------------------------------------

    def import_archive(
        self,
        src: str | os.PathLike[str] | IO[bytes],
        *,
        name: str | None = None,
        platform: PlatformLike = None,
        unpack: bool = True,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        max_uncompressed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> builtins.list[Image]:
        """Import an OCI image layout tar or a ``docker save`` tar.

        The archive is checked before anything is stored: members with
        absolute paths, ``..`` or links leaving the archive are refused.
        Blobs are streamed into the content store (never held in memory
        whole) and verified against their digests; a ``docker save`` tar is
        stored with Docker media types and a manifest built the way
        containerd builds it. Everything happens inside a lease, and images
        are only created once all content (and, with ``unpack``, all
        snapshots) is in place, so a failed import leaves nothing behind.

        Args:
            src: Path or binary file object (gzip-compressed or not; file
                objects that cannot seek are copied to a temporary file first).
            name: Name for the image when the archive holds exactly one
                (replacing its own name), or for images the archive leaves
                unnamed or names only by tag. Names, this one and the
                archive's, are stored normalised as Docker normalises them
                (``busybox`` becomes ``docker.io/library/busybox:latest``).
            platform: Platform to unpack (the host's by default).
            unpack: Unpack into snapshots, so containers can use the image at once.
            snapshotter: Snapshotter to unpack into.
            max_uncompressed: Largest size a compressed archive may expand to
                on the way into its temporary copy. By default 100 times the
                compressed size (at least 64 MiB, at most 64 GiB); for a stream
                that cannot seek, 100 times what was read so far.
            progress: Called with a :class:`~containerd_client.pull.ProgressEvent`
                (ref ``"import <archive>"``, bytes stored of the blobs' total)
                after each blob, then ``"unpacking"`` and ``"complete"``; see
                :func:`~containerd_client.pull.tqdm_progress`.

        Returns:
            The images created, in archive order.

        Raises:
            InvalidReferenceError: ``name`` is not an image reference
                (``[host/]repository[:tag][@digest]``, at most 255 characters);
                checked before the archive is opened.
            UnsafeArchiveError: A member escapes the archive; nothing was stored.
            DecompressionBombError: The archive expands past ``max_uncompressed``,
                has more than 65,536 entries or an oversized tar header;
                nothing was stored.
            ArchiveError: The archive is malformed (truncated, entries named
                twice, bad JSON) or names no image.
            DigestMismatchError: A blob does not match its digest or size.
            PlatformNotFoundError: ``unpack`` and no manifest matches the platform.
            RPCError: A call failed.
            OSError: The archive could not be read.
        """
        if name is not None:
            # The length first: the parser quotes the whole name in its messages.
            if not isinstance(name, str) or not 0 < len(name) <= 255:
                shown = repr(name[:40]) + "..." if isinstance(name, str) and name else repr(name)
                raise InvalidReferenceError(f"image name {shown} must be a string of 1 to 255 characters")
            # A short name is Docker's: "app:1" is docker.io/library/app:1.
            name = normalize_reference(name)
        want = _platform(platform)
        with ArchiveReader(src, max_uncompressed=max_uncompressed) as arc:
            if arc.has("index.json"):
                plan = _plan_oci(arc)
            elif arc.has("manifest.json"):
                plan = _plan_docker(arc)
            else:
                raise ArchiveError("not an image archive: no index.json or manifest.json")
            named = _name_entries(plan, name)
            nbytes = sum(blob.desc.size for blob in plan.blobs.values())
            label = os.path.basename(os.fspath(src)) if isinstance(src, str | os.PathLike) else "archive"
            report = _Progress(progress, f"import {label}", nbytes)
            with self._leased(sync=True, nbytes=2 * nbytes if unpack else nbytes):
                report.emit("importing")
                for blob in plan.blobs.values():
                    self._import_blob(arc, blob)
                    report.add(blob.desc.size, "importing")
                if unpack:
                    report.emit("unpacking")
                    seen: set[str] = set()
                    for _, target in named:
                        if target.digest not in seen:
                            seen.add(target.digest)
                            self._unpack(target, snapshotter, want)
                images = [
                    self.create(image_name, target, _session_label=True) for image_name, target in named
                ]
        report.emit("complete")
        logger.debug("imported %s", ", ".join(i.name for i in images))
        return images

    def _import_blob(self, arc: ArchiveReader, blob: _Blob) -> None:
        desc = blob.desc
        ref = f"import-{desc.digest}"
        if blob.data is not None:
            self._content.write(
                ref, blob.data, expected_digest=desc.digest, expected_size=desc.size, labels=blob.labels
            )
            return
        assert blob.member is not None
        with arc.open(blob.member) as f:
            self._content.write(
                ref, f, expected_digest=desc.digest, expected_size=desc.size, labels=blob.labels or None
            )

    # -- export --------------------------------------------------------------------

    def export(
        self,
        dest: str | os.PathLike[str] | IO[bytes],
        *names: str,
        platform: PlatformLike = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Write images as an OCI image layout tar.

        ``index.json`` names each image with ``io.containerd.image.name`` (the
        full name) and ``org.opencontainers.image.ref.name`` (its tag), as
        containerd does, so :meth:`import_archive` (or ``ctr images import``)
        brings back the same names and digests.

        Args:
            dest: A path (written to a temporary file, then renamed) or a
                binary file object (written as a stream).
            names: The images to export.
            platform: Only export this platform's manifests of multi-platform
                images; ``None`` exports every platform whose content is present.
            progress: Called with a :class:`~containerd_client.pull.ProgressEvent`
                (ref ``"export"``, bytes written of the blobs' total) as the
                blobs are written, then ``"complete"``; see
                :func:`~containerd_client.pull.tqdm_progress`.

        Raises:
            NotFoundError: An image, or content it needs, is missing.
            DigestMismatchError: A stored blob's size differs from its descriptor.
            RPCError: A call failed.
            OSError: ``dest`` could not be written.
        """
        if not names:
            raise ValueError("export needs at least one image name")
        want = _platform(platform)
        blobs: dict[str, Descriptor] = {}
        manifests: list[dict[str, Any]] = []
        for image_name in names:
            target = self.get(image_name).target
            self._collect(target, want, blobs, depth=0)
            entry = _go_desc(target)
            entry["annotations"] = {
                ANNOTATION_IMAGE_NAME: image_name,
                ANNOTATION_REF_NAME: ref_tag(image_name),
            }
            manifests.append(entry)
        index = _json_bytes_go(
            {"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": manifests}
        )
        report = _Progress(progress, "export", sum(d.size for d in blobs.values()))
        report.emit("exporting")
        if isinstance(dest, str | os.PathLike):
            path = os.fspath(dest)
            fd, tmp = tempfile.mkstemp(
                prefix=".export-", suffix=".tar", dir=os.path.dirname(os.path.abspath(path))
            )
            try:
                with os.fdopen(fd, "wb") as out:
                    self._write_layout(out, index, blobs, report)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        else:
            self._write_layout(dest, index, blobs, report)
        report.emit("complete")

    def _collect(
        self, desc: Descriptor, want: Platform | None, blobs: dict[str, Descriptor], *, depth: int
    ) -> None:
        if desc.digest in blobs:
            return
        if depth > _MAX_INDEX_DEPTH:
            raise ImageFormatError(f"indexes nest deeper than {_MAX_INDEX_DEPTH}")
        structured = desc.media_type in _INDEX_TYPES or desc.media_type in _MANIFEST_TYPES
        if not structured:
            if desc.urls and not self._content.exists(desc.digest):
                return  # a non-distributable layer, fetched from its URLs
            blobs[desc.digest] = desc
            return
        doc = self._json(desc)
        blobs[desc.digest] = desc
        what = f"{desc.media_type} {desc.digest}"
        if _kind_of(desc, doc) == "index":
            for child in _descriptors(doc, "manifests", what):
                if want is not None and child.platform is not None and not want.matches(child.platform):
                    continue
                if not self._content.exists(child.digest):
                    logger.debug("export: skipping %s, not in the content store", child.digest)
                    continue
                self._collect(child, want, blobs, depth=depth + 1)
        else:
            self._collect(_config_descriptor(doc, what), want, blobs, depth=depth + 1)
            for layer in _descriptors(doc, "layers", what):
                self._collect(layer, want, blobs, depth=depth + 1)

    def _write_layout(
        self, out: IO[bytes], index: bytes, blobs: Mapping[str, Descriptor], report: _Progress
    ) -> None:
        # Stream mode: the destination need not seek, and no blob is held whole.
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(tar, "index.json", index)
            algorithms = sorted({d.split(":", 1)[0] for d in blobs})
            _add_dir(tar, "blobs")
            for algorithm in algorithms:
                _add_dir(tar, f"blobs/{algorithm}")
            for desc in blobs.values():
                info = self._content.info(desc.digest)
                if info.size != desc.size:
                    raise DigestMismatchError(
                        f"blob {desc.digest} is {info.size} bytes in the store; "
                        f"its descriptor says {desc.size}"
                    )
                member = _tar_info(_blob_member(desc.digest), desc.size)
                chunks = report.counted(self._content.read(desc.digest), "exporting")
                reader = io.BufferedReader(IterReader(chunks), buffer_size=1 << 20)
                with contextlib.closing(reader):
                    tar.addfile(member, reader)


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = _IMPORT_EPOCH
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = _tar_info(name, 0)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)
