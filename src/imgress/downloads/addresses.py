"""SSRF guard: which URLs a batch download may fetch, and at which address.

Every hop is checked: the host is resolved here, each address is judged (also when
an IPv4 address hides inside IPv6: mapped, 6to4, NAT64, Teredo), and the fetcher then
connects to the address that was checked, so DNS rebinding has nothing to swap.
Numeric spellings (decimal 2130706433, octal 0177.0.0.1, hex 0x7f.1) resolve to what
they mean through the system resolver and are judged as such.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import SplitResult, urlsplit

from imgress.errors import BadRequest

IPAddress = IPv4Address | IPv6Address
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_MAX_URL = 8192


class AddressRefused(BadRequest):
    """A URL the guard will not fetch; the item fails with this code, never the job."""

    code = "url_refused"


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: connect to `address`, but speak to `host` (Host header, SNI)."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the name."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return parts._replace(netloc=f"{literal}:{self.port}").geturl()

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it carries one."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """Only globally routable unicast addresses; loopback, private, link-local (cloud
    metadata), CGNAT, multicast, reserved and unspecified are all refused."""
    if isinstance(ip, IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            return is_public(inner)
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback
        or ip.is_link_local or ip.is_private
    )


def parse(url: str) -> SplitResult:
    """Refuse what is not a plain http(s) URL to a named or numeric host."""
    if not isinstance(url, str) or len(url) > _MAX_URL or any(c in url for c in "\r\n\t "):
        raise AddressRefused("the URL is malformed", code="bad_url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"the URL is malformed ({exc})", code="bad_url") from None
    if parts.scheme not in ("http", "https"):
        raise AddressRefused("only http and https URLs can be fetched", code="bad_scheme")
    if "@" in parts.netloc:
        raise AddressRefused("URLs with user-info (user@host) are refused", code="bad_url")
    if not parts.hostname:
        raise AddressRefused("the URL has no host", code="bad_url")
    if port == 0:
        raise AddressRefused("port 0 is not a port", code="bad_url")
    return parts


async def resolve(url: str, *, allow_private: bool,
                  exempt: frozenset[str] = frozenset()) -> Target:
    """Check `url` and pick the address to connect to. `exempt` names addresses
    (`ADDRESS` or `ADDRESS:PORT`) an operator lets through the private-address rule."""
    parts = parse(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"the host {host!r} does not resolve ({exc})",
                             code="dns_failed") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise AddressRefused(f"the host {host!r} has no address", code="dns_failed")
    if not allow_private:
        # One bad address refuses the host: a name must not mix public and private.
        bad = next((a for a in addresses if not is_public(a)
                    and str(a) not in exempt and f"{a}:{port}" not in exempt), None)
        if bad is not None:
            raise AddressRefused(
                f"{host} resolves to {bad}, which is not a public address",
                code="address_refused")
    chosen = next((a for a in addresses if a.version == 4), addresses[0])
    return Target(url=url, scheme=parts.scheme, host=host, port=port, address=str(chosen))
