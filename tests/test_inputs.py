"""Input rules: paths, site names, hosts, allowed domains, client addresses."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcounter.errors import InvalidInput
from hitcounter.inputs import (
    MAX_PATH_BYTES,
    TrustedProxies,
    client_ip,
    host_allowed,
    host_of,
    normalise_path,
    validate_domain_pattern,
    validate_site_name,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/about", "/about"),
        ("about", "/about"),
        ("/a//b///c", "/a/b/c"),
        ("/post?utm_source=x&id=3", "/post"),
        ("/post#comments", "/post"),
        ("/post/?x#y", "/post/"),
        ("/%7euser/", "/~user/"),
        ("/%7Euser/", "/~user/"),
        ("/caf%C3%A9", "/café"),
        ("/café", "/café"),
        ("/a%2fb", "/a%2Fb"),
        ("/100%", "/100%25"),
        ("/%25", "/%25"),
        ("/%41%42%43", "/ABC"),
        ("/a/./b/../c", "/a/c"),
        ("/../../etc", "/etc"),
        ("https://example.com/blog/post?x=1", "/blog/post"),
        ("/日本語/ページ", "/日本語/ページ"),
        ("/" + "a" * (MAX_PATH_BYTES - 1), "/" + "a" * (MAX_PATH_BYTES - 1)),
    ],
)
def test_normalise_path(raw: str, expected: str) -> None:
    assert normalise_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "required"),
        ("", "required"),
        ("/" + "a" * MAX_PATH_BYTES, "longer"),
        ("/" + "é" * 300, "longer"),
        ("/" + "%41" * 2000, "longer"),
        ("/%ff%fe", "UTF-8"),
        ("/\udcff", "UTF-8"),
        ("/a\x00b", "control"),
        ("/a%00b", "control"),
        ("/a\nb", "control"),
        ("/a%0d%0aSet-Cookie:x", "control"),
    ],
)
def test_normalise_path_refuses(raw: str | None, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        normalise_path(raw)


@given(st.text(min_size=1, max_size=300))
def test_normalised_paths_are_canonical(raw: str) -> None:
    try:
        path = normalise_path(raw)
    except InvalidInput:
        return
    assert path.startswith("/")
    assert "//" not in path and "?" not in path and "#" not in path
    assert len(path.encode()) <= MAX_PATH_BYTES
    assert normalise_path(path) == path  # idempotent: one page, one key


@pytest.mark.parametrize("name", ["blog", "a", "my-site.example_1", "0" * 63])
def test_site_names_accepted(name: str) -> None:
    assert validate_site_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Blog", "-blog", ".blog", "a" * 64, "bl og", "blog/x", "{blog}", "é", None]
)
def test_site_names_refused(name: str | None) -> None:
    with pytest.raises(InvalidInput):
        validate_site_name(name)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://News.YCombinator.com/item?id=1", "news.ycombinator.com"),
        ("http://example.com:8080/x", "example.com"),
        ("https://example.com./", "example.com"),
        ("android-app://com.google", None),
        ("javascript:alert(1)", None),
        ("not a url", None),
        ("", None),
        (None, None),
        ("https://[::1", None),
    ],
)
def test_host_of(url: str | None, host: str | None) -> None:
    assert host_of(url) == host


@pytest.mark.parametrize(
    ("host", "patterns", "allowed"),
    [
        ("example.com", ["example.com"], True),
        ("www.example.com", ["example.com"], False),
        ("www.example.com", ["*.example.com"], True),
        ("example.com", ["*.example.com"], True),
        ("badexample.com", ["*.example.com"], False),
        ("example.com.evil.net", ["example.com"], False),
        ("other.org", ["example.com", "other.org"], True),
    ],
)
def test_host_allowed(host: str, patterns: list[str], allowed: bool) -> None:
    assert host_allowed(host, patterns) is allowed


@pytest.mark.parametrize("pattern", ["", "*", "http://x.com", "a b.com", "*.*.com", "x.com/path"])
def test_bad_domain_patterns(pattern: str) -> None:
    with pytest.raises(InvalidInput):
        validate_domain_pattern(pattern)


PROXY = [ipaddress.ip_network("10.0.0.0/8")]
PROXY6 = [ipaddress.ip_network("2001:db8::/32"), ipaddress.ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.5", None, [], "203.0.113.5"),
        ("203.0.113.5", "1.2.3.4", [], "203.0.113.5"),  # nobody trusted: header ignored
        ("203.0.113.5", "1.2.3.4", PROXY, "203.0.113.5"),  # peer is not a proxy
        ("10.0.0.2", "1.2.3.4", PROXY, "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4", PROXY, "1.2.3.4"),  # a forged left entry
        ("10.0.0.2", "1.2.3.4, 10.0.0.9", PROXY, "1.2.3.4"),  # two proxy hops
        ("10.0.0.2", "junk", PROXY, "junk"),
        ("2001:db8::7", "2001:db9::1", PROXY6, "2001:db9::1"),
        ("2001:db8::7", "2001:db9::1, 127.0.0.1", PROXY6, "2001:db9::1"),
        ("127.0.0.2", "1.2.3.4", PROXY6, "127.0.0.2"),  # outside the /32
        ("::ffff:127.0.0.1", "1.2.3.4", PROXY6, "::ffff:127.0.0.1"),  # v6, not the v4 net
        ("010.0.0.2", "1.2.3.4", PROXY, "010.0.0.2"),  # not an address: not a proxy
    ],
)
def test_client_ip(peer: str, forwarded: str | None, trusted: list, expected: str) -> None:
    assert client_ip(peer, forwarded, TrustedProxies(trusted)) == expected


addresses = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), st.text(max_size=12)
)
networks = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).flatmap(
    lambda ip: st.integers(0, ip.max_prefixlen).map(
        lambda bits: ipaddress.ip_network(f"{ip}/{bits}", strict=False)
    )
)


@given(address=addresses, trusted=st.lists(networks, max_size=3))
def test_trusted_proxies_agree_with_ipaddress(address: str, trusted: list) -> None:
    """The integer test of TrustedProxies says what ipaddress's `in` says."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        expected = False
    else:
        expected = any(parsed in network for network in trusted)
    assert (address in TrustedProxies(trusted)) is expected
