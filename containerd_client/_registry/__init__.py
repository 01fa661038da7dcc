"""A small OCI distribution (registry v2) client on the standard library (see :mod:`._client`)."""

from __future__ import annotations

from containerd_client._registry._client import *  # noqa: F403
from containerd_client._registry._client import MEDIA_TYPE_DOCKER_LIST as MEDIA_TYPE_DOCKER_LIST
from containerd_client._registry._client import MEDIA_TYPE_DOCKER_MANIFEST as MEDIA_TYPE_DOCKER_MANIFEST
from containerd_client._registry._client import MEDIA_TYPE_OCI_INDEX as MEDIA_TYPE_OCI_INDEX
from containerd_client._registry._client import MEDIA_TYPE_OCI_MANIFEST as MEDIA_TYPE_OCI_MANIFEST
from containerd_client._registry._client import BlobReader as BlobReader
from containerd_client._registry._client import __all__ as __all__
from containerd_client._registry._client import _credentials_for as _credentials_for
from containerd_client._registry._client import verify_digest as verify_digest
