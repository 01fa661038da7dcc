"""The registry client's errors (the tree is drawn in :mod:`containerd_client._registry`)."""

from __future__ import annotations

from typing import Any

from containerd_client.errors import ContainerdError, InvalidArgumentError, UnauthenticatedError

# -- errors -----------------------------------------------------------------------


class InvalidReferenceError(InvalidArgumentError, ValueError):
    """An image reference is malformed; checked before any request."""


class RegistryError(ContainerdError):
    """The registry answered with an unexpected status, or could not be reached.

    Attributes:
        host: The registry host (``host[:port]``).
        status: The HTTP status, or None when no answer came.
        transient: Whether another attempt may succeed (connection errors, 429, 5xx).
    """

    def __init__(self, message: str, host: str = "", status: int | None = None, transient: bool = False):
        super().__init__(message)
        self.message = message
        self.host = host
        self.status = status
        self.transient = transient

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.host, self.status, self.transient))


class InvalidManifestError(RegistryError):
    """The registry sent a manifest, index or config that is malformed or unsupported.

    Bad JSON, fields of the wrong type or missing, an unknown media type, a
    malformed digest or size in a descriptor.
    """


class CredentialsError(UnauthenticatedError):
    """Credentials could not be obtained: the credentials callable raised or gave something else.

    The callable's own exception is chained (``__cause__``); its text is not
    repeated here, since it may hold a secret.
    """
