# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WireGuard client configuration: parse, validate and render. Pure, no I/O.

Accepts the text of a wg-quick file (what a VPN provider hands out) or the same
settings as keys, and returns one normalized dict. Secrets (private and
preshared keys) are never echoed in error messages.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import ipaddress
import re

from .errors import PicError
from .validation import (check_host, check_text, check_wg_key, has_control, parse_address, parse_interface_address,
                         parse_int, parse_route)

SECRET_KEYS = ('private_key', 'preshared_key')
# wg-quick keys that would make us run commands or touch tables we do not own.
_REFUSED = {'preup', 'postup', 'predown', 'postdown', 'table', 'saveconfig'}
_INTERFACE_KEYS = {'privatekey', 'address', 'listenport', 'mtu', 'dns', 'fwmark'}
_PEER_KEYS = {'publickey', 'presharedkey', 'endpoint', 'allowedips', 'persistentkeepalive'}
# What of a refused line may be shown: a short word, never a key (44 characters).
_SAFE_WORD_RE = re.compile(r'[A-Za-z][A-Za-z0-9]{0,23}')
_ENDPOINT_V6_RE = re.compile(r'\[([0-9A-Fa-f:.]{2,45})\]:([0-9]{1,5})')
_ENDPOINT_RE = re.compile(r'([A-Za-z0-9.-]{1,253}):([0-9]{1,5})')


def check_key(value, field, secret):
    """A WireGuard key: canonical base64 of 32 bytes (what ``wg`` accepts)."""
    return check_wg_key(value, field, secret)


def clamped_private_key(value):
    """A private key as WireGuard stores it and ``wg show`` prints it: clamped for X25519
    (the same key; ``wg genkey`` prints it so). A key given unclamped, compared as given,
    never matched the running interface: it was configured again on every run."""
    raw = bytearray(base64.b64decode(value))
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return base64.b64encode(bytes(raw)).decode('ascii')


_P25519 = 2 ** 255 - 19


def public_key_of(private_key):
    """The public key of a private key (X25519 of the base point, RFC 7748), as ``wg pubkey``
    prints it. Used only to compare keys: a peer whose PublicKey is the interface's own is
    dropped by WireGuard, and the tunnel would carry nothing."""
    k = int.from_bytes(base64.b64decode(clamped_private_key(private_key)), 'little')
    x_1, x_2, z_2, x_3, z_3, swap = 9, 1, 0, 9, 1, 0
    for t in reversed(range(255)):
        k_t = (k >> t) & 1
        if swap ^ k_t:
            x_2, x_3, z_2, z_3 = x_3, x_2, z_3, z_2
        swap = k_t
        a, b, c, d = x_2 + z_2, x_2 - z_2, x_3 + z_3, x_3 - z_3
        aa, bb, da, cb = a * a, b * b, d * a, c * b
        e = aa - bb
        x_3, z_3 = (da + cb) ** 2 % _P25519, x_1 * (da - cb) ** 2 % _P25519
        x_2, z_2 = aa * bb % _P25519, e * (aa + 121665 * e) % _P25519
    if swap:
        x_2, z_2 = x_3, z_3
    point = x_2 * pow(z_2, _P25519 - 2, _P25519) % _P25519
    return base64.b64encode(point.to_bytes(32, 'little')).decode('ascii')


def check_endpoint(value, field):
    """``host:port`` or ``[v6]:port`` -> its canonical text."""
    if not isinstance(value, str):
        raise PicError("must be host:port", field, value)
    check_text(value, field)
    match = _ENDPOINT_V6_RE.fullmatch(value) or _ENDPOINT_RE.fullmatch(value)
    if not match:
        raise PicError("must be host:port (IPv6 in brackets: [2001:db8::1]:51820)", field, value)
    try:
        if value.startswith('['):
            host = '[%s]' % parse_address(match.group(1), 'host', version=6)
        else:
            host = check_host(match.group(1), 'host')
    except PicError as exc:
        raise PicError("has an invalid %s" % str(exc).split(' (got ', 1)[0], field, value)
    port = int(match.group(2), 10)
    if not 1 <= port <= 65535:
        raise PicError("port must be 1-65535", field, value)
    return '%s:%d' % (host, port)


def _split_list(value, field):
    """A list given as a list of strings, or as text separated by commas."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise PicError("must be a string", '%s[%d]' % (field, i), item)
        return list(value)
    if not isinstance(value, str):
        raise PicError("must be a list or a comma-separated string", field, value)
    check_text(value, field)
    return [v.strip(' \t') for v in value.split(',') if v.strip(' \t')]


def _allowed(values, field):
    nets = []
    for i, val in enumerate(_split_list(values, field)):
        net = parse_route(val, "%s[%d]" % (field, i))
        if net not in nets:
            nets.append(net)
    return nets


def _shown_word(text):
    """The part of a refused line that may be shown: a short safe word, or nothing."""
    return text if _SAFE_WORD_RE.fullmatch(text) else None


def _lines(text, field):
    """The lines of a configuration text, split as wg reads it (on '\n' only)."""
    if not isinstance(text, str) or not text.strip():
        raise PicError("must be the text of a WireGuard configuration file", field)
    for lineno, raw in enumerate(text.split('\n'), 1):
        raw = raw[:-1] if raw.endswith('\r') else raw
        if has_control(raw.replace('\t', ' ')):
            raise PicError("line %d: contains a control character" % lineno, field)
        yield lineno, raw.split('#', 1)[0].strip()


def _section(line, lineno, field):
    name = line[1:-1].strip().lower()
    if name not in ('interface', 'peer'):
        shown = _shown_word(line[1:-1].strip())
        raise PicError("line %d: unknown section%s (expected [Interface] or [Peer])"
                       % (lineno, ' [%s]' % shown if shown else ''), field)
    return name


def parse_ini(text, field):
    """Parse wg-quick text into [(section, [(key, value, lineno)])].

    Errors name the line number and, for a known key, the key: never a value
    (it could be a key), never an unknown line's text beyond a short safe word.
    """
    sections = []
    for lineno, line in _lines(text, field):
        if not line:
            continue
        if line.startswith('[') and line.endswith(']'):
            sections.append((_section(line, lineno, field), []))
            continue
        if '=' not in line:
            raise PicError("line %d: expected 'Key = value'" % lineno, field)
        if not sections:
            raise PicError("line %d: setting outside of a section" % lineno, field)
        key, value = line.split('=', 1)
        sections[-1][1].append((key.strip(), value.strip(), lineno))
    return sections


def from_text(text, field):
    """wg-quick file text -> the keyed form accepted by :func:`normalize`."""
    sections = parse_ini(text, field)
    interfaces = [s for s in sections if s[0] == 'interface']
    if len(interfaces) != 1:
        raise PicError("must have exactly one [Interface] section", field)
    out = {'peers': []}
    for name, items in sections:
        target = {} if name == 'peer' else out
        known = _PEER_KEYS if name == 'peer' else _INTERFACE_KEYS
        for key, value, lineno in items:
            low = key.lower()
            if low in _REFUSED:
                raise PicError("line %d: %s is not supported: the collection runs no commands from an exit "
                               "configuration and keeps its routes in its own table" % (lineno, key), field)
            if low not in known:
                shown = _shown_word(key)
                raise PicError("line %d: unknown key%s in [%s] (line not shown)"
                               % (lineno, ' %s' % shown if shown else '', name.capitalize()), field)
            if low in ('address', 'allowedips', 'dns'):
                target.setdefault(low, []).extend(_split_list(value, field))
            elif low in target:
                raise PicError("line %d: %s given twice" % (lineno, key), field)
            else:
                target[low] = value
        if name == 'peer':
            out['peers'].append(target)
    return {
        'private_key': out.get('privatekey'),
        'address': out.get('address', []),
        'listen_port': out.get('listenport'),
        'mtu': out.get('mtu'),
        'dns': out.get('dns', []),
        'peers': [{
            'public_key': p.get('publickey'),
            'preshared_key': p.get('presharedkey'),
            'endpoint': p.get('endpoint'),
            'allowed_ips': p.get('allowedips', []),
            'persistent_keepalive': p.get('persistentkeepalive'),
        } for p in out['peers']],
    }


def normalize(raw, field):
    """Validate the keyed form; returns a normalized dict (secrets included)."""
    if not raw.get('private_key'):
        raise PicError("PrivateKey is required", field + '.private_key')
    result = {
        'private_key': check_key(raw['private_key'], field + '.private_key', True),
        'address': [],
        'listen_port': None,
        'mtu': None,
        'dns': [],
        'peers': [],
    }
    addrs = raw.get('address') or []
    if not addrs:
        raise PicError("at least one tunnel Address is required", field + '.address')
    for i, addr in enumerate(_split_list(addrs, field + '.address')):
        result['address'].append(str(parse_interface_address(addr, '%s.address[%d]' % (field, i)).ip))
    if raw.get('listen_port') not in (None, ''):
        result['listen_port'] = parse_int(raw['listen_port'], field + '.listen_port', 1, 65535)
    if raw.get('mtu') not in (None, ''):
        result['mtu'] = parse_int(raw['mtu'], field + '.mtu', 1280, 9000)
    for i, dns in enumerate(_split_list(raw.get('dns') or [], field + '.dns')):
        result['dns'].append(parse_address(dns, '%s.dns[%d]' % (field, i)))
    peers = raw.get('peers') or []
    if not peers:
        raise PicError("at least one [Peer] is required", field + '.peers')
    seen = set()
    for i, peer in enumerate(peers):
        pfield = '%s.peers[%d]' % (field, i)
        if not peer.get('public_key'):
            raise PicError("PublicKey is required", pfield + '.public_key')
        pub = check_key(peer['public_key'], pfield + '.public_key', False)
        if pub == public_key_of(result['private_key']):
            raise PicError("is the public key of this configuration's own PrivateKey, not the server's: WireGuard "
                           "drops such a peer", pfield + '.public_key', pub)
        if pub in seen:
            raise PicError("the same PublicKey appears twice", pfield + '.public_key', pub)
        seen.add(pub)
        norm = {
            'public_key': pub,
            'preshared_key': None,
            'endpoint': None,
            'allowed_ips': _allowed(peer.get('allowed_ips') or [], pfield + '.allowed_ips'),
            'persistent_keepalive': None,
        }
        if peer.get('preshared_key'):
            norm['preshared_key'] = check_key(peer['preshared_key'], pfield + '.preshared_key', True)
        if not peer.get('endpoint'):
            raise PicError("Endpoint is required for an exit", pfield + '.endpoint')
        norm['endpoint'] = check_endpoint(peer['endpoint'], pfield + '.endpoint')
        if not norm['allowed_ips']:
            raise PicError("AllowedIPs is required (0.0.0.0/0, ::/0 for a full exit)", pfield + '.allowed_ips')
        if peer.get('persistent_keepalive') not in (None, '', 'off'):
            norm['persistent_keepalive'] = parse_int(peer['persistent_keepalive'],
                                                     pfield + '.persistent_keepalive', 0, 65535)
        result['peers'].append(norm)
    return result


def parse(config, field='config'):
    """A connection's ``config`` dict -> normalized WireGuard settings."""
    if config.get('wg_config') is not None:
        keyed = from_text(config['wg_config'], field + '.wg_config')
        return normalize(keyed, field + '.wg_config')
    keyed = {
        'private_key': config.get('private_key'),
        'address': config.get('address'),
        'listen_port': config.get('listen_port'),
        'mtu': config.get('mtu'),
        'dns': config.get('dns'),
        'peers': [{
            'public_key': config.get('peer_public_key'),
            'preshared_key': config.get('preshared_key'),
            'endpoint': config.get('endpoint'),
            'allowed_ips': config.get('allowed_ips', ['0.0.0.0/0', '::/0']),
            'persistent_keepalive': config.get('persistent_keepalive'),
        }],
    }
    return normalize(keyed, field)


def secrets(wg):
    """Every secret string in a normalized config (for no_log masking)."""
    out = [wg['private_key']]
    out.extend(p['preshared_key'] for p in wg['peers'] if p['preshared_key'])
    return out


def render_setconf(wg):
    """The file ``wg setconf`` reads (no wg-quick keys)."""
    lines = ['[Interface]', 'PrivateKey = %s' % wg['private_key']]
    if wg['listen_port']:
        lines.append('ListenPort = %d' % wg['listen_port'])
    for peer in wg['peers']:
        lines.extend(['', '[Peer]', 'PublicKey = %s' % peer['public_key']])
        if peer['preshared_key']:
            lines.append('PresharedKey = %s' % peer['preshared_key'])
        lines.append('Endpoint = %s' % peer['endpoint'])
        lines.append('AllowedIPs = %s' % ', '.join(peer['allowed_ips']))
        if peer['persistent_keepalive']:
            lines.append('PersistentKeepalive = %d' % peer['persistent_keepalive'])
    return '\n'.join(lines) + '\n'


def public_view(wg):
    """What may be shown: everything but the secrets, plus a fingerprint of them."""
    digest = hashlib.sha256(render_setconf(wg).encode('utf-8')).hexdigest()[:16]
    return {
        'address': list(wg['address']),
        'mtu': wg['mtu'],
        'dns': list(wg['dns']),
        'listen_port': wg['listen_port'],
        'peers': [{
            'public_key': p['public_key'],
            'endpoint': p['endpoint'],
            'allowed_ips': list(p['allowed_ips']),
            'persistent_keepalive': p['persistent_keepalive'],
            'preshared_key_set': bool(p['preshared_key']),
        } for p in wg['peers']],
        'fingerprint': digest,
    }


def carried_routes(wg):
    """Routes the tunnel carries, per family, from the peers' AllowedIPs and own addresses.

    A family counts as carried only if the tunnel has an address of that family
    (without one, masquerading cannot give the packets a source).
    """
    families = set(ipaddress.ip_address(a).version for a in wg['address'])
    routes = {4: [], 6: []}
    for peer in wg['peers']:
        for net in peer['allowed_ips']:
            version = ipaddress.ip_network(net).version
            if version in families and net not in routes[version]:
                routes[version].append(net)
    return routes
