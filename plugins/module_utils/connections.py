# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections in the registry: validation per type, create, update, delete. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from . import exits, model
from .errors import PicError
from .exits import base as exit_base, proxy as exit_proxy
from .validation import check_bool, check_display_name, slugify


# A secret line, even misspelt (``PrivateKey: <key>``). Only values of 8 characters or more are
# masked: a short no_log value (':') would mask that character in every message.
_SECRET_LINE = re.compile(r'^[ \t]*(PrivateKey|PresharedKey|password|auth-user-pass)[ \t=:]*(\S{8,})', re.I | re.M)
SECRET_KEYS = exits.secret_keys()


def _secret_names():
    """The secret keys of every type (from the providers), letters only: a misspelt
    ``Private-Key`` is one of them."""
    return frozenset(re.sub('[^a-z]', '', key) for key in exits.secret_keys())


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
    # Every setting any type takes that holds no secret: the values of all other keys (a
    # misspelt ``privatekey``, ``Password``) are masked as well.
    public, secret_names, secret_files = exits.public_keys(), _secret_names(), exits.secret_file_keys()
    for key, value in config.items():
        name = re.sub('[^a-z]', '', key.lower()) if isinstance(key, str) else None
        if key in secret_files:
            for text in _leaves(value):
                out.append(text)
                out.extend(m.group(2) for m in _SECRET_LINE.finditer(text))
        elif name in secret_names:
            out.extend(_leaves(value))
        elif key not in public:
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


# Moved to the exit providers (exits/); kept here for their callers.
REDSOCKS_TOKENS = exit_proxy.REDSOCKS_TOKENS
new_fingerprint_key = exit_base.new_fingerprint_key
fingerprint = exit_base.fingerprint


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
    public = exit_base.common(config, field)
    provider = exits.get(ctype)
    if provider is None or not provider.creatable:
        raise PicError("unknown connection type", 'type', ctype)
    exit_base.check_keys(config, provider.keys(), field)
    return provider.validate(config, public, field, fingerprint_key)


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
                       "in its letters or digits (connections are not renamed: create the new one, move the peers "
                       "and services with pic_peer_exit and pic_service_egress, then remove %r)"
                       % (conn_id, taken['name'], taken['name']), 'name', name)
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
    leaning = fallback_of(doc, existing_id)
    if leaning:
        raise PicError("connection %r is the fallback of %s; remove it from their fallback lists first"
                       % (name, ', '.join(repr(doc['connections'][c]['name']) for c in leaning)),
                       details={'fallback_of': leaning, 'status': 409})
    users = users_of(doc, existing_id)
    if users['peers'] or users['services']:
        who = ['peer %s' % p for p in users['peers']] + ['service %s' % s for s in users['services']]
        raise PicError("connection %r is in use by %s; assign them to another connection or 'default' first"
                       % (name, ', '.join(who)), details={'users': users, 'status': 409})
    return doc['connections'].pop(existing_id)


MAX_FALLBACKS = 8


def fallback_of(doc, conn_id):
    """The ids of the other connections that name ``conn_id`` as a fallback."""
    return sorted(cid for cid, conn in doc['connections'].items()
                  if cid != conn_id and conn_id in model.fallback_ids(conn))


def _reaches(doc, start, target):
    """Does following fallbacks from ``start`` lead to ``target``?"""
    seen, todo = set(), [start]
    while todo:
        cid = todo.pop()
        if cid == target:
            return True
        if cid in seen or cid not in doc['connections']:
            continue
        seen.add(cid)
        todo.extend(model.fallback_ids(doc['connections'][cid]))
    return False


def check_fallback(doc, conn_id, value, field='fallback'):
    """A connection's ``fallback``: a list of existing connections (names or
    ids) other than itself and ``default``, each once, that never lead back to
    it (no cycles). Returns their ids in order."""
    if not isinstance(value, list):
        raise PicError("must be a list of connection names", field, None if isinstance(value, str) else value)
    if len(value) > MAX_FALLBACKS:
        raise PicError("names %d connections; at most %d" % (len(value), MAX_FALLBACKS), field)
    out = []
    for i, item in enumerate(value):
        where = '%s[%d]' % (field, i)
        if not isinstance(item, str):
            raise PicError("must be a connection name", where, item if isinstance(item, (int, float)) else None)
        check_display_name(item, where)
        if item == model.DEFAULT:
            raise PicError("is not a connection: when no fallback works, the fail mode decides (blocked, or the "
                           "default gateway for fail-open users)", where, item)
        if item == conn_id or slugify(item) == conn_id or \
                (conn_id in doc['connections'] and item == doc['connections'][conn_id]['name']):
            raise PicError("is the connection itself", where, item)
        fid = resolve(doc, item, where)
        if fid in out:
            raise PicError("is named twice", where, item)
        if _reaches(doc, fid, conn_id):
            raise PicError("falls back (directly or through its fallbacks) to this connection: a cycle", where, item)
        out.append(fid)
    return out


def _only_fallback(params):
    """A call that sets nothing but the fallbacks of a connection."""
    return params.get('fallback') is not None and \
        all(params.get(key) is None for key in ('type', 'config', 'fail_open', 'mark', 'table'))


def _relay_fallback(doc, current, fallback):
    """The one thing of a relay set by hand: its fallbacks (the rest comes from its link)."""
    record = dict(current)
    record['fallback'] = check_fallback(doc, record['id'], fallback)
    doc['connections'][record['id']] = record
    return doc, record, None, [], None


def _place(doc, record, settings, layout, params):
    """The record's mark, table, interface and local ports."""
    index, table = model.allocate(doc, layout, settings, record['id'], params.get('mark'), params.get('table'))
    record['index'] = index
    record['table'] = table
    record['mark'] = layout.mark(index, False)
    if exits.is_interface(record['type']):
        override = record.get('config', {}).get('interface')
        record['interface'] = model.interface_name(doc, record['id'], index, override)
        _check_interface_free(doc, settings, record)
    else:
        record['interface'] = None
    if exits.is_proxy(record['type']):
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
        if _only_fallback(params):
            return _relay_fallback(doc, current, params['fallback'])
        raise PicError("cell_relay connections are derived from cell links and cannot be changed by hand "
                       "(only their fallback can be set)", 'name', name)
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
    if config is None and current is None and ctype in exits.CONFIG_REQUIRED_TYPES:
        raise PicError("is required to create a %s connection" % ctype, 'config')
    payload, secrets = None, []
    record = dict(current) if current else {'id': existing_id or conn_id, 'name': name, 'type': ctype}
    record['name'] = name
    if config is not None:
        key = record.get('fingerprint_key') or new_fingerprint_key()
        public, payload, secrets, routes = validate_config(ctype, config, fingerprint_key=key)
        record['config'] = public
        record['routes'] = routes
        if 'fingerprint' in public and exits.provider(ctype).keyed_fingerprint:
            record['fingerprint_key'] = key
    fail_open = params.get('fail_open')
    if fail_open is not None:
        record['fail_open'] = check_bool(fail_open, 'fail_open', words=True)
    elif current is None:
        record['fail_open'] = model.DEFAULT_FAIL_OPEN[ctype]
    if params.get('fallback') is not None:
        record['fallback'] = check_fallback(doc, record['id'], params['fallback'])
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
        'fallback': list(record.get('fallback') or []),
    }
