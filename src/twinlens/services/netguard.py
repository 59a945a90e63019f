"""Outbound-request guard: refuse URLs that resolve to private, loopback, link-local or
otherwise non-public addresses (SSRF: cloud metadata at 169.254.169.254, the database
on localhost...) unless a setting allows them."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from twinlens.contract.errors import InputError


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, field: str, allow_private: bool) -> None:
    """Raise InputError naming `field` unless `url` is http(s) to a public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InputError(field, f"only http and https URLs are accepted, not {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise InputError(field, "the URL has no host")
    if allow_private:
        return
    for address in resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), field):
        if not is_public_address(address):
            raise InputError(field, f"refused: {parts.hostname} resolves to the non-public address {address}")


def resolve(host: str, port: int, field: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(field, f"cannot resolve host {host!r}: {exc}") from exc
    return sorted({info[4][0] for info in infos})


def check_peer(address: str | None, *, field: str, allow_private: bool) -> None:
    """After connecting: the address actually reached must be public too (DNS rebinding)."""
    if allow_private or address is None:
        return
    if not is_public_address(address):
        raise InputError(field, f"refused: the connection reached the non-public address {address}")
