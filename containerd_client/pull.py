"""Pull an image from a registry into containerd, by the client or by the daemon.

Two ways lead to the same image record and unpacked snapshot:

* **client** — this process talks to the registry (:mod:`containerd_client._registry`),
  writes the manifest, config and layers into the content store with the
  garbage-collection labels containerd's own client sets, creates the image
  and unpacks it; all inside a lease, so nothing is collected half-way.
  Works with every containerd version.
* **transfer** — one ``Transfer`` call asks the daemon to fetch and unpack
  (containerd ≥ 1.7). Credentials are answered over a ``Streaming`` stream
  when the daemon asks for them; progress arrives over another.

``via="auto"`` picks transfer when the daemon offers it and can reach the
registry the way it was asked to: containerd ≥ 2.0, or 1.7 for an HTTPS
registry (1.7's transfer service speaks only HTTPS). Everything else goes the
client way.

Example::

    from containerd_client.pull import pull, tqdm_progress

    image = pull(client, "registry.example:5000/team/app:1", progress=tqdm_progress())
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import queue
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from containerd_client import _registry, _rpc
from containerd_client._ids import validate_timeout
from containerd_client._pb import api
from containerd_client._registry import (
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_OCI_INDEX,
    CredentialsSource,
    Reference,
    RegistryClient,
    parse_reference,
)
from containerd_client._retry import RetryPolicy
from containerd_client.client import DEFAULT_PULL_TIMEOUT
from containerd_client.content import ContentStore
from containerd_client.errors import (
    CancelledError,
    ContainerdError,
    NotFoundError,
    RPCError,
    UnauthenticatedError,
    UnavailableError,
    UnknownError,
)
from containerd_client.images import Image, ImageStore, PlatformNotFoundError
from containerd_client.types import Descriptor, Platform

if TYPE_CHECKING:
    from types import TracebackType

    from containerd_client.client import Client

__all__ = [
    "DEFAULT_PULL_TIMEOUT",
    "ProgressCallback",
    "ProgressEvent",
    "PullOptions",
    "PullResult",
    "TqdmProgress",
    "pull",
    "pull_detailed",
    "tqdm_progress",
]

logger = logging.getLogger(__name__)

Via = Literal["auto", "client", "transfer"]

_GC_CONTENT = "containerd.io/gc.ref.content"
_DISTRIBUTION_SOURCE = "containerd.io/distribution.source"
_INDEX_TYPES = (MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_LIST)
_TRANSFER_PLUGIN = "io.containerd.transfer.v1"
# containerd re-asks for credentials after every 401 (five times on 1.7 and
# 2.1); a pull that works asks at most once per phase (resolve, fetch).
_REFUSED_AFTER_ASKS = 3
# A Transfer refused with NOT_FOUND before any work is sent again (see
# _TransferPull.run): this many attempts, with this much more backoff each.
_TRANSFER_ATTEMPTS = 3
_TRANSFER_BACKOFF = 0.05
# How long to wait, after Transfer returned, for the daemon's last progress messages.
_PROGRESS_DRAIN_SECONDS = 2.0
_PROBE_SECONDS = 2.0
# For a pull without deadline; containerd drops the lease by itself if this
# process dies half-way (the Go client's default is the same 24 h).
_LEASE_EXPIRE = 24 * 3600.0


# -- values ----------------------------------------------------------------------------


@attrs.frozen
class ProgressEvent:
    """One step of a pull.

    Attributes:
        ref: What the event is about: the image reference, or a blob
            (``"layer-sha256:..."``, ``"config-sha256:..."``, ``"manifest-sha256:..."``).
        done_bytes: Bytes of ``ref`` transferred so far (0 when not a download).
        total_bytes: Its size, 0 when unknown.
        status: On the client path one of ``resolving``, ``resolved``,
            ``downloading``, ``exists``, ``done``, ``unpacking``, ``unpacked``,
            ``complete``. On the transfer path the daemon's own words
            (``waiting``, ``downloading``, ``complete``, ``saved``, ...).
        via: ``"client"`` or ``"transfer"``.
    """

    ref: str
    done_bytes: int = 0
    total_bytes: int = 0
    status: str = ""
    via: str = "client"


ProgressCallback = Callable[[ProgressEvent], None]


@attrs.frozen
class PullResult:
    """What :func:`pull_detailed` did.

    Attributes:
        image: The image record, as :meth:`ImageStore.get` returns it.
        via: ``"client"`` or ``"transfer"``: which path did the work.
        name: The image name (the normalized reference).
        target: Descriptor of the pulled manifest or index.
        platform: The platform that was selected and unpacked.
        chain_id: The unpacked snapshot's chain id (client path with
            ``unpack=True``; None otherwise).
    """

    image: Image
    via: str
    name: str
    target: Descriptor
    platform: Platform
    chain_id: str | None = None


@attrs.frozen(kw_only=True)
class PullOptions:
    """How to pull: every option of :func:`pull_detailed` and :meth:`Client.pull`, in one typed value.

    Build one to reuse it (``attrs.evolve(opts, platform="linux/arm64")``
    changes one field); :meth:`Client.pull` builds it from its keyword
    arguments.

    Attributes:
        platform: The platform to pull and unpack (``"linux/arm64"`` or a
            :class:`Platform`); this machine's by default.
        auth: Registry credentials: ``(user, password)``, a
            :class:`~containerd_client._registry.Credentials`, or a callable
            taking the registry host and returning either (None for anonymous).
            None reads Docker's config file (``~/.docker/config.json``).
        plain_http: True for plain HTTP; False for HTTPS only; None for HTTPS,
            except that a loopback registry (``localhost``, ``127.0.0.1``,
            ``::1``) not speaking TLS is reached over HTTP.
        ca_file: CA certificates (PEM) to trust for the registry. Used by the
            client path only: the daemon trusts its own CAs, so ``via="auto"``
            goes the client way when it is given.
        unpack: Unpack the image into ``snapshotter`` after fetching it.
        snapshotter: The snapshotter to unpack into.
        progress: Called with a :class:`ProgressEvent` at each step (from
            another thread on the transfer path). See :func:`tqdm_progress`.
        via: ``"client"``, ``"transfer"`` or ``"auto"`` (see the module docs).
        default_host: Registry host for references without one.
        labels: Labels for the image record.
        timeout: Deadline of the whole pull in seconds (None: none). On the
            client path every connect, request, read of the registry's
            answers and retry backoff stops there; on the transfer path it
            is the Transfer call's deadline. A failed pull leaves nothing
            behind (no image, blob, ingest or lease).
        retry: Retry policy for registry requests on the client path.
        docker_config: Path of Docker's config file, for ``auth=None``.
    """

    platform: Platform | str | None = None
    auth: CredentialsSource = None
    plain_http: bool | None = None
    ca_file: str | None = None
    unpack: bool = True
    snapshotter: str = "overlayfs"
    progress: ProgressCallback | None = None
    via: Via = "auto"
    default_host: str | None = None
    labels: Mapping[str, str] | None = None
    timeout: float | None = DEFAULT_PULL_TIMEOUT
    retry: RetryPolicy | None = None
    docker_config: str | None = None


# -- entry points --------------------------------------------------------------------


def pull(client: Client, ref: str, options: PullOptions | None = None) -> Image:
    """Pull ``ref`` into the client's namespace and (by default) unpack it.

    See :func:`pull_detailed` for the arguments and errors; this returns
    only the image.
    """
    return pull_detailed(client, ref, options).image


def pull_detailed(client: Client, ref: str, options: PullOptions | None = None) -> PullResult:
    """Pull ``ref`` into the client's namespace and (by default) unpack it.

    A short name is read as Docker reads it: ``busybox`` is
    ``docker.io/library/busybox:latest`` (fetched from Docker Hub's registry
    endpoint), ``user/app`` is ``docker.io/user/app:latest``; ``default_host``
    sends names without a host to another registry instead (prefixed
    unchanged). The client path goes through the proxy ``HTTPS_PROXY`` or
    ``HTTP_PROXY`` names, except for hosts in ``NO_PROXY``; the daemon (transfer
    path) uses its own environment.

    Args:
        client: The client; its namespace receives the image.
        ref: The image reference. The image is named after it, normalized
            (``host/repo`` becomes ``host/repo:latest``, ``busybox``
            ``docker.io/library/busybox:latest``).
        options: How to pull (:class:`PullOptions`); the defaults by default.

    Returns:
        The image, which path ran, and what was selected.

    Raises:
        InvalidReferenceError: ``ref`` is malformed.
        PlatformNotFoundError: The image has nothing for ``platform`` (a
            ``NotFoundError``). On the transfer path the daemon has stored the
            image by then; the record is deleted again before this is raised.
        NotFoundError: The repository or tag does not exist.
        UnauthenticatedError: Credentials are missing or were refused.
        PermissionDeniedError: The credentials lack pull access.
        DigestMismatchError: Downloaded bytes did not match their digest.
        InvalidTimeoutError: ``timeout`` is not a positive, finite number of seconds or None.
        DeadlineExceededError: The pull did not finish within ``timeout``.
        CredentialsError: ``auth`` is not a valid credentials source, or the
            callable raised (chained) or returned something else.
        InvalidManifestError: The registry sent a malformed or unsupported
            manifest, index or config (client path; a ``RegistryError``).
        RegistryError: Any other registry failure (client path).
        NotSupportedError: ``via="transfer"`` on a daemon without the
            transfer service, or a plain-HTTP registry on containerd 1.7.
        RPCError: containerd refused a step (the transfer path reports most
            registry failures this way, with the daemon's message).
    """
    opts = PullOptions() if options is None else options
    reference = parse_reference(ref, default_host=opts.default_host)
    _registry.check_credentials_source(opts.auth)
    timeout = validate_timeout(opts.timeout, what="pull timeout", positive=True)
    target_platform = _platform_of(opts.platform)
    chosen = _choose_path(client, opts.via, reference, opts.plain_http, opts.ca_file)
    logger.info("pulling %s for %s via %s", reference, target_platform, chosen)
    puller = _TransferPull if chosen == "transfer" else _ClientPull
    result = puller(client, reference, opts, platform=target_platform, timeout=timeout).run()
    logger.info("pulled %s (%s) via %s", result.name, result.target.digest, result.via)
    return result


# -- choosing the path -----------------------------------------------------------------


def _platform_of(platform: Platform | str | None) -> Platform:
    if platform is None:
        return Platform.host()
    if isinstance(platform, Platform):
        return platform
    return Platform.parse(platform)


def _probe_scheme(host: str) -> str:
    """Whether a loopback registry speaks TLS: ``"https"``, or ``"http"`` when it answers in clear.

    Only the protocol is probed (the certificate is not checked: the daemon
    has its own trust store). When the registry cannot be reached from here,
    HTTPS is assumed and the daemon left to try.
    """
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit():
        name, port = host, "443"
    name = name.strip("[]")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((name, int(port)), timeout=_PROBE_SECONDS) as sock,
            ctx.wrap_socket(sock, server_hostname=name),
        ):
            return "https"
    except ssl.SSLError:
        return "http"
    except OSError:
        return "https"


def _choose_path(
    client: Client, via: Via, ref: Reference, plain_http: bool | None, ca_file: str | None
) -> str:
    if via not in ("auto", "client", "transfer"):
        raise ValueError(f"via must be 'auto', 'client' or 'transfer', not {via!r}")
    if via == "client":
        return "client"
    features = client.features()
    if not features.has("transfer"):
        if via == "transfer":
            features.require("transfer")
        return "client"
    if features.has("transfer-pull-plain-http"):
        # The CA file is the client's: the daemon has its own trust store.
        return "client" if via == "auto" and ca_file is not None else "transfer"
    # containerd 1.7: its transfer service speaks HTTPS only.
    if plain_http is None:
        scheme = _probe_scheme(ref.host) if _registry.is_loopback(ref.host) else "https"
    else:
        scheme = "http" if plain_http else "https"
    if via == "transfer":
        if scheme == "http":
            features.require("transfer-pull-plain-http")
        return "transfer"
    return "transfer" if scheme == "https" and ca_file is None else "client"


# -- the client path --------------------------------------------------------------------


def _ref_key(kind: str, digest: str) -> str:
    # The ingest names containerd's own fetcher uses (remotes.MakeRefKey).
    return f"{kind}-{digest}"


def _kind(media_type: str) -> str:
    if media_type in _INDEX_TYPES:
        return "index"
    if "manifest" in media_type:
        return "manifest"
    if "config" in media_type:
        return "config"
    return "layer"


class _ClientPull:
    def __init__(
        self,
        client: Client,
        ref: Reference,
        options: PullOptions,
        *,
        platform: Platform,
        timeout: float | None,
    ) -> None:
        self.client = client
        self.ref = ref
        self.platform = platform
        self.unpack = options.unpack
        self.timeout = timeout
        # Ingest refs this pull wrote to, aborted if it fails.
        self.refs: list[str] = []
        self.snapshotter = options.snapshotter
        self.progress = options.progress
        self.labels = dict(options.labels or {})
        self.content = ContentStore(client)
        self.registry = RegistryClient(
            ref.host,
            auth=options.auth,
            plain_http=options.plain_http,
            ca_file=options.ca_file,
            retry=options.retry,
            docker_config=options.docker_config,
            deadline=None if timeout is None else time.monotonic() + timeout,
        )
        self.source_label = {f"{_DISTRIBUTION_SOURCE}.{ref.host}": ref.repository}

    def emit(self, ref: str, done: int, total: int, status: str) -> None:
        if self.progress is None:
            return
        try:
            self.progress(ProgressEvent(ref, done, total, status, "client"))
        except Exception:
            logger.warning("progress callback failed", exc_info=True)

    def run(self) -> PullResult:
        name = str(self.ref)
        with self.registry, self._lease():
            self.emit(name, 0, 0, "resolving")
            resolved = self.registry.resolve(self.ref)
            root = Descriptor(resolved.media_type, resolved.digest, resolved.size)
            self.emit(name, 0, 0, "resolved")
            manifest = self._fetch_root(root)
            chain_id = None
            images = ImageStore(self.client)
            if self.unpack:
                # Unpacked, and so verified against the config's diff ids, before
                # the image record exists: a failure leaves no half-pulled image.
                self.registry.check_deadline(name)
                self.emit(name, 0, 0, "unpacking")
                chain_id = images.unpack(root, snapshotter=self.snapshotter, platform=self.platform)
                self.emit(name, 0, 0, "unpacked")
            self.registry.check_deadline(name)
            # As `ctr pull`: pulling a name again points it at what the registry has now.
            image = images.create(name, root, labels=self.labels or None, _session_label=True)
            result = PullResult(
                image=image,
                via="client",
                name=name,
                target=root,
                platform=self.platform,
                chain_id=chain_id,
            )
            logger.debug("manifest %s of %s stored", manifest.digest, name)
        self.emit(name, 0, 0, "complete")
        return result

    @contextlib.contextmanager
    def _lease(self) -> Iterator[None]:
        """The pull's lease; on failure, what the pull wrote is aborted and collected before returning."""
        # A pull with a deadline keeps its lease that long plus the margin the
        # SDK gives its other operations (the unpack's calls have their own
        # deadlines), so a crash leaves nothing for longer than that.
        margin = self.client._operation_expiry()
        expire = _LEASE_EXPIRE if self.timeout is None else self.timeout + margin
        lease = self.client.leases.create(
            expire=expire, labels={"containerd-client/pull": str(self.ref)[:4000]}
        )
        token = _rpc.set_lease(self.client._connection, lease.id)
        failed = True
        try:
            yield
            failed = False
        finally:
            _rpc.reset_lease(token)
            if failed:
                self._abort_writes()
            # Synchronous collection on failure: what only this lease held
            # (blobs, snapshots) is gone when the error reaches the caller.
            # With the daemon away (it crashed mid-pull) the deletion is
            # queued until it answers again, as every SDK lease's is.
            self.client._delete_lease(lease.id, failed)

    def _abort_writes(self) -> None:
        for ref in self.refs:
            try:
                self.content.abort(ref)
            except NotFoundError:
                pass
            except UnavailableError:
                self.client._defer(f"abort write {ref}", functools.partial(_abort_write, ref=ref))
            except ContainerdError:
                logger.warning("could not abort write %s of a failed pull", ref, exc_info=True)

    def _fetch_root(self, root: Descriptor) -> Descriptor:
        """Store the index (if any), the chosen manifest and its blobs; return the manifest."""
        data, media_type = self.registry.fetch_manifest(self.ref, root.digest, root.size)
        kind = _registry.document_kind(media_type or root.media_type, data, root.digest)
        if kind == "index":
            children = _registry.parse_index(data, root.digest)
            manifest_desc = self._select(children)
            manifest_data, child_type = self.registry.fetch_manifest(
                self.ref, manifest_desc.digest, manifest_desc.size
            )
            if (
                _registry.document_kind(
                    child_type or manifest_desc.media_type, manifest_data, manifest_desc.digest
                )
                != "manifest"
            ):
                raise _registry.InvalidManifestError(
                    f"{root.digest}: nested indexes are not supported", self.ref.host
                )
            self._store_manifest(manifest_desc, manifest_data)
            gc = {f"{_GC_CONTENT}.m.{i}": child.digest for i, child in enumerate(children)}
            self._write_small("index", root, data, gc)
            return manifest_desc
        self._store_manifest(root, data)
        return root

    def _select(self, children: Sequence[Descriptor]) -> Descriptor:
        # An exact match (variant included) wins over one that only matches loosely.
        exact = [c for c in children if c.platform is not None and c.platform == self.platform]
        loose = [c for c in children if c.platform is not None and self.platform.matches(c.platform)]
        if exact or loose:
            return (exact or loose)[0]
        available = sorted({str(c.platform) for c in children if c.platform is not None})
        raise PlatformNotFoundError(
            f"{self.ref}: no manifest for platform {self.platform} "
            f"(the image has {', '.join(available) or 'no platform entries'})"
        )

    def _store_manifest(self, desc: Descriptor, data: bytes) -> None:
        # Every descriptor is checked before anything is fetched or written.
        config, layers = _registry.parse_manifest(data, desc.digest)
        config_data = self.registry.fetch_blob(self.ref.repository, config.digest, config.size)
        self._check_platform(config_data, config.digest)
        self._write_small("config", config, config_data, {})
        for layer in layers:
            self._store_layer(layer)
        gc = {f"{_GC_CONTENT}.config": config.digest}
        gc.update({f"{_GC_CONTENT}.l.{i}": layer.digest for i, layer in enumerate(layers)})
        self._write_small("manifest", desc, data, gc)

    def _check_platform(self, config_data: bytes, digest: str) -> None:
        found = _config_platform(config_data, digest)
        if found is not None and not self.platform.matches(found):
            raise PlatformNotFoundError(f"{self.ref}: the image is for {found}, not {self.platform}")

    def _write_small(self, kind: str, desc: Descriptor, data: bytes, gc: Mapping[str, str]) -> None:
        labels = {**gc, **self.source_label}
        self.registry.check_deadline(str(self.ref))
        self.refs.append(_ref_key(kind, desc.digest))
        self.content.write(
            _ref_key(kind, desc.digest),
            data,
            expected_digest=desc.digest,
            expected_size=desc.size,
            labels=labels,
        )
        self.emit(_ref_key(kind, desc.digest), desc.size, desc.size, "done")

    def _store_layer(self, layer: Descriptor) -> None:
        key = _ref_key("layer", layer.digest)
        if self.content.exists(layer.digest):
            self.content.set_labels(layer.digest, self.source_label)
            self.emit(key, layer.size, layer.size, "exists")
            return
        with self.registry.open_blob(self.ref.repository, layer.digest, layer.size) as blob:
            self.refs.append(key)
            self.content.write(
                key,
                self._counted(key, blob, layer.size),
                expected_digest=layer.digest,
                expected_size=layer.size,
                labels=self.source_label,
            )
        self.emit(key, layer.size, layer.size, "done")

    def _counted(
        self, key: str, chunks: Iterator[bytes] | _registry.BlobReader, total: int
    ) -> Iterator[bytes]:
        done = 0
        self.emit(key, 0, total, "downloading")
        for chunk in chunks:
            done += len(chunk)
            yield chunk
            self.emit(key, done, total, "downloading")


def _config_platform(config_data: bytes, digest: str) -> Platform | None:
    """The platform an image config names, None when it names none.

    Raises:
        InvalidManifestError: The config is not a JSON object.
    """
    config = _registry.load_json_object(config_data, f"config {digest}")
    os_name, arch = config.get("os"), config.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
        return None
    variant = config.get("variant")
    return Platform(os_name, arch, variant if isinstance(variant, str) else "")


# -- the transfer path ------------------------------------------------------------------


class _DaemonStream:
    """One ``Streaming.Stream`` call: send packed messages, receive them on a thread.

    Errors arrive already translated by the rpc layer (``Caller.bidi``).
    """

    def __init__(self, client: Client, purpose: str, handler: Callable[[Any], Any | None]) -> None:
        self.id = f"{purpose}-{uuid.uuid4().hex}"
        self._handler = handler
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.error: ContainerdError | None = None
        from containerd_client import _typeurl
        from containerd_client._pb.containerd.services.streaming.v1 import streaming_pb2

        self._typeurl = _typeurl
        self._outbox.put(_typeurl.pack(streaming_pb2.StreamInit(id=self.id)))
        self._call: Any = client._caller.bidi(api.Streaming.Stream, self._requests())
        try:
            # The daemon acknowledges the init once the stream is registered
            # under its id; only then may a Transfer name it.
            self._next()
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(
            target=self._receive, name=f"containerd-stream-{purpose}", daemon=True
        )
        self._thread.start()

    def _requests(self) -> Iterator[Any]:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            yield item

    def _next(self) -> Any | None:
        try:
            return next(self._call)
        except StopIteration:
            return None

    def _receive(self) -> None:
        try:
            while True:
                message = self._next()
                if message is None:
                    return
                try:
                    value = self._typeurl.unpack(message)
                except ContainerdError:
                    logger.debug("ignoring a stream message of type %s", message.type_url)
                    continue
                try:
                    reply = self._handler(value)
                except Exception:
                    logger.warning("handler of stream %s failed", self.id, exc_info=True)
                    continue
                if reply is not None:
                    self._outbox.put(self._typeurl.pack(reply))
        except CancelledError:
            if not self._closing:
                logger.debug("stream %s cancelled", self.id)
        except ContainerdError as exc:
            if not self._closing:
                self.error = exc
                logger.debug("stream %s failed: %s", self.id, exc)

    def wait_closed(self, timeout: float) -> bool:
        """Wait for the daemon to end the stream; True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Half-close, cancel and join the receiving thread. Idempotent."""
        self._closing = True
        self._outbox.put(None)
        self._call.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)


class _TransferPull:
    def __init__(
        self,
        client: Client,
        ref: Reference,
        options: PullOptions,
        *,
        platform: Platform,
        timeout: float | None,
    ) -> None:
        self.client = client
        self.ref = ref
        self.platform = platform
        self.auth = options.auth
        self.plain_http = options.plain_http
        self.unpack = options.unpack
        self.snapshotter = options.snapshotter
        self.progress = options.progress
        self.labels = dict(options.labels or {})
        #: The labels of the image record before the pull; None when there was none.
        self.existing: dict[str, str] | None = None
        self.timeout = timeout
        self.docker_config = options.docker_config
        self._lock = threading.Lock()
        # Per host: how often the daemon asked, and whether we had credentials to give.
        self.asks: dict[str, int] = {}
        self.had_credentials: dict[str, bool] = {}
        self.credentials_error: _registry.CredentialsError | None = None

    def _on_auth(self, request: Any) -> Any:
        from containerd_client._pb.containerd.types.transfer import registry_pb2

        if not isinstance(request, registry_pb2.AuthRequest):
            return None
        host = request.host or self.ref.host
        try:
            ours = (self.ref.host, _registry.registry_endpoint(self.ref.host))
            if host not in ours and self.auth is not None and not callable(self.auth):
                # A bare (user, password) is meant for the reference's registry
                # only, not for whatever host the daemon is sent on to.
                creds = None
            else:
                creds = _registry._credentials_for(self.auth, host, self.docker_config)
        except _registry.CredentialsError as exc:
            # A failing credentials callable must not leave the daemon waiting for an
            # answer; the pull reports it once the daemon gives up. Not logged with
            # the traceback: the callable's own message may quote a secret.
            logger.warning("%s; answering anonymously", exc)
            with self._lock:
                self.credentials_error = exc
            creds = None
        except Exception as exc:
            # Docker's config or a credential helper failed in a way not foreseen.
            logger.warning(
                "looking up credentials for %s failed (%s); answering anonymously", host, type(exc).__name__
            )
            creds = None
        with self._lock:
            self.asks[host] = self.asks.get(host, 0) + 1
            self.had_credentials[host] = creds is not None
        logger.debug("the daemon asks for credentials for %s (%s)", host, "given" if creds else "none")
        if creds is None:
            return registry_pb2.AuthResponse(authType=registry_pb2.NONE)
        return registry_pb2.AuthResponse(
            authType=registry_pb2.CREDENTIALS, username=creds.username, secret=creds.password
        )

    def _on_progress(self, message: Any) -> None:
        from containerd_client._pb.containerd.types.transfer import progress_pb2

        if self.progress is None or not isinstance(message, progress_pb2.Progress):
            return
        ref = message.name or str(self.ref)
        self.progress(
            ProgressEvent(ref, int(message.progress), int(message.total), message.event, "transfer")
        )

    def request(self, auth_stream: str, progress_stream: str) -> Any:
        from containerd_client import _typeurl
        from containerd_client._pb.containerd.services.transfer.v1 import transfer_pb2
        from containerd_client._pb.containerd.types import platform_pb2
        from containerd_client._pb.containerd.types.transfer import imagestore_pb2, registry_pb2

        resolver = registry_pb2.RegistryResolver(auth_stream=auth_stream)
        if self.plain_http:
            resolver.default_scheme = "http"
        source = registry_pb2.OCIRegistry(reference=str(self.ref), resolver=resolver)
        plat = platform_pb2.Platform(
            os=self.platform.os, architecture=self.platform.architecture, variant=self.platform.variant
        )
        dest = imagestore_pb2.ImageStore(name=str(self.ref), labels=self.record_labels(), platforms=[plat])
        if self.unpack:
            # containerd 1.7 "completes" an unpack without a platform but leaves no snapshot.
            dest.unpacks.append(
                imagestore_pb2.UnpackConfiguration(platform=plat, snapshotter=self.snapshotter)
            )
        return transfer_pb2.TransferRequest(
            source=_typeurl.pack(source),
            destination=_typeurl.pack(dest),
            options=transfer_pb2.TransferOptions(progress_stream=progress_stream),
        )

    def record_labels(self) -> dict[str, str]:
        """The labels the daemon gives the image record: what the client path gives it.

        containerd's image store replaces an existing record's labels with
        the request's. So a new record gets the pull's labels and this
        session's label (``Client.sweep(images=True)`` looks at it); an
        existing one keeps its own labels unless the pull names some.
        """
        if self.existing is not None:
            return self.labels or dict(self.existing)
        labels = dict(self.labels)
        if self.client._label_session:
            from containerd_client.client import SESSION_LABEL

            labels[SESSION_LABEL] = labels.get(SESSION_LABEL) or self.client.session
        return labels

    def _labels_before(self, name: str) -> dict[str, str] | None:
        try:
            return dict(ImageStore(self.client).get(name).labels)
        except NotFoundError:
            return None

    def run(self) -> PullResult:
        name = str(self.ref)
        self.existing = self._labels_before(name)
        for attempt in range(1, _TRANSFER_ATTEMPTS + 1):
            try:
                self._transfer()
                break
            except NotFoundError as exc:
                # containerd (1.7 and 2.x) now and then answers a Transfer with a
                # bare NOT_FOUND before it did anything: no credentials asked,
                # nothing stored (by the bare message, apparently its lookup of the
                # stream it had just acknowledged; seen in about 1 of 8 runs of
                # the transfer auth test, also before issue 9). Such a request is
                # safe to send again with fresh streams; a real "not found" is
                # still raised after the last attempt.
                with self._lock:
                    asked = bool(self.asks)
                if asked or attempt == _TRANSFER_ATTEMPTS:
                    raise
                logger.debug("transfer of %s answered %s before any work; trying again", name, exc)
                time.sleep(_TRANSFER_BACKOFF * attempt)
        images = ImageStore(self.client)
        image = images.get(name)
        self._check_platform(images, image)
        return PullResult(image=image, via="transfer", name=name, target=image.target, platform=self.platform)

    def _transfer(self) -> None:
        """One Transfer call with its own credentials (and progress) streams."""
        auth_stream = _DaemonStream(self.client, "auth", self._on_auth)
        try:
            progress_stream = (
                _DaemonStream(self.client, "progress", self._on_progress)
                if self.progress is not None
                else None
            )
            try:
                req = self.request(auth_stream.id, progress_stream.id if progress_stream else "")
                try:
                    self.client.call(api.Transfer.Transfer, req, timeout=self.timeout)
                except RPCError as exc:
                    if self.credentials_error is not None:
                        # Keeps its cause (what the callable raised); the daemon's error is its context.
                        raise self.credentials_error  # noqa: B904
                    auth_error = self._auth_error(exc)
                    if auth_error is not None:
                        raise auth_error from exc
                    raise
                if progress_stream is not None:
                    progress_stream.wait_closed(_PROGRESS_DRAIN_SECONDS)
            finally:
                if progress_stream is not None:
                    progress_stream.close()
        finally:
            auth_stream.close()

    def _check_platform(self, images: ImageStore, image: Image) -> None:
        """Refuse an image that has nothing for the platform, as the client path does.

        containerd stores a single-platform image whatever platform was asked
        for (2.x even unpacks it), and 2.x stores an index that has no entry
        for it; only the stored image tells.
        """
        try:
            images.manifest(image, self.platform)
        except PlatformNotFoundError:
            try:
                images.delete(image.name)
            except ContainerdError:
                logger.warning(
                    "could not delete image %s pulled for the wrong platform", image.name, exc_info=True
                )
            raise

    def _auth_error(self, exc: RPCError) -> RPCError | None:
        """Tell a registry auth failure from other transfer failures.

        containerd reports registry answers as UNKNOWN with the HTTP status in
        its text. Rather than parse that text, look at what the daemon asked
        over the credentials stream: it asks when the registry challenges it,
        and asks again after each refusal.
        """
        if not isinstance(exc, UnknownError):
            return None
        with self._lock:
            asks = dict(self.asks)
            had = dict(self.had_credentials)
        for host, count in asks.items():
            if not had.get(host):
                err = UnauthenticatedError(
                    f"registry {host} requires credentials for {self.ref}; none were given "
                    f"(containerd: {exc.message})"
                )
            elif count >= _REFUSED_AFTER_ASKS:
                err = UnauthenticatedError(
                    f"registry {host} refused the credentials given for {self.ref} "
                    f"(containerd: {exc.message})"
                )
            else:
                continue
            return err
        return None


# -- progress display -------------------------------------------------------------------


#: Statuses after which a blob (or a whole operation) is finished: its bar is
#: filled and closed, and stays on screen.
_FINISHED = frozenset({"done", "exists", "complete", "already exists", "saved", "unpacked", "extracted"})


class TqdmProgress:
    """A progress callback drawing one tqdm bar per blob (pull) or operation (import, export).

    Uses ``tqdm.auto``: widgets in a notebook (with ipywidgets), text in a
    terminal. Finished bars are filled to their total and kept on screen
    (``leave=True``; pass ``leave=False`` to erase them). Without tqdm, steps
    are logged at INFO level instead. Use as a context manager (or call
    :meth:`close`) to close the bars still open.
    """

    def __init__(self, **tqdm_kwargs: Any) -> None:
        try:
            self._tqdm: Any = importlib.import_module("tqdm.auto").tqdm
        except ImportError:
            self._tqdm = None
        self._kwargs = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, "leave": True, **tqdm_kwargs}
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if self._tqdm is None:
                if event.status not in ("downloading", "importing", "exporting"):
                    logger.info("%s: %s", event.ref, event.status)
                return
            if not event.total_bytes:
                return
            finished = event.status in _FINISHED
            bar = self._bars.get(event.ref)
            if bar is None:
                label = event.ref.split(":", 1)[-1][:12] if "sha256:" in event.ref else event.ref
                bar = self._bars[event.ref] = self._tqdm(total=event.total_bytes, desc=label, **self._kwargs)
            # A finished blob is all there even when the event says 0 bytes
            # ("exists", the daemon's "complete"): the bar shows 100%, not 0%.
            done = event.total_bytes if finished else event.done_bytes
            if done > bar.n:
                bar.update(done - bar.n)
            if finished:
                bar.close()
                del self._bars[event.ref]

    def close(self) -> None:
        """Close every bar still open. Idempotent."""
        with self._lock:
            bars, self._bars = self._bars, {}
        for bar in bars.values():
            bar.close()


def tqdm_progress(**tqdm_kwargs: Any) -> TqdmProgress:
    """A progress callback that draws tqdm bars, for :func:`pull`, ``import_archive`` and ``export``.

    tqdm is an optional extra (``pip install containerd-client[progress]``);
    without it, steps are logged at INFO level instead. Keyword arguments go
    to each ``tqdm.auto.tqdm`` bar (``leave=False`` erases finished bars).
    """
    return TqdmProgress(**tqdm_kwargs)


def _abort_write(client: Client, *, ref: str) -> None:
    """Abort an unfinished write of a failed pull (a deferred cleanup job)."""
    with contextlib.suppress(NotFoundError):
        client.content.abort(ref)
