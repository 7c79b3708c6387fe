"""Where a stream's source may point: the destination policy against server-side request
forgery, applied by the API when a stream is registered and by the ingest worker on the
resolved address each time it connects (DNS may answer differently later).

Network sources: every address the host resolves to must be allowed, and so must the port
(the URL's, or the scheme's default). An address is denied when it lies in a denied network
(:data:`BUILTIN_DENIED`, plus ``source_denied_networks``) and no allowed network
(``source_allowed_networks``) holding it is at least as specific (the longest prefix wins; a
tie goes to the allowed network), so ``127.0.0.0/8`` allowed lifts the built-in loopback
denial and ``0.0.0.0/0`` denied plus ``10.1.0.0/16`` allowed admits one camera network only.
Private (RFC 1918) networks are allowed unless denied: cameras live there. A port of the
service itself (Kafka, Redis, the API, metrics, Prometheus) is denied on every address unless
listed in ``source_allowed_ports``.

File sources: the path, relative paths taken from the root, with symlinks and ``..``
resolved, must lie under ``file_root``; without a root no file source is allowed.

Everything here is pure but :func:`resolve` (which calls the system resolver).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import SplitResult, urlsplit

from services.common.streams import FILE_SCHEME, redact, scheme_of

if TYPE_CHECKING:
    from services.common.settings import Settings

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver: TypeAlias = Callable[[str, int | None], list[Address]]

BUILTIN_DENIED = (
    "0.0.0.0/8",  # "this host": connecting to 0.0.0.0 reaches the local machine
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local: cloud metadata (169.254.169.254)
    "100.100.100.200/32",  # a cloud's metadata service outside link-local
    "224.0.0.0/4",  # multicast
    "255.255.255.255/32",  # broadcast
    "::/128",
    "::1/128",  # loopback
    "fe80::/10",  # link-local
    "fd00:ec2::254/128",  # a cloud's IPv6 metadata service
    "ff00::/8",  # multicast
)
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}
PINNED_SCHEMES = ("rtsp", "http")  # connected to the checked address (no TLS name to keep)


class ForbiddenDestination(ValueError):
    """The source points where the policy does not allow; the message says why (for the API's
    answer and the worker's log, never for a stream's status)."""


def network(text: str) -> Network:
    """The network of a CIDR (``10.0.0.0/8``, ``::1/128``; a bare address is one host)."""
    return ipaddress.ip_network(text.strip(), strict=False)


def _plain(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _port_of(text: str) -> int | None:
    """The port of a ``host:port`` or URL, None when it has none."""
    head = text if "://" in text else f"tcp://{text.strip()}"
    try:
        return urlsplit(head).port
    except ValueError:
        return None


def service_ports(settings: Settings) -> frozenset[int]:
    """The TCP ports the service's own servers listen on, from ``settings``."""
    ports = {
        settings.kafka_port,
        settings.kafka_controller_port,
        settings.redis_port,
        settings.prometheus_port,
        settings.api_port,
        settings.metrics_port,
    }
    extra = [*(settings.kafka_bootstrap or "").split(","), *settings.scrape_targets]
    if settings.redis_url:
        extra.append(settings.redis_url)
    ports.update(p for p in map(_port_of, filter(None, extra)) if p is not None)
    ports.discard(0)  # "any free port"
    return frozenset(ports)


@dataclass(frozen=True)
class Target:
    """A parsed network source: ``host`` (a name or an address literal, without brackets),
    ``port`` (the URL's or the scheme's default; None when neither), ``scheme``."""

    scheme: str
    host: str
    port: int | None
    parts: SplitResult

    @classmethod
    def of(cls, url: str) -> Target:
        scheme = scheme_of(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ForbiddenDestination(f"{redact(url)}: not a URL with a valid port") from None
        if not parts.hostname:
            raise ForbiddenDestination(f"{redact(url)}: the URL names no host")
        return cls(scheme, parts.hostname, port or DEFAULT_PORTS.get(scheme), parts)

    def literal(self) -> Address | None:
        """The host as an address when it is one."""
        try:
            return _plain(ipaddress.ip_address(self.host))
        except ValueError:
            return None

    def pinned(self, address: Address) -> tuple[str, dict[str, str]]:
        """(URL, FFmpeg options) that connect to ``address`` rather than resolving the host
        again: for rtsp and http the host is replaced by the address literal (http keeps the
        name in a ``Host`` header); other schemes (TLS needs the name) are left as they are."""
        if self.scheme not in PINNED_SCHEMES or self.literal() is not None:
            return self.parts.geturl(), {}
        userinfo, at, hostport = self.parts.netloc.rpartition("@")
        host = f"[{address}]" if address.version == 6 else str(address)
        port = f":{self.parts.port}" if self.parts.port else ""
        url = self.parts._replace(netloc=f"{userinfo}{at}{host}{port}").geturl()
        options = {"headers": f"Host: {hostport}\r\n"} if self.scheme == "http" else {}
        return url, options


def resolve(host: str, port: int | None) -> list[Address]:
    """The addresses ``host`` resolves to, in the resolver's order, without repeats;
    ``OSError`` (``socket.gaierror``) when it does not resolve."""
    seen: list[Address] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = _plain(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]))
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True)
class DestinationPolicy:
    """The policy of one deployment (see the module docstring); build it with
    :meth:`from_settings`."""

    denied: tuple[Network, ...] = tuple(network(n) for n in BUILTIN_DENIED)
    allowed: tuple[Network, ...] = ()
    denied_ports: frozenset[int] = frozenset()
    file_root: Path | None = None
    resolver: Resolver = field(default=resolve, compare=False)  # host, port -> addresses

    @classmethod
    def from_settings(cls, settings: Settings) -> DestinationPolicy:
        allowed_ports = set(settings.source_allowed_ports)
        return cls(
            denied=tuple(network(n) for n in (*BUILTIN_DENIED, *settings.source_denied_networks)),
            allowed=tuple(network(n) for n in settings.source_allowed_networks),
            denied_ports=frozenset(service_ports(settings) - allowed_ports),
            file_root=settings.file_root,
        )

    def refusal(self, address: Address, port: int | None) -> str | None:
        """Why ``address``:``port`` is denied, None when it is allowed."""
        address = _plain(address)
        if port is not None and port in self.denied_ports:
            return f"port {port} is one of the service's own ports"
        denied = _longest(self.denied, address)
        if denied is not None:
            allowed = _longest(self.allowed, address)
            if allowed is None or allowed.prefixlen < denied.prefixlen:
                return f"{address} is in the denied network {denied}"
        return None

    def check(self, url: str, addresses: Iterable[Address]) -> None:
        """ForbiddenDestination unless every one of ``addresses`` (what the URL's host
        resolved to) is allowed on the URL's port."""
        target = Target.of(url)
        for address in addresses:
            why = self.refusal(address, target.port)
            if why is not None:
                raise ForbiddenDestination(f"{redact(url)}: {why}")

    def connect(self, url: str) -> list[tuple[str, dict[str, str]]]:
        """(URL, FFmpeg options) pairs to open a network source with, to try in order: its
        host resolved by ``resolver``, every address checked, and the URL pinned to each
        address in the resolver's order (:meth:`Target.pinned`; one pair when the scheme is
        not pinned). ForbiddenDestination when denied; OSError when the host does not
        resolve."""
        target = Target.of(url)
        literal = target.literal()
        addresses = [literal] if literal is not None else self.resolver(target.host, target.port)
        if not addresses:
            raise OSError(f"{target.host}: no address")
        self.check(url, addresses)
        pinned = [target.pinned(address) for address in addresses]
        return [p for i, p in enumerate(pinned) if p not in pinned[:i]]

    def file_path(self, url: str) -> Path:
        """The real path of a file source (``file://`` URL or path; a relative path is taken
        from the root), symlinks and ``..`` resolved; ForbiddenDestination unless it lies
        under ``file_root``."""
        if self.file_root is None:
            raise ForbiddenDestination("file sources need a file root (setting file_root)")
        root = self.file_root.expanduser().resolve()
        path = (root / url.removeprefix(f"{FILE_SCHEME}://")).resolve()
        if not path.is_relative_to(root):
            raise ForbiddenDestination(f"{url}: outside the file root {root}")
        return path


def _longest(networks: Iterable[Network], address: Address) -> Network | None:
    """The most specific of ``networks`` holding ``address`` (None: none does)."""
    holding = [n for n in networks if n.version == address.version and address in n]
    return max(holding, key=lambda n: n.prefixlen, default=None)
