"""Image pull against real registries (Debian's docker-registry) and real daemons.

An image is pushed with containerd's own ``ctr`` into three registries on
127.0.0.1: plain HTTP without auth, plain HTTP with basic auth, and HTTPS
(self-signed) with basic auth. The SDK then pulls it:

* containerd 1.6 (the machine's): the client path;
* containerd 1.7 (``.ci/fetch-containerd``): the client path for plain HTTP,
  the transfer path for the TLS registry the daemon trusts (``SSL_CERT_FILE``),
  proved by pulling from a client process without any network (``unshare -n``);
* containerd 2.x (``.ci/fetch-containerd``): the transfer path against plain HTTP.

Each group runs in the run whose daemon it needs: scripts/test runs the
integration suite once per containerd version (``CONTAINERD_BIN_DIR``), and
fails when a version cannot be fetched, so every group runs in CI.
Needs ``apt-get install docker-registry apache2-utils`` (and openssl, util-linux).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.parse
import uuid
from collections.abc import Iterator

import attrs
import pytest

from containerd_client import Client, cio, errors
from containerd_client._registry import InvalidReferenceError
from containerd_client.client import SESSION_LABEL
from containerd_client.content import ContentStore, Platform
from containerd_client.images import ImageStore, PlatformNotFoundError, chain_ids
from containerd_client.pull import ProgressEvent, PullOptions, pull, pull_detailed, tqdm_progress
from containerd_client.snapshots import SnapshotStore
from containerd_client.testing import ContainerdDaemon, ImageArchive, build_busybox_archive
from containerd_client.testing._proxy import ForwardProxy
from containerd_client.testing._registry import LocalRegistry, push_with_ctr
from containerd_client.testing.plugin import sweep_namespace

PASSWORD = "Pull-Test-s3cret-9271"
WRONG = "Wrong-Pass-4410-xyz"
USER = "alice"
REPO = "test/busybox"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("htpasswd") is None,
    reason="needs docker-registry and htpasswd (apt-get install docker-registry apache2-utils)",
)


# -- registries, pushed once per module ------------------------------------------------


@attrs.frozen
class Registries:
    plain: LocalRegistry
    auth: LocalRegistry
    tls: LocalRegistry
    archive: ImageArchive
    index_digest: str
    foreign: Platform

    def ref(self, registry: LocalRegistry, tag: str = "1") -> str:
        return f"{registry.host}/{REPO}:{tag}"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    archive = build_busybox_archive(tmp_path_factory.mktemp("pull-image") / "busybox.tar")
    with (
        LocalRegistry() as plain,
        LocalRegistry(users={USER: PASSWORD}) as auth,
        LocalRegistry(users={USER: PASSWORD}, tls=True) as tls,
        ContainerdDaemon() as pusher,
    ):
        push_with_ctr(pusher, f"{plain.host}/{REPO}:1", archive=archive)
        push_with_ctr(pusher, f"{auth.host}/{REPO}:1", archive=archive, user=USER, password=PASSWORD)
        push_with_ctr(
            pusher,
            f"{tls.host}/{REPO}:1",
            archive=archive,
            user=USER,
            password=PASSWORD,
            ca_file=tls.cert_path,
        )
        pusher.stop()
        foreign = Platform("linux", "ppc64le" if archive.architecture != "ppc64le" else "s390x")
        index_digest = push_index(plain.host, archive, foreign)
        yield Registries(plain, auth, tls, archive, index_digest, foreign)


def _upload(conn: http.client.HTTPConnection, path: str, data: bytes, media_type: str) -> None:
    conn.request("PUT", path, body=data, headers={"Content-Type": media_type})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 201, (path, resp.status)


def push_index(host: str, archive: ImageArchive, foreign: Platform) -> str:
    """Push ``multi`` to a plain registry: an OCI index of the host's manifest and a foreign one.

    The foreign manifest reuses the busybox layer under a config that names
    another architecture. Uses the distribution API directly (ctr pushes
    single images only).
    """
    conn = http.client.HTTPConnection(host, timeout=30)
    try:

        def blob(data: bytes) -> dict[str, object]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            conn.request("POST", f"/v2/{REPO}/blobs/uploads/", headers={"Content-Length": "0"})
            resp = conn.getresponse()
            resp.read()
            location = urllib.parse.urlsplit(resp.getheader("Location") or "")
            query = (location.query + "&" if location.query else "") + f"digest={digest}"
            _upload(conn, f"{location.path}?{query}", data, "application/octet-stream")
            return {"digest": digest, "size": len(data)}

        config = {
            "architecture": foreign.architecture,
            "os": foreign.os,
            "rootfs": {"type": "layers", "diff_ids": list(archive.diff_ids)},
        }
        config_desc = {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **blob(json.dumps(config).encode()),
        }
        conn.request(
            "GET",
            f"/v2/{REPO}/manifests/{archive.manifest_digest}",
            headers={"Accept": archive.manifest_media_type},
        )
        native = json.loads(conn.getresponse().read())
        foreign_manifest = json.dumps({**native, "config": config_desc}).encode()
        foreign_digest = "sha256:" + hashlib.sha256(foreign_manifest).hexdigest()
        _upload(conn, f"/v2/{REPO}/manifests/{foreign_digest}", foreign_manifest, archive.manifest_media_type)
        conn.request(
            "HEAD",
            f"/v2/{REPO}/manifests/{archive.manifest_digest}",
            headers={"Accept": archive.manifest_media_type},
        )
        head = conn.getresponse()
        head.read()
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": archive.manifest_media_type,
                    "digest": foreign_digest,
                    "size": len(foreign_manifest),
                    "platform": foreign.to_oci(),
                },
                {
                    "mediaType": archive.manifest_media_type,
                    "digest": archive.manifest_digest,
                    "size": int(head.getheader("Content-Length") or 0),
                    "platform": {"architecture": archive.architecture, "os": archive.os},
                },
            ],
        }
        data = json.dumps(index).encode()
        _upload(conn, f"/v2/{REPO}/manifests/multi", data, "application/vnd.oci.image.index.v1+json")
        return "sha256:" + hashlib.sha256(data).hexdigest()
    finally:
        conn.close()


# -- daemons ------------------------------------------------------------------------------


def _session_daemon(**kwargs: object) -> ContainerdDaemon:
    """A daemon of the version this run tests (scripts/test runs the suite once per version)."""
    return ContainerdDaemon(bin_dir=os.environ.get("CONTAINERD_BIN_DIR") or None, **kwargs)  # type: ignore[arg-type]


def _only(daemon: ContainerdDaemon, major_minor: tuple[int, int]) -> None:
    have = tuple(daemon.version_info[:2])
    if have != major_minor and not (major_minor[0] == 2 and have[0] == 2):
        pytest.skip(f"this run tests containerd {daemon.version}; these tests run in the {major_minor} run")


@pytest.fixture(scope="module")
def daemon16() -> Iterator[ContainerdDaemon]:
    daemon = _session_daemon()
    _only(daemon, (1, 6))
    with daemon:
        yield daemon


@pytest.fixture(scope="module")
def daemon17(registries: Registries) -> Iterator[ContainerdDaemon]:
    # The daemon trusts the TLS registry's self-signed certificate; the client does not need to.
    daemon = _session_daemon(env={"SSL_CERT_FILE": registries.tls.cert_path or ""})
    _only(daemon, (1, 7))
    with daemon:
        yield daemon


@pytest.fixture(scope="module")
def daemon2() -> Iterator[ContainerdDaemon]:
    daemon = _session_daemon()
    _only(daemon, (2, 0))
    with daemon:
        yield daemon


def _client(daemon: ContainerdDaemon) -> Iterator[Client]:
    client = Client(daemon.address, f"pull-{uuid.uuid4().hex[:10]}")
    try:
        yield client
    finally:
        try:
            sweep_namespace(client)
        finally:
            client.close()


@pytest.fixture
def c16(daemon16: ContainerdDaemon) -> Iterator[Client]:
    yield from _client(daemon16)


@pytest.fixture
def c17(daemon17: ContainerdDaemon) -> Iterator[Client]:
    yield from _client(daemon17)


@pytest.fixture
def c2(daemon2: ContainerdDaemon) -> Iterator[Client]:
    yield from _client(daemon2)


# -- helpers --------------------------------------------------------------------------------


def chain_id(diff_ids: tuple[str, ...]) -> str:
    return chain_ids(list(diff_ids))[-1]


def assert_pulled(client: Client, name: str, archive: ImageArchive, target: str | None = None) -> None:
    image = ImageStore(client).get(name)
    assert image.name == name
    assert image.target.digest == (target or archive.manifest_digest)
    assert SnapshotStore(client, "overlayfs").exists(chain_id(archive.diff_ids))
    content = ContentStore(client)
    manifest = content.info(archive.manifest_digest)
    assert manifest.labels.get("containerd.io/gc.ref.content.config") == archive.config_digest
    assert manifest.labels.get("containerd.io/gc.ref.content.l.0") == archive.layer_digests[0]
    for digest in archive.layer_digests:
        assert content.exists(digest)


def run_echo(client: Client, archive: ImageArchive, text: str) -> bytes:
    """Run ``echo text`` in a container whose rootfs is the pulled image's snapshot."""
    snapshots = SnapshotStore(client, "overlayfs")
    key = f"run-{uuid.uuid4().hex[:8]}"
    out = cio.Capture()
    with client.lease(expire=300):
        snapshots.prepare(key, chain_id(archive.diff_ids))
        container = client.create_container(
            key, args=["echo", text], snapshotter="overlayfs", snapshot_key=key, image="pulled"
        )
    with container:
        task = container.new_task(stdout=out)
        task.start()
        assert task.wait(timeout=30).exit_code == 0
        task.delete()
    return out.getvalue()


def assert_secret_free(*items: object, caplog: pytest.LogCaptureFixture) -> None:
    # The password travels plain and inside a Basic header: look for both shapes.
    forms = [
        form
        for secret in (PASSWORD, WRONG)
        for form in (secret, base64.b64encode(f"{USER}:{secret}".encode()).decode())
    ]
    for item in items:
        for text in (str(item), repr(item)):
            for form in forms:
                assert form not in text, (item, form)
    for form in forms:
        assert form not in caplog.text, form


# -- containerd 1.6: the client path --------------------------------------------------------


def test_client_path_pull_and_run(c16: Client, registries: Registries) -> None:
    events: list[ProgressEvent] = []
    ref = registries.ref(registries.plain)
    result = pull_detailed(c16, ref, PullOptions(progress=events.append))
    assert result.via == "client"
    assert result.name == ref
    assert result.target.digest == registries.archive.manifest_digest
    assert result.chain_id == chain_id(registries.archive.diff_ids)
    assert result.platform == Platform.host()
    assert_pulled(c16, ref, registries.archive)
    statuses = [e.status for e in events]
    assert statuses[0] == "resolving"
    assert statuses[-1] == "complete"
    layer = f"layer-{registries.archive.layer_digests[0]}"
    downloads = [e for e in events if e.ref == layer and e.status == "downloading"]
    assert downloads[-1].done_bytes == downloads[-1].total_bytes > 0
    # The lease the pull held is gone; the image alone keeps its content and
    # snapshot through a garbage collection (a synchronous lease delete runs one).
    assert c16.leases.list() == []
    c16.leases.delete(c16.leases.create(expire=None).id, sync=True)
    assert_pulled(c16, ref, registries.archive)
    assert run_echo(c16, registries.archive, "pulled-1.6") == b"pulled-1.6\n"


def test_client_path_pull_again_reuses_content(c16: Client, registries: Registries) -> None:
    ref = registries.ref(registries.plain)
    pull(c16, ref)
    events: list[ProgressEvent] = []
    image = pull(c16, ref, PullOptions(progress=events.append))
    assert image.target.digest == registries.archive.manifest_digest
    layer = f"layer-{registries.archive.layer_digests[0]}"
    assert [e.status for e in events if e.ref == layer] == ["exists"]


def kept_bars(screen: str) -> list[str]:
    """The lines a terminal shows after tqdm wrote ``screen`` (it moves up with ESC[A, erases with spaces)."""
    lines, row, col = [""], 0, 0
    for token in re.split(r"(\r|\n|\x1b\[A)", screen):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token == "\x1b[A":
            row = max(row - 1, 0)
        elif token:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return [line.rstrip() for line in lines if line.strip()]


def test_client_path_progress_bars_end_full_and_stay(c16: Client, registries: Registries) -> None:
    pytest.importorskip("tqdm")
    ref = registries.ref(registries.plain)
    label = registries.archive.layer_digests[0].split(":", 1)[1][:12]
    for _ in ("fetched", "already there"):
        screen = io.StringIO()
        with tqdm_progress(file=screen, ascii=True) as bars:
            pull(c16, ref, PullOptions(progress=bars))
        layer_bars = [bar for bar in kept_bars(screen.getvalue()) if bar.startswith(label)]
        assert layer_bars, screen.getvalue()
        assert all("100%" in bar for bar in layer_bars), screen.getvalue()


def test_client_path_basic_auth(
    c16: Client, registries: Registries, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ref = registries.ref(registries.auth)
    result = pull_detailed(c16, ref, PullOptions(auth=(USER, PASSWORD), unpack=False))
    assert result.via == "client"
    assert result.target.digest == registries.archive.manifest_digest
    with pytest.raises(errors.UnauthenticatedError) as wrong:
        pull(c16, ref, PullOptions(auth=(USER, WRONG)))
    with pytest.raises(errors.UnauthenticatedError, match="none were given") as missing:
        pull(c16, ref, PullOptions(auth=lambda host: None))
    assert_secret_free(wrong.value, missing.value, result, caplog=caplog)


def test_client_path_docker_config(
    c16: Client, registries: Registries, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    import base64

    caplog.set_level(logging.DEBUG)
    config = os.path.join(str(tmp_path), "config.json")
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with open(config, "w", encoding="utf-8") as f:
        json.dump({"auths": {registries.auth.host: {"auth": token}}}, f)
    image = pull(c16, registries.ref(registries.auth), PullOptions(docker_config=config, unpack=False))
    assert image.target.digest == registries.archive.manifest_digest
    assert_secret_free(image, caplog=caplog)


def test_client_path_tls_with_ca_file(c16: Client, registries: Registries) -> None:
    ref = registries.ref(registries.tls)
    with pytest.raises(errors.ContainerdError, match="not trusted"):
        pull(c16, ref, PullOptions(auth=(USER, PASSWORD)))
    result = pull_detailed(c16, ref, PullOptions(auth=(USER, PASSWORD), ca_file=registries.tls.cert_path))
    assert result.via == "client"
    assert_pulled(c16, ref, registries.archive)


def test_client_path_goes_through_the_proxy_unless_no_proxy(
    c16: Client, registries: Registries, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    tls = registries.tls
    ref = registries.ref(tls)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        result = pull_detailed(
            c16, ref, PullOptions(auth=(USER, PASSWORD), ca_file=tls.cert_path, via="client")
        )
        assert result.via == "client"
        assert_pulled(c16, ref, registries.archive)
        # One CONNECT tunnel (TLS end to end, the registry's certificate checked) carried it all.
        assert proxy.seen() == [("CONNECT", tls.host)]
        ImageStore(c16).delete(ref, sync=True)
        monkeypatch.setenv("NO_PROXY", f"localhost,{tls.host}")
        pull(c16, ref, PullOptions(auth=(USER, PASSWORD), ca_file=tls.cert_path, via="client"))
        assert_pulled(c16, ref, registries.archive)
        assert proxy.seen() == [("CONNECT", tls.host)]


def test_client_path_errors(c16: Client, registries: Registries) -> None:
    with pytest.raises(errors.NotFoundError):
        pull(c16, registries.ref(registries.plain, "no-such-tag"))
    with pytest.raises(PlatformNotFoundError, match="linux/s390x"):
        pull(c16, registries.ref(registries.plain), PullOptions(platform="linux/s390x"))
    with pytest.raises(errors.NotSupportedError, match=r"1\.7"):
        pull(c16, registries.ref(registries.plain), PullOptions(via="transfer"))
    assert c16.leases.list() == []


def test_client_path_index_selects_platform(c16: Client, registries: Registries) -> None:
    ref = registries.ref(registries.plain, "multi")
    result = pull_detailed(c16, ref)
    assert result.via == "client"
    assert result.target.digest == registries.index_digest
    assert result.target.media_type == "application/vnd.oci.image.index.v1+json"
    assert result.chain_id == chain_id(registries.archive.diff_ids)
    labels = ContentStore(c16).info(registries.index_digest).labels
    children = {labels.get(f"containerd.io/gc.ref.content.m.{i}") for i in (0, 1)}
    assert registries.archive.manifest_digest in children
    c16.leases.delete(c16.leases.create(expire=None).id, sync=True)
    assert_pulled(c16, ref, registries.archive, target=registries.index_digest)
    foreign = pull_detailed(c16, ref, PullOptions(platform=registries.foreign, unpack=False))
    assert foreign.platform == registries.foreign
    with pytest.raises(PlatformNotFoundError, match="linux/riscv64") as info:
        pull(c16, ref, PullOptions(platform="linux/riscv64"))
    assert str(registries.foreign) in str(info.value)


@pytest.mark.parametrize(
    "ref",
    ["Busybox", "127.0.0.1:5000/Upper/case", "https://127.0.0.1:5000/x", "127.0.0.1:5000/x:bad:tag", ""],
)
def test_malformed_references(c16: Client, ref: str) -> None:
    with pytest.raises(InvalidReferenceError):
        pull(c16, ref)


def test_default_host_for_short_names(c16: Client, registries: Registries) -> None:
    image = pull(c16, f"{REPO}:1", PullOptions(default_host=registries.plain.host, unpack=False))
    assert image.name == registries.ref(registries.plain)


# -- containerd 2.x: the transfer path --------------------------------------------------------


def test_transfer_path_plain_http_and_run(c2: Client, registries: Registries) -> None:
    events: list[ProgressEvent] = []
    ref = registries.ref(registries.plain)
    result = pull_detailed(c2, ref, PullOptions(progress=events.append))
    assert result.via == "transfer"
    assert result.target.digest == registries.archive.manifest_digest
    c2.leases.delete(c2.leases.create(expire=None).id, sync=True)
    assert_pulled(c2, ref, registries.archive)
    assert all(e.via == "transfer" for e in events)
    layer = f"layer-{registries.archive.layer_digests[0]}"
    done = [e for e in events if e.ref == layer and e.status == "complete"]
    assert done
    assert done[-1].done_bytes == done[-1].total_bytes > 0
    assert run_echo(c2, registries.archive, "pulled-2") == b"pulled-2\n"


def test_transfer_path_labels_the_record_as_the_client_path_does(c2: Client, registries: Registries) -> None:
    """A new record carries the session (for ``sweep(images=True)``); a pull again keeps its labels."""
    ref = registries.ref(registries.plain)
    assert pull_detailed(c2, ref).via == "transfer"
    assert ImageStore(c2).get(ref).labels == {SESSION_LABEL: c2.session}
    ImageStore(c2).set_labels(ref, {"kept": "yes"})
    pull(c2, ref)  # containerd's image store would replace the labels with the request's
    assert ImageStore(c2).get(ref).labels == {SESSION_LABEL: c2.session, "kept": "yes"}
    pull(c2, ref, PullOptions(labels={"only": "this"}))  # named labels replace them, as on the client path
    assert ImageStore(c2).get(ref).labels == {"only": "this"}


def test_transfer_path_progress_bars_end_full_and_stay(c2: Client, registries: Registries) -> None:
    pytest.importorskip("tqdm")
    screen = io.StringIO()
    with tqdm_progress(file=screen, ascii=True) as bars:
        pull(c2, registries.ref(registries.plain), PullOptions(progress=bars))
    label = registries.archive.layer_digests[0].split(":", 1)[1][:12]
    # The daemon reports a blob's bytes only when it is complete; tqdm may draw
    # a finished bar twice when bars below it close later.
    layer_bars = [bar for bar in kept_bars(screen.getvalue()) if bar.startswith(label)]
    assert layer_bars, screen.getvalue()
    assert all("100%" in bar for bar in layer_bars), screen.getvalue()


def test_transfer_path_basic_auth(
    c2: Client, registries: Registries, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ref = registries.ref(registries.auth)
    asked: list[str] = []

    def creds(host: str) -> tuple[str, str]:
        asked.append(host)
        return (USER, PASSWORD)

    result = pull_detailed(c2, ref, PullOptions(auth=creds))
    assert result.via == "transfer"
    assert asked
    assert set(asked) == {registries.auth.host}
    assert_pulled(c2, ref, registries.archive)
    with pytest.raises(errors.UnauthenticatedError, match="refused") as wrong:
        pull(c2, registries.ref(registries.auth), PullOptions(auth=(USER, WRONG)))
    with pytest.raises(errors.UnauthenticatedError, match="none were given") as missing:
        pull(c2, registries.ref(registries.auth), PullOptions(auth=lambda host: None))
    assert_secret_free(wrong.value, missing.value, result, caplog=caplog)


def test_transfer_path_index(c2: Client, registries: Registries) -> None:
    ref = registries.ref(registries.plain, "multi")
    result = pull_detailed(c2, ref)
    assert result.via == "transfer"
    assert result.target.digest == registries.index_digest
    assert_pulled(c2, ref, registries.archive, target=registries.index_digest)
    with pytest.raises(PlatformNotFoundError, match="linux/riscv64"):
        pull(c2, ref, PullOptions(platform="linux/riscv64"))
    # The image record the daemon made for the wrong platform is gone again.
    with pytest.raises(errors.NotFoundError):
        ImageStore(c2).get(ref)


def test_transfer_path_errors(c2: Client, registries: Registries) -> None:
    with pytest.raises(errors.NotFoundError):
        pull(c2, registries.ref(registries.plain, "no-such-tag"))
    with pytest.raises(PlatformNotFoundError, match="linux/s390x"):
        pull(c2, registries.ref(registries.plain), PullOptions(platform="linux/s390x"))
    assert ImageStore(c2).list() == []


def test_client_path_on_2x(c2: Client, registries: Registries) -> None:
    ref = registries.ref(registries.plain)
    result = pull_detailed(c2, ref, PullOptions(via="client"))
    assert result.via == "client"
    assert_pulled(c2, ref, registries.archive)


# -- containerd 1.7 -----------------------------------------------------------------------------


def test_1_7_plain_http_goes_client_side(c17: Client, registries: Registries) -> None:
    ref = registries.ref(registries.plain)
    result = pull_detailed(c17, ref)
    assert result.via == "client"
    assert_pulled(c17, ref, registries.archive)
    with pytest.raises(errors.NotSupportedError, match=r"2\.0"):
        pull(c17, ref, PullOptions(via="transfer", plain_http=True))


_NO_NETWORK_PULL = textwrap.dedent(
    """
    import json, sys
    from containerd_client import Client, errors
    from containerd_client.pull import PullOptions, pull_detailed

    address, namespace, ref, via, password = sys.argv[1:6]
    with Client(address, namespace) as client:
        try:
            result = pull_detailed(client, ref, PullOptions(auth=("alice", password), via=via))
        except errors.ContainerdError as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        else:
            print(json.dumps({"via": result.via, "digest": result.target.digest}))
    """
)


def _pull_without_network(client: Client, ref: str, via: str) -> dict[str, str]:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    args = [client.address, client.namespace_name, ref, via, PASSWORD]
    res = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", _NO_NETWORK_PULL, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_1_7_transfer_path_tls_daemon_fetches(c17: Client, registries: Registries) -> None:
    ref = registries.ref(registries.tls)
    # Without a network the client cannot reach the registry itself...
    offline = _pull_without_network(c17, ref, "client")
    assert offline["error"] == "RegistryError", offline
    assert "unreachable" in offline["message"].lower(), offline
    # ...yet the pull succeeds: the daemon, in its own network namespace, fetched it.
    result = _pull_without_network(c17, ref, "auto")
    assert result == {"via": "transfer", "digest": registries.archive.manifest_digest}
    assert_pulled(c17, ref, registries.archive)
    assert run_echo(c17, registries.archive, "pulled-1.7") == b"pulled-1.7\n"


def test_1_7_transfer_path_auth_errors(
    c17: Client, registries: Registries, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ref = registries.ref(registries.tls)
    with pytest.raises(errors.UnauthenticatedError, match="refused") as wrong:
        pull(c17, ref, PullOptions(auth=(USER, WRONG), via="transfer"))
    with pytest.raises(errors.UnauthenticatedError, match="none were given") as missing:
        pull(c17, ref, PullOptions(auth=lambda host: None, via="transfer"))
    assert_secret_free(wrong.value, missing.value, caplog=caplog)
