"""Registry documents: manifests, indexes and their descriptors, checked field by field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from containerd_client._registry._errors import InvalidManifestError
from containerd_client._registry._reference import _DIGEST_RE, _HASHES
from containerd_client.types import Descriptor, Platform

MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
#: What a manifest request accepts, indexes first (containerd's order).
MANIFEST_MEDIA_TYPES = (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST,
)
#: containerd refuses manifests larger than this; so do we, before reading them.
MAX_MANIFEST_BYTES = 4 << 20
CHUNK_BYTES = 1 << 20

# -- manifests and indexes -----------------------------------------------------------

_MANIFEST_TYPES = (MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST)
_INDEX_TYPES = (MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_LIST)
_MAX_SIZE = (1 << 63) - 1


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse a registry document that must be a JSON object.

    Raises:
        InvalidManifestError: It is not JSON, or not an object.
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8 too; RecursionError a document nested too deep.
        raise InvalidManifestError(f"{what} is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise InvalidManifestError(f"{what} is not a JSON object")
    return doc


def _string_map(value: object, field: str, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidManifestError(f"{what}: {field} must map strings to strings")
    return dict(value)


def parse_descriptor(value: object, what: str) -> Descriptor:
    """Check and convert one OCI descriptor of a registry document.

    Raises:
        InvalidManifestError: It is not an object, or a field is missing or of the wrong type.
    """
    if not isinstance(value, dict):
        raise InvalidManifestError(f"{what}: a descriptor is not a JSON object")
    media_type = value.get("mediaType", "")
    if not isinstance(media_type, str):
        raise InvalidManifestError(f"{what}: a descriptor's mediaType is not a string")
    digest = value.get("digest")
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidManifestError(f"{what}: a descriptor has no valid digest")
    algorithm, _, hex_part = digest.partition(":")
    if algorithm not in _HASHES or len(hex_part) != _HASHES[algorithm] or hex_part != hex_part.lower():
        raise InvalidManifestError(f"{what}: unsupported or malformed digest {digest!r}")
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= _MAX_SIZE:
        raise InvalidManifestError(f"{what}: descriptor {digest} has no valid size")
    urls = value.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise InvalidManifestError(f"{what}: descriptor {digest} has malformed urls")
    platform = value.get("platform")
    plat = None
    if platform is not None:
        fields = _string_map(platform, "platform", what) if isinstance(platform, dict) else None
        if fields is None or not fields.get("os") or not fields.get("architecture"):
            raise InvalidManifestError(f"{what}: descriptor {digest} has a malformed platform")
        plat = Platform(fields["os"], fields["architecture"], fields.get("variant", ""))
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        annotations=_string_map(value.get("annotations"), "annotations", what),
        platform=plat,
        urls=tuple(urls),
    )


def _check_document(doc: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    version = doc.get("schemaVersion", 2)
    if not isinstance(version, int) or isinstance(version, bool) or version != 2:
        raise InvalidManifestError(f"{what}: unsupported schemaVersion {version!r} (only 2 is supported)")
    media_type = doc.get("mediaType")
    if media_type is not None and media_type not in allowed:
        shown = media_type if isinstance(media_type, str) else type(media_type).__name__
        raise InvalidManifestError(f"{what}: unsupported media type {shown[:100]!r}")


def parse_manifest(data: bytes, digest: str) -> tuple[Descriptor, list[Descriptor]]:
    """The config and layer descriptors of an image manifest (OCI or Docker schema 2).

    Raises:
        InvalidManifestError: The manifest is malformed or of another kind.
    """
    what = f"manifest {digest}"
    doc = load_json_object(data, what)
    _check_document(doc, _MANIFEST_TYPES, what)
    if "config" not in doc:
        raise InvalidManifestError(f"{what} has no config")
    config = parse_descriptor(doc["config"], what)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidManifestError(f"{what}: layers is not a list")
    return config, [parse_descriptor(layer, what) for layer in layers]


def parse_index(data: bytes, digest: str) -> list[Descriptor]:
    """The manifest descriptors of an image index (OCI or Docker manifest list).

    Raises:
        InvalidManifestError: The index is malformed or of another kind.
    """
    what = f"index {digest}"
    doc = load_json_object(data, what)
    _check_document(doc, _INDEX_TYPES, what)
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidManifestError(f"{what}: manifests is not a list")
    return [parse_descriptor(m, what) for m in manifests]


def document_kind(media_type: str, data: bytes, digest: str) -> str:
    """``"index"`` or ``"manifest"``: what a fetched document is, by its media type.

    The registry's Content-Type counts when it is a known manifest type;
    otherwise the document's own ``mediaType`` (or its shape) decides.

    Raises:
        InvalidManifestError: It is of no supported kind (schema 1, an unknown type).
    """
    if media_type not in MANIFEST_MEDIA_TYPES:
        media_type = _sniff_media_type(data) or media_type
    if media_type in _INDEX_TYPES:
        return "index"
    if media_type in _MANIFEST_TYPES:
        return "manifest"
    shown = media_type[:100] or "none"
    raise InvalidManifestError(f"{digest}: unsupported manifest media type {shown!r}")


def _sniff_media_type(data: bytes) -> str | None:
    """The media type a manifest names itself, or guessed from its shape."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    media_type = doc.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    if "manifests" in doc:
        return MEDIA_TYPE_OCI_INDEX
    if "layers" in doc and "config" in doc:
        return MEDIA_TYPE_OCI_MANIFEST
    return None
