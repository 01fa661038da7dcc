"""The registry client: resolve a reference, fetch manifests and blobs, authenticate, retry."""

from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import json
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

import attrs

from containerd_client._registry._auth import Challenge, parse_www_authenticate
from containerd_client._registry._blob import BlobReader, verify_digest
from containerd_client._registry._credentials import Credentials, CredentialsSource, _credentials_for
from containerd_client._registry._errors import InvalidManifestError, RegistryError
from containerd_client._registry._http import (
    _SMALL_BODY,
    Proxy,
    _ConnectionFailed,
    _Deadline,
    _GuardedResponse,
    _Response,
    _transient,
    proxy_for,
)
from containerd_client._registry._manifest import MANIFEST_MEDIA_TYPES, MAX_MANIFEST_BYTES, _sniff_media_type
from containerd_client._registry._reference import Reference, _check_digest, is_loopback, registry_endpoint
from containerd_client._retry import RetryPolicy, retry_transient
from containerd_client.errors import (
    DeadlineExceededError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["RegistryClient", "Resolved"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_REDIRECTS = 5
_USER_AGENT = "containerd-client-python"


# -- the client -------------------------------------------------------------------------


@attrs.frozen
class Resolved:
    """What a tag or digest resolved to: the descriptor of a manifest or index."""

    reference: Reference
    media_type: str
    digest: str
    size: int


class RegistryClient:
    """Talks to one registry host over HTTPS (or HTTP, see ``plain_http``).

    Args:
        host: ``host[:port]`` of the registry, as references name it; requests
            for ``docker.io`` go to Docker Hub's endpoint (:func:`registry_endpoint`).
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
        #: Where requests go: ``host``, or Docker's endpoint for Docker Hub.
        self.endpoint = registry_endpoint(host)
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
        # Connections to an HTTP proxy for plain-HTTP targets (requests in absolute form).
        self._http_proxies: dict[tuple[str, str], Proxy] = {}
        # Authorization header values: basic per host, bearer per (host, scope).
        self._basic: dict[str, str] = {}
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def __repr__(self) -> str:
        scheme = self._scheme or ("http" if self.plain_http else "https")
        return f"<RegistryClient {scheme}://{self.endpoint}>"

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
        self._http_proxies = {}
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
            proxy = proxy_for(scheme, netloc)
            if proxy is not None:
                logger.debug("reaching %s://%s through the proxy %s", scheme, netloc, proxy.netloc)
            if scheme == "https" and proxy is not None:
                # A CONNECT tunnel: TLS runs end to end, checked against the registry's name.
                conn = http.client.HTTPSConnection(
                    proxy.host, proxy.port, timeout=timeout, context=self._ssl_context()
                )
                tunnel_headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {}
                conn.set_tunnel(netloc, headers=tunnel_headers)
            elif scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=timeout, context=self._ssl_context())
            elif proxy is not None:
                # Plain HTTP: requests go to the proxy in absolute form (see _send).
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
                self._http_proxies[key] = proxy
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
        self._http_proxies.pop((scheme, netloc), None)
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
            proxy = self._http_proxies.get((parts.scheme, parts.netloc))
            sent_headers = all_headers
            if proxy is not None:
                sent_headers = dict(all_headers)
                if proxy.authorization:
                    sent_headers["Proxy-Authorization"] = proxy.authorization
            reused = conn.sock is not None
            # Connect, TLS handshake and sending end at the deadline too.
            conn.timeout = self._timeout(f"{method} {parts.netloc}")
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
            try:
                conn.request(method, url if proxy is not None else target, headers=sent_headers)
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
            return self._send(method, f"{self._scheme}://{self.endpoint}{path}", headers)
        try:
            resp = self._send(method, f"https://{self.endpoint}{path}", headers)
        except _ConnectionFailed as exc:
            # Only a loopback registry may be reached in clear text without being asked,
            # and only when it clearly does not speak TLS (not on a certificate problem).
            if is_loopback(self.host) and isinstance(exc.cause, ssl.SSLError):
                logger.debug("%s does not speak TLS; using plain HTTP (loopback host)", self.host)
                self._scheme = "http"
                return self._send(method, f"http://{self.endpoint}{path}", headers)
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
            if authorization and target.netloc == self.endpoint:
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


def _retrying(
    policy: RetryPolicy, fn: Callable[[], T], deadline: _Deadline | None = None, what: str = ""
) -> T:
    """Call ``fn``; retry transient registry errors under ``policy``'s limits.

    The policy's status codes describe gRPC errors; registry errors carry
    their own ``transient`` flag, so only the attempt and backoff settings
    are taken from it. A backoff that would end past ``deadline`` is not
    slept: :class:`DeadlineExceededError` is raised instead, chained to the
    last error.
    """
    at = deadline.at if deadline is not None else None

    def before_sleep(seconds: float, error: BaseException) -> None:
        if at is not None and time.monotonic() + seconds >= at:
            raise DeadlineExceededError(f"{what}: the pull deadline passes before another attempt") from error
        logger.debug("retrying after a transient registry error: %s", error)

    def transient(error: BaseException) -> bool:
        return isinstance(error, RegistryError) and error.transient

    return retry_transient(policy, fn, transient=transient, before_sleep=before_sleep)
