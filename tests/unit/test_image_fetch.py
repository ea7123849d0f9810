"""The image fetch guard against a real local HTTP server that records every hit: each refusal
says why and leaves the server untouched (or, for a redirect, untouched past the refused hop);
the allowed path works end to end through a transport that carries a checked public address
to the local server."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pocketserve.images.fetch import (
    Fetcher,
    FetchPolicy,
    FetchRefused,
    address_refusal,
    host_allowed,
    system_resolve,
)
from tests.image_helpers import (
    RecordingServer,
    body,
    declared,
    endless,
    png,
    redirect,
    slow,
)

PUBLIC_IP = "93.184.216.34"  # a public address; the test transport carries it to the server
PUBLIC = "images.example"
IMAGE = png(3, 2)


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    running = RecordingServer()
    port = running.port
    running.routes.update({
        "/cat.png": body(IMAGE, "application/octet-stream"),
        "/to-private": redirect(f"http://127.0.0.1:{port}/secret"),
        "/to-localhost": redirect(f"http://localhost:{port}/secret"),
        "/to-unlisted": redirect("http://other.example/cat.png"),
        "/to-public": redirect(f"http://{PUBLIC}/cat.png", 301),
        "/relative": redirect("/cat.png", 307),
        "/loop": redirect("/loop"),
        "/endless": endless(),
        "/declared-big": declared(10_000_000),
        "/slow": slow(3.0, IMAGE),
        "/secret": body(b"secret"),
    })
    yield running
    running.close()


@pytest.fixture(autouse=True)
def _fresh_hits(server: RecordingServer) -> None:
    server.hits.clear()


class ToLocal(httpx.AsyncBaseTransport):
    """Carries requests for PUBLIC_IP to the local server (as the network would carry them to
    that host); records the address each request was sent to and its Host header."""

    def __init__(self, port: int):
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.url.host, request.headers["host"]))
        if request.url.host == PUBLIC_IP:
            request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)


class Dns:
    """A resolver with fixed answers for test names (the system's for anything else)."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host in self.answers:
            return self.answers[host]
        return await system_resolve(host, port)


DNS = {PUBLIC: [PUBLIC_IP], "other.example": [PUBLIC_IP],
       "meta.example": ["169.254.169.254"], "mixed.example": [PUBLIC_IP, "10.1.2.3"],
       "mapped.example": ["::ffff:127.0.0.1"], "nat64.example": ["64:ff9b::7f00:1"]}


def fetcher(server: RecordingServer, *,
            hosts: tuple[str, ...] = (PUBLIC, "localhost", "127.0.0.1"),
            enabled: bool = True, dns: Dns | None = None, **policy: Any) -> Fetcher:
    return Fetcher(FetchPolicy(enabled=enabled, allowed_hosts=hosts, **policy),
                   resolve=dns or Dns(DNS), transport=ToLocal(server.port))


def refused(f: Fetcher, url: str) -> str:
    with pytest.raises(FetchRefused) as caught:
        asyncio.run(f.fetch(url))
    return str(caught.value)


# -- allowed ---------------------------------------------------------------------------------


def test_an_allowed_public_host_is_fetched_at_the_checked_address(
        server: RecordingServer) -> None:
    f = fetcher(server)
    assert asyncio.run(f.fetch(f"http://{PUBLIC}/cat.png")) == IMAGE
    assert isinstance(f._transport, ToLocal)
    # Sent to the address that was checked, the name only in the Host header.
    assert f._transport.sent == [(PUBLIC_IP, PUBLIC)]
    assert server.hits == [("/cat.png", PUBLIC)]


def test_redirects_to_allowed_public_hosts_are_followed_and_rechecked(
        server: RecordingServer) -> None:
    dns = Dns(DNS)
    f = fetcher(server, hosts=(PUBLIC, "other.example"), dns=dns)
    assert asyncio.run(f.fetch("http://other.example/to-public")) == IMAGE
    assert asyncio.run(f.fetch(f"http://{PUBLIC}/relative")) == IMAGE
    assert dns.asked == ["other.example", PUBLIC, PUBLIC, PUBLIC]  # once per hop
    assert [p for p, _ in server.hits] == ["/to-public", "/cat.png", "/relative", "/cat.png"]


def test_subdomain_entries() -> None:
    allowed = ("*.cdn.example", "exact.example")
    assert host_allowed("a.cdn.example", allowed) and host_allowed("b.a.cdn.example", allowed)
    assert host_allowed("EXACT.example.", allowed)
    assert not host_allowed("cdn.example", allowed)
    assert not host_allowed("evilcdn.example", allowed)
    assert not host_allowed("sub.exact.example", allowed)


# -- refused before any byte is sent ---------------------------------------------------------


def test_off_by_default(server: RecordingServer) -> None:
    why = refused(Fetcher(FetchPolicy()), f"http://localhost:{server.port}/cat.png")
    assert "turned off" in why and server.hits == []


def test_an_empty_allowlist_allows_nothing(server: RecordingServer) -> None:
    why = refused(fetcher(server, hosts=()), f"http://{PUBLIC}/cat.png")
    assert "no host is allowed" in why and server.hits == []


def test_a_host_not_listed_is_refused(server: RecordingServer) -> None:
    why = refused(fetcher(server, hosts=("other.example",)), f"http://{PUBLIC}/cat.png")
    assert "not in image_fetch_allowed_hosts" in why and server.hits == []


@pytest.mark.parametrize(("host", "reason"), [
    ("localhost", "loopback"),
    ("127.0.0.1", "loopback"),
    ("2130706433", "loopback"),  # 127.0.0.1 as one decimal number
    ("0x7f000001", "loopback"),  # and in hex
    ("0.0.0.0", "unspecified"),  # which Linux connects to the local host
    ("[::ffff:127.0.0.1]", "127.0.0.1"),
    ("[::1]", "loopback"),
])
def test_local_addresses_are_refused_even_when_allowlisted(
        server: RecordingServer, host: str, reason: str) -> None:
    name = host.strip("[]")
    f = Fetcher(FetchPolicy(enabled=True, allowed_hosts=(name,)))  # the real resolver, network
    why = refused(f, f"http://{host}:{server.port}/cat.png")
    assert reason in why, why
    assert server.hits == []


def test_octal_address_forms_are_refused(server: RecordingServer) -> None:
    f = Fetcher(FetchPolicy(enabled=True, allowed_hosts=("0177.0.0.1",)))
    assert "not a valid URL" in refused(f, f"http://0177.0.0.1:{server.port}/cat.png")
    assert server.hits == []


@pytest.mark.parametrize(("host", "reason"), [
    ("meta.example", "metadata"),
    ("mixed.example", "10.1.2.3 is a private address"),  # every address must be public
    ("mapped.example", "carries the IPv4 address 127.0.0.1"),
    ("nat64.example", "carries the IPv4 address 127.0.0.1"),
])
def test_names_resolving_to_refused_addresses(server: RecordingServer, host: str,
                                              reason: str) -> None:
    why = refused(fetcher(server, hosts=(host,)), f"http://{host}/cat.png")
    assert reason in why, why
    assert server.hits == []


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://images.example/cat.png", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("http://user:pw@images.example/cat.png", "credentials"),
])
def test_schemes_and_credentials(server: RecordingServer, url: str, reason: str) -> None:
    assert reason in refused(fetcher(server), url)
    assert server.hits == []


# -- refused on the way ----------------------------------------------------------------------


@pytest.mark.parametrize(("path", "reason"), [
    ("/to-private", "127.0.0.1 is a loopback address"),
    ("/to-localhost", "loopback"),
    ("/to-unlisted", "'other.example' is not in image_fetch_allowed_hosts"),
])
def test_a_redirect_is_checked_like_the_first_hop(server: RecordingServer, path: str,
                                                  reason: str) -> None:
    why = refused(fetcher(server), f"http://{PUBLIC}{path}")
    assert reason in why, why
    assert [p for p, _ in server.hits] == [path]  # never /secret


def test_too_many_redirects(server: RecordingServer) -> None:
    why = refused(fetcher(server, max_redirects=2), f"http://{PUBLIC}/loop")
    assert "more than 2 redirects" in why
    assert len(server.hits) == 3


def test_a_body_past_the_cap_is_cut_off(server: RecordingServer) -> None:
    f = fetcher(server, max_bytes=100_000)
    assert "larger than the limit of 100000 bytes" in refused(f, f"http://{PUBLIC}/endless")
    assert "10000000 bytes, more than the limit" in refused(f, f"http://{PUBLIC}/declared-big")


def test_the_whole_fetch_has_a_deadline(server: RecordingServer) -> None:
    assert "longer than 0.5 s" in refused(fetcher(server, timeout_s=0.5),
                                          f"http://{PUBLIC}/slow")


def test_an_error_status_is_refused(server: RecordingServer) -> None:
    assert "HTTP 404" in refused(fetcher(server), f"http://{PUBLIC}/missing.png")


def test_an_unresolvable_host(server: RecordingServer) -> None:
    f = fetcher(server, hosts=("no-such-host.invalid",))
    assert "does not resolve" in refused(f, "http://no-such-host.invalid/cat.png")


# -- the address rules -----------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "127.8.9.10", "169.254.1.1", "100.64.0.1",
    "224.0.0.251", "239.255.255.250", "255.255.255.255", "240.0.0.1", "0.0.0.0",
    "169.254.169.254", "100.100.100.200", "168.63.129.16", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1",
    "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
    "2002:7f00:1::", "2002:a00:1::", "64:ff9b::a00:1", "64:ff9b:1::a00:1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
])
def test_non_public_addresses_are_refused(text: str) -> None:
    assert address_refusal(ipaddress.ip_address(text)) is not None


@pytest.mark.parametrize("text", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111",
                                  "2002:5db8:d822::"])
def test_public_addresses_pass(text: str) -> None:
    assert address_refusal(ipaddress.ip_address(text)) is None
