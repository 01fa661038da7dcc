"""Builders of hostile archives for the tests: gzip bombs, tar bombs, lying headers.

A "2 GiB" gzip bomb is built in milliseconds: deflate with a full flush
after each MiB of zeros resets the compressor, so every following MiB
compresses to the very same ~1 KiB, which is repeated; the gzip trailer's
CRC of the zeros comes from zlib's ``crc32_combine`` (re-done here in Python,
as the module lacks it). The result is a valid gzip stream (Python's and
Go's readers accept it) at about 1000:1.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from collections.abc import Iterator, Sequence

MiB = 1 << 20
GiB = 1 << 30

_GF2_DIM = 32


def _gf2_times(mat: Sequence[int], vec: int) -> int:
    out = 0
    i = 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_square(mat: Sequence[int]) -> list[int]:
    return [_gf2_times(mat, mat[n]) for n in range(_GF2_DIM)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's algorithm)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(_GF2_DIM - 1)]
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def zeros_crc32(n: int) -> int:
    """CRC-32 of ``n`` zero bytes, by doubling (no need to hash gigabytes)."""
    crc, have = 0, 0  # crc32 of b"" is 0
    unit_len = MiB
    unit = zlib.crc32(bytes(unit_len))
    count, rest = divmod(n, unit_len)
    while count:
        if count & 1:
            crc = crc32_combine(crc, unit, unit_len)
            have += unit_len
        unit = crc32_combine(unit, unit, unit_len)
        unit_len *= 2
        count >>= 1
    return crc32_combine(crc, zlib.crc32(bytes(rest)), rest)


def gzip_bomb(prefix: bytes, zeros: int, suffix: bytes = b"") -> bytes:
    """A gzip stream of ``prefix``, ``zeros`` zero bytes and ``suffix``, built without expanding it."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03", c.compress(prefix), c.flush(zlib.Z_FULL_FLUSH)]
    count, rest = divmod(zeros, MiB)
    if count:
        block = c.compress(bytes(MiB)) + c.flush(zlib.Z_FULL_FLUSH)
        parts.append(block * count)
    if rest:
        parts.append(c.compress(bytes(rest)) + c.flush(zlib.Z_FULL_FLUSH))
    parts.append(c.compress(suffix) + c.flush())
    crc = crc32_combine(
        crc32_combine(zlib.crc32(prefix), zeros_crc32(zeros), zeros), zlib.crc32(suffix), len(suffix)
    )
    parts.append(struct.pack("<II", crc, (len(prefix) + zeros + len(suffix)) & 0xFFFFFFFF))
    return b"".join(parts)


def tar_header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> bytes:
    """The header block(s) of one tar member (GNU format: any size, long names)."""
    info = tarfile.TarInfo(name)
    info.size = size if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(tarfile.GNU_FORMAT)


def tar_file(name: str, data: bytes) -> bytes:
    """Header and padded data of one regular file."""
    pad = (-len(data)) % tarfile.BLOCKSIZE
    return tar_header(name, len(data)) + data + bytes(pad)


TAR_END = bytes(2 * tarfile.BLOCKSIZE)


def tar_of(files: dict[str, bytes]) -> bytes:
    """A plain tar of regular files, in the given order."""
    return b"".join(tar_file(n, d) for n, d in files.items()) + TAR_END


def bomb_layer(
    zeros: int, *, before: dict[str, bytes] | None = None, after: dict[str, bytes] | None = None
) -> bytes:
    """A gzip layer: ``before`` files, a file ``big`` of ``zeros`` zero bytes, then ``after`` files."""
    pre = b"".join(tar_file(n, d) for n, d in (before or {}).items()) + tar_header("big", zeros)
    post = b"".join(tar_file(n, d) for n, d in (after or {}).items()) + TAR_END
    return gzip_bomb(pre, zeros, post)


def many_members_layer(count: int, *, after: dict[str, bytes] | None = None) -> bytes:
    """A gzip layer of ``count`` empty files, then ``after`` files (a tar bomb by entry count)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = io.BytesIO()
    # The same empty file over and over: cheap to build, and each is a member.
    out.write(c.compress(tar_header("f/empty") * count))
    tail = b"".join(tar_file(n, d) for n, d in (after or {}).items()) + TAR_END
    out.write(c.compress(tail))
    out.write(c.flush())
    return out.getvalue()


def chunks(data: bytes, size: int = MiB) -> Iterator[bytes]:
    """``data`` in pieces, as the content store streams a blob."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def check_bomb_builder() -> None:
    """Self-check on a small bomb: the builder's output is what it claims to be."""
    blob = gzip_bomb(b"head", 3 * MiB + 5, b"tail")
    assert gzip.decompress(blob) == b"head" + bytes(3 * MiB + 5) + b"tail"


def distinct_members_tar(count: int, *, prefix: str = "m/") -> bytes:
    """An uncompressed tar of ``count`` empty files with distinct names (a tar bomb by entry count)."""
    template = bytearray(tar_header(prefix + "0" * 12))
    out = io.BytesIO()
    for i in range(count):
        name = f"{prefix}{i:012d}".encode()
        template[: len(name)] = name
        template[148:156] = b" " * 8
        template[148:156] = b"%06o\x00 " % sum(template)
        out.write(template)
    out.write(TAR_END)
    return out.getvalue()


def pax_header_bomb(size: int, then: dict[str, bytes] | None = None) -> tuple[bytes, int, bytes]:
    """``(prefix, zeros, suffix)`` of a tar whose first member is a ``size``-byte pax header."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = size
    head = info.tobuf(tarfile.USTAR_FORMAT)
    tail = b"".join(tar_file(n, d) for n, d in (then or {}).items()) + TAR_END
    return head, size, tail
