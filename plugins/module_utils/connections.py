# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections in the registry: validation per type, create, update, delete. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import hashlib
import hmac
import json
import os
import re

from . import model, openvpn, wgconf
from .errors import PicError
from .validation import (check_bool, check_command, check_display_name, check_host, check_owned_ifname, check_secret,
                         check_text, check_user, check_word, parse_address, parse_int, slugify)


# A secret line, even misspelt (``PrivateKey: <key>``). Only values of 8 characters or more are
# masked: a short no_log value (':') would mask that character in every message.
_SECRET_LINE = re.compile(r'^[ \t]*(PrivateKey|PresharedKey|password|auth-user-pass)[ \t=:]*(\S{8,})', re.I | re.M)
SECRET_KEYS = ('private_key', 'preshared_key', 'password', 'ssh_key')


# Every setting any type takes that holds no secret: the values of all other keys (a misspelt
# ``privatekey``, ``Password``) are masked as well.
_PUBLIC_KEYS = frozenset(('interface', 'health_target', 'health_fail_after', 'health_recover_after', 'address',
                          'peer_public_key', 'endpoint', 'allowed_ips', 'persistent_keepalive', 'mtu', 'dns',
                          'listen_port', 'host', 'user', 'port', 'known_hosts', 'subnets', 'python', 'proxy_type',
                          'username', 'socks_port', 'trans_port', 'dns_port'))
_SECRET_NAMES = frozenset(re.sub('[^a-z]', '', key) for key in SECRET_KEYS)
MIN_GUESSED_SECRET = 8


def _leaves(value, depth=0):
    """The scalars of a value as text (a password given as a number, a key inside a
    list or a dict): AnsibleModule logs them as they are."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if depth > 8:
        return []
    if isinstance(value, dict):
        return [leaf for item in value.items() for part in item for leaf in _leaves(part, depth + 1)]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item, depth + 1)]
    return []


def secrets_in(config):
    """Every string in a raw ``config`` that could be a secret, before any validation,
    so that even a refused configuration is masked in the module's output and log:
    the values of the secret keys and of any key that is not a known public setting
    (a misspelt one: those of 8 characters or more), of any type, at any depth."""
    out = []
    if not isinstance(config, dict):
        return out
    for key, value in config.items():
        name = re.sub('[^a-z]', '', key.lower()) if isinstance(key, str) else None
        if key in ('wg_config', 'ovpn_config'):
            for text in _leaves(value):
                out.append(text)
                out.extend(m.group(2) for m in _SECRET_LINE.finditer(text))
        elif name in _SECRET_NAMES:
            out.extend(_leaves(value))
        elif key not in _PUBLIC_KEYS:
            out.extend(leaf for leaf in _leaves(value) if len(leaf) >= MIN_GUESSED_SECRET)
    return out


def users_of(doc, conn_id):
    """Who uses a connection: {'peers': [...], 'services': [...]}."""
    return {
        'peers': sorted(n for n, p in doc['peers'].items() if p.get('connection') == conn_id),
        'services': sorted(n for n, s in doc.get('services', {}).items() if s.get('connection') == conn_id),
    }


def resolve(doc, value, field):
    """A connection name or id -> id ('default' stays 'default')."""
    if value is None or value == model.DEFAULT:
        return model.DEFAULT
    if not isinstance(value, str):
        raise PicError("must be a connection name or id", field, value)
    if value in doc['connections']:
        return value
    for cid, conn in doc['connections'].items():
        if conn['name'] == value:
            return cid
    slug = slugify(value)
    if slug in doc['connections']:
        return slug
    for cell, link in doc.get('links', {}).items():
        if value in (cell, slugify(cell)) and not link.get('remote_offers'):
            raise PicError("cell %s is linked but does not offer its internet exit to this cell, so there is no "
                           "relay through it" % cell, field, value, details={'unknown_connection': value})
    known = sorted(c['name'] for c in doc['connections'].values())
    raise PicError("unknown connection; known connections: %s (or 'default')" % (', '.join(known) or 'none'),
                   field, value, details={'unknown_connection': value})


def _check_keys(config, allowed, field):
    """Unknown settings are named, never shown: a misspelt key may hold a secret."""
    for key in sorted(config):
        if key not in allowed:
            raise PicError("unknown setting for this connection type (value hidden); allowed: %s"
                           % ', '.join(sorted(allowed)), '%s.%s' % (field, key))


_COMMON_KEYS = {'interface', 'health_target', 'health_fail_after', 'health_recover_after'}
_WG_KEYS = {'wg_config', 'private_key', 'address', 'peer_public_key', 'endpoint', 'allowed_ips', 'preshared_key',
            'persistent_keepalive', 'mtu', 'dns', 'listen_port'}


def _host(value, field):
    """The SSH server of an sshuttle exit: a host name (RFC 1123) or an IP address."""
    if not isinstance(value, str):
        raise PicError("must be a host name or IP address", field, value)
    return check_host(value, field)


_SSHUTTLE_KEYS = {'host', 'user', 'port', 'ssh_key', 'known_hosts', 'subnets', 'dns', 'python'}


def _ipv4(value, field):
    if not isinstance(value, str):
        raise PicError("must be an IPv4 address (redsocks connects to the proxy by address)", field, value)
    return parse_address(value, field, version=4, allow_loopback=True)


def _dns_server(value, field):
    """sshuttle forwards DNS to one server (--to-ns): an address, or a list holding one."""
    if isinstance(value, list):
        if len(value) != 1:
            raise PicError("must be one DNS server address (sshuttle forwards to one server)", field, value)
        field, value = field + '[0]', value[0]
    if not isinstance(value, str):
        raise PicError("must be the IP address of a DNS server", field, value)
    return parse_address(value, field)


def _file_text(config, key, field):
    """The text of a file (an SSH key, known_hosts): lines without other control characters."""
    value = config.get(key)
    if value is not None:
        check_text(value, '%s.%s' % (field, key), secret=key in SECRET_KEYS, allow='\n\r\t')
    return value


def _common(config, field):
    """The settings every type takes."""
    public = {}
    if config.get('health_target') is not None:
        value = config['health_target']
        if not isinstance(value, str):
            raise PicError("must be an IP address", field + '.health_target', value)
        public['health_target'] = parse_address(value, field + '.health_target')
    for key in ('health_fail_after', 'health_recover_after'):
        if config.get(key) is not None:
            public[key] = parse_int(config[key], '%s.%s' % (field, key), 1, 100)
    if config.get('interface') is not None:
        public['interface'] = check_owned_ifname(config['interface'], field + '.interface')
    return public


def _sshuttle(config, field):
    if not config.get('host'):
        raise PicError("an sshuttle connection needs host (the SSH server)", field + '.host')
    if config.get('subnets') is not None:
        raise PicError("is not supported: an sshuttle exit carries every TCP connection of its peers "
                       "(the cell redirects them to the instance)", field + '.subnets', config['subnets'])
    public = {'host': _host(config['host'], field + '.host'),
              'port': parse_int(config.get('port', 22), field + '.port', 1, 65535),
              'user': check_user(config.get('user', 'root'), field + '.user')}
    if config.get('dns') is not None:
        public['dns'] = [_dns_server(config['dns'], field + '.dns')]
    for key in ('ssh_key', 'known_hosts'):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise PicError("must be a string (the text of the file)", '%s.%s' % (field, key))
        _file_text(config, key, field)
    if config.get('python') is not None:
        public['python'] = check_command(config['python'], field + '.python')
    return public


def _proxy(config, field):
    if not config.get('host'):
        raise PicError("a proxy connection needs host (the proxy server's IPv4 address)", field + '.host')
    if config.get('port') is None:
        raise PicError("a proxy connection needs port (the proxy server's port)", field + '.port')
    public = {'host': _ipv4(config['host'], field + '.host'),
              'port': parse_int(config['port'], field + '.port', 1, 65535)}
    ptype = config.get('proxy_type', 'socks5')
    if ptype not in ('socks5', 'http-connect'):
        raise PicError("must be socks5 or http-connect", field + '.proxy_type', ptype)
    public['proxy_type'] = ptype
    if config.get('password') and not config.get('username'):
        raise PicError("a proxy password needs a username", field + '.username')
    if config.get('username') is not None:
        public['username'] = check_word(config['username'], field + '.username')
    if config.get('password') is not None:
        # it goes into redsocks' configuration, inside double quotes
        check_secret(config['password'], field + '.password')
        if config['password'] in REDSOCKS_TOKENS:
            raise PicError("must not be a punctuation or comment token of redsocks' configuration (%s): redsocks "
                           "reads it as one even inside quotes (value hidden)" % ' '.join(REDSOCKS_TOKENS),
                           field + '.password')
    return public


# redsocks' parser takes a quoted string equal to one of its punctuation or comment tokens for it.
REDSOCKS_TOKENS = ('{', '}', '=', ';', '//', '/*')


def _openvpn_credentials(config, field):
    """The auth-user-pass lines: one line each, never shown."""
    if config.get('username') is not None:
        check_text(config['username'], field + '.username')
        if not config['username'] or len(config['username']) > 256:
            raise PicError("must be 1-256 characters", field + '.username', config['username'])
    if config.get('password') is not None:
        check_secret(config['password'], field + '.password', forbid=())


def new_fingerprint_key():
    return binascii.hexlify(os.urandom(16)).decode('ascii')


def fingerprint(config, key):
    """What shows that a configuration holding a password changed, without giving the
    password away: an HMAC under the connection's random key (kept in its registry
    record, never shown). A plain hash of a known .ovpn file and a password was a
    test of every guess of the password, offline."""
    text = json.dumps(config, sort_keys=True).encode('utf-8')
    return hmac.new(key.encode('ascii'), text, hashlib.sha256).hexdigest()[:16]


def validate_config(ctype, config, field='config', fingerprint_key=None):
    """Validate ``config`` for ``ctype``.

    Returns (public, secret_payload, secrets, routes): ``public`` is safe to
    store in the registry and show; ``secret_payload`` goes to a 0600 file;
    ``secrets`` are strings to mask in every output; ``routes`` are what an
    interface exit carries per family. ``fingerprint_key``: the connection's
    key of :func:`fingerprint` (a new one when None).
    """
    fingerprint_key = fingerprint_key or new_fingerprint_key()
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise PicError("must be a dict", field, None if isinstance(config, str) else config)
    config = dict(config)
    for key in config:
        if not isinstance(key, str) or not re.fullmatch(r'[a-z][a-z0-9_]{0,31}', key):
            raise PicError("is not a setting name", field, key if isinstance(key, str) else repr(key))
    public = _common(config, field)
    if ctype == 'wireguard_ext':
        _check_keys(config, _WG_KEYS | _COMMON_KEYS, field)
        if config.get('wg_config') is None and config.get('private_key') is None:
            raise PicError("a wireguard_ext connection needs wg_config (the WireGuard file) or private_key, "
                           "address, peer_public_key and endpoint", field)
        wg = wgconf.parse(config, field)
        public.update(wgconf.public_view(wg))
        routes = wgconf.carried_routes(wg)
        return public, wg, wgconf.secrets(wg), {'4': routes[4], '6': routes[6]}
    if ctype == 'openvpn':
        _check_keys(config, _COMMON_KEYS | {'ovpn_config', 'username', 'password'}, field)
        _openvpn_credentials(config, field)
        public['remote'] = openvpn.validate(config, field)
        secrets = [s for s in (config.get('password'),) if s]
        public['fingerprint'] = fingerprint(config, fingerprint_key)
        # Everything goes into the tunnel; what it cannot carry is dropped there, never leaked.
        return public, config, secrets, {'4': ['0.0.0.0/0'], '6': ['::/0']}
    if ctype == 'sshuttle':
        _check_keys(config, _COMMON_KEYS | _SSHUTTLE_KEYS, field)
        public.update(_sshuttle(config, field))
        secrets = [s for s in (config.get('ssh_key'),) if s]
        return public, config, secrets, {'4': [], '6': []}
    if ctype == 'proxy':
        _check_keys(config, _COMMON_KEYS | {'host', 'port', 'proxy_type', 'username', 'password'}, field)
        public.update(_proxy(config, field))
        secrets = [s for s in (config.get('password'),) if s]
        return public, config, secrets, {'4': [], '6': []}
    if ctype == 'tor':
        _check_keys(config, _COMMON_KEYS | {'socks_port', 'trans_port', 'dns_port'}, field)
        for key, default in (('socks_port', 9050), ('trans_port', 9040), ('dns_port', 9053)):
            public[key] = parse_int(config.get(key, default), '%s.%s' % (field, key), 1, 65535)
        return public, config, [], {'4': [], '6': []}
    raise PicError("unknown connection type", 'type', ctype)


def existing_id_of(doc, name, conn_id):
    """The id of the connection called ``name`` (matched by its exact name), or None.

    A new name whose id is already another connection's is refused: ids never
    collide, and a connection is never replaced by a look-alike name.
    """
    for cid, conn in doc['connections'].items():
        if conn['name'] == name:
            return cid
    taken = doc['connections'].get(conn_id)
    if taken is not None:
        raise PicError("gives the id %r, which is already the id of connection %r; choose a name that differs "
                       "in its letters or digits" % (conn_id, taken['name']), 'name', name)
    return None


def _check_interface_free(doc, settings, record):
    """The exit interface is the collection's own: no other connection's, and never the peer
    interface, a service network or a cell link (deleting the connection deletes it)."""
    ifname = record['interface']
    for cid, conn in doc['connections'].items():
        if cid != record['id'] and conn.get('interface') == ifname:
            raise PicError("is already the interface of connection %r" % conn['name'], 'config.interface', ifname)
    others = [('the peer interface', settings['peer_interface'])]
    others += [('the network of service %s' % n, s.get('interface')) for n, s in doc.get('services', {}).items()]
    others += [('the link to cell %s' % c, link.get('interface')) for c, link in doc.get('links', {}).items()]
    for what, other in others:
        if other == ifname:
            raise PicError("is %s, not an interface of the collection" % what, 'config.interface', ifname)


def interface_overrides_changed(before, after):
    """{interface: connection name} of the ``config.interface`` overrides that
    ``after`` gives a connection and ``before`` did not (a new connection, or a
    new name for an existing one)."""
    changed = {}
    for cid, conn in after['connections'].items():
        ifname = conn.get('interface')
        if conn['type'] == 'cell_relay' or not conn.get('config', {}).get('interface'):
            continue
        old = before.get('connections', {}).get(cid)
        if old is None or old.get('interface') != ifname:
            changed[ifname] = conn['name']
    return changed


def check_overrides_not_foreign(before, after, existing_names):
    """Refuse an interface override that already exists on the cell and is not
    this connection's in the registry: the collection did not create it, and
    deleting the connection would delete it. ``existing_names()`` (the cell's
    interfaces) is called only when an override changes."""
    changed = interface_overrides_changed(before, after)
    if not changed:
        return
    existing = existing_names()
    for ifname in sorted(changed):
        if ifname in existing:
            raise PicError("already exists on the cell and is not an interface the collection created for "
                           "connection %r; choose a name that does not exist" % changed[ifname],
                           'config.interface', ifname)


def _remove(doc, existing_id, name):
    """state=absent: the removed record, or None; refused while peers or services use it."""
    if existing_id is None:
        return None
    conn = doc['connections'][existing_id]
    if conn['type'] == 'cell_relay':
        raise PicError("cell_relay connections are derived from cell links; stop offering the exit on the "
                       "link instead", 'name', name)
    users = users_of(doc, existing_id)
    if users['peers'] or users['services']:
        who = ['peer %s' % p for p in users['peers']] + ['service %s' % s for s in users['services']]
        raise PicError("connection %r is in use by %s; assign them to another connection or 'default' first"
                       % (name, ', '.join(who)), details={'users': users, 'status': 409})
    return doc['connections'].pop(existing_id)


def _place(doc, record, settings, layout, params):
    """The record's mark, table, interface and local ports."""
    index, table = model.allocate(doc, layout, settings, record['id'], params.get('mark'), params.get('table'))
    record['index'] = index
    record['table'] = table
    record['mark'] = layout.mark(index, False)
    if record['type'] in model.INTERFACE_TYPES:
        override = record.get('config', {}).get('interface')
        record['interface'] = model.interface_name(doc, record['id'], index, override)
        _check_interface_free(doc, settings, record)
    else:
        record['interface'] = None
    if record['type'] in model.PROXY_TYPES:
        record['local_port'], record['dns_port'] = model.proxy_ports(settings, index)


def plan(doc, params):
    """Apply one pic_connection call to ``doc`` (a copy is modified and returned).

    Returns (doc, conn_record_or_None, payload, secrets, removed_record).
    """
    doc = json.loads(json.dumps(doc))
    name = check_display_name(params.get('name'), 'name')
    conn_id = slugify(name)
    if not conn_id:
        raise PicError("must contain at least one letter or digit (it gives the connection's id)", 'name', name)
    existing_id = existing_id_of(doc, name, conn_id)
    state = params.get('state') or 'present'
    ctype = params.get('type')
    if ctype is not None and ctype not in model.TYPES:
        raise PicError("unknown connection type; valid types: %s" % ', '.join(model.CREATABLE_TYPES), 'type', ctype)
    if ctype == 'cell_relay':
        raise PicError("cell_relay connections are derived from cell links (a linked cell that offers its "
                       "internet exit) and cannot be created or changed by hand", 'type', ctype)
    if state == 'absent':
        return doc, None, None, [], _remove(doc, existing_id, name)

    settings, layout = model.normalize_settings(doc.get('settings'))
    current = doc['connections'].get(existing_id) if existing_id else None
    if current is not None and current['type'] == 'cell_relay':
        raise PicError("cell_relay connections are derived from cell links and cannot be changed by hand",
                       'name', name)
    if current is None and ctype is None:
        raise PicError("is required to create connection %r" % name, 'type')
    if current is not None and ctype is not None and ctype != current['type']:
        raise PicError("cannot change the type of connection %r from %s; delete it and create a new one"
                       % (name, current['type']), 'type', ctype)
    ctype = ctype or current['type']
    if ctype in model.SINGLETON_TYPES:
        others = [c['name'] for cid, c in doc['connections'].items() if c['type'] == ctype and cid != existing_id]
        if others:
            raise PicError("a cell runs one %s connection and %r already exists" % (ctype, others[0]), 'type', ctype)
    config = params.get('config')
    if config is None and current is None and ctype in ('wireguard_ext', 'openvpn', 'sshuttle', 'proxy'):
        raise PicError("is required to create a %s connection" % ctype, 'config')
    payload, secrets = None, []
    record = dict(current) if current else {'id': existing_id or conn_id, 'name': name, 'type': ctype}
    record['name'] = name
    if config is not None:
        key = record.get('fingerprint_key') or new_fingerprint_key()
        public, payload, secrets, routes = validate_config(ctype, config, fingerprint_key=key)
        record['config'] = public
        record['routes'] = routes
        if 'fingerprint' in public and ctype == 'openvpn':
            record['fingerprint_key'] = key
    fail_open = params.get('fail_open')
    if fail_open is not None:
        record['fail_open'] = check_bool(fail_open, 'fail_open', words=True)
    elif current is None:
        record['fail_open'] = model.DEFAULT_FAIL_OPEN[ctype]
    _place(doc, record, settings, layout, params)
    record['dns'] = list(record.get('config', {}).get('dns') or [])
    doc['connections'][record['id']] = record
    return doc, record, payload, secrets, None


def public_result(record, settings):
    """What pic_connection returns about a connection (never secrets)."""
    if record is None:
        return None
    _settings, layout = model.normalize_settings(settings)
    return {
        'id': record['id'],
        'name': record['name'],
        'type': record['type'],
        'fail_open': record['fail_open'],
        'mark': '0x%08x' % record['mark'],
        'kill_mark': '0x%08x' % model.conn_mark(record, layout, True),
        'table': record['table'],
        'interface': record.get('interface'),
        'local_port': record.get('local_port'),
        'dns_port': record.get('dns_port'),
        'config': record.get('config', {}),
    }
