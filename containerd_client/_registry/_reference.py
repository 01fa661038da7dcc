"""Image references: the one parser, Docker's normalisation of short names, loopback hosts."""

from __future__ import annotations

import ipaddress
import re

import attrs

from containerd_client._registry._errors import InvalidReferenceError

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_CONFIG_KEY",
    "DOCKER_HUB_ENDPOINT",
    "Reference",
    "is_loopback",
    "normalize_reference",
    "parse_reference",
    "registry_endpoint",
]

# -- Docker Hub: public protocol conventions, not a machine's registry -----------------
#: The registry a reference without one names, as Docker and containerd's
#: ``ParseDockerRef`` read it: ``busybox`` is ``docker.io/library/busybox:latest``.
DOCKER_HUB = "docker.io"
#: The legacy spelling of :data:`DOCKER_HUB` in references, read as ``docker.io``.
_DOCKER_HUB_LEGACY = "index.docker.io"
#: Where the registry API of :data:`DOCKER_HUB` answers: Docker sends its
#: requests for ``docker.io`` here, and so does containerd's docker resolver.
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
#: The server address under which the Docker CLI keeps Docker Hub's credentials
#: (``auths`` key, credential-helper ``get``).
DOCKER_HUB_CONFIG_KEY = f"https://{_DOCKER_HUB_LEGACY}/v1/"
#: Docker Hub's official images live under this namespace.
_DOCKER_HUB_LIBRARY = "library/"

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
_ANCHORED_ID_RE = re.compile(r"[a-f0-9]{64}")


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
    """Parse ``[host[:port]/]repo[:tag][@digest]`` and normalise it as Docker does.

    The one reference parser of the SDK: pulls, image look-ups, ``run`` and
    archive imports all go through it. The first path component is the
    registry host when it has a ``.`` or a ``:``, is ``localhost`` or has an
    upper-case letter; otherwise the reference names no host, and is on
    Docker Hub (:data:`DOCKER_HUB`), where a one-component repository is an
    official image: ``busybox`` is ``docker.io/library/busybox:latest``,
    ``user/app`` is ``docker.io/user/app:latest``. ``index.docker.io`` is read
    as ``docker.io``. Without tag or digest the tag is ``latest``; a digest is
    kept (and no tag added).

    Args:
        ref: The reference.
        default_host: Registry host for references that name none, instead
            of Docker Hub; the repository is then taken unchanged (no
            ``library/``).

    Raises:
        InvalidReferenceError: The reference is malformed (the message never
            shows what may be ``user:password@``).
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
    elif default_host:
        host, path = default_host, rest
    else:
        if _ANCHORED_ID_RE.fullmatch(ref):
            # Docker refuses these: they read as image ids.
            raise InvalidReferenceError(
                f"invalid reference {ref!r}: a 64-character hexadecimal string is an image id, not a name"
            )
        host, path = DOCKER_HUB, rest
    if not _DOMAIN_RE.fullmatch(host):
        raise InvalidReferenceError(f"invalid registry host {host!r} in reference {ref!r}")
    if not path or not _PATH_RE.fullmatch(path):
        raise InvalidReferenceError(
            f"invalid repository {path!r} in reference {ref!r} "
            "(lowercase letters, digits and separators . _ __ - between path components)"
        )
    if host == _DOCKER_HUB_LEGACY:
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = _DOCKER_HUB_LIBRARY + path
    if len(host) + 1 + len(path) > _MAX_NAME:
        raise InvalidReferenceError(f"reference {ref!r} is longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(host=host, repository=path, tag=tag, digest=digest)


def normalize_reference(name: str) -> str:
    """The full form of an image name: ``busybox`` is ``docker.io/library/busybox:latest``.

    The name containerd stores an image under after a pull or import, and the
    name :meth:`~containerd_client.images.ImageStore.get` looks up.

    Raises:
        InvalidReferenceError: ``name`` is not an image reference.
    """
    return str(parse_reference(name))


def registry_endpoint(host: str) -> str:
    """Where the registry API of ``host`` (a reference's host) answers.

    The same host, except for Docker Hub: ``docker.io`` is reached at
    :data:`DOCKER_HUB_ENDPOINT`, as Docker and containerd reach it.
    """
    return DOCKER_HUB_ENDPOINT if host in (DOCKER_HUB, _DOCKER_HUB_LEGACY) else host


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
