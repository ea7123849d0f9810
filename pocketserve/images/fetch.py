"""The fetch guard: an image URL is fetched only from an allowlisted host at a public address.

Every hop is checked the same way before a byte is sent: the scheme (http, https), the host
against the allowlist, then the host resolved here and every address it resolves to checked
(loopback, private, link-local, multicast, reserved, unspecified, cloud metadata, and those
hidden inside IPv4-mapped, 6to4 and NAT64 IPv6 forms are refused). The connection then goes
to the checked address itself, with the name only in the Host header and TLS's SNI, so a
second DNS answer (rebinding) cannot move it. Redirects are followed by hand, each re-checked;
the body is streamed and cut at the size cap; the whole fetch has one deadline. Proxies from
the environment are ignored: a proxy would connect to an address nobody checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_REDIRECTS = (301, 302, 303, 307, 308)
# Cloud metadata services (AWS, GCP and Azure IMDS; AWS over IPv6; Alibaba; Azure's wire
# server, which sits at a public address).
_METADATA = {ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")}
_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class FetchRefused(Exception):
    """The URL is not fetched (or its answer not taken); the text says why."""


@dataclass(frozen=True)
class FetchPolicy:
    enabled: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3


def address_refusal(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused, or None for a public address."""
    if address in _METADATA:
        return f"{address} is a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            why = address_refusal(inner)
            if why is not None:
                return f"{address} carries the IPv4 address {inner}: {why}"
        if address.teredo is not None:
            return f"{address} is a Teredo tunnel address"
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    if isinstance(address, ipaddress.IPv6Address) and address in _COMPATIBLE:
        return f"{address} is an IPv4-compatible address (deprecated)"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form leads to: IPv4-mapped, 6to4, NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """`host` is an entry, or below an entry written `*.example.com` (or `.example.com`)."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry.startswith(("*.", ".")):
            if host.endswith("." + entry.lstrip("*.")):
                return True
        elif host == entry:
            return True
    return False


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (run off the event loop)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except OSError as exc:
        raise FetchRefused(f"the host {host!r} does not resolve ({exc.strerror or exc})") \
            from None
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class _Hop:
    url: httpx.URL  # as the client wrote it (the name)
    target: httpx.URL  # the same URL at the checked address


class Fetcher:
    """Fetches image URLs under a `FetchPolicy`. `resolve` and `transport` are seams for tests
    (a fake DNS answer, a transport that reaches a local server); the app builds it with the
    system resolver and the real network, and no request can change either."""

    def __init__(self, policy: FetchPolicy, *, resolve: Resolver = system_resolve,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.policy = policy
        self._resolve = resolve
        self._transport = transport

    async def fetch(self, url: str) -> bytes:
        """The body at `url`, at most `max_bytes`, or FetchRefused saying why."""
        policy = self.policy
        if not policy.enabled:
            raise FetchRefused("fetching image URLs is turned off on this server "
                               "(image_fetch_enabled); send the image as a base64 data: URL")
        try:
            async with asyncio.timeout(policy.timeout_s), httpx.AsyncClient(
                    transport=self._transport, trust_env=False, follow_redirects=False,
                    timeout=policy.timeout_s) as client:
                return await self._follow(client, url)
        except TimeoutError:
            raise FetchRefused(f"fetching it took longer than {policy.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchRefused(f"fetching it failed ({type(exc).__name__})") from None

    async def _follow(self, client: httpx.AsyncClient, url: str) -> bytes:
        current = _parsed(url)
        for _ in range(self.policy.max_redirects + 1):
            hop = await self._checked(current)
            location = await self._get(client, hop)
            if isinstance(location, bytes):
                return location
            current = _parsed(location, base=current)
        raise FetchRefused(f"more than {self.policy.max_redirects} redirects")

    async def _checked(self, url: httpx.URL) -> _Hop:
        if url.scheme not in ("http", "https"):
            raise FetchRefused(f"the scheme {url.scheme!r} is not fetched (http and https are)")
        if not url.host:
            raise FetchRefused("the URL has no host")
        if url.userinfo:
            raise FetchRefused("URLs with credentials are not fetched")
        host = url.raw_host.decode("ascii")
        if not self.policy.allowed_hosts:
            raise FetchRefused("no host is allowed (image_fetch_allowed_hosts is empty)")
        if not host_allowed(host, self.policy.allowed_hosts):
            raise FetchRefused(f"the host {host!r} is not in image_fetch_allowed_hosts")
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await self._resolve(host, port)
        if not addresses:
            raise FetchRefused(f"the host {host!r} resolves to no address")
        checked: list[IPAddress] = []
        for text in addresses:
            try:
                address = ipaddress.ip_address(text.partition("%")[0])
            except ValueError:
                raise FetchRefused(f"the host {host!r} resolves to {text!r}, not an address") \
                    from None
            why = address_refusal(address)
            if why is not None:
                raise FetchRefused(f"the host {host!r} resolves to {why}")
            checked.append(address)
        return _Hop(url, url.copy_with(host=str(checked[0]), port=port))

    async def _get(self, client: httpx.AsyncClient, hop: _Hop) -> bytes | str:
        """The body, or a redirect's Location."""
        netloc = hop.url.netloc.decode("ascii")
        headers = {"Host": netloc, "Accept": "image/*", "Accept-Encoding": "identity",
                   "User-Agent": "pocketserve-image-fetch"}
        extensions = {"sni_hostname": hop.url.raw_host.decode("ascii")} \
            if hop.url.scheme == "https" else {}
        request = client.build_request("GET", hop.target, headers=headers,
                                       extensions=extensions)
        response = await client.send(request, stream=True)
        try:
            if response.status_code in _REDIRECTS:
                location = str(response.headers.get("location") or "")
                if not location:
                    raise FetchRefused(f"a redirect ({response.status_code}) without Location")
                return location
            if response.status_code != 200:
                raise FetchRefused(f"the server answered HTTP {response.status_code}")
            return await self._body(response)
        finally:
            await response.aclose()

    async def _body(self, response: httpx.Response) -> bytes:
        """Raw bytes (no content decoding, so no compressed bomb), cut at the cap."""
        cap = self.policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchRefused(f"the image is {declared} bytes, more than the limit of {cap}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > cap:
                raise FetchRefused(f"the image is larger than the limit of {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _parsed(url: str, base: httpx.URL | None = None) -> httpx.URL:
    """`url` (relative to `base`, for a redirect's Location) or FetchRefused."""
    try:
        parsed = base.join(url) if base is not None else httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise FetchRefused(f"not a valid URL ({exc})") from None
    return parsed
