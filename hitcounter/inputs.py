"""Everything a client sends, checked and normalised before it reaches the store."""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from hitcounter.errors import InvalidInput

MAX_PATH_BYTES = 512
# Longer raw input is refused before any work: even fully percent-encoded, a path of
# 512 bytes cannot take more than three times that.
MAX_RAW_PATH = 3 * MAX_PATH_BYTES + 1024
MAX_HOST_LENGTH = 253
# Pages and referrers repeat from hit to hit: the hit path keeps the answers for this
# many recent distinct inputs per process (a few MB at most, given the input limits).
RECENT_INPUTS = 1024

SITE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# A percent escape, or a lone '%' that escapes nothing.
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SLASHES = re.compile(r"/{2,}")
# Escapes that must stay escaped, or the path would mean something else. Escaped
# control characters are decoded, so that they are refused like literal ones.
_KEEP_ESCAPED = frozenset(b"/?#%")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*"
)


def validate_site_name(name: str | None) -> str:
    """Return the site name if it follows the naming rule, else raise InvalidInput."""
    if not name or not SITE_NAME.fullmatch(name):
        raise InvalidInput(
            "site names are 1 to 63 characters of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


@functools.lru_cache(maxsize=RECENT_INPUTS)  # refusals raise, and are not kept
def normalise_path(raw: str | None) -> str:
    """Normalise a page path: no query or fragment, canonical escapes, single slashes."""
    if raw is None or raw == "":
        raise InvalidInput("path is required")
    if len(raw) > MAX_RAW_PATH:
        raise InvalidInput(f"path is longer than {MAX_PATH_BYTES} bytes")
    if "://" in raw[:16]:
        # A full URL: keep only its path.
        raw = urlsplit(raw).path or "/"
    path = raw.split("#", 1)[0].split("?", 1)[0]
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("path is not valid UTF-8") from exc
    try:
        path = _ESCAPE.sub(_unescape, encoded).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("path is not valid UTF-8") from exc
    if _CONTROL.search(path):
        raise InvalidInput("path contains control characters")
    path = _resolve_dots(_SLASHES.sub("/", "/" + path.lstrip("/")))
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise InvalidInput(f"path is longer than {MAX_PATH_BYTES} bytes")
    return path


def _unescape(match: re.Match[bytes]) -> bytes:
    if match.group(1) is None:
        return b"%25"
    byte = int(match.group(1), 16)
    if byte in _KEEP_ESCAPED:
        return b"%%%02X" % byte
    return bytes([byte])


def _resolve_dots(path: str) -> str:
    """Remove '.' and '..' segments as a browser would, keeping a trailing slash."""
    segments = path.split("/")[1:]
    if not any(s in (".", "..") for s in segments):
        return path
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    trailing = "/" if segments[-1] in (".", "..") else ""
    return "/" + "/".join(out) + (trailing if out else "")


@functools.lru_cache(maxsize=RECENT_INPUTS)
def host_of(url: str | None) -> str | None:
    """Return the lower-case hostname of an http(s) URL, or None if it has none."""
    if not url or len(url) > 4096:
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    host = host.rstrip(".")
    if len(host) > MAX_HOST_LENGTH or _CONTROL.search(host) or " " in host:
        return None
    return host


def validate_domain_pattern(pattern: str) -> str:
    """Check one allowed-domain entry: a hostname, or '*.' followed by one."""
    value = pattern.strip().lower().rstrip(".")
    name = value[2:] if value.startswith("*.") else value
    if not _HOSTNAME.fullmatch(name):
        raise InvalidInput(f"not a hostname or *.hostname: {pattern!r}")
    return value


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """True if host matches an allowed domain; '*.example.com' also allows example.com."""
    for pattern in patterns:
        if pattern.startswith("*."):
            apex = pattern[2:]
            if host == apex or host.endswith("." + apex):
                return True
        elif host == pattern:
            return True
    return False


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The networks whose X-Forwarded-For is believed, tested as integers.

    Every hit tests its peer (and hops) against them: an address parsed by inet_pton
    and masked as an int costs a fraction of building ipaddress objects to compare.
    """

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self._ranges = tuple(
            (net.version, int(net.network_address), int(net.netmask)) for net in networks
        )
        # The peers in front of the app are a few proxies, asked about on every hit.
        self._recent = functools.lru_cache(maxsize=256)(self._test)

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def __contains__(self, address: str) -> bool:
        return self._recent(address)

    def _test(self, address: str) -> bool:
        parsed = _parse_ip(address)
        if parsed is None:
            return False
        version, value = parsed
        return any(v == version and value & mask == net for v, net, mask in self._ranges)


def client_ip(
    remote_addr: str | None,
    forwarded_for: str | None,
    trusted: TrustedProxies,
) -> str:
    """Return the client's address: the socket peer, unless it is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right, skipping trusted
    hops, so a client cannot forge its address by sending the header itself.
    """
    peer = remote_addr or ""
    if not trusted or not forwarded_for or peer not in trusted:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if not hops:
        return peer
    # The leftmost hop is the answer whether it is trusted or not (nothing lies beyond
    # it), so it is never tested: behind one proxy, no hit parses an address.
    for hop in reversed(hops[1:]):
        if hop not in trusted:
            return hop
    return hops[0]


def _parse_ip(address: str) -> tuple[int, int] | None:
    """The address's IP version and value, or None. inet_pton parses in C and is as
    strict as ipaddress: no leading zeros, no scope."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, address))
    except (OSError, ValueError):
        pass
    try:
        return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, address))
    except (OSError, ValueError):
        return None
