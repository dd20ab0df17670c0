# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input validation shared by every module. Pure functions, no I/O."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import ipaddress
import re

from .errors import PicError

NAME_MAX = 64
ID_MAX = 32
# Display names are free text, but never something a shell, a file name or a
# log line could misread: no control characters and no shell metacharacters.
_FORBIDDEN_NAME_CHARS = set(';&|$`<>\\\'"*?{}[]!#~%^=\n\r\t\x00')
_PEER_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$')
_IFNAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$')


def check_display_name(value, field):
    """A connection's display name: free text without control or shell characters."""
    if not isinstance(value, str) or not value.strip():
        raise PicError("must be a non-empty string", field, value)
    if len(value) > NAME_MAX:
        raise PicError("is longer than %d characters" % NAME_MAX, field, value)
    bad = sorted(set(c for c in value if c in _FORBIDDEN_NAME_CHARS or ord(c) < 32 or ord(c) == 127))
    if bad:
        raise PicError("contains forbidden characters %s (control and shell metacharacters are refused)"
                       % ''.join(repr(c)[1:-1] for c in bad), field, value)
    if value != value.strip():
        raise PicError("must not start or end with spaces", field, value)
    return value


def slugify(name):
    """The stable id of a display name: ``"Home VPN"`` -> ``home-vpn``."""
    slug = re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')
    return slug[:ID_MAX].strip('-')


def check_peer_name(value, field):
    if not isinstance(value, str) or not _PEER_NAME_RE.match(value):
        raise PicError("must be 1-64 characters of letters, digits, '_', '.', '@', '-', starting with a letter "
                       "or digit", field, value)
    return value


def check_ifname(value, field):
    if not isinstance(value, str) or not _IFNAME_RE.match(value):
        raise PicError("is not a valid interface name (1-15 characters of letters, digits, '_', '.', '-')",
                       field, value)
    return value


@functools.lru_cache(maxsize=None)
def network(value, strict=False):
    """ipaddress.ip_network, cached: a run parses each peer address several times."""
    return ipaddress.ip_network(value, strict=strict)


def parse_network(value, field, host_only=False):
    """An address or network (``10.0.0.2``, ``10.0.0.2/32``, ``fd00::/64``) -> ip_network.

    Host bits must be zero for a prefix; ``host_only`` requires a single address.
    """
    if not isinstance(value, str) or not value.strip():
        raise PicError("must be an IPv4 or IPv6 address or network", field, value)
    try:
        net = network(value.strip(), True)
    except ValueError as exc:
        raise PicError("is not a valid IPv4/IPv6 address or network (%s)" % exc, field, value)
    if host_only and net.num_addresses != 1:
        raise PicError("must be a single address (/32 or /128)", field, value)
    if net.is_multicast or net.is_unspecified or net.is_loopback or net.is_link_local:
        raise PicError("must be a unicast, non-loopback, non-link-local address", field, value)
    return net


def parse_interface_address(value, field):
    """An interface address with prefix (``10.200.0.2/24``) -> ip_interface."""
    if not isinstance(value, str):
        raise PicError("must be an address with optional prefix", field, value)
    try:
        return ipaddress.ip_interface(value.strip())
    except ValueError as exc:
        raise PicError("is not a valid interface address (%s)" % exc, field, value)


def find_overlaps(entries):
    """entries: list of (network, owner_field). Returns the first overlapping pair or None.

    Sorted sweep per family: O(n log n), fine for tens of thousands of peers.
    """
    for version in (4, 6):
        nets = sorted((n for n in entries if n[0].version == version),
                      key=lambda e: (int(e[0].network_address), -e[0].prefixlen))
        last = None
        for net, owner in nets:
            if last is not None and int(net.network_address) <= int(last[0].broadcast_address):
                return last, (net, owner)
            if last is None or int(net.broadcast_address) > int(last[0].broadcast_address):
                last = (net, owner)
    return None


def check_bool_or_none(value, field):
    if value is None or isinstance(value, bool):
        return value
    raise PicError("must be true, false or null", field, value)


def parse_int(value, field, minimum=None, maximum=None):
    """An integer given as int or as a decimal/hex string (``0x00ff0000``)."""
    if isinstance(value, bool):
        raise PicError("must be an integer", field, value)
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        try:
            result = int(value.strip(), 0)
        except ValueError:
            raise PicError("must be an integer (decimal or 0x hex)", field, value)
    else:
        raise PicError("must be an integer", field, value)
    if minimum is not None and result < minimum:
        raise PicError("must be at least %d" % minimum, field, value)
    if maximum is not None and result > maximum:
        raise PicError("must be at most %d" % maximum, field, value)
    return result
