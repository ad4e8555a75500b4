"""Which callback URLs the platform will POST to: the guard that keeps webhooks from reaching inside.

A callback URL is the client's choice, and the orchestrator usually sits in a network with things no client
should reach (the metadata service at 169.254.169.254, the database, the stages). So a URL is refused unless:
- its scheme is http or https and it has a host;
- its host is allowlisted, when an allowlist of host names is configured (VTON_WEBHOOK_ALLOWED_HOSTS);
- every address its host resolves to is public, or inside a network configured as allowed
  (VTON_WEBHOOK_ALLOWED_NETWORKS). Loopback, private, link-local, shared, reserved and multicast addresses are
  not public; an IPv6 address that carries an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`,
  6to4) is judged by the IPv4 address as well.
The check runs when a job is submitted (a clear 422 at once) and again before every delivery, whose
connection then goes to the address that was checked: a name that resolves elsewhere later (DNS rebinding)
reaches nothing new.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_CHARS = 2048
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class CallbackRefused(ValueError):
    """A callback URL the platform will not call; the message says why."""


@dataclass(frozen=True)
class CallbackTarget:
    url: str
    scheme: str
    host: str  # as written in the URL, lowercased (for the Host header and TLS)
    port: int
    addresses: tuple[str, ...]  # every address the host resolved to, all checked


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_public(ip: IPAddress) -> bool:
    return ip.is_global and not ip.is_multicast


class CallbackPolicy:
    def __init__(
        self,
        allowed_hosts: Sequence[str] = (),
        allowed_networks: Sequence[str] = (),
        resolve: Callable[[str, int], list[str]] = resolve_host,
    ) -> None:
        self.allowed_hosts = tuple(h.lower().rstrip(".") for h in allowed_hosts)
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allowed_networks
        )
        self.resolve = resolve

    def check(self, url: str) -> CallbackTarget:
        """The URL's target with every address checked; CallbackRefused naming the reason otherwise."""
        if len(url) > MAX_URL_CHARS:
            raise CallbackRefused(f"the callback URL is longer than {MAX_URL_CHARS} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise CallbackRefused(f"the callback URL is malformed: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CallbackRefused("a callback URL is http:// or https:// with a host name or address")
        host = parts.hostname.lower().rstrip(".")
        port = port or (443 if parts.scheme == "https" else 80)
        if self.allowed_hosts and not any(_host_matches(host, pattern) for pattern in self.allowed_hosts):
            raise CallbackRefused(
                f"callbacks may go to {', '.join(self.allowed_hosts)} only (VTON_WEBHOOK_ALLOWED_HOSTS), "
                f"not {host!r}"
            )
        addresses = self._addresses(host, port)
        for text in addresses:
            ip = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is no part of it
            self._check_address(host, ip)
        return CallbackTarget(url, parts.scheme, host, port, tuple(addresses))

    def _addresses(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        try:
            addresses = self.resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise CallbackRefused(f"the callback host {host!r} does not resolve: {exc}") from None
        if not addresses:
            raise CallbackRefused(f"the callback host {host!r} resolves to no address")
        return addresses

    def _check_address(self, host: str, ip: IPAddress) -> None:
        embedded = _embedded_ipv4(ip)
        destination = embedded if embedded is not None else ip  # an IPv4 one carried goes where it goes
        if _is_public(destination):
            return
        candidates = (ip,) if embedded is None else (ip, embedded)
        if any(a in net for a in candidates for net in self.allowed_networks if a.version == net.version):
            return
        what = "" if str(ip) == host else f"{host!r} resolves to "
        raise CallbackRefused(
            f"the callback URL's host {what}{ip}, a {_kind(destination)} address; callbacks to loopback, "
            "private and link-local addresses are refused unless their network is in "
            "VTON_WEBHOOK_ALLOWED_NETWORKS"
        )


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _kind(ip: IPAddress) -> str:
    for name in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    return "non-public"
