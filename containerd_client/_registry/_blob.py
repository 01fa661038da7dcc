"""Blob bytes: checked against their digest and size as they arrive."""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Iterator
from typing import TYPE_CHECKING

from containerd_client._registry._errors import InvalidReferenceError, RegistryError
from containerd_client._registry._http import _Response
from containerd_client._registry._reference import _HASHES

# One exception for "bytes do not match their digest", whether the daemon or
# this client noticed it.
from containerd_client.errors import DeadlineExceededError, DigestMismatchError

if TYPE_CHECKING:
    from typing_extensions import Self

CHUNK_BYTES = 1 << 20

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
                except DeadlineExceededError:  # a TimeoutError, so an OSError: not a broken download
                    raise
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
