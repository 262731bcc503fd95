"""Where webhooks may go (SSRF): https only, and only to public addresses, unless the
operator allows more (``webhook_allow_http``, ``webhook_allowed_networks``).

A URL is checked twice: its form at submit (scheme, no credentials, a literal address
must be allowed), and at every attempt its resolved addresses, all of which must be
allowed; the request then goes to the address that was checked (the name only in ``Host``
and TLS SNI), so a DNS answer that changes between check and connect cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """The URL may not be called under the operator's policy; the message says why."""


@dataclass(frozen=True)
class TargetPolicy:
    """What a webhook URL may be."""

    allow_http: bool = False
    """Plain http (no TLS) is allowed: only for tests and the dev stack."""
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Non-public networks the operator allows (e.g. ``127.0.0.0/8`` for the dev stack)."""

    @classmethod
    def parse(cls, allow_http: bool, networks: str) -> TargetPolicy:
        """From the settings: a comma-separated list of CIDR networks."""
        nets = tuple(ipaddress.ip_network(n.strip(), strict=False)
                     for n in networks.split(",") if n.strip())
        return cls(allow_http, nets)

    def check_address(self, ip: IPAddress) -> None:
        """Refuse a non-public address (loopback, private, link-local, multicast, reserved,
        unspecified, or an IPv4 one in IPv6 clothing) outside the allowed networks."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed_networks):
            return
        if not ip.is_global or ip.is_multicast:
            raise TargetRefused(f"{ip} is not a public address")

    def check_url(self, url: str) -> tuple[str, str, int]:
        """The URL's (scheme, host, port) if its form is allowed; ``TargetRefused`` if not."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise TargetRefused(f"not a valid URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http") or (scheme == "http" and not self.allow_http):
            raise TargetRefused("the URL must be https")
        if not parts.hostname:
            raise TargetRefused("the URL has no host")
        if parts.username or parts.password:
            raise TargetRefused("the URL must not carry credentials")
        host = parts.hostname
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            self.check_address(literal)
        # A name (``localhost`` included) is checked by what it resolves to, at each attempt.
        return scheme, host, port or (443 if scheme == "https" else 80)

    async def resolve(self, url: str) -> tuple[str, IPAddress]:
        """(host, the address to connect to): every address the host resolves to must be
        allowed (one bad answer refuses it all: which one a client would use is not ours
        to know)."""
        _, host, port = self.check_url(url)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConnectionError(f"cannot resolve {host}: {exc}") from exc
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addresses:
            raise ConnectionError(f"{host} has no address")
        for ip in addresses:
            self.check_address(ip)
        return host, addresses[0]
