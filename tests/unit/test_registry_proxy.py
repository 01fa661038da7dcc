"""The registry client honours HTTPS_PROXY, HTTP_PROXY and NO_PROXY (as urllib and requests do).

A :class:`~containerd_client.testing._proxy.ForwardProxy` on 127.0.0.1
records what it relays in front of the fake registry of test_registry.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from test_registry import SECRET, FakeRegistry, _image

from containerd_client._registry import RegistryClient, RegistryError, parse_manifest, parse_reference
from containerd_client._registry._http import proxy_for
from containerd_client._retry import NO_RETRY
from containerd_client.testing._proxy import ForwardProxy

_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        yield registry


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as p:
        yield p


def _pull_all(host: str, **kwargs: object) -> tuple[str, bytes]:
    """Resolve test/app:1, fetch its manifest and download its layer: the digest and the layer."""
    ref = parse_reference(f"{host}/test/app:1")
    with RegistryClient(host, auth=lambda h: None, retry=NO_RETRY, **kwargs) as client:  # type: ignore[arg-type]
        resolved = client.resolve(ref)
        data, _ = client.fetch_manifest(ref, resolved.digest, resolved.size)
        _, layers = parse_manifest(data, resolved.digest)
        return resolved.digest, client.open_blob("test/app", layers[0].digest, layers[0].size).read()


def test_http_proxy_carries_plain_http_requests_in_absolute_form(
    fake: FakeRegistry, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest, layer, layer_digest = _image(fake)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert _pull_all(fake.host, plain_http=True) == (digest, layer)
    seen = proxy.seen()
    assert ("HEAD", f"http://{fake.host}/v2/test/app/manifests/1") in seen
    assert ("GET", f"http://{fake.host}/v2/test/app/blobs/{layer_digest}") in seen
    # Everything went through the proxy: the registry saw what the proxy saw.
    assert len(fake.requests) == len(seen)


def test_lower_case_variables_count_too(
    fake: FakeRegistry, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest, layer, _ = _image(fake)
    monkeypatch.setenv("http_proxy", proxy.address)  # no scheme: http:// is meant
    assert _pull_all(fake.host, plain_http=True) == (digest, layer)
    assert proxy.seen()


def test_https_goes_through_a_connect_tunnel(
    fake: FakeRegistry, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest, layer, _ = _image(fake)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    # HTTPS first (through a tunnel); the loopback registry speaks no TLS, so
    # the client falls back to plain HTTP, which HTTPS_PROXY does not cover.
    assert _pull_all(fake.host) == (digest, layer)
    assert proxy.seen() == [("CONNECT", fake.host)]


def test_proxy_credentials_go_to_the_proxy_only(
    fake: FakeRegistry, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    _image(fake)
    monkeypatch.setenv("HTTP_PROXY", f"http://bob:{SECRET}@{proxy.address}")
    _pull_all(fake.host, plain_http=True)
    expected = "Basic " + base64.b64encode(f"bob:{SECRET}".encode()).decode()
    assert {r.proxy_authorization for r in proxy.requests} == {expected}
    # The proxy cannot reach this one (502): the error names no proxy secret.
    with (
        RegistryClient("127.0.0.1:1", plain_http=True, retry=NO_RETRY, timeout=2) as client,
        pytest.raises(RegistryError) as info,
    ):
        client.resolve(parse_reference("127.0.0.1:1/test/app:1"))
    assert info.value.status == 502
    assert SECRET not in str(info.value)
    assert SECRET not in repr(proxy_for("http", fake.host))


@pytest.mark.parametrize(
    "no_proxy",
    ["{host}", "127.0.0.1", "*", "localhost, 127.0.0.1", ".0.0.1", "127.0.0.0/8", "other.example,{host}"],
)
def test_no_proxy_bypasses_the_proxy(
    fake: FakeRegistry, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, no_proxy: str
) -> None:
    digest, layer, _ = _image(fake)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy.format(host=fake.host))
    assert _pull_all(fake.host) == (digest, layer)
    assert proxy.seen() == []
    assert fake.requests


def test_no_proxy_with_another_port_does_not_bypass(
    fake: FakeRegistry, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    _image(fake)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("no_proxy", "127.0.0.1:1,registry.example")
    _pull_all(fake.host, plain_http=True)
    assert proxy.seen()


@pytest.mark.parametrize(
    ("env", "scheme", "netloc", "expected"),
    [
        ({}, "https", "reg.example", None),
        ({"HTTPS_PROXY": "http://proxy.example:3128"}, "https", "reg.example", "proxy.example:3128"),
        ({"HTTPS_PROXY": "http://proxy.example:3128"}, "http", "reg.example", None),
        ({"HTTP_PROXY": "proxy.example:3128"}, "http", "reg.example:5000", "proxy.example:3128"),
        ({"http_proxy": "http://proxy.example"}, "http", "reg.example", "proxy.example:80"),
        ({"ALL_PROXY": "http://all.example:1"}, "https", "reg.example", "all.example:1"),
        (
            {"https_proxy": "http://lower.example:1", "HTTPS_PROXY": "http://upper.example:1"},
            "https",
            "r.ex",
            "lower.example:1",
        ),
        ({"HTTPS_PROXY": "http://p.example:1", "NO_PROXY": "reg.example"}, "https", "reg.example:443", None),
        ({"HTTPS_PROXY": "http://p.example:1", "NO_PROXY": ".example"}, "https", "a.reg.example", None),
        (
            {"HTTPS_PROXY": "http://p.example:1", "NO_PROXY": "reg.example"},
            "https",
            "notreg.example",
            "p.example:1",
        ),
        (
            {"HTTPS_PROXY": "http://p.example:1", "NO_PROXY": "reg.example:5000"},
            "https",
            "reg.example:5001",
            "p.example:1",
        ),
        ({"HTTPS_PROXY": "http://p.example:1", "NO_PROXY": "10.0.0.0/8"}, "https", "10.1.2.3:5000", None),
        ({"HTTPS_PROXY": "http://p.example:1", "NO_PROXY": "10.0.0.0/8"}, "https", "11.1.2.3", "p.example:1"),
        ({"HTTPS_PROXY": "http://p.example:1", "no_proxy": "*"}, "https", "reg.example", None),
        # Under CGI, HTTP_PROXY may come from the client's "Proxy:" header (httpoxy): ignored.
        ({"HTTP_PROXY": "http://p.example:1", "REQUEST_METHOD": "GET"}, "http", "reg.example", None),
    ],
)
def test_proxy_for(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], scheme: str, netloc: str, expected: str | None
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    proxy = proxy_for(scheme, netloc)
    assert (proxy.netloc if proxy else None) == expected


def test_a_proxy_of_another_kind_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(RegistryError, match="socks5"):
        proxy_for("https", "reg.example")
