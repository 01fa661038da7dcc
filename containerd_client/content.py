"""The content store: blobs addressed by digest (``containerd.services.content.v1``).

Also home of the OCI value types that name blobs, :class:`Descriptor` and
:class:`Platform`, which the image and registry layers share.

Writes go through containerd's ``Content.Write`` stream: a STAT opens (and
locks) the ingest named by ``ref`` and reports how far an earlier,
interrupted write with the same ref got; the write resumes from there, and a
COMMIT asks the daemon to verify size and digest. A blob that already exists
is not sent again.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import hashlib
import io
import logging
import platform as _platform
import queue
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

import attrs

from containerd_client import _rpc
from containerd_client.errors import (
    AlreadyExistsError,
    ConflictError,
    ContainerdError,
    FailedPreconditionError,
    NotModifiedError,
    UnavailableError,
)

if TYPE_CHECKING:
    from containerd_client.client import Client

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_MAX_READ",
    "BlobTooLargeError",
    "ContentInfo",
    "ContentStore",
    "Descriptor",
    "DigestMismatchError",
    "Platform",
    "WriteStatus",
    "digest_bytes",
]

logger = logging.getLogger(__name__)

#: Size of the pieces a blob is sent and read in.
DEFAULT_CHUNK = 1 << 20
#: Largest blob :meth:`ContentStore.read_all` returns (manifests and configs are far smaller).
DEFAULT_MAX_READ = 64 << 20
# Writes sent ahead of their acknowledgements: enough to keep the socket busy,
# few enough that the chunks queued for grpc's sender stay small.
_WRITE_WINDOW = 8
# gRPC's send limit is 16 MiB; stay well under it whatever an iterable yields.
_MAX_MESSAGE_DATA = 4 << 20


class DigestMismatchError(FailedPreconditionError):
    """Data did not match the digest or size it was expected to have.

    Raised when containerd refuses to commit a write (it verifies both), and
    when the SDK itself finds a blob of the wrong size or digest.
    """


class BlobTooLargeError(ContainerdError, ValueError):
    """A blob is larger than the caller allowed it to be (see ``read_all``)."""


def digest_bytes(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ts(ts: Any) -> _dt.datetime | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=_dt.timezone.utc)  # type: ignore[no-any-return]


# -- OCI values ---------------------------------------------------------------

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "loongarch64": "loong64",
}
# Variants that name an architecture's baseline, which containerd spells as none.
_DEFAULT_VARIANTS = frozenset(
    {("arm64", "8"), ("arm64", "v8"), ("arm64", "v8.0"), ("amd64", "1"), ("amd64", "v1")}
)
_KNOWN_OS = frozenset({"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos"})


def _normalize_platform(os_name: str, arch: str, variant: str) -> tuple[str, str, str]:
    # containerd's platforms.Normalize: the spellings that mean the same machine.
    os_name = os_name.lower()
    raw_arch = arch.lower()
    arch = _ARCH_ALIASES.get(raw_arch, raw_arch)
    variant = variant.lower()
    if raw_arch == "armhf" and not variant:
        variant = "v7"
    elif raw_arch == "armel" and not variant:
        variant = "v6"
    if (arch, variant) in _DEFAULT_VARIANTS:
        variant = ""
    elif arch == "arm":
        if not variant:
            variant = "v7"
        elif variant in ("5", "6", "7", "8"):
            variant = "v" + variant
    return os_name, arch, variant


@attrs.frozen
class Platform:
    """An OS and CPU an image runs on, as in an OCI index (``linux/arm64``).

    Values are normalized on creation: ``x86_64`` becomes ``amd64``,
    ``aarch64`` becomes ``arm64`` and ``arm64/v8`` loses its variant, as in
    containerd.
    """

    os: str
    architecture: str
    variant: str = ""

    def __attrs_post_init__(self) -> None:
        os_name, arch, variant = _normalize_platform(self.os, self.architecture, self.variant)
        object.__setattr__(self, "os", os_name)
        object.__setattr__(self, "architecture", arch)
        object.__setattr__(self, "variant", variant)

    @classmethod
    def host(cls) -> Platform:
        """This machine's platform (``linux/amd64``, ``linux/arm64``, ``linux/arm/v7``...)."""
        machine = _platform.machine().lower()
        if machine.startswith("armv") and len(machine) > 4 and machine[4].isdigit():
            return cls("linux", "arm", "v" + machine[4])
        return cls("linux", machine)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]``; a lone ``arch`` (or ``os``) fills the rest from the host.

        Raises:
            ValueError: The text is empty or has more than three parts.
        """
        parts = [p.strip() for p in text.strip().split("/")]
        if not text.strip() or len(parts) > 3 or any(not p for p in parts):
            raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant]")
        if len(parts) == 1:
            host = cls.host()
            if parts[0].lower() in _KNOWN_OS:
                return cls(parts[0], host.architecture, host.variant)
            return cls("linux", parts[0])
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def from_oci(cls, value: Mapping[str, Any]) -> Platform:
        """Build from an OCI ``platform`` object (``{"os": ..., "architecture": ...}``)."""
        return cls(
            str(value.get("os", "")), str(value.get("architecture", "")), str(value.get("variant", ""))
        )

    def to_oci(self) -> dict[str, str]:
        """The OCI ``platform`` object."""
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def matches(self, other: Platform) -> bool:
        """Whether an image made for ``other`` suits this platform.

        A platform without a variant accepts any variant of its architecture.
        """
        if self.os != other.os or self.architecture != other.architecture:
            return False
        return not self.variant or self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _str_dict(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = attrs.field(factory=dict, converter=_str_dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    @classmethod
    def from_proto(cls, msg: Any) -> Descriptor:
        """Build from a ``containerd.types.Descriptor`` message."""
        return cls(msg.media_type, msg.digest, int(msg.size), dict(msg.annotations))

    def to_proto(self) -> Any:
        """The ``containerd.types.Descriptor`` message (which has no platform or urls)."""
        from containerd_client._pb.containerd.types import descriptor_pb2

        return descriptor_pb2.Descriptor(
            media_type=self.media_type, digest=self.digest, size=self.size, annotations=dict(self.annotations)
        )

    @classmethod
    def from_oci(cls, value: Mapping[str, Any]) -> Descriptor:
        """Build from an OCI descriptor object as found in manifests and indexes.

        Raises:
            ValueError: ``digest`` or ``size`` is missing or malformed.
        """
        digest = value.get("digest")
        size = value.get("size")
        if not isinstance(digest, str) or ":" not in digest:
            raise ValueError(f"descriptor has no valid digest: {value!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"descriptor has no valid size: {value!r}")
        plat = value.get("platform")
        return cls(
            media_type=str(value.get("mediaType", "")),
            digest=digest,
            size=size,
            annotations={str(k): str(v) for k, v in (value.get("annotations") or {}).items()},
            platform=Platform.from_oci(plat) if isinstance(plat, Mapping) else None,
            urls=tuple(str(u) for u in value.get("urls") or ()),
        )

    def to_oci(self) -> dict[str, Any]:
        """The OCI descriptor object, fields in the order Go's encoder writes them."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_oci()
        return out


@attrs.frozen
class ContentInfo:
    """What the content store knows about a blob."""

    digest: str
    size: int
    created_at: _dt.datetime | None
    updated_at: _dt.datetime | None
    labels: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def _from_proto(cls, msg: Any) -> ContentInfo:
        return cls(msg.digest, int(msg.size), _ts(msg.created_at), _ts(msg.updated_at), dict(msg.labels))


@attrs.frozen
class WriteStatus:
    """An unfinished write (an "ingest"): how far it got and what it expects."""

    ref: str
    offset: int
    total: int
    expected: str
    started_at: _dt.datetime | None
    updated_at: _dt.datetime | None

    @classmethod
    def _from_proto(cls, msg: Any) -> WriteStatus:
        return cls(
            msg.ref, int(msg.offset), int(msg.total), msg.expected, _ts(msg.started_at), _ts(msg.updated_at)
        )


# -- write sources --------------------------------------------------------------


_Data = bytes | bytearray | memoryview | IO[bytes] | Iterable[bytes]


class _Source:
    """Bytes, a binary file or an iterable of bytes, read forward in chunks.

    Skipping (to resume) keeps what it skips when the source cannot seek back,
    so that a resume that turns out wrong can start over from the beginning.
    """

    def __init__(self, data: _Data, chunk: int) -> None:
        self.chunk = max(1, min(chunk, _MAX_MESSAGE_DATA))
        self._bytes: memoryview | None = None
        self._file: IO[bytes] | None = None
        self._iter: Iterator[bytes] | None = None
        self._start = 0
        self._pos = 0
        self._replay: IO[bytes] | None = None
        self._skipped: IO[bytes] | None = None
        # What is left of the iterable's current piece.
        self._rest = memoryview(b"")
        if isinstance(data, bytes | bytearray | memoryview):
            self._bytes = memoryview(data).cast("B")
        elif isinstance(data, io.IOBase) or hasattr(data, "read"):
            self._file = cast("IO[bytes]", data)
            if self._seekable():
                self._start = self._file.tell()
        else:
            self._iter = iter(data)
        self._can_seek = self._bytes is not None or self._seekable()

    def _seekable(self) -> bool:
        try:
            return bool(self._file is not None and self._file.seekable())
        except (OSError, ValueError):
            return False

    def size(self) -> int | None:
        """Bytes from the start to the end, when that is cheap to know."""
        if self._bytes is not None:
            return len(self._bytes)
        if self._file is not None and self._can_seek:
            here = self._file.tell()
            end = self._file.seek(0, io.SEEK_END)
            self._file.seek(here)
            return end - self._start
        return None

    def _read_raw(self, n: int) -> bytes:
        if self._replay is not None:
            out = self._replay.read(n)
            if out:
                self._pos += len(out)
                return out
            self._replay.close()
            self._replay = None
        if self._bytes is not None:
            out = bytes(self._bytes[self._pos : self._pos + n])
        elif self._file is not None:
            out = self._file.read(n) or b""
        else:
            out = self._next_from_iter(n)
        self._pos += len(out)
        return out

    def _next_from_iter(self, n: int) -> bytes:
        assert self._iter is not None
        if not self._rest:
            for piece in self._iter:
                if piece:
                    self._rest = memoryview(piece).cast("B")
                    break
            else:
                return b""
        out = bytes(self._rest[:n])
        self._rest = self._rest[n:]
        return out

    def skip(self, n: int) -> tuple[int, str]:
        """Move forward ``n`` bytes; return how many were skipped and their digest."""
        hasher = hashlib.sha256()
        spool: IO[bytes] | None = None
        if not self._can_seek:
            spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - closed by _read_raw
        done = 0
        while done < n:
            piece = self._read_raw(min(self.chunk, n - done))
            if not piece:
                break
            hasher.update(piece)
            if spool is not None:
                spool.write(piece)
            done += len(piece)
        if spool is not None:
            spool.seek(0)
            self._skipped = spool
        return done, "sha256:" + hasher.hexdigest()

    def rewind(self) -> None:
        """Go back to where the source started."""
        if self._file is not None and self._can_seek:
            self._file.seek(self._start)
        elif self._skipped is not None:
            self._replay, self._skipped = self._skipped, None
        self._pos = 0

    def chunks(self) -> Iterator[bytes]:
        while True:
            piece = self._read_raw(self.chunk)
            if not piece:
                return
            yield piece

    def close(self) -> None:
        for spool in (self._replay, self._skipped):
            if spool is not None:
                spool.close()


_END = object()


class _WriteSession:
    """One ``Content.Write`` stream, driven in lock-step with a bounded window."""

    def __init__(self, client: Client) -> None:
        self._requests: queue.Queue[Any] = queue.Queue()
        # No deadline: a big blob takes as long as it takes, and every step
        # waits on the daemon answering it.
        self._responses: _rpc.Stream[Any] = client._caller.bidi(
            "content", "Write", iter(self._requests.get, _END)
        )
        self._pending = 0
        self._ended = False
        self._released = False

    def send(self, request: Any) -> None:
        self._requests.put(request)
        self._pending += 1

    def receive(self) -> Any:
        self._pending -= 1
        try:
            return next(self._responses)
        except BaseException:
            self._ended = True
            raise

    def exchange(self, request: Any) -> Any:
        """Send ``request`` and return its answer, after every earlier one."""
        self.send(request)
        resp = None
        while self._pending:
            resp = self.receive()
        return resp

    def throttle(self) -> None:
        while self._pending > _WRITE_WINDOW:
            self.receive()

    def finish(self) -> None:
        """Half-close and wait for the daemon to end the stream.

        What was sent is written before the daemon sees the end, so an
        interrupted write keeps its bytes for a later resume.
        """
        self.release()
        if self._ended:
            return
        self._ended = True
        for _ in self._responses:
            pass

    def cancel(self) -> None:
        self.release()
        if not self._ended:
            self._ended = True
            self._responses.cancel()

    def release(self) -> None:
        """End the request stream, which frees grpc's thread that consumes it."""
        if not self._released:
            self._released = True
            self._requests.put(_END)


# -- the store ---------------------------------------------------------------


class ContentStore:
    """Read, write, label and delete blobs in the client's namespace.

    Args:
        client: The client whose namespace (and active lease) calls use.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<ContentStore namespace={self._client.namespace_name!r}>"

    def info(self, digest: str) -> ContentInfo:
        """What the store knows about one blob.

        Raises:
            NotFoundError: No such blob in this namespace.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        resp = self._client.call("content", "Info", content_pb2.InfoRequest(digest=digest), idempotent=True)
        return ContentInfo._from_proto(resp.info)

    def exists(self, digest: str) -> bool:
        """Whether the blob is in this namespace.

        Raises:
            RPCError: The call failed for another reason than NOT_FOUND.
        """
        from containerd_client.errors import NotFoundError

        try:
            self.info(digest)
        except NotFoundError:
            return False
        return True

    def list(self, *filters: str) -> builtins.list[ContentInfo]:
        """All blobs, optionally filtered (``"labels.\\"containerd.io/uncompressed\\""``).

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        self._client._check_open()
        stream = self._client._caller.stream(
            "content", "List", content_pb2.ListContentRequest(filters=list(filters))
        )
        return [ContentInfo._from_proto(info) for resp in stream for info in resp.info]

    def delete(self, digest: str) -> None:
        """Delete a blob from this namespace.

        Raises:
            NotFoundError: No such blob.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        self._client.call("content", "Delete", content_pb2.DeleteContentRequest(digest=digest))

    def set_labels(self, digest: str, labels: Mapping[str, str]) -> dict[str, str]:
        """Set labels on a blob (an empty value removes one; others stay); return all its labels.

        Raises:
            InvalidArgumentError: A key is empty, or a key or value is not a string.
            NotFoundError: No such blob.
            RPCError: The call failed.
        """
        return dict(self._set_labels(digest, labels).labels)

    def _set_labels(self, digest: str, labels: Mapping[str, str]) -> ContentInfo:
        from containerd_client._convert import label_update
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        if not labels:
            return self.info(digest)
        values, mask = label_update(labels)
        req = content_pb2.UpdateRequest(info=content_pb2.Info(digest=digest, labels=values), update_mask=mask)
        resp = self._client.call("content", "Update", req)
        return ContentInfo._from_proto(resp.info)

    def read(
        self, digest: str, *, offset: int = 0, size: int | None = None, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[bytes]:
        """Stream a blob (or ``size`` bytes of it from ``offset``) in pieces of at most ``chunk`` bytes.

        The call starts when iteration does; closing the iterator early
        cancels it.

        Raises:
            NotFoundError: No such blob (raised by the first ``next()``).
            RPCError: The stream failed.
        """
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        self._client._check_open()
        req = content_pb2.ReadContentRequest(digest=digest, offset=offset, size=size or 0)
        if size == 0:
            return iter(())
        return self._read(req, max(1, chunk))

    def _read(self, req: Any, chunk: int) -> Iterator[bytes]:
        stream = self._client._caller.stream("content", "Read", req)
        try:
            for resp in stream:
                data = resp.data
                if len(data) <= chunk:
                    yield data
                else:
                    for start in range(0, len(data), chunk):
                        yield data[start : start + chunk]
        finally:
            stream.cancel()

    def read_all(self, digest: str, *, max_size: int = DEFAULT_MAX_READ) -> bytes:
        """A whole blob in memory; meant for manifests, indexes and configs.

        Raises:
            BlobTooLargeError: The blob is larger than ``max_size``.
            NotFoundError: No such blob.
            RPCError: The call failed.
        """
        parts: builtins.list[bytes] = []
        total = 0
        reader = self.read(digest)
        try:
            for piece in reader:
                total += len(piece)
                if total > max_size:
                    raise BlobTooLargeError(f"blob {digest} is larger than {max_size} bytes")
                parts.append(piece)
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
        return b"".join(parts)

    def status(self, ref: str) -> WriteStatus:
        """The state of one unfinished write.

        Raises:
            NotFoundError: No write with that ref.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        resp = self._client.call("content", "Status", content_pb2.StatusRequest(ref=ref), idempotent=True)
        return WriteStatus._from_proto(resp.status)

    def statuses(self, *filters: str) -> builtins.list[WriteStatus]:
        """Unfinished writes, optionally filtered (``"ref~=^import-"``).

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        resp = self._client.call(
            "content", "ListStatuses", content_pb2.ListStatusesRequest(filters=list(filters)), idempotent=True
        )
        return [WriteStatus._from_proto(s) for s in resp.statuses]

    def abort(self, ref: str) -> None:
        """Drop an unfinished write and what it wrote.

        Raises:
            NotFoundError: No write with that ref.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        self._client.call("content", "Abort", content_pb2.AbortRequest(ref=ref))

    def write(
        self,
        ref: str,
        data: bytes | bytearray | memoryview | BinaryIO | IO[bytes] | Iterable[bytes],
        *,
        expected_digest: str,
        expected_size: int | None = None,
        labels: Mapping[str, str] | None = None,
        chunk: int = DEFAULT_CHUNK,
    ) -> ContentInfo:
        """Store a blob, resuming an interrupted write with the same ``ref``.

        ``ref`` names the write while it is in progress. If an earlier write
        with this ref stopped half-way, this one continues from where it got
        (after checking that the part already written matches ``data``). If
        another writer holds the ref right now, this write takes a ref of its
        own (``ref`` plus a random suffix), so concurrent writers never mix
        their bytes.

        Files are read from their current position; iterables may yield
        pieces of any size. Nothing is held in memory beyond a few chunks.

        Args:
            ref: Name of the write, e.g. ``"layer-sha256:..."``.
            data: The blob.
            expected_digest: Its digest; the daemon refuses to commit other data.
            expected_size: Its size, checked too; found from ``data`` if cheap.
            labels: Labels for the blob (set on the existing blob if it is
                already there).
            chunk: Size of the pieces sent.

        Returns:
            The stored blob's info; if the blob existed already, its info
            without anything being sent.

        Raises:
            DigestMismatchError: The data's size or digest differs from the
                expected ones; nothing is stored and the write is dropped.
            RPCError: The daemon refused the write or the stream broke; a
                later write with the same ref resumes it.
        """
        self._client._check_open()
        source = _Source(data, chunk)
        if expected_size is None:
            expected_size = source.size()
        try:
            return self._write(ref, source, expected_digest, expected_size, labels, retry_busy=True)
        finally:
            source.close()

    def _write(
        self,
        ref: str,
        source: _Source,
        expected: str,
        total: int | None,
        labels: Mapping[str, str] | None,
        *,
        retry_busy: bool,
    ) -> ContentInfo:
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        session = _WriteSession(self._client)
        try:
            try:
                stat = session.exchange(
                    content_pb2.WriteContentRequest(
                        action=content_pb2.STAT, ref=ref, total=total or 0, expected=expected
                    )
                )
            except AlreadyExistsError:
                return self._existing(expected, labels)
            except UnavailableError:
                if not retry_busy:
                    raise
                # containerd answers UNAVAILABLE when another writer holds the
                # ref; a daemon that is really gone fails the second try too.
                alt = f"{ref}-{uuid.uuid4().hex[:12]}"
                logger.debug("content ref %s is busy; writing as %s", ref, alt)
                return self._write(alt, source, expected, total, labels, retry_busy=False)
            offset, more = self._resume(ref, source, stat, expected, total)
            if more:
                for piece in source.chunks():
                    session.send(
                        content_pb2.WriteContentRequest(action=content_pb2.WRITE, offset=offset, data=piece)
                    )
                    offset += len(piece)
                    session.throttle()
            try:
                session.exchange(
                    content_pb2.WriteContentRequest(
                        action=content_pb2.COMMIT,
                        offset=offset,
                        total=total or 0,
                        expected=expected,
                        labels=dict(labels or {}),
                    )
                )
            except AlreadyExistsError:
                return self._existing(expected, labels)
            except (ConflictError, NotModifiedError):
                raise
            except FailedPreconditionError as exc:
                # Verification is the only precondition of a commit.
                self._abort_quietly(ref)
                raise DigestMismatchError(exc.message, exc.code) from exc
            session.finish()
        except Exception:
            # The data source failed (or the stream did): keep what was sent,
            # so a later write with this ref resumes after it.
            try:
                session.finish()
            except ContainerdError:
                logger.debug("write %s ended with an error", ref, exc_info=True)
            raise
        except BaseException:
            session.cancel()
            raise
        finally:
            session.release()
        return self.info(expected)

    @staticmethod
    def _resume(ref: str, source: _Source, stat: Any, expected: str, total: int | None) -> tuple[int, bool]:
        """Skip what an earlier write stored: the offset to write from, and whether to send more."""
        offset = int(stat.offset)
        if not offset:
            return 0, True
        if total and offset == total and stat.digest == expected:
            # The daemon holds the whole blob already (shared from another
            # namespace, or a write that stopped just before its commit).
            return offset, False
        skipped, prefix_digest = source.skip(offset)
        if skipped == offset and prefix_digest == stat.digest:
            logger.debug("resuming write %s at %d", ref, offset)
            return offset, True
        # The ingest holds other bytes than ours: writing at offset 0 makes
        # containerd truncate it.
        logger.debug("write %s holds other data; starting over", ref)
        source.rewind()
        return 0, True

    def _existing(self, digest: str, labels: Mapping[str, str] | None) -> ContentInfo:
        return self._set_labels(digest, labels or {})

    def _abort_quietly(self, ref: str) -> None:
        try:
            self.abort(ref)
        except ContainerdError:
            logger.debug("could not abort write %s", ref, exc_info=True)
