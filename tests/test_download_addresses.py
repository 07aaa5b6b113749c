"""The SSRF guard on its own: which URLs and addresses a batch download may reach."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address

import pytest

from imgress.downloads.addresses import AddressRefused, embedded_ipv4, is_public, resolve

REFUSED = [
    ("file:///etc/passwd", "bad_scheme"),
    ("gopher://example.com/", "bad_scheme"),
    ("ftp://example.com/a.jpg", "bad_scheme"),
    ("http//missing-colon", "bad_scheme"),
    ("http://", "bad_url"),
    ("http://exa mple.com/", "bad_url"),
    ("http://example.com:99999/", "bad_url"),
    ("http://good@evil.example/", "bad_url"),
    ("http://user:pw@127.0.0.1/", "bad_url"),
    ("http://127.0.0.1/", "address_refused"),
    ("http://localhost:8080/", "address_refused"),
    ("http://[::1]/", "address_refused"),
    ("http://[::ffff:127.0.0.1]/", "address_refused"),
    ("http://[::ffff:7f00:1]/", "address_refused"),
    ("http://2130706433/", "address_refused"),
    ("http://0177.0.0.1/", "address_refused"),
    ("http://0x7f.0.0.1/", "address_refused"),
    ("http://127.1/", "address_refused"),
    ("http://169.254.169.254/latest/meta-data/", "address_refused"),
    ("http://[fe80::1]/", "address_refused"),
    ("http://10.1.2.3/", "address_refused"),
    ("http://192.168.0.1/", "address_refused"),
    ("http://172.16.5.4/", "address_refused"),
    ("http://100.64.0.1/", "address_refused"),
    ("http://0.0.0.0/", "address_refused"),
    ("http://224.0.0.1/", "address_refused"),
    ("http://240.0.0.1/", "address_refused"),
    ("http://[64:ff9b::7f00:1]/", "address_refused"),
    ("http://[2002:7f00:1::]/", "address_refused"),
    ("http://[fc00::1]/", "address_refused"),
]


@pytest.mark.parametrize(("url", "code"), REFUSED)
def test_refused(url: str, code: str) -> None:
    with pytest.raises(AddressRefused) as caught:
        asyncio.run(resolve(url, allow_private=False))
    assert caught.value.code == code, caught.value.message
    assert caught.value.status == 400


def test_public_addresses_pass_and_pin_the_checked_address() -> None:
    target = asyncio.run(resolve("https://8.8.8.8:8443/a.jpg?x=1", allow_private=False))
    assert target.address == "8.8.8.8" and target.port == 8443
    assert target.connect_url == "https://8.8.8.8:8443/a.jpg?x=1"
    assert target.host_header == "8.8.8.8:8443"
    six = asyncio.run(resolve("http://[2606:4700::1111]/", allow_private=False))
    assert six.connect_url == "http://[2606:4700::1111]:80/"
    assert six.host_header == "[2606:4700::1111]"


def test_operator_switches() -> None:
    lifted = asyncio.run(resolve("http://127.0.0.1:9/", allow_private=True))
    assert lifted.address == "127.0.0.1"
    exempt = frozenset({"127.0.0.1:9"})
    assert asyncio.run(resolve("http://127.0.0.1:9/", allow_private=False, exempt=exempt))
    with pytest.raises(AddressRefused):  # the exemption names one port only
        asyncio.run(resolve("http://127.0.0.1:10/", allow_private=False, exempt=exempt))
    with pytest.raises(AddressRefused):  # even lifted, the scheme rule holds
        asyncio.run(resolve("file:///etc/passwd", allow_private=True))


@pytest.mark.parametrize(("text", "public"), [
    ("8.8.8.8", True), ("1.1.1.1", True), ("2606:4700::1111", True),
    ("64:ff9b::808:808", True), ("::ffff:8.8.8.8", True), ("2002:808:808::1", True),
    ("127.0.0.1", False), ("::1", False), ("169.254.169.254", False), ("100.127.255.255", False),
    ("::ffff:10.0.0.1", False), ("64:ff9b::a9fe:a9fe", False), ("ff02::1", False),
    ("192.0.2.1", False), ("198.18.0.1", False), ("::", False),
])
def test_is_public(text: str, public: bool) -> None:
    assert is_public(ip_address(text)) is public


def test_embedded_ipv4() -> None:
    assert str(embedded_ipv4(ip_address("::ffff:1.2.3.4"))) == "1.2.3.4"  # type: ignore[arg-type]
    assert str(embedded_ipv4(ip_address("2002:0102:0304::"))) == "1.2.3.4"  # type: ignore[arg-type]
    assert str(embedded_ipv4(ip_address("64:ff9b::102:304"))) == "1.2.3.4"  # type: ignore[arg-type]
    assert embedded_ipv4(ip_address("2606:4700::1111")) is None  # type: ignore[arg-type]
