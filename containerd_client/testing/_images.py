"""Build OCI and Docker image archives on the spot, with no registry or network.

Tests need images whose every byte they know: a busybox-static root file
system, or a few hand-written layers that exercise whiteouts, symlinks and
file modes. :func:`build_image_archive` writes such an image as a tar that
``ctr images import`` (or the SDK's import) accepts, in one of two formats:

* ``"oci"``: an OCI image layout (``oci-layout``, ``index.json``,
  ``blobs/sha256/...``); ``index.json`` names the image with the
  ``io.containerd.image.name`` annotation.
* ``"docker"``: what ``docker save`` writes (``manifest.json``, the config as
  ``<hex>.json``, each layer as ``<hex>/layer.tar``).

Output is deterministic: entries are sorted, times and owners fixed, gzip
headers carry no time or name, so equal inputs give equal digests.
"""

from __future__ import annotations

import contextlib
import gzip as _gzip
import hashlib
import io
import json
import logging
import os
import platform
import posixpath
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

import attrs

__all__ = [
    "DEFAULT_BUSYBOX_IMAGE",
    "DEFAULT_PATH",
    "Directory",
    "Entry",
    "File",
    "ImageArchive",
    "ImageLayer",
    "LayerSpec",
    "Symlink",
    "Whiteout",
    "build_busybox_archive",
    "build_image_archive",
    "host_platform",
]

logger = logging.getLogger(__name__)

#: Name :func:`build_busybox_archive` gives its image unless told otherwise.
DEFAULT_BUSYBOX_IMAGE = "localhost/containerd-client/busybox:latest"
#: The ``PATH`` put in image configs; containerd's default specs take it from there.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# A fixed timestamp keeps digests stable across runs and machines.
_EPOCH = 0
_CREATED = "1970-01-01T00:00:00Z"
_WHITEOUT_PREFIX = ".wh."
_OPAQUE = ".wh..wh..opq"


@attrs.frozen
class File:
    """A regular file in a layer.

    Attributes:
        content: The file's bytes.
        mode: Permission bits (``0o755`` for an executable).
        uid: Owner user id.
        gid: Owner group id.
    """

    content: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@attrs.frozen
class Symlink:
    """A symbolic link in a layer, pointing at ``target`` (taken as is)."""

    target: str


@attrs.frozen
class Directory:
    """A directory in a layer.

    Attributes:
        mode: Permission bits, with sticky/setgid bits if wanted (``0o1777``).
        uid: Owner user id.
        gid: Owner group id.
        opaque: Hide everything lower layers put in this directory (an
            ``.wh..wh..opq`` entry).
    """

    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    opaque: bool = False


@attrs.frozen
class Whiteout:
    """Delete the path (and, for a directory, all below it) from lower layers."""


#: What a layer maps an in-image path to; plain ``bytes`` is a ``File`` with mode 0644.
Entry: TypeAlias = bytes | File | Symlink | Directory | Whiteout


def _entries_dict(entries: Mapping[str, Entry]) -> dict[str, Entry]:
    return dict(entries)


@attrs.frozen
class ImageLayer:
    """One layer: in-image paths mapped to what is there.

    Parent directories that are not listed are added (with the metadata a
    lower layer gave them, else 0755 root), as ``docker save`` would.

    Attributes:
        entries: Path (``"/etc/passwd"`` or ``"etc/passwd"``) to entry.
        gzip: Compress this layer; ``None`` follows the archive's default.
    """

    entries: Mapping[str, Entry] = attrs.field(converter=_entries_dict)
    gzip: bool | None = None


#: A layer given either as :class:`ImageLayer` or as its entries mapping.
LayerSpec: TypeAlias = ImageLayer | Mapping[str, Entry]


@attrs.frozen
class ImageArchive:
    """What :func:`build_image_archive` wrote.

    Attributes:
        path: The archive file.
        name: The image name stored in the archive.
        fmt: ``"oci"`` or ``"docker"``.
        manifest_digest: Digest of the image manifest. For ``"docker"``
            archives, which hold no manifest, it is the digest of the
            manifest containerd writes when it imports the archive.
        manifest_media_type: Media type of that manifest.
        config_digest: Digest of the image config (its ``image id``).
        layer_digests: Digests of the layer blobs, lowest first (compressed
            digests for gzip layers).
        diff_ids: Digests of the uncompressed layers, lowest first.
        architecture: Platform architecture in the config (``"amd64"``).
        os: Platform OS in the config (``"linux"``).
    """

    path: str
    name: str
    fmt: Literal["oci", "docker"]
    manifest_digest: str
    manifest_media_type: str
    config_digest: str
    layer_digests: tuple[str, ...]
    diff_ids: tuple[str, ...]
    architecture: str
    os: str


def host_platform() -> tuple[str, str, str]:
    """Return ``(os, architecture, variant)`` of this machine in OCI terms.

    ``variant`` is empty unless containerd needs it to match (32-bit ARM).
    """
    machine = platform.machine().lower()
    arch = {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "i386": "386",
        "i686": "386",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
        "mips64": "mips64",
        "loongarch64": "loong64",
    }.get(machine)
    if arch is not None:
        return "linux", arch, ""
    if machine.startswith("armv"):
        return "linux", "arm", "v" + machine[4]
    return "linux", machine, ""


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json_bytes(value: Any) -> bytes:
    # Sorted keys and no spaces: stable bytes, hence stable digests.
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _normalize_path(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError(f"layer path {path!r} names the root; give a path below it")
    if ".." in parts:
        raise ValueError(f"layer path {path!r} must not contain '..'")
    if parts[-1].startswith(_WHITEOUT_PREFIX):
        raise ValueError(f"layer path {path!r}: use Whiteout() instead of writing .wh. names")
    return "/".join(parts)


def _coerce_entry(path: str, entry: object) -> File | Symlink | Directory | Whiteout:
    if isinstance(entry, bytes | bytearray | memoryview):
        return File(bytes(entry))
    if isinstance(entry, File | Symlink | Directory | Whiteout):
        return entry
    raise TypeError(
        f"layer entry for {path!r} must be bytes, File, Symlink, Directory or Whiteout, "
        f"not {type(entry).__name__}"
    )


def _tar_info(name: str, kind: bytes, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.uname = ""
    info.gname = ""
    info.mtime = _EPOCH
    return info


def _layer_tar(entries: Mapping[str, object], known_dirs: dict[str, Directory]) -> bytes:
    """Write one layer as an uncompressed tar.

    ``known_dirs`` carries the directories lower layers made, so an implied
    parent keeps their mode; it is updated for the layers above.
    """
    items: dict[str, File | Symlink | Directory | Whiteout] = {}
    for raw, entry in entries.items():
        path = _normalize_path(raw)
        if path in items:
            raise ValueError(f"layer lists {path!r} twice")
        items[path] = _coerce_entry(raw, entry)
    for path in list(items):
        parent = posixpath.dirname(path)
        while parent:
            existing = items.get(parent)
            if existing is None:
                items[parent] = known_dirs.get(parent, Directory())
            elif not isinstance(existing, Directory):
                raise ValueError(f"layer puts {path!r} below {parent!r}, which it does not make a directory")
            parent = posixpath.dirname(parent)

    members: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    for path, item in items.items():
        if isinstance(item, Whiteout):
            name = posixpath.join(posixpath.dirname(path), _WHITEOUT_PREFIX + posixpath.basename(path))
            members[name] = (_tar_info(name, tarfile.REGTYPE, 0o644, 0, 0), b"")
        elif isinstance(item, File):
            info = _tar_info(path, tarfile.REGTYPE, item.mode, item.uid, item.gid)
            info.size = len(item.content)
            members[path] = (info, item.content)
        elif isinstance(item, Symlink):
            info = _tar_info(path, tarfile.SYMTYPE, 0o777, 0, 0)
            info.linkname = item.target
            members[path] = (info, None)
        else:
            members[path] = (_tar_info(path, tarfile.DIRTYPE, item.mode, item.uid, item.gid), None)
            if item.opaque:
                name = posixpath.join(path, _OPAQUE)
                members[name] = (_tar_info(name, tarfile.REGTYPE, 0o644, 0, 0), b"")

    # What the next layer may take as an implied parent's metadata.
    for path, item in sorted(items.items()):
        if isinstance(item, Directory):
            if item.opaque:
                _forget_below(known_dirs, path)
            known_dirs[path] = attrs.evolve(item, opaque=False)
        else:
            known_dirs.pop(path, None)
            _forget_below(known_dirs, path)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # Sorted names put every directory before what it holds.
        for name in sorted(members):
            info, data = members[name]
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _forget_below(known_dirs: dict[str, Directory], path: str) -> None:
    prefix = path + "/"
    for key in [k for k in known_dirs if k.startswith(prefix)]:
        del known_dirs[key]


def _gzip_compress(data: bytes) -> bytes:
    buf = io.BytesIO()
    # mtime=0 and no file name keep the gzip header, and so the digest, stable.
    with _gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def _write_tar(dest: str, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (name to bytes) as a deterministic tar, atomically."""
    dirs: set[str] = set()
    for name in files:
        parent = posixpath.dirname(name)
        while parent:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    dest_dir = os.path.dirname(os.path.abspath(dest))
    os.makedirs(dest_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".image-", suffix=".tmp", dir=dest_dir)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in sorted(dirs | set(files)):
                if name in files:
                    info = _tar_info(name, tarfile.REGTYPE, 0o644, 0, 0)
                    info.size = len(files[name])
                    tar.addfile(info, io.BytesIO(files[name]))
                else:
                    tar.addfile(_tar_info(name, tarfile.DIRTYPE, 0o755, 0, 0))
        os.chmod(tmp, 0o644)
        # A concurrent reader (another test worker) sees the old or the new
        # archive, never a half-written one.
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def _go_descriptor_json(desc: Mapping[str, Any]) -> str:
    # Go's encoding/json writes struct fields in declaration order with no
    # spaces; containerd's importer marshals its manifest that way.
    return (
        '{"mediaType":'
        + json.dumps(desc["mediaType"])
        + ',"digest":'
        + json.dumps(desc["digest"])
        + ',"size":'
        + str(desc["size"])
        + "}"
    )


def _ref_tag(name: str) -> str:
    """Return the tag of ``name`` (``latest`` for ``a/b:latest``), else ``name``."""
    last = name.rsplit("/", 1)[-1]
    if "@" not in last and ":" in last:
        return last.rsplit(":", 1)[1]
    return name


def build_image_archive(
    dest_path: str | os.PathLike[str],
    *,
    name: str,
    layers: Sequence[LayerSpec],
    config: Mapping[str, Any] | None = None,
    architecture: str | None = None,
    os_name: str | None = None,
    variant: str | None = None,
    fmt: Literal["oci", "docker"] = "oci",
    gzip: bool = False,
    labels: Mapping[str, str] | None = None,
) -> ImageArchive:
    """Write an image archive that containerd can import.

    Args:
        dest_path: The archive file to write (replaced atomically).
        name: Image name, e.g. ``"localhost/test/app:1"``.
        layers: Lowest layer first; each an :class:`ImageLayer` or a mapping
            of in-image path to ``bytes``, :class:`File`, :class:`Symlink`,
            :class:`Directory` or :class:`Whiteout`.
        config: The image's runtime config (``Env``, ``Cmd``, ``Entrypoint``,
            ``User``, ``WorkingDir``, ``Labels``...), stored as given.
        architecture: Defaults to this machine's (``"amd64"``...).
        os_name: Defaults to ``"linux"``.
        variant: Platform variant; defaults to this machine's, if any.
        fmt: ``"oci"`` (image layout) or ``"docker"`` (``docker save``).
        gzip: Compress layers unless an :class:`ImageLayer` says otherwise.
        labels: Annotations added to the manifest (``"oci"`` only).

    Returns:
        The digests and name of what was written.

    Raises:
        ValueError: A layer path is empty, holds ``..`` or clashes with
            another, or ``fmt`` is unknown.
        TypeError: A layer entry has an unknown type.
        OSError: The archive could not be written.
    """
    if fmt not in ("oci", "docker"):
        raise ValueError(f"fmt must be 'oci' or 'docker', not {fmt!r}")
    host_os, host_arch, host_variant = host_platform()
    arch = architecture or host_arch
    image_os = os_name or host_os
    if variant is None:
        variant = host_variant if arch == host_arch else ""
    docker = fmt == "docker"

    known_dirs: dict[str, Directory] = {}
    blobs: dict[str, bytes] = {}
    layer_descs: list[dict[str, Any]] = []
    diff_ids: list[str] = []
    for spec in layers:
        layer = spec if isinstance(spec, ImageLayer) else ImageLayer(spec)
        tar_bytes = _layer_tar(layer.entries, known_dirs)
        diff_ids.append(_digest(tar_bytes))
        compress = gzip if layer.gzip is None else layer.gzip
        blob = _gzip_compress(tar_bytes) if compress else tar_bytes
        if docker:
            media_type = MEDIA_TYPE_DOCKER_LAYER_GZIP if compress else MEDIA_TYPE_DOCKER_LAYER
        else:
            media_type = MEDIA_TYPE_OCI_LAYER_GZIP if compress else MEDIA_TYPE_OCI_LAYER
        layer_descs.append(_descriptor(media_type, blob))
        blobs[_digest(blob)] = blob

    image_config: dict[str, Any] = {
        "architecture": arch,
        "os": image_os,
        "created": _CREATED,
        "config": dict(config or {}),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": _CREATED, "created_by": "containerd-client testing"} for _ in diff_ids],
    }
    if variant:
        image_config["variant"] = variant
    config_bytes = _json_bytes(image_config)
    config_digest = _digest(config_bytes)

    files: dict[str, bytes] = {}
    if docker:
        # containerd's importer builds a Docker schema 2 manifest from
        # manifest.json; predicting its bytes gives callers the digest the
        # imported image will have.
        config_desc = _descriptor(MEDIA_TYPE_DOCKER_CONFIG, config_bytes)
        manifest_text = (
            '{"schemaVersion":2,"mediaType":"'
            + MEDIA_TYPE_DOCKER_MANIFEST
            + '","config":'
            + _go_descriptor_json(config_desc)
            + ',"layers":['
            + ",".join(_go_descriptor_json(d) for d in layer_descs)
            + "]}"
        )
        manifest_digest = _digest(manifest_text.encode())
        manifest_media_type = MEDIA_TYPE_DOCKER_MANIFEST
        config_name = config_digest.split(":", 1)[1] + ".json"
        layer_names = []
        for desc, diff_id in zip(layer_descs, diff_ids, strict=True):
            layer_name = diff_id.split(":", 1)[1] + "/layer.tar"
            files[layer_name] = blobs[desc["digest"]]
            layer_names.append(layer_name)
        files[config_name] = config_bytes
        files["manifest.json"] = _json_bytes(
            [{"Config": config_name, "RepoTags": [name], "Layers": layer_names}]
        )
    else:
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": _descriptor(MEDIA_TYPE_OCI_CONFIG, config_bytes),
            "layers": layer_descs,
        }
        if labels:
            manifest["annotations"] = dict(labels)
        manifest_bytes = _json_bytes(manifest)
        manifest_digest = _digest(manifest_bytes)
        manifest_media_type = MEDIA_TYPE_OCI_MANIFEST
        blobs[config_digest] = config_bytes
        blobs[manifest_digest] = manifest_bytes
        platform_desc: dict[str, str] = {"architecture": arch, "os": image_os}
        if variant:
            platform_desc["variant"] = variant
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_INDEX,
            "manifests": [
                {
                    **_descriptor(MEDIA_TYPE_OCI_MANIFEST, manifest_bytes),
                    "platform": platform_desc,
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": _ref_tag(name),
                    },
                }
            ],
        }
        files["oci-layout"] = _json_bytes({"imageLayoutVersion": "1.0.0"})
        files["index.json"] = _json_bytes(index)
        for digest, data in blobs.items():
            files["blobs/sha256/" + digest.split(":", 1)[1]] = data

    dest = os.fspath(dest_path)
    _write_tar(dest, files)
    logger.debug("wrote %s image archive %s (%s) to %s", fmt, name, manifest_digest, dest)
    return ImageArchive(
        path=dest,
        name=name,
        fmt=fmt,
        manifest_digest=manifest_digest,
        manifest_media_type=manifest_media_type,
        config_digest=config_digest,
        layer_digests=tuple(d["digest"] for d in layer_descs),
        diff_ids=tuple(diff_ids),
        architecture=arch,
        os=image_os,
    )


def _is_static_elf(path: str) -> bool:
    """Tell whether ``path`` is an ELF executable without a program interpreter."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 52 or head[:4] != b"\x7fELF":
            return False
        endian = "<" if head[5] == 1 else ">"
        if head[4] == 2:
            phoff, phentsize, phnum = (
                struct.unpack_from(endian + "Q", head, 32)[0],
                *struct.unpack_from(endian + "HH", head, 54),
            )
        else:
            phoff, phentsize, phnum = (
                struct.unpack_from(endian + "I", head, 28)[0],
                *struct.unpack_from(endian + "HH", head, 42),
            )
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(struct.unpack_from(endian + "I", table, i * phentsize)[0] != pt_interp for i in range(phnum))


def _find_busybox(busybox: str | None) -> str:
    candidates = [busybox] if busybox else [shutil.which("busybox"), "/bin/busybox"]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            path = os.path.realpath(candidate)
            if not _is_static_elf(path):
                raise ValueError(
                    f"{path} is not a static executable and cannot run inside an image on its own; "
                    "install busybox-static"
                )
            return path
    raise FileNotFoundError("busybox not found; install busybox-static (apt-get install busybox-static)")


def _busybox_applets(busybox: str) -> list[str]:
    """Return the in-image paths of busybox's applets (``usr/bin/awk``...)."""
    result = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=False, timeout=30)
    if result.returncode == 0 and result.stdout.strip():
        return sorted({line.strip() for line in result.stdout.splitlines() if line.strip()})
    # Builds without --list-full still answer --list; put every applet in bin.
    result = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True, timeout=30)
    return sorted({"bin/" + line.strip() for line in result.stdout.splitlines() if line.strip()})


def build_busybox_archive(
    dest_path: str | os.PathLike[str],
    *,
    name: str = DEFAULT_BUSYBOX_IMAGE,
    fmt: Literal["oci", "docker"] = "oci",
    extra_layers: Sequence[LayerSpec] = (),
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = ("sh",),
    workdir: str | None = None,
    labels: Mapping[str, str] | None = None,
    passwd: Sequence[str] = (),
    group: Sequence[str] = (),
    gzip: bool = False,
    busybox: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    stop_signal: str | None = None,
) -> ImageArchive:
    """Write a busybox image: the host's static busybox plus all its applets.

    The root file system holds ``/bin/busybox``, a symlink for every applet
    it lists (``sh``, ``echo``, ``sleep``, ``cat``...), ``/etc/passwd`` and
    ``/etc/group`` with root and nobody (plus ``passwd``/``group`` lines),
    and ``/tmp``, ``/proc``, ``/sys``, ``/dev``, ``/root``, ``/home``.

    Args:
        dest_path: The archive file to write.
        name: Image name.
        fmt: ``"oci"`` or ``"docker"``.
        extra_layers: Layers put above the busybox layer.
        user: Config ``User`` (``"1000:1000"``, ``"app"``).
        env: Variables added to the config's ``Env`` (which has ``PATH``);
            a ``PATH`` here replaces the default one.
        entrypoint: Config ``Entrypoint``.
        cmd: Config ``Cmd``; ``sh`` unless given (``None`` leaves it out).
        workdir: Config ``WorkingDir``.
        labels: Config ``Labels``.
        passwd: Extra ``/etc/passwd`` lines, e.g. ``"app:x:1000:1000::/home/app:/bin/sh"``.
        group: Extra ``/etc/group`` lines, e.g. ``"app:x:1000:"``.
        gzip: Compress the layers.
        busybox: The busybox binary; defaults to ``busybox`` on ``PATH``.
        cache_dir: Keep built archives here, keyed by every input, and copy
            from there next time.
        stop_signal: Config ``StopSignal`` (``"SIGUSR1"``), what ``stop()`` sends.

    Returns:
        The digests and name of what was written.

    Raises:
        FileNotFoundError: No busybox binary was found.
        ValueError: busybox is dynamically linked, or a layer is invalid.
        OSError: The archive could not be written.
    """
    binary = _find_busybox(busybox)
    with open(binary, "rb") as f:
        busybox_bytes = f.read()
    applets = _busybox_applets(binary)

    env_map = {"PATH": DEFAULT_PATH, **(env or {})}
    config: dict[str, Any] = {"Env": [f"{k}={v}" for k, v in env_map.items()]}
    if user is not None:
        config["User"] = user
    if entrypoint is not None:
        config["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        config["Cmd"] = list(cmd)
    if workdir is not None:
        config["WorkingDir"] = workdir
    if labels:
        config["Labels"] = dict(labels)
    if stop_signal is not None:
        config["StopSignal"] = stop_signal

    passwd_lines = [
        "root:x:0:0:root:/root:/bin/sh",
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false",
        *passwd,
    ]
    group_lines = ["root:x:0:", "nogroup:x:65534:", *group]
    base: dict[str, Entry] = {
        "bin/busybox": File(busybox_bytes, mode=0o755),
        "etc/passwd": ("\n".join(passwd_lines) + "\n").encode(),
        "etc/group": ("\n".join(group_lines) + "\n").encode(),
        "tmp": Directory(mode=0o1777),
        "var/tmp": Directory(mode=0o1777),
        "root": Directory(mode=0o700),
        "home": Directory(),
        "proc": Directory(),
        "sys": Directory(),
        "dev": Directory(),
        "etc": Directory(),
    }
    for applet in applets:
        path = _normalize_path(applet)
        if path != "bin/busybox":
            base[path] = Symlink("/bin/busybox")
    all_layers: list[LayerSpec] = [base, *extra_layers]

    def build(dest: str | os.PathLike[str]) -> ImageArchive:
        return build_image_archive(dest, name=name, layers=all_layers, config=config, fmt=fmt, gzip=gzip)

    if cache_dir is None:
        return build(dest_path)

    key_source = {
        "busybox": hashlib.sha256(busybox_bytes).hexdigest(),
        "name": name,
        "fmt": fmt,
        "config": config,
        "passwd": passwd_lines,
        "group": group_lines,
        "gzip": gzip,
        "platform": host_platform(),
        "extra": [_layer_key(spec) for spec in extra_layers],
    }
    key = hashlib.sha256(_json_bytes(key_source)).hexdigest()[:32]
    cache = os.fspath(cache_dir)
    cached_tar = os.path.join(cache, key + ".tar")
    cached_meta = os.path.join(cache, key + ".json")
    dest = os.fspath(dest_path)
    try:
        with open(cached_meta, "rb") as meta_file:
            meta = json.loads(meta_file.read())
        _copy_atomic(cached_tar, dest)
        logger.debug("busybox archive %s from cache %s", name, cached_tar)
        return ImageArchive(
            path=dest,
            name=meta["name"],
            fmt=meta["fmt"],
            manifest_digest=meta["manifest_digest"],
            manifest_media_type=meta["manifest_media_type"],
            config_digest=meta["config_digest"],
            layer_digests=tuple(meta["layer_digests"]),
            diff_ids=tuple(meta["diff_ids"]),
            architecture=meta["architecture"],
            os=meta["os"],
        )
    except (OSError, ValueError, KeyError):
        pass
    os.makedirs(cache, exist_ok=True)
    built = build(cached_tar)
    meta = attrs.asdict(built)
    meta.pop("path")
    # The tar is complete before its metadata appears, so a reader that finds
    # the metadata always finds a whole archive.
    fd, tmp = tempfile.mkstemp(prefix=".meta-", dir=cache)
    with os.fdopen(fd, "wb") as out:
        out.write(_json_bytes(meta))
    os.replace(tmp, cached_meta)
    _copy_atomic(cached_tar, dest)
    return attrs.evolve(built, path=dest)


def _layer_key(spec: LayerSpec) -> Any:
    layer = spec if isinstance(spec, ImageLayer) else ImageLayer(spec)
    out: list[Any] = []
    for path, entry in sorted(layer.entries.items()):
        item = _coerce_entry(path, entry)
        if isinstance(item, File):
            out.append([path, "f", hashlib.sha256(item.content).hexdigest(), item.mode, item.uid, item.gid])
        else:
            out.append([path, type(item).__name__, attrs.asdict(item)])
    return [out, layer.gzip]


def _copy_atomic(src: str, dest: str) -> None:
    if os.path.abspath(src) == os.path.abspath(dest):
        return
    dest_dir = os.path.dirname(os.path.abspath(dest))
    os.makedirs(dest_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".image-", suffix=".tmp", dir=dest_dir)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
