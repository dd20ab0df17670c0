# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The input grammar of the collection: one strict allow-list per field. Pure, no I/O.

Every value that reaches a file, a command line or the kernel passes one of
these functions first. Rules shared by all of them:

- patterns are matched with ``re.fullmatch`` (never ``$``, which accepts a
  trailing newline);
- no value holds a control character (:func:`check_text`, used by every
  validator of a string);
- addresses are parsed strictly: only the characters of an address literal
  (an IPv6 scope id ``%...`` is refused), canonical form stored;
- a refused value raises :class:`PicError` naming the dotted field path and the
  value (``repr``), or no value at all when it could be a secret.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import functools
import hashlib
import ipaddress
import re

from .errors import PicError

NAME_MAX = 64
ID_MAX = 32
# A long slug keeps its first ID_HEAD characters and gets '-' + ID_HASH hex
# characters of the name's sha256: two names never share an id by truncation.
ID_HEAD = 23
ID_HASH = 8
# Control characters (C0, DEL, C1), Unicode line/paragraph separators and the
# invisible format characters that reorder or hide text.
_CONTROL_RE = re.compile(u'[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]')
# Display names are free text, but never something a shell, a file name or a
# log line could misread: no control characters and no shell metacharacters.
_FORBIDDEN_NAME_CHARS = set(';&|$`<>\\\'"*?{}[]!#~%^=')
_PEER_NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}')
_IFNAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,14}')
OWNED_IF_PREFIX = 'pic-'
_OWNED_IFNAME_RE = re.compile(r'pic-[a-z0-9-]{1,11}')
_LABEL = r'[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
_HOSTNAME_RE = re.compile(r'%s(?:\.%s)*\.?' % (_LABEL, _LABEL))
# What inet_aton (and so getaddrinfo, which wg, ssh and OpenVPN call) reads as an IPv4
# address: 1-4 numbers in decimal, octal or hex ('0x7f000001' is 127.0.0.1).
_NUMERIC_HOST_RE = re.compile(r'(?:0[xX][0-9A-Fa-f]*|[0-9]+)(?:\.(?:0[xX][0-9A-Fa-f]*|[0-9]+)){0,3}\.?')
_IP_CHARS_RE = re.compile(r'[0-9A-Fa-f:.]{2,45}')
_NET_CHARS_RE = re.compile(r'[0-9A-Fa-f:.]{2,45}(?:/[0-9]{1,3})?')
_USER_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]{0,31}')
_WORD_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,127}')
_COMMAND_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}')
_PATH_RE = re.compile(r'(?:/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,63}){1,16}')
_INT_RE = re.compile(r'[0-9]{1,20}|0[xX][0-9A-Fa-f]{1,16}')
_KEY_RE = re.compile(r'[A-Za-z0-9+/]{43}=')
_SECRET_FORBIDDEN = set('"\'\\')
SECRET_MAX = 256
_CHAR_NAMES = {'"': 'double quotes', "'": 'single quotes', '\\': 'backslashes'}
# The widest prefix a peer or service may hold: a /0 would take every
# address of the family, and a peer is a host or a site, never the internet.
PEER_MIN_PREFIX = {4: 16, 6: 48}


def has_control(value):
    return bool(_CONTROL_RE.search(value))


def check_text(value, field, secret=False, allow=''):
    """Any string input: a str without control characters (``allow`` lists the
    control characters a multi-line text may hold, e.g. ``'\\n\\t'``)."""
    shown = None if secret else value
    if not isinstance(value, str):
        raise PicError("must be a string" + (" (value hidden)" if secret else ""), field, shown)
    bad = sorted(set(c for c in _CONTROL_RE.findall(value) if c not in allow))
    if bad:
        raise PicError("contains control characters %s%s" % (
            ''.join(repr(c)[1:-1] for c in bad), " (value hidden)" if secret else ""), field, shown)
    return value


def _full(regex, value, field, msg):
    check_text(value, field)
    if not regex.fullmatch(value):
        raise PicError(msg, field, value)
    return value


def check_display_name(value, field):
    """A connection's display name: free text without control or shell characters."""
    if not isinstance(value, str) or not value.strip():
        raise PicError("must be a non-empty string", field, value)
    check_text(value, field)
    if len(value) > NAME_MAX:
        raise PicError("is longer than %d characters" % NAME_MAX, field, value)
    bad = sorted(set(c for c in value if c in _FORBIDDEN_NAME_CHARS))
    if bad:
        raise PicError("contains forbidden characters %s (control and shell metacharacters are refused)"
                       % ''.join(bad), field, value)
    if value != value.strip():
        raise PicError("must not start or end with spaces", field, value)
    return value


def slugify(name):
    """The stable id of a display name: ``"Home VPN"`` -> ``home-vpn``.

    Slugs of at most ID_MAX characters are the id as they are (ids already in
    registries stay). A longer slug becomes its first ID_HEAD characters, '-'
    and ID_HASH hex characters of sha256(name): names equal in their first
    characters get different ids.
    """
    slug = re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')
    if len(slug) <= ID_MAX:
        return slug
    digest = hashlib.sha256(name.encode('utf-8')).hexdigest()[:ID_HASH]
    return '%s-%s' % (slug[:ID_HEAD].strip('-'), digest)


def check_peer_name(value, field):
    if isinstance(value, str):
        check_text(value, field)
    if not isinstance(value, str) or not _PEER_NAME_RE.fullmatch(value):
        raise PicError("must be 1-64 characters of letters, digits, '_', '.', '@', '-', starting with a letter "
                       "or digit", field, value)
    return value


def check_ifname(value, field):
    """An interface of the cell (the peer interface, a service network, a link)."""
    if isinstance(value, str):
        check_text(value, field)
    if not isinstance(value, str) or not _IFNAME_RE.fullmatch(value):
        raise PicError("is not a valid interface name (1-15 characters of letters, digits, '_', '.', '-', "
                       "starting with a letter or digit)", field, value)
    return value


def check_owned_ifname(value, field):
    """An interface the collection creates and deletes: only ``pic-`` names, so that
    deleting a connection can never delete an interface of the cell (eth0, wg0, lo)."""
    if isinstance(value, str):
        check_text(value, field)
    if not isinstance(value, str) or not _OWNED_IFNAME_RE.fullmatch(value):
        raise PicError("must be an interface name owned by the collection: '%s' followed by 1-11 characters of "
                       "a-z, 0-9 and '-' (15 at most), never an interface of the cell such as eth0 or wg0"
                       % OWNED_IF_PREFIX, field, value)
    return value


def _ip_text(value, field, chars_re, what):
    """The text of an address literal: only hex digits, ':', '.' (and '/prefix')."""
    check_text(value, field)
    if not chars_re.fullmatch(value):
        raise PicError("is not a valid %s (only digits, a-f, ':', '.'%s; no scope id, no blanks)"
                       % (what, " and '/prefix'" if chars_re is _NET_CHARS_RE else ''), field, value)
    return value


def _refuse_special(addr, field, value, allow_loopback=False):
    mapped = addr.version == 6 and (addr.ipv4_mapped is not None or
                                    (int(addr) >> 32 == 0 and int(addr) > 1))
    if mapped:
        raise PicError("is an IPv4-mapped or IPv4-compatible IPv6 address; give the IPv4 address", field, value)
    if addr.is_unspecified or addr.is_multicast or addr.is_link_local or (addr.is_loopback and not allow_loopback):
        raise PicError("must be a unicast, non-loopback, non-link-local address", field, value)
    if addr.version == 4 and addr == ipaddress.IPv4Address('255.255.255.255'):
        raise PicError("must be a unicast address (not the broadcast address)", field, value)


def parse_address(value, field, version=None, allow_loopback=False):
    """One unicast IP address (``10.0.0.5``, ``fd00::5``) -> its canonical text."""
    what = 'IPv%d address' % version if version else 'IP address'
    _ip_text(value, field, _IP_CHARS_RE, what)
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise PicError("is not a valid %s" % what, field, value)
    if version is not None and addr.version != version:
        raise PicError("must be an IPv%d address" % version, field, value)
    _refuse_special(addr, field, value, allow_loopback)
    return str(addr)


@functools.lru_cache(maxsize=None)
def network(value, strict=False):
    """ipaddress.ip_network, cached: a run parses each peer address several times."""
    return ipaddress.ip_network(value, strict=strict)


def parse_network(value, field, host_only=False, peer=False, host_bits=False):
    """An address or network (``10.0.0.2``, ``10.0.0.2/32``, ``fd00::/64``) -> ip_network.

    Host bits must be zero for a prefix (unless ``host_bits``: they are cleared);
    ``host_only`` requires a single address; ``peer`` refuses prefixes wider
    than PEER_MIN_PREFIX. A /0 is never a valid network here.
    """
    if not isinstance(value, str) or not value:
        raise PicError("must be an IPv4 or IPv6 address or network", field, value)
    _ip_text(value, field, _NET_CHARS_RE, 'IPv4/IPv6 address or network')
    try:
        net = network(value, not host_bits)
    except ValueError as exc:
        raise PicError("is not a valid IPv4/IPv6 address or network (%s)" % exc, field, value)
    if host_only and net.num_addresses != 1:
        raise PicError("must be a single address (/32 or /128)", field, value)
    if net.prefixlen == 0:
        raise PicError("must not be a whole address family (/0)", field, value)
    if peer and net.prefixlen < PEER_MIN_PREFIX[net.version]:
        raise PicError("is too wide for a peer or service (at most /%d for IPv%d)"
                       % (PEER_MIN_PREFIX[net.version], net.version), field, value)
    _refuse_special(net.network_address, field, value)
    return net


def parse_route(value, field):
    """A network an exit carries (WireGuard AllowedIPs): ``0.0.0.0/0`` allowed, canonical text."""
    if not isinstance(value, str) or not value:
        raise PicError("must be an IPv4 or IPv6 network", field, value)
    _ip_text(value, field, _NET_CHARS_RE, 'network')
    try:
        return str(network(value, False))
    except ValueError as exc:
        raise PicError("is not a valid network (%s)" % exc, field, value)


def parse_interface_address(value, field):
    """An interface address with prefix (``10.200.0.2/24``) -> ip_interface."""
    if not isinstance(value, str):
        raise PicError("must be an address with optional prefix", field, value)
    _ip_text(value, field, _NET_CHARS_RE, 'interface address')
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError as exc:
        raise PicError("is not a valid interface address (%s)" % exc, field, value)
    _refuse_special(iface.ip, field, value)
    return iface


def check_local_networks(values, field_prefix=''):
    """settings.local_networks: networks the cell reaches directly, canonical, not overlapping."""
    if not isinstance(values, (list, tuple)):
        raise PicError("must be a list of networks", field_prefix + 'local_networks', values)
    nets = []
    for i, value in enumerate(values):
        field = '%slocal_networks[%d]' % (field_prefix, i)
        nets.append((parse_network(value if isinstance(value, str) else repr(value), field), field))
    clash = find_overlaps(nets)
    if clash:
        (net_a, field_a), (net_b, field_b) = clash
        raise PicError("overlaps %s (%s)" % (field_a, net_a), field_b, str(net_b))
    return [str(n) for n, _f in nets]


def check_local_against_peers(local_networks, peer_networks, field_prefix=''):
    """A local network may not overlap a network of the peer interface: nftables refuses
    overlapping intervals, and it would exempt the peers themselves from their exit."""
    peers = [ipaddress.ip_network(n, strict=False) for n in peer_networks]
    for i, value in enumerate(local_networks):
        net = network(value)
        for peer_net in peers:
            if net.version == peer_net.version and net.overlaps(peer_net):
                raise PicError("overlaps %s, a network of the cell's peer, service or link interfaces (nftables "
                               "refuses overlapping intervals, and peers are never local networks)"
                               % peer_net, '%slocal_networks[%d]' % (field_prefix, i), value)


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


def check_host(value, field):
    """A remote host: a host name per RFC 1123 (labels of 1-63 letters, digits and '-',
    not starting or ending with '-', 253 characters at most, not all-numeric, not a
    number inet_aton reads as an address) or an IP address. Never starts with '-' or '@' (an option or an @file to a command)."""
    check_text(value, field)
    if ':' in value or re.fullmatch(r'[0-9.]+', value):
        return parse_address(value, field)
    last_label = value.rstrip('.').split('.')[-1]
    if len(value) > 253 or not _HOSTNAME_RE.fullmatch(value) or re.fullmatch(r'[0-9]+', last_label):
        raise PicError("must be a host name (RFC 1123: labels of letters, digits and '-', dot-separated, at most "
                       "253 characters) or an IP address", field, value)
    if _NUMERIC_HOST_RE.fullmatch(value):
        raise PicError("is a number the resolver reads as an IPv4 address (hex or octal, as 0x7f000001 is "
                       "127.0.0.1): give the address in dotted decimal", field, value)
    return value


# An echo URL (``egress_url``): http only, a host (an address, IPv6 in brackets, or an
# RFC 1123 name), an optional port, a path and query of safe characters; never credentials.
_HTTP_URL_RE = re.compile(r'http://(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253})(?::([0-9]{1,5}))?'
                          r'(/[A-Za-z0-9._~/-]{0,200}(?:\?[A-Za-z0-9._~=&-]{0,200})?)?')


def parse_http_url(value, field, allow_loopback=False):
    """An ``http://HOST[:PORT][/PATH]`` URL -> (canonical url, host, port, path). The host
    is an IP address (IPv6 in brackets) or an RFC 1123 name; no credentials, no https."""
    if not isinstance(value, str):
        raise PicError("must be an http:// URL", field)
    if '@' in value:
        raise PicError("must not hold credentials (user:password@; value hidden)", field)
    check_text(value, field)
    match = _HTTP_URL_RE.fullmatch(value)
    if not match:
        raise PicError("must be an http:// URL: http://HOST[:PORT][/PATH] (HOST an IP address, IPv6 in brackets, "
                       "or a host name; PATH and query of letters, digits and '._~/-', '=&' in the query)",
                       field, value)
    host, port, path = match.group(1), match.group(2), match.group(3) or '/'
    if host.startswith('['):
        host = parse_address(host[1:-1], field, version=6, allow_loopback=allow_loopback)
    elif allow_loopback and re.fullmatch(r'[0-9.]+', host):
        host = parse_address(host, field, allow_loopback=True)
    else:
        host = check_host(host, field)
        if ':' in host:
            raise PicError("an IPv6 host goes in brackets (http://[2001:db8::1]/)", field, value)
    port = parse_int(port, field, 1, 65535) if port is not None else 80
    shown = '[%s]' % host if ':' in host else host
    return 'http://%s%s%s' % (shown, '' if port == 80 else ':%d' % port, path), host, port, path


def check_user(value, field):
    """A POSIX-style user name (an SSH login): never an option ('-...'), a password ('user:pw')
    or a host ('user@host')."""
    return _full(_USER_RE, value, field, "must be a user name: 1-32 characters of letters, digits, '_', '.', "
                 "'-', starting with a letter or '_'")


def check_word(value, field):
    """A strict word (a proxy user name): letters, digits and '_.@+-', not starting with '-'."""
    return _full(_WORD_RE, value, field, "must be 1-128 characters of letters, digits, '_', '.', '@', '+', '-', "
                 "starting with a letter, digit or '_'")


def check_command(value, field):
    """A program: an absolute path or a bare command name, from a strict charset."""
    check_text(value, field)
    if value.startswith('/'):
        if not _PATH_RE.fullmatch(value) or '/./' in value + '/' or '/../' in value + '/':
            raise PicError("must be an absolute path of letters, digits and '_.+-' components (no '.', '..')",
                           field, value)
        return value
    return _full(_COMMAND_RE, value, field, "must be an absolute path or a command name (letters, digits, "
                 "'_.+-', not starting with '-' or '.')")


def check_secret(value, field, forbid=None):
    """A password: 1-256 characters, no control characters, none of ``forbid``. Never shown."""
    check_text(value, field, secret=True)
    forbid = _SECRET_FORBIDDEN if forbid is None else forbid
    if not value or len(value) > SECRET_MAX:
        raise PicError("must be 1-%d characters (value hidden)" % SECRET_MAX, field)
    if any(c in forbid for c in value):
        names = ', '.join(_CHAR_NAMES.get(c, repr(c)) for c in sorted(forbid))
        raise PicError("must not contain %s (value hidden)" % names, field)
    return value


def check_wg_key(value, field, secret):
    """A WireGuard key: canonical base64 of 32 bytes (44 characters ending in '=', the exact
    text ``wg`` prints), never the all-zero key (``wg`` reads it as none: no private or
    preshared key). ``wg`` refuses anything else."""
    shown = None if secret else value
    hidden = " (value hidden)" if secret else ""
    if not isinstance(value, str) or not _KEY_RE.fullmatch(value):
        raise PicError("is not a WireGuard key (44 base64 characters ending in '=')" + hidden, field, shown)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b''
    if len(raw) != 32 or base64.b64encode(raw).decode('ascii') != value:
        raise PicError("is not a canonical WireGuard key (base64 of 32 bytes, as `wg genkey`/`wg pubkey` print "
                       "it)" + hidden, field, shown)
    if raw == bytes(32):
        raise PicError("is the all-zero key, which wg reads as no key at all" + hidden, field, shown)
    return value


# Ansible's boolean words, as AnsibleModule reads a ``type: bool`` option.
_TRUE_WORDS = frozenset(('y', 'yes', 'on', '1', 'true', 't'))
_FALSE_WORDS = frozenset(('n', 'no', 'off', '0', 'false', 'f'))


def check_bool(value, field, none_ok=False, words=False):
    """The one boolean check of the collection: true or false, or also None
    with ``none_ok`` (an option whose null means "keep" or "the default").
    With ``words``, Ansible's booleans as AnsibleModule reads a ``type: bool``
    option (``yes``, ``on``, ``1``, ...), for what reaches the library without
    AnsibleModule's check (items of a list option declared without sub-options,
    direct callers of the planners)."""
    if isinstance(value, bool) or (none_ok and value is None):
        return value
    if words and isinstance(value, (str, int)):
        text = str(value).strip().lower()
        if text in _TRUE_WORDS:
            return True
        if text in _FALSE_WORDS:
            return False
    raise PicError("must be true, false or null" if none_ok else "must be true or false", field, value)


def check_bool_or_none(value, field):
    """``check_bool`` with None allowed (strict: no boolean words)."""
    return check_bool(value, field, none_ok=True)


def parse_int(value, field, minimum=None, maximum=None):
    """An integer given as int or as a decimal/hex string (``0x00ff0000``)."""
    if isinstance(value, bool):
        raise PicError("must be an integer", field, value)
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        if not _INT_RE.fullmatch(value):
            raise PicError("must be an integer (decimal or 0x hex)", field, value)
        result = int(value, 0) if value[:2].lower() == '0x' else int(value, 10)
    else:
        raise PicError("must be an integer", field, value)
    if minimum is not None and result < minimum:
        raise PicError("must be at least %d" % minimum, field, value)
    if maximum is not None and result > maximum:
        raise PicError("must be at most %d" % maximum, field, value)
    return result
