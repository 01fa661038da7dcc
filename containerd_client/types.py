"""The OCI and containerd values every layer shares: descriptors, platforms, mounts.

:class:`Descriptor` and :class:`Platform` name blobs in image indexes and
manifests (:func:`digest_bytes` computes a blob's name); :class:`Mount` is
what snapshotters answer. They hold no client and make no RPC, so archives,
registries and the stores all build on them. ``content``, ``images`` and
``snapshots`` re-export them under their old import paths.
"""

from __future__ import annotations

import hashlib
import platform as _platform
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = [
    "Descriptor",
    "Mount",
    "Platform",
    "digest_bytes",
]


def digest_bytes(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


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
class Mount:
    """One mount to apply, as containerd describes it (``mount -t type -o options source target``)."""

    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    @classmethod
    def from_proto(cls, msg: Any) -> Mount:
        """Build from a ``containerd.types.Mount`` message."""
        return cls(msg.type, msg.source, msg.target, tuple(msg.options))

    def to_proto(self) -> Any:
        """The ``containerd.types.Mount`` message."""
        from containerd_client._pb.containerd.types import mount_pb2

        return mount_pb2.Mount(type=self.type, source=self.source, target=self.target, options=self.options)
