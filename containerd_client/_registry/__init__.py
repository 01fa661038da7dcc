"""A small OCI distribution (registry v2) client on the standard library.

Used by :mod:`containerd_client.pull` when the client, not the daemon, talks
to the registry. It parses references, resolves a tag to the descriptor of
its manifest or index, and streams blobs while checking their digest.

References are normalised as Docker normalises them (``busybox`` is
``docker.io/library/busybox:latest``); Docker Hub's registry API is reached
at Docker's endpoint for it (:func:`registry_endpoint`). Requests go through
the proxy that ``HTTPS_PROXY``/``HTTP_PROXY`` name, except for the hosts
``NO_PROXY`` lists.

Authentication follows the registry's ``WWW-Authenticate`` challenge:
anonymous first, then HTTP basic, or a bearer token from the token endpoint
the challenge names (with the repository's ``pull`` scope). Credentials come
from an argument (a ``(user, password)`` pair or a callable taking the host)
or from Docker's config file (``~/.docker/config.json``, ``auths`` entries).
They never appear in logs, reprs or exception messages.

TLS is the default; plain HTTP is used only when asked for, or for a
registry on the loopback interface (``localhost``, ``127.0.0.1``, ``::1``)
that does not speak TLS (HTTPS is tried first, as containerd does).

Nothing a registry sends is trusted to be small or quick. A client may
have one deadline (``deadline=``, a :func:`time.monotonic` instant): every
connect, request, read of a status line, header or body, and retry backoff
ends there with :class:`~containerd_client.errors.DeadlineExceededError`.
Bodies of 401s, redirects and errors are read only when small (64 KiB);
manifests are refused over 4 MiB (containerd's limit) before they are read;
a blob may not run past its descriptor's size.

Errors::

    ContainerdError
    ├── RegistryError                 unexpected status, unreachable, an answer too large
    │   └── InvalidManifestError      malformed or unsupported manifest, index or config
    ├── InvalidArgumentError
    │   └── InvalidReferenceError     a malformed reference (never echoes user:password@)
    ├── DeadlineExceededError         the deadline passed
    ├── NotFoundError                 404
    ├── PermissionDeniedError         403
    ├── FailedPreconditionError
    │   └── DigestMismatchError       bytes do not match their digest or size
    └── UnauthenticatedError          401: credentials missing or refused
        └── CredentialsError          the credentials callable raised (chained) or gave junk

Idempotent requests are retried on connection failures, 429 and 5xx
answers under a :class:`~containerd_client.RetryPolicy`.

The client is not thread-safe: use one per thread.

Modules, one job each: :mod:`._reference` (references), :mod:`._credentials`
(credentials), :mod:`._auth` (``WWW-Authenticate``), :mod:`._http` (HTTP
connections, proxies, guarded reads), :mod:`._manifest` (registry documents),
:mod:`._blob` (digest-checked downloads), :mod:`._client` (the client).
Everything is importable from this package, as before the split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Light and needed by image names (images.py): imported now. The rest (HTTP,
# TLS, credentials, blobs) is imported on first use, so that a program that
# never talks to a registry does not pay for http.client and ssl.
from containerd_client._registry._errors import (
    CredentialsError,
    InvalidManifestError,
    InvalidReferenceError,
    RegistryError,
)
from containerd_client._registry._reference import (
    DOCKER_HUB,
    DOCKER_HUB_CONFIG_KEY,
    DOCKER_HUB_ENDPOINT,
    Reference,
    is_loopback,
    normalize_reference,
    parse_reference,
    registry_endpoint,
)
from containerd_client.errors import DigestMismatchError

if TYPE_CHECKING:
    from containerd_client._registry._auth import Challenge, parse_www_authenticate
    from containerd_client._registry._blob import CHUNK_BYTES, BlobReader, verify_digest
    from containerd_client._registry._client import RegistryClient, Resolved
    from containerd_client._registry._credentials import (
        CREDENTIAL_HELPER_TIMEOUT,
        Credentials,
        CredentialsSource,
        _credentials_for,
        check_credentials_source,
        docker_credentials,
        load_docker_config,
    )
    from containerd_client._registry._manifest import (
        MANIFEST_MEDIA_TYPES,
        MAX_MANIFEST_BYTES,
        MEDIA_TYPE_DOCKER_LIST,
        MEDIA_TYPE_DOCKER_MANIFEST,
        MEDIA_TYPE_OCI_INDEX,
        MEDIA_TYPE_OCI_MANIFEST,
        document_kind,
        load_json_object,
        parse_descriptor,
        parse_index,
        parse_manifest,
    )

_LAZY = {
    **dict.fromkeys(("Challenge", "parse_www_authenticate"), "_auth"),
    **dict.fromkeys(("CHUNK_BYTES", "BlobReader", "verify_digest"), "_blob"),
    **dict.fromkeys(("RegistryClient", "Resolved"), "_client"),
    **dict.fromkeys(
        (
            "CREDENTIAL_HELPER_TIMEOUT",
            "Credentials",
            "CredentialsSource",
            "_credentials_for",
            "check_credentials_source",
            "docker_credentials",
            "load_docker_config",
        ),
        "_credentials",
    ),
    **dict.fromkeys(
        (
            "MANIFEST_MEDIA_TYPES",
            "MAX_MANIFEST_BYTES",
            "MEDIA_TYPE_DOCKER_LIST",
            "MEDIA_TYPE_DOCKER_MANIFEST",
            "MEDIA_TYPE_OCI_INDEX",
            "MEDIA_TYPE_OCI_MANIFEST",
            "document_kind",
            "load_json_object",
            "parse_descriptor",
            "parse_index",
            "parse_manifest",
        ),
        "_manifest",
    ),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CHUNK_BYTES",
    "CREDENTIAL_HELPER_TIMEOUT",
    "DOCKER_HUB",
    "DOCKER_HUB_CONFIG_KEY",
    "DOCKER_HUB_ENDPOINT",
    "MANIFEST_MEDIA_TYPES",
    "MAX_MANIFEST_BYTES",
    "MEDIA_TYPE_DOCKER_LIST",
    "MEDIA_TYPE_DOCKER_MANIFEST",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_MANIFEST",
    "BlobReader",
    "Challenge",
    "Credentials",
    "CredentialsError",
    "CredentialsSource",
    "DigestMismatchError",
    "InvalidManifestError",
    "InvalidReferenceError",
    "Reference",
    "RegistryClient",
    "RegistryError",
    "Resolved",
    "_credentials_for",
    "check_credentials_source",
    "docker_credentials",
    "document_kind",
    "is_loopback",
    "load_docker_config",
    "load_json_object",
    "normalize_reference",
    "parse_descriptor",
    "parse_index",
    "parse_manifest",
    "parse_reference",
    "parse_www_authenticate",
    "registry_endpoint",
    "verify_digest",
]
