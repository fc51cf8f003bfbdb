"""Which IP addresses are on the public internet, decided from the IANA special-purpose registries.

`ipaddress`'s flags are not enough: Python 3.11.7 judges 192.0.0.8 global (CVE-2024-4032), and no
version looks inside the IPv6 forms that carry an IPv4 address (6to4 `2002::/16`, NAT64
`64:ff9b::/96`, IPv4-compatible `::/96`, IPv4-mapped `::ffff:0:0/96`). Here an address is public
only if it is outside every block below, and an IPv6 address must also be global unicast
(`2000::/3`); an embedded IPv4 address is judged as itself.

Blocks the registries mark "globally reachable" only in part (192.0.0.0/24, 2001::/23) are refused
whole: a news page is not served from an anycast relay.
Sources: iana-ipv4-special-registry and iana-ipv6-special-registry (2025), RFC 6890, RFC 9637.
"""

from __future__ import annotations

import ipaddress

_V4_SPECIAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8",  # this network
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local (cloud metadata services live here)
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.31.196.0/24",  # AS112
    "192.52.193.0/24",  # AMT
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",  # private
    "192.175.48.0/24",  # AS112 direct delegation
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",  # documentation
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and 255.255.255.255
))
_V6_SPECIAL = tuple(ipaddress.ip_network(n) for n in (
    "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation
    "100::/64",  # discard-only
    "100:0:0:1::/64",  # dummy prefix
    "2001::/23",  # IETF protocol assignments (Teredo 2001::/32 among them)
    "2001:db8::/32",  # documentation
    "2620:4f:8000::/48",  # AS112
    "3fff::/20",  # documentation
    "5f00::/16",  # segment routing SIDs
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated)
    "ff00::/8",  # multicast
))
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d (deprecated); :: and ::1 fall in it too


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), or None."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _V4_COMPATIBLE or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
    return None


def public_address(address: str) -> bool:
    """True for an address on the public internet; False for every special-purpose one, however written."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone (fe80::1%eth0) is link-local anyway
    if ip.version == 6:
        inner = embedded_ipv4(ip)
        if inner is not None:
            ip = inner
        elif ip not in _GLOBAL_UNICAST or any(ip in block for block in _V6_SPECIAL):
            return False
        else:
            return True
    return not any(ip in block for block in _V4_SPECIAL)
