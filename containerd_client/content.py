"""The content store: blobs addressed by digest (``containerd.services.content.v1``).

:class:`Descriptor`, :class:`Platform` and :func:`digest_bytes` live in
:mod:`containerd_client.types` and are re-exported here, where they were first.

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
import queue
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

import attrs

from containerd_client import _rpc
from containerd_client._convert import from_timestamp
from containerd_client._pb import api
from containerd_client.errors import (
    AlreadyExistsError,
    BlobTooLargeError,
    ConflictError,
    ContainerdError,
    DigestMismatchError,
    FailedPreconditionError,
    NotModifiedError,
    UnavailableError,
)
from containerd_client.types import Descriptor, Platform, digest_bytes

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
        return cls(
            msg.digest,
            int(msg.size),
            from_timestamp(msg.created_at),
            from_timestamp(msg.updated_at),
            dict(msg.labels),
        )


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
            msg.ref,
            int(msg.offset),
            int(msg.total),
            msg.expected,
            from_timestamp(msg.started_at),
            from_timestamp(msg.updated_at),
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
            api.Content.Write, iter(self._requests.get, _END)
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

        resp = self._client.call(api.Content.Info, content_pb2.InfoRequest(digest=digest), idempotent=True)
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
            api.Content.List, content_pb2.ListContentRequest(filters=list(filters))
        )
        return [ContentInfo._from_proto(info) for resp in stream for info in resp.info]

    def delete(self, digest: str) -> None:
        """Delete a blob from this namespace.

        Raises:
            NotFoundError: No such blob.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        self._client.call(api.Content.Delete, content_pb2.DeleteContentRequest(digest=digest))

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
        resp = self._client.call(api.Content.Update, req)
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
        stream = self._client._caller.stream(api.Content.Read, req)
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

        resp = self._client.call(api.Content.Status, content_pb2.StatusRequest(ref=ref), idempotent=True)
        return WriteStatus._from_proto(resp.status)

    def statuses(self, *filters: str) -> builtins.list[WriteStatus]:
        """Unfinished writes, optionally filtered (``"ref~=^import-"``).

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        resp = self._client.call(
            api.Content.ListStatuses, content_pb2.ListStatusesRequest(filters=list(filters)), idempotent=True
        )
        return [WriteStatus._from_proto(s) for s in resp.statuses]

    def abort(self, ref: str) -> None:
        """Drop an unfinished write and what it wrote.

        Raises:
            NotFoundError: No write with that ref.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.content.v1 import content_pb2

        self._client.call(api.Content.Abort, content_pb2.AbortRequest(ref=ref))

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
