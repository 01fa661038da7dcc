"""A small OCI distribution (registry v2) client on the standard library.

Used by :mod:`containerd_client.pull` when the client, not the daemon, talks
to the registry. It parses references, resolves a tag to the descriptor of
its manifest or index, and streams blobs while checking their digest.

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
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import http.client
import io
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import attrs

from containerd_client._retry import RetryPolicy

# One exception for "bytes do not match their digest", whether the daemon or
# this client noticed it.
from containerd_client.content import Descriptor, DigestMismatchError, Platform
from containerd_client.errors import (
    ContainerdError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = [
    "DEFAULT_REGISTRY_ENV",
    "MANIFEST_MEDIA_TYPES",
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
    "check_credentials_source",
    "docker_credentials",
    "document_kind",
    "is_loopback",
    "load_docker_config",
    "load_json_object",
    "parse_descriptor",
    "parse_index",
    "parse_manifest",
    "parse_reference",
    "parse_www_authenticate",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Environment variable naming the registry host for references without one.
DEFAULT_REGISTRY_ENV = "CONTAINERD_CLIENT_DEFAULT_REGISTRY"

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
_MAX_REDIRECTS = 5
_USER_AGENT = "containerd-client-python"


# -- errors -----------------------------------------------------------------------


class InvalidReferenceError(InvalidArgumentError, ValueError):
    """An image reference is malformed or not fully qualified; checked before any request."""


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


# -- references -------------------------------------------------------------------

# The grammar of distribution's reference package.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
# ASCII: Go's \w is [0-9A-Za-z_], Python's is any Unicode word character.
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_HASHES = {"sha256": 64, "sha384": 96, "sha512": 128}
_MAX_NAME = 255


@attrs.frozen
class Reference:
    """A fully qualified image reference: ``host[:port]/repository[:tag][@digest]``.

    Attributes:
        host: Registry host, with the port if any (``127.0.0.1:5000``).
        repository: Repository path (``library/busybox``).
        tag: The tag; ``"latest"`` when the reference named neither tag nor digest.
        digest: The pinned digest, if any.
    """

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``host/repository``, without tag or digest."""
        return f"{self.host}/{self.repository}"

    @property
    def object(self) -> str:
        """What the manifest URL names: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _check_digest(digest: str, what: str) -> str:
    if not _DIGEST_RE.fullmatch(digest):
        raise InvalidReferenceError(f"invalid digest {digest!r} in {what}")
    algorithm, _, hex_part = digest.partition(":")
    length = _HASHES.get(algorithm)
    if length is not None and (len(hex_part) != length or hex_part != hex_part.lower()):
        raise InvalidReferenceError(f"invalid {algorithm} digest {digest!r} in {what}")
    return digest


def parse_reference(ref: str, *, default_host: str | None = None) -> Reference:
    """Parse ``host[:port]/repo[:tag][@digest]``.

    References must name their registry: there is no built-in default
    registry. A short name such as ``busybox`` is accepted only when a default
    host is given, by ``default_host`` or by the environment variable
    ``CONTAINERD_CLIENT_DEFAULT_REGISTRY``; it is then put in front unchanged
    (no ``library/`` is added). Without tag or digest the tag is ``latest``.

    Args:
        ref: The reference.
        default_host: Registry host for references that have none.

    Raises:
        InvalidReferenceError: The reference is malformed, or has no host and
            no default host is configured.
    """
    if not isinstance(ref, str) or not ref:
        raise InvalidReferenceError("empty image reference")
    if "@" not in ref:
        return _parse_reference(ref, default_host)
    try:
        return _parse_reference(ref, default_host)
    except InvalidReferenceError:
        if _DIGEST_LIKE_RE.fullmatch(ref.partition("@")[2]):
            raise  # name@digest: nothing in it is a secret
    # "user:password@host/repo" is no reference, but the password is real: name
    # neither it nor any part of the text around it (nor chain the detailed error).
    raise InvalidReferenceError(f"invalid reference {_redacted_reference(ref)!r}")


_DIGEST_LIKE_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]*")


def _redacted_reference(ref: str) -> str:
    """``ref`` for an error message, with anything that may be user info (``user:pw@``) hidden."""
    return "***@" + ref.rpartition("@")[2]


def _parse_reference(ref: str, default_host: str | None) -> Reference:
    if "://" in ref:
        raise InvalidReferenceError(f"invalid reference {ref!r}: a reference has no scheme")
    if any(ch.isspace() for ch in ref):
        raise InvalidReferenceError(f"invalid reference {ref!r}: whitespace is not allowed")
    rest, digest = ref, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        _check_digest(digest, repr(ref))
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReferenceError(f"invalid tag {tag!r} in reference {ref!r}")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        host, path = first, remainder
    else:
        host = default_host or os.environ.get(DEFAULT_REGISTRY_ENV, "")
        path = rest
        if not host:
            raise InvalidReferenceError(
                f"reference {ref!r} does not name a registry: use host[:port]/repository[:tag], "
                f"or set {DEFAULT_REGISTRY_ENV}"
            )
    if not _DOMAIN_RE.fullmatch(host):
        raise InvalidReferenceError(f"invalid registry host {host!r} in reference {ref!r}")
    if not path or not _PATH_RE.fullmatch(path):
        raise InvalidReferenceError(
            f"invalid repository {path!r} in reference {ref!r} "
            "(lowercase letters, digits and separators . _ __ - between path components)"
        )
    if len(host) + 1 + len(path) > _MAX_NAME:
        raise InvalidReferenceError(f"reference {ref!r} is longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(host=host, repository=path, tag=tag, digest=digest)


def is_loopback(host: str) -> bool:
    """Whether ``host[:port]`` is ``localhost`` or a loopback address."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# -- credentials ------------------------------------------------------------------


@attrs.frozen
class Credentials:
    """A registry user name and password (or token); neither is shown in its repr."""

    username: str = attrs.field(repr=False)
    password: str = attrs.field(repr=False)


#: ``(user, password)``, :class:`Credentials`, or a callable taking the registry
#: host and returning either (or None for anonymous access).
CredentialsSource: TypeAlias = (
    "tuple[str, str] | Credentials | Callable[[str], tuple[str, str] | Credentials | None] | None"
)


def _as_credentials(value: object) -> Credentials | None:
    if value is None:
        return None
    if isinstance(value, Credentials):
        return value
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return Credentials(value[0], value[1])
    raise TypeError("credentials must be a (user, password) pair, Credentials or None")


def _config_key_host(key: str) -> str:
    # Docker writes keys as "host", "https://host" or "https://host/v1/".
    if "://" in key:
        key = urllib.parse.urlsplit(key).netloc
    return key.split("/", 1)[0]


def load_docker_config(path: str | None = None) -> dict[str, Credentials]:
    """Read the ``auths`` of Docker's config file.

    Args:
        path: The file; defaults to ``$DOCKER_CONFIG/config.json``, else
            ``~/.docker/config.json``.

    Returns:
        Credentials by registry host. Entries with a base64 ``auth``
        (``user:password``) or ``username``/``password`` fields are read;
        identity tokens are skipped. Credential helpers are not consulted
        here: :func:`docker_credentials` does that. A missing or
        unreadable file gives an empty mapping.
    """
    doc = _read_docker_config(path)
    out: dict[str, Credentials] = {}
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return out
    for key, entry in auths.items():
        if not isinstance(entry, dict) or not isinstance(key, str):
            continue
        host = _config_key_host(key)
        creds = None
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                # Never log the value: it is a password.
                logger.warning("Docker config %s: the auth entry for %s is not valid base64", path, host)
                continue
            user, sep, password = decoded.partition(":")
            if not sep:
                logger.warning("Docker config %s: the auth entry for %s is not user:password", path, host)
                continue
            creds = Credentials(user, password)
        elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            creds = Credentials(entry["username"], entry["password"])
        elif entry.get("identitytoken"):
            logger.debug("Docker config %s: identity token for %s is not supported", path, host)
        if creds is not None:
            out.setdefault(host, creds)
    return out


#: How long a Docker credential helper may take to answer.
CREDENTIAL_HELPER_TIMEOUT = 10.0


def docker_credentials(host: str, path: str | None = None) -> Credentials | None:
    """Credentials for ``host`` as the Docker CLI would find them.

    A credential helper named for the host in ``credHelpers`` comes first,
    then the ``credsStore`` helper, then the ``auths`` entry. A helper is the
    program ``docker-credential-<name>`` on PATH, asked with ``get`` and the
    server on its stdin (the Docker credential-helper protocol). A helper
    that is missing, fails, or knows nothing of the host gives None (logged,
    never with a secret); identity tokens are not supported.
    """
    doc = _read_docker_config(path)
    helpers = doc.get("credHelpers")
    helper = helpers.get(host) if isinstance(helpers, dict) else None
    if not isinstance(helper, str) or not helper:
        store = doc.get("credsStore")
        helper = store if isinstance(store, str) and store else None
    if helper:
        creds = _ask_credential_helper(helper, host)
        if creds is not None:
            return creds
    return load_docker_config(path).get(host)


def _read_docker_config(path: str | None) -> dict[str, Any]:
    """The Docker config document; empty when missing or unreadable (logged)."""
    if path is None:
        folder = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
        path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("cannot read Docker config %s: %s", path, type(exc).__name__)
        return {}
    return doc if isinstance(doc, dict) else {}


def _ask_credential_helper(name: str, host: str) -> Credentials | None:
    import shutil
    import subprocess

    program = f"docker-credential-{name}"
    executable = shutil.which(program)
    if executable is None:
        logger.warning("Docker credential helper %s is not on PATH", program)
        return None
    try:
        proc = subprocess.run(
            [executable, "get"],
            input=host.encode(),
            capture_output=True,
            timeout=CREDENTIAL_HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("Docker credential helper %s failed: %s", program, type(exc).__name__)
        return None
    if proc.returncode != 0:
        # "credentials not found" is the protocol's way of saying "none".
        logger.debug("Docker credential helper %s has nothing for %s", program, host)
        return None
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        logger.warning("Docker credential helper %s answered something that is not JSON", program)
        return None
    user = answer.get("Username") if isinstance(answer, dict) else None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    if not isinstance(user, str) or not isinstance(secret, str):
        return None
    if user == "<token>":
        logger.debug("Docker credential helper %s gave an identity token, which is not supported", program)
        return None
    return Credentials(user, secret)


def check_credentials_source(source: object) -> None:
    """Refuse ``auth=`` values that are neither credentials, a callable nor None.

    Raises:
        CredentialsError: It is something else (the value is not shown: it may be a secret).
    """
    if source is None or callable(source):
        return
    try:
        _as_credentials(source)
    except TypeError:
        raise CredentialsError(
            f"auth must be a (user, password) pair of strings, Credentials, a callable or None, "
            f"not {type(source).__name__}"
        ) from None


def _credentials_for(source: CredentialsSource, host: str, docker_config: str | None) -> Credentials | None:
    """The credentials for ``host``.

    Raises:
        CredentialsError: The callable raised (chained), or gave something
            that is not credentials; ``source`` is not a valid source.
    """
    if source is None:
        return docker_credentials(host, docker_config)
    if not callable(source):
        check_credentials_source(source)
        return _as_credentials(source)
    try:
        value = source(host)
    except Exception as exc:
        # The callable's message is not repeated: it may quote a secret.
        raise CredentialsError(
            f"the credentials callable failed for registry {host} ({type(exc).__name__})"
        ) from exc
    try:
        return _as_credentials(value)
    except TypeError:
        raise CredentialsError(
            f"the credentials callable for registry {host} returned {type(value).__name__}, "
            "not a (user, password) pair, Credentials or None"
        ) from None


# -- WWW-Authenticate ---------------------------------------------------------------


@attrs.frozen
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header.

    Attributes:
        scheme: Lowercase scheme (``"bearer"``, ``"basic"``).
        params: Parameters with lowercase names (``realm``, ``service``, ``scope``).
    """

    scheme: str
    params: Mapping[str, str] = attrs.field(factory=dict)


_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Split a ``WWW-Authenticate`` value into challenges (RFC 7235).

    Quoted values may hold commas and backslash escapes; several challenges
    may share one header, separated by commas.
    """
    out: list[Challenge] = []
    i, n = 0, len(header)
    scheme: str | None = None
    params: dict[str, str] = {}

    def skip(chars: str) -> None:
        nonlocal i
        while i < n and header[i] in chars:
            i += 1

    while i < n:
        skip(" \t,")
        m = _TOKEN_RE.match(header, i)
        if m is None:
            i += 1
            continue
        token = m.group(0)
        j = m.end()
        k = j
        while k < n and header[k] in " \t":
            k += 1
        if k < n and header[k] == "=" and scheme is not None:
            # A parameter of the current challenge.
            i = k + 1
            skip(" \t")
            if i < n and header[i] == '"':
                i += 1
                value = []
                while i < n and header[i] != '"':
                    if header[i] == "\\" and i + 1 < n:
                        i += 1
                    value.append(header[i])
                    i += 1
                i += 1
                params[token.lower()] = "".join(value)
            else:
                vm = _TOKEN_RE.match(header, i)
                params[token.lower()] = vm.group(0) if vm else ""
                i = vm.end() if vm else i
        else:
            if scheme is not None:
                out.append(Challenge(scheme, params))
            scheme, params = token.lower(), {}
            i = j
    if scheme is not None:
        out.append(Challenge(scheme, params))
    return out


# -- digests --------------------------------------------------------------------------


class _Verifier:
    """Hashes bytes as they arrive and checks digest and size at the end."""

    def __init__(self, digest: str, size: int | None) -> None:
        algorithm, _, expected = digest.partition(":")
        if algorithm not in _HASHES:
            raise InvalidReferenceError(f"unsupported digest algorithm in {digest!r}")
        self.digest = digest
        self.size = size
        self.expected = expected.lower()
        self.hasher = hashlib.new(algorithm)
        self.count = 0

    def update(self, chunk: bytes) -> None:
        self.count += len(chunk)
        if self.size is not None and self.count > self.size:
            raise DigestMismatchError(f"{self.digest}: more than the expected {self.size} bytes arrived")
        self.hasher.update(chunk)

    def finish(self) -> None:
        if self.size is not None and self.count != self.size:
            raise DigestMismatchError(f"{self.digest}: {self.count} bytes arrived, {self.size} expected")
        actual = self.hasher.hexdigest()
        if actual != self.expected:
            algorithm = self.digest.partition(":")[0]
            raise DigestMismatchError(
                f"content does not match its digest: expected {self.digest}, got {algorithm}:{actual}"
            )


def verify_digest(data: bytes, digest: str, size: int | None = None) -> None:
    """Check that ``data`` hashes to ``digest`` (and has ``size`` bytes, if given).

    Raises:
        DigestMismatchError: It does not.
        InvalidReferenceError: The digest's algorithm is not supported.
    """
    v = _Verifier(digest, size)
    v.update(data)
    v.finish()


# -- the client -------------------------------------------------------------------------


@attrs.frozen
class Resolved:
    """What a tag or digest resolved to: the descriptor of a manifest or index."""

    reference: Reference
    media_type: str
    digest: str
    size: int


#: Most bytes read of an answer that is not wanted (401, redirect, error).
_SMALL_BODY = 64 << 10


class _Deadline:
    """The one deadline of a pull: every connect, request and read checks it."""

    def __init__(self, at: float | None) -> None:
        self.at = at

    def remaining(self, what: str) -> float | None:
        """Seconds left (None: no deadline).

        Raises:
            DeadlineExceededError: None are left.
        """
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise DeadlineExceededError(f"{what}: the pull deadline passed")
        return left

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


class _GuardedRaw(io.RawIOBase):
    """A socket's reading side that re-arms the socket timeout to the deadline before each read.

    ``http.client`` reads status line, headers and body through this, so a
    server sending one byte a second cannot stretch any read past the
    deadline (the per-read socket timeout alone restarts with every byte).
    """

    def __init__(
        self, sock: socket.socket, guard: Callable[[socket.socket], None], on_timeout: Callable[[], None]
    ):
        super().__init__()
        # makefile() holds a reference on the socket, as http.client's own reader does.
        self._raw = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._guard = guard
        self._on_timeout = on_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._guard(self._sock)
        try:
            return self._raw.readinto(buffer)
        except TimeoutError:
            self._on_timeout()
            raise

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _GuardedResponse(http.client.HTTPResponse):
    def __init__(
        self,
        sock: socket.socket,
        *args: Any,
        guard: Callable[[socket.socket], None],
        on_timeout: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()
        self.fp = io.BufferedReader(_GuardedRaw(sock, guard, on_timeout), 1 << 16)


class _Response:
    """An open HTTP response and the connection it must be read from."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str) -> None:
        self.conn = conn
        self.resp = resp
        self.url = url

    @property
    def status(self) -> int:
        return self.resp.status

    def header(self, name: str) -> str | None:
        return self.resp.getheader(name)

    @property
    def length(self) -> int | None:
        """The announced body length; None when chunked or unknown."""
        return self.resp.length

    def read(self, limit: int) -> bytes:
        """The whole body, refused (unread) when it is announced, or turns out, larger than ``limit``."""
        announced = self.length
        if announced is not None and announced > limit:
            self.close()
            raise RegistryError(f"{self.url}: the answer ({announced} bytes) is larger than {limit} bytes")
        data = self._read(limit + 1)
        if len(data) > limit:
            self.close()
            raise RegistryError(f"{self.url}: the answer is larger than {limit} bytes")
        return data

    def read_some(self, limit: int = _SMALL_BODY) -> bytes:
        """At most ``limit`` bytes of the body; the connection is dropped when more remain."""
        data = self._read(limit)
        if not self.resp.isclosed():
            self.close()
        return data

    def discard(self) -> None:
        """Finish with an unwanted body: read a small one (to keep the connection), else drop it."""
        if self.resp.isclosed():
            return
        announced = self.length
        if announced is not None and announced <= _SMALL_BODY:
            self._read(announced)
            if self.resp.isclosed():
                return
        self.close()

    def _read(self, amount: int) -> bytes:
        try:
            return self.resp.read(amount)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise RegistryError(f"{self.url}: the answer broke off: {exc}", transient=True) from exc

    def close(self) -> None:
        # A half-read response leaves the connection unusable: drop it.
        self.resp.close()
        self.conn.close()


class BlobReader:
    """A blob being downloaded: iterate for chunks; the digest is checked at the end.

    Iteration raises :class:`DigestMismatchError` after the last chunk when
    the bytes do not match (so a consumer writing them elsewhere must treat
    the write as failed), and as soon as more bytes arrive than the
    descriptor's size; :class:`RegistryError` when the connection breaks.
    """

    def __init__(
        self, response: _Response, digest: str, size: int | None, host: str, limit: int | None = None
    ):
        self._response = response
        self._verifier = _Verifier(digest, size)
        self._host = host
        self._limit = limit
        self._done = False
        announced = response.length
        if size is not None and announced is not None and announced != size:
            response.close()
            raise DigestMismatchError(f"{digest}: the registry announces {announced} bytes, {size} expected")
        if limit is not None and announced is not None and announced > limit:
            response.close()
            raise RegistryError(f"{digest}: {announced} bytes is too large to read into memory", host)
        self.total: int | None = size if size is not None else announced

    @property
    def bytes_read(self) -> int:
        """Bytes received so far."""
        return self._verifier.count

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                try:
                    chunk = self._response.resp.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    raise RegistryError(
                        f"{self._verifier.digest}: download from {self._host} broke off after "
                        f"{self._verifier.count} bytes: {exc}",
                        self._host,
                        transient=True,
                    ) from exc
                if not chunk:
                    break
                self._verifier.update(chunk)
                if self._limit is not None and self._verifier.count > self._limit:
                    raise RegistryError(
                        f"{self._verifier.digest}: more than {self._limit} bytes is too large "
                        "to read into memory",
                        self._host,
                    )
                yield chunk
            self._verifier.finish()
            self._done = True
        finally:
            if not self._done:
                self._response.close()

    def read(self) -> bytes:
        """The whole blob, verified.

        Raises:
            DigestMismatchError: The bytes do not match the digest or size.
            RegistryError: The download broke off.
        """
        return b"".join(self)

    def close(self) -> None:
        """Stop the download (the connection is dropped unless it was read to the end)."""
        if not self._done:
            self._response.close()


class RegistryClient:
    """Talks to one registry host over HTTPS (or HTTP, see ``plain_http``).

    Args:
        host: ``host[:port]`` of the registry.
        auth: Credentials: ``(user, password)``, :class:`Credentials`, a
            callable taking the host, or None to look the host up in Docker's
            config file.
        plain_http: True for HTTP; False for HTTPS only; None (default) for
            HTTPS, falling back to HTTP for a loopback host that does not
            speak TLS.
        ca_file: A PEM file of CA certificates to trust besides the system's.
        timeout: Socket timeout in seconds for each connect and read.
        retry: How idempotent requests are retried after connection
            failures, 429 and 5xx answers.
        docker_config: Path of Docker's config file (for ``auth=None``).
        deadline: A :func:`time.monotonic` instant after which every
            operation fails with :class:`DeadlineExceededError`: connects,
            requests, each read of status line, headers and body, and retry
            backoffs all stop there. None for no overall deadline.
    """

    def __init__(
        self,
        host: str,
        *,
        auth: CredentialsSource = None,
        plain_http: bool | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        docker_config: str | None = None,
        deadline: float | None = None,
    ) -> None:
        self.host = host
        self._deadline = _Deadline(deadline)
        self._auth_source = auth
        self._docker_config = docker_config
        self._credentials: Credentials | None = None
        self._credentials_loaded = False
        self.plain_http = plain_http
        self.ca_file = ca_file
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._scheme: str | None = "http" if plain_http else ("https" if plain_http is False else None)
        self._ssl: ssl.SSLContext | None = None
        self._conns: dict[tuple[str, str], http.client.HTTPConnection] = {}
        # Authorization header values: basic per host, bearer per (host, scope).
        self._basic: dict[str, str] = {}
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def __repr__(self) -> str:
        scheme = self._scheme or ("http" if self.plain_http else "https")
        return f"<RegistryClient {scheme}://{self.host}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections. Idempotent."""
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            conn.close()

    @property
    def deadline(self) -> float | None:
        """The :func:`time.monotonic` instant every operation must finish by (None: none)."""
        return self._deadline.at

    @deadline.setter
    def deadline(self, at: float | None) -> None:
        self._deadline = _Deadline(at)

    def check_deadline(self, what: str) -> None:
        """Raise :class:`DeadlineExceededError` if the deadline has passed."""
        self._deadline.remaining(what)

    @property
    def scheme(self) -> str | None:
        """``"https"`` or ``"http"`` once known (after the first request for loopback hosts)."""
        return self._scheme

    # -- public operations -------------------------------------------------------

    def resolve(self, ref: Reference) -> Resolved:
        """Find the manifest (or index) a reference points at.

        Sends HEAD with the manifest media types; falls back to GET when the
        registry gives no ``Docker-Content-Digest`` (the digest is then
        computed). A pinned digest is checked against the bytes.

        Raises:
            NotFoundError: No such repository, tag or digest.
            UnauthenticatedError: Credentials are missing or were refused.
            PermissionDeniedError: The credentials lack pull access.
            RegistryError: Another failure (the registry's status and message kept).
        """
        self._check_host(ref)
        path = f"/v2/{ref.repository}/manifests/{ref.object}"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        resp = self._request("HEAD", path, ref.repository, headers=headers, what=str(ref))
        resp.discard()
        digest = resp.header("Docker-Content-Digest") or ""
        media_type = (resp.header("Content-Type") or "").split(";", 1)[0].strip()
        length = resp.header("Content-Length") or ""
        if ref.digest:
            digest = digest or ref.digest
        if not digest or not length.isdigit() or not media_type or (ref.digest and digest != ref.digest):
            data, media_type = self.fetch_manifest(ref)
            digest = ref.digest or "sha256:" + hashlib.sha256(data).hexdigest()
            return Resolved(ref, media_type, digest, len(data))
        return Resolved(ref, media_type, digest, int(length))

    def fetch_manifest(
        self, ref: Reference, digest: str | None = None, size: int | None = None
    ) -> tuple[bytes, str]:
        """Download a manifest or index by digest (checked) or by the reference's tag.

        Returns:
            The bytes and the media type the registry gave.

        Raises:
            DigestMismatchError: The bytes do not match ``digest`` (or the reference's).
            NotFoundError: No such manifest.
            UnauthenticatedError, PermissionDeniedError, RegistryError: As for :meth:`resolve`.
        """
        self._check_host(ref)
        target = digest or ref.object
        path = f"/v2/{ref.repository}/manifests/{target}"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        if size is not None and size > MAX_MANIFEST_BYTES:
            raise InvalidManifestError(
                f"{ref.name}@{target}: a manifest of {size} bytes is larger than "
                f"the {MAX_MANIFEST_BYTES} allowed",
                self.host,
            )
        resp = self._request("GET", path, ref.repository, headers=headers, what=f"{ref.name}@{target}")
        data = resp.read(MAX_MANIFEST_BYTES)
        media_type = (resp.header("Content-Type") or "").split(";", 1)[0].strip()
        expected = digest or ref.digest
        if expected:
            verify_digest(data, expected, size)
        if not media_type or media_type not in MANIFEST_MEDIA_TYPES:
            media_type = _sniff_media_type(data) or media_type
        return data, media_type

    def open_blob(self, repository: str, digest: str, size: int | None = None) -> BlobReader:
        """Start downloading a blob; read it by iterating the returned reader.

        Raises:
            NotFoundError: The registry has no such blob.
            UnauthenticatedError, PermissionDeniedError, RegistryError: As for :meth:`resolve`.
        """
        return self._open_blob(repository, digest, size, None)

    def _open_blob(self, repository: str, digest: str, size: int | None, limit: int | None) -> BlobReader:
        _check_digest(digest, "blob request")
        path = f"/v2/{repository}/blobs/{digest}"
        resp = self._request("GET", path, repository, what=f"{self.host}/{repository}@{digest}")
        return BlobReader(resp, digest, size, self.host, limit)

    def fetch_blob(self, repository: str, digest: str, size: int | None = None) -> bytes:
        """Download a whole blob into memory (for configs and other small blobs), verified.

        Raises:
            DigestMismatchError: The bytes do not match.
            NotFoundError, UnauthenticatedError, PermissionDeniedError, RegistryError:
                As for :meth:`open_blob`.
        """
        if size is not None and size > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{digest}: {size} bytes is too large to read into memory", self.host)
        with self._open_blob(repository, digest, size, MAX_MANIFEST_BYTES) as reader:
            return reader.read()

    # -- HTTP ------------------------------------------------------------------

    def _check_host(self, ref: Reference) -> None:
        if ref.host != self.host:
            raise ValueError(f"this client talks to {self.host}, not {ref.host}")

    def _timeout(self, what: str) -> float:
        """The socket timeout for the next step: the per-read timeout, cut to the deadline."""
        left = self._deadline.remaining(what)
        return self.timeout if left is None else min(self.timeout, left)

    def _deadline_error(self, what: str) -> DeadlineExceededError:
        return DeadlineExceededError(f"{what}: the pull deadline passed")

    def _get_credentials(self) -> Credentials | None:
        if not self._credentials_loaded:
            self._credentials = _credentials_for(self._auth_source, self.host, self._docker_config)
            self._credentials_loaded = True
        return self._credentials

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.ca_file)
        return self._ssl

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        conn = self._conns.get(key)
        if conn is None:
            timeout = self._timeout(netloc)
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=timeout, context=self._ssl_context())
            else:
                conn = http.client.HTTPConnection(netloc, timeout=timeout)
            what = f"reading from {netloc}"

            def guard(sock: socket.socket) -> None:
                sock.settimeout(self._timeout(what))

            def on_timeout() -> None:
                if self._deadline.expired():
                    raise self._deadline_error(what)

            conn.response_class = functools.partial(  # type: ignore[assignment]
                _GuardedResponse, guard=guard, on_timeout=on_timeout
            )
            self._conns[key] = conn
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._conns.pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def _send(self, method: str, url: str, headers: Mapping[str, str]) -> _Response:
        """One request on a pooled connection; connection failures become transient errors."""
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        all_headers = {"User-Agent": _USER_AGENT, **headers}
        for attempt in (0, 1):
            conn = self._connection(parts.scheme, parts.netloc)
            reused = conn.sock is not None
            # Connect, TLS handshake and sending end at the deadline too.
            conn.timeout = self._timeout(f"{method} {parts.netloc}")
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
            try:
                conn.request(method, target, headers=all_headers)
                resp = conn.getresponse()
            except ssl.SSLCertVerificationError as exc:
                self._drop(parts.scheme, parts.netloc)
                raise RegistryError(
                    f"TLS certificate of {parts.netloc} is not trusted: {exc.verify_message} "
                    "(pass ca_file= with its CA)",
                    parts.netloc,
                ) from exc
            except DeadlineExceededError:
                self._drop(parts.scheme, parts.netloc)
                raise
            except (OSError, http.client.HTTPException) as exc:
                self._drop(parts.scheme, parts.netloc)
                if self._deadline.expired():
                    raise self._deadline_error(f"{method} {parts.netloc}") from exc
                if reused and attempt == 0 and not isinstance(exc, socket.timeout):
                    # The server closed an idle keep-alive connection: try once on a fresh one.
                    continue
                raise _ConnectionFailed(parts.scheme, parts.netloc, exc) from exc
            return _Response(conn, resp, url)
        raise AssertionError("unreachable")  # pragma: no cover

    def _open(self, method: str, path: str, headers: Mapping[str, str]) -> _Response:
        """Send to the registry, settling HTTPS versus HTTP for loopback hosts on the first try."""
        if self._scheme is not None:
            return self._send(method, f"{self._scheme}://{self.host}{path}", headers)
        try:
            resp = self._send(method, f"https://{self.host}{path}", headers)
        except _ConnectionFailed as exc:
            # Only a loopback registry may be reached in clear text without being asked,
            # and only when it clearly does not speak TLS (not on a certificate problem).
            if is_loopback(self.host) and isinstance(exc.cause, ssl.SSLError):
                logger.debug("%s does not speak TLS; using plain HTTP (loopback host)", self.host)
                self._scheme = "http"
                return self._send(method, f"http://{self.host}{path}", headers)
            raise
        self._scheme = "https"
        return resp

    def _request(
        self,
        method: str,
        path: str,
        repository: str,
        *,
        headers: Mapping[str, str] | None = None,
        what: str,
    ) -> _Response:
        """Send with authentication, redirects and retries; return a 2xx response.

        Only GET and HEAD go through here: both are idempotent, so the whole
        exchange may be retried.
        """

        def attempt() -> _Response:
            try:
                return self._exchange(method, path, repository, dict(headers or {}), what)
            except _ConnectionFailed as exc:
                raise RegistryError(
                    f"cannot reach registry {exc.netloc}: {exc.cause}", exc.netloc, transient=True
                ) from exc.cause

        return _retrying(self.retry, attempt, self._deadline, what)

    def _exchange(
        self, method: str, path: str, repository: str, headers: dict[str, str], what: str
    ) -> _Response:
        scope = f"repository:{repository}:pull"
        authorization = self._authorization(scope)
        tried_auth = False
        while True:
            sent = dict(headers)
            if authorization:
                sent["Authorization"] = authorization
            resp = self._open(method, path, sent)
            if resp.status == 401 and not tried_auth:
                challenge_header = resp.header("WWW-Authenticate") or ""
                resp.discard()
                authorization = self._answer_challenge(challenge_header, scope, what)
                tried_auth = True
                continue
            break
        redirects = 0
        while resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
            location = resp.header("Location")
            resp.discard()
            if not location or redirects >= _MAX_REDIRECTS:
                raise RegistryError(f"{what}: too many or broken redirects", self.host, resp.status)
            redirects += 1
            url = urllib.parse.urljoin(resp.url, location)
            target = urllib.parse.urlsplit(url)
            sent = dict(headers)
            # Blob storage behind a redirect gets no registry credentials.
            if authorization and target.netloc == self.host:
                sent["Authorization"] = authorization
            if target.scheme == "http" and not (self.plain_http or is_loopback(target.netloc)):
                raise RegistryError(f"{what}: refusing a redirect to plain HTTP ({target.netloc})", self.host)
            resp = self._send(method, url, sent)
        if 200 <= resp.status < 300:
            return resp
        self._raise_for_status(resp, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _authorization(self, scope: str) -> str | None:
        token = self._tokens.get((self.host, scope))
        if token is not None and token[1] > time.monotonic():
            return token[0]
        return self._basic.get(self.host)

    def _answer_challenge(self, header: str, scope: str, what: str) -> str:
        challenges = parse_www_authenticate(header)
        by_scheme = {c.scheme: c for c in challenges}
        creds = self._get_credentials()
        bearer = by_scheme.get("bearer")
        if bearer is not None and bearer.params.get("realm"):
            return self._fetch_token(bearer, scope, creds, what)
        if "basic" in by_scheme:
            if creds is None:
                raise UnauthenticatedError(
                    f"registry {self.host} requires credentials for {what}; none were given"
                )
            value = "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            self._basic[self.host] = value
            return value
        raise UnauthenticatedError(
            f"registry {self.host} refused anonymous access to {what} with an unsupported challenge "
            f"({', '.join(sorted(by_scheme)) or 'none'})"
        )

    def _fetch_token(self, challenge: Challenge, scope: str, creds: Credentials | None, what: str) -> str:
        realm = challenge.params["realm"]
        realm_parts = urllib.parse.urlsplit(realm)
        if realm_parts.scheme not in ("http", "https") or not realm_parts.netloc:
            raise RegistryError(f"registry {self.host} named an invalid token realm", self.host)
        if (
            creds is not None
            and realm_parts.scheme == "http"
            and not (self.plain_http or is_loopback(realm_parts.netloc))
        ):
            raise RegistryError(
                f"registry {self.host} asks to send credentials to a plain-HTTP token service "
                f"({realm_parts.netloc}); refusing",
                self.host,
            )
        query = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query.append(("scope", challenge.params.get("scope") or scope))
        sep = "&" if realm_parts.query else "?"
        url = realm + sep + urllib.parse.urlencode(query)
        headers: dict[str, str] = {"Accept": "application/json"}
        if creds is not None:
            headers["Authorization"] = (
                "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            )
        resp = self._send("GET", url, headers)
        # A refusal's body is only looked at; a token answer is read whole, within a bound.
        body = resp.read_some(_SMALL_BODY) if resp.status != 200 else resp.read(1 << 20)
        if resp.status in (401, 403):
            if creds is None:
                raise UnauthenticatedError(
                    f"registry {self.host} requires credentials for {what}; none were given"
                )
            raise UnauthenticatedError(
                f"registry {self.host} refused the credentials given for {what} "
                f"(token service answered {resp.status})"
            )
        if resp.status != 200:
            raise RegistryError(
                f"token service of {self.host} answered {resp.status}",
                self.host,
                resp.status,
                _transient(resp.status),
            )
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            doc = {}
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token service of {self.host} sent no token", self.host)
        expires = doc.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else 60.0
        value = f"Bearer {token}"
        # Renew a little early so a long download does not start with a token about to lapse.
        self._tokens[(self.host, scope)] = (value, time.monotonic() + max(1.0, lifetime - 10.0))
        return value

    def _raise_for_status(self, resp: _Response, what: str) -> None:
        status = resp.status
        body = resp.read_some(_SMALL_BODY)
        detail = _registry_message(body)
        suffix = f": {detail}" if detail else ""
        if status == 401:
            creds = self._get_credentials()
            if creds is None:
                raise UnauthenticatedError(f"registry {self.host} requires credentials for {what}{suffix}")
            raise UnauthenticatedError(
                f"registry {self.host} refused the credentials given for {what}{suffix}"
            )
        if status == 403:
            raise PermissionDeniedError(f"registry {self.host} denied access to {what}{suffix}")
        if status == 404:
            raise NotFoundError(f"{what}: not found in registry {self.host}{suffix}")
        raise RegistryError(
            f"registry {self.host} answered {status} {resp.resp.reason} for {what}{suffix}",
            self.host,
            status,
            _transient(status),
        )


class _ConnectionFailed(Exception):
    """Internal: no HTTP answer at all (refused, reset, TLS failure)."""

    def __init__(self, scheme: str, netloc: str, cause: BaseException) -> None:
        super().__init__(f"{scheme}://{netloc}: {cause}")
        self.scheme = scheme
        self.netloc = netloc
        self.cause = cause


def _transient(status: int) -> bool:
    return status == 429 or (500 <= status < 600 and status != 501)


def _registry_message(body: bytes) -> str:
    """The message of a distribution error body (``{"errors": [{"code", "message"}]}``)."""
    try:
        doc = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return ""
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list):
        return ""
    parts = []
    for err in doc["errors"][:3]:
        if isinstance(err, dict):
            code, message = err.get("code"), err.get("message")
            parts.append(" ".join(str(p) for p in (code, message) if p))
    return "; ".join(parts)[:500]


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


def _retrying(
    policy: RetryPolicy, fn: Callable[[], T], deadline: _Deadline | None = None, what: str = ""
) -> T:
    """Call ``fn``; retry transient registry errors under ``policy``'s limits.

    The policy's status codes describe gRPC errors; registry errors carry
    their own ``transient`` flag, so only the attempt and backoff settings
    are taken from it. tenacity is imported on the first retry only. A
    backoff that would end past ``deadline`` is not slept:
    :class:`DeadlineExceededError` is raised instead, chained to the last error.
    """
    deadline = deadline or _Deadline(None)

    def check_sleep(seconds: float, error: BaseException | None) -> None:
        if deadline.at is not None and time.monotonic() + seconds >= deadline.at:
            raise DeadlineExceededError(f"{what}: the pull deadline passes before another attempt") from error

    try:
        return fn()
    except RegistryError as exc:
        if not exc.transient or policy.attempts <= 1:
            raise
        logger.debug("retrying after a transient registry error: %s", exc)
        check_sleep(policy.initial, exc)
    import tenacity as _t

    def before_sleep(state: Any) -> None:
        outcome = state.outcome
        check_sleep(
            state.next_action.sleep if state.next_action else 0.0, outcome.exception() if outcome else None
        )

    time.sleep(policy.initial)
    retrying = _t.Retrying(
        before_sleep=before_sleep,
        stop=_t.stop_after_attempt(policy.attempts - 1),
        wait=_t.wait_exponential(multiplier=policy.initial, max=policy.maximum)
        + _t.wait_random(0, policy.jitter),
        retry=_t.retry_if_exception(lambda e: isinstance(e, RegistryError) and e.transient),
        reraise=True,
    )
    return retrying(fn)
