"""zstd-compressed layers on the client: the decoder, and the message without one."""

from __future__ import annotations

import sys

import pytest

from containerd_client._archive import decompressed
from containerd_client.errors import MissingPackageError, NotSupportedError

_ZSTD_FRAME_START = b"\x28\xb5\x2f\xfd"  # the magic number; no decoder reads further without one


def _without_zstd_decoders(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import x` raise ImportError.
    monkeypatch.setitem(sys.modules, "zstandard", None)
    monkeypatch.setitem(sys.modules, "compression", None)  # Python 3.14's compression.zstd
    monkeypatch.setitem(sys.modules, "compression.zstd", None)


def test_zstd_layer_without_a_decoder_names_the_python_package(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_zstd_decoders(monkeypatch)
    with pytest.raises(NotSupportedError) as info:
        b"".join(decompressed([_ZSTD_FRAME_START + b"\x00" * 16], limit=1 << 20))
    message = str(info.value)
    # The client lacks a Python package; containerd has nothing to do with it.
    assert "containerd-client[zstd]" in message
    assert "zstandard" in message
    assert "containerd" not in message.replace("containerd-client[zstd]", "")
    assert isinstance(info.value, MissingPackageError)
    assert isinstance(info.value, ImportError)  # what `except ImportError` around an import expects
    assert (info.value.package, info.value.extra) == ("zstandard", "zstd")


def test_missing_package_error_pickles_with_its_message() -> None:
    import pickle

    err = MissingPackageError("reading a zstd-compressed layer", "zstandard", "zstd")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err)
    assert again.package == "zstandard"


def test_zstd_layer_decompresses_with_zstandard() -> None:
    zstandard = pytest.importorskip("zstandard")
    payload = b"layer bytes " * 50_000  # 600 kB, several output pieces
    frames = zstandard.ZstdCompressor().compress(payload) + zstandard.ZstdCompressor().compress(b"tail")
    chunks = [frames[i : i + 4096] for i in range(0, len(frames), 4096)]
    pieces = list(decompressed(chunks, limit=len(payload) + 4))
    assert b"".join(pieces) == payload + b"tail"
    assert all(len(p) <= 1 << 20 for p in pieces)
