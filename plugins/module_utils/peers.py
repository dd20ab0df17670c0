# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Peer exit assignments in the registry. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import model
from .connections import resolve
from .errors import PicError
from .validation import check_peer_name, check_bool, check_bool_or_none, parse_network, find_overlaps


BULK_KEYS = ('peer', 'address', 'connection', 'fail_open', 'state')
STATES = ('present', 'absent')


def normalize_items(raw, field='peers'):
    """The bulk form's items as AnsibleModule would give them (the alias ``name``,
    the default connection, Ansible's booleans), checked in one pass.

    The module declares ``peers`` without sub-options: AnsibleModule would walk
    every item once more (a third of a no-op run over 1,000 peers), and its
    errors do not say which item is wrong; these name ``peers[3].fail_open``.
    """
    if not isinstance(raw, list):
        raise PicError("must be a list of peers", field, raw)
    items = []
    for i, item in enumerate(raw):
        path = '%s[%d]' % (field, i)
        if not isinstance(item, dict):
            raise PicError("must be a dict with peer, address, connection, fail_open and state", path, item)
        for key in item:
            if key not in BULK_KEYS and key != 'name':
                raise PicError("is not a supported key (supported: peer or its alias name, address, connection, "
                               "fail_open, state)", '%s.%s' % (path, key), item[key])
        peer = item.get('peer')
        if 'name' in item:
            if 'peer' in item and item['name'] != peer:
                raise PicError("and its alias name are both given, with different values (%r, %r)"
                               % (peer, item['name']), path + '.peer', peer)
            peer = item['name']
        if peer is None:
            raise PicError("is required", path + '.peer')
        connection = item.get('connection')
        if connection is not None:
            # None (no connection key): the peer keeps its connection (see plan())
            if isinstance(connection, bool) or not isinstance(connection, (str, int)):
                raise PicError("must be a connection name or id, or default", path + '.connection', connection)
            connection = str(connection)
        items.append({'peer': peer, 'address': item.get('address'), 'connection': connection,
                      'fail_open': check_bool(item.get('fail_open'), path + '.fail_open', none_ok=True, words=True),
                      'state': check_state(item.get('state'), path + '.state')})
    return items


def check_state(value, field):
    """``present`` (also for None) or ``absent``."""
    if value is None:
        return 'present'
    if value not in STATES:
        raise PicError("must be present or absent", field, value)
    return value


def _connection_of(doc, name, value, field):
    """The connection id an item puts its peer on: ``value`` resolved, or, when
    the item names none (None), the peer's current connection (``default`` for a
    new peer), so an item that only changes ``fail_open`` keeps the connection."""
    if value is None:
        return (doc['peers'].get(name) or {}).get('connection') or model.DEFAULT
    return resolve(doc, value, field)


def plan(doc, items, purge=False, bulk=False):
    """Apply peer assignments to a copy of ``doc``.

    ``items``: dicts with ``peer``, ``address`` (list or None = keep),
    ``connection`` (name/id/'default'; None = keep the peer's, 'default' for a
    new peer), ``fail_open`` (bool or None) and ``state`` (``absent`` removes
    the peer from the registry: its addresses are free again).
    Returns (doc, [per-peer result]).
    """
    peers = dict((k, dict(v)) for k, v in doc['peers'].items())
    new = dict(doc)
    new['peers'] = peers
    seen = {}
    results = []
    addresses_changed = False
    for i, item in enumerate(items):
        prefix = 'peers[%d].' % i if bulk else ''
        name = check_peer_name(item.get('peer'), prefix + 'peer')
        if name in seen:
            raise PicError("peer listed twice (also at peers[%d])" % seen[name], prefix + 'peer', name)
        seen[name] = i
        if check_state(item.get('state'), prefix + 'state') == 'absent':
            peers.pop(name, None)
            results.append(name)
            continue
        conn_id = _connection_of(doc, name, item.get('connection'), prefix + 'connection')
        fail_open = check_bool_or_none(item.get('fail_open'), prefix + 'fail_open')
        record = peers.get(name, {'name': name, 'address': []})
        addresses = item.get('address')
        if addresses is not None:
            if isinstance(addresses, str):
                addresses = [addresses]
            if not isinstance(addresses, list) or not addresses:
                raise PicError("must be a non-empty list of addresses", prefix + 'address', addresses)
            # The registry holds validated addresses in canonical form: the same
            # list given again (the usual re-run) needs no parsing.
            if addresses != record['address']:
                record['address'] = _parse_addresses(addresses, prefix)
                addresses_changed = True
        elif not record['address']:
            raise PicError("is required for a peer the cell does not know yet (%s)" % name, prefix + 'address')
        record['connection'] = conn_id
        record['fail_open'] = fail_open
        peers[name] = record
        results.append(name)
    if purge:
        for name, record in peers.items():
            if name not in seen and record.get('connection', model.DEFAULT) != model.DEFAULT:
                record['connection'] = model.DEFAULT
                record['fail_open'] = None
    if addresses_changed:
        check_overlaps(new, dict((n, i) for n, i in seen.items()), bulk)
    return new, results


def _parse_addresses(addresses, prefix):
    nets = []
    for j, addr in enumerate(addresses):
        net = str(parse_network(addr, '%saddress[%d]' % (prefix, j), peer=True))
        if net in nets:
            raise PicError("is listed twice", '%saddress[%d]' % (prefix, j), addr)
        nets.append(net)
    return nets


def check_overlaps(doc, positions, bulk):
    entries = []
    for name, record in doc['peers'].items():
        for j, addr in enumerate(record['address']):
            entries.append((parse_network(addr, 'address'), ('peer', name, j)))
    for name, record in doc.get('services', {}).items():
        for j, addr in enumerate(record.get('address', [])):
            entries.append((parse_network(addr, 'address'), ('service', name, j)))
    clash = find_overlaps(entries)
    if clash:
        (net_a, own_a), (net_b, own_b) = clash
        # Name the field of the input that caused it: the later of the two in the input.
        cands = [(positions[own[1]], net, own, other_net, other)
                 for net, own, other_net, other in ((net_b, own_b, net_a, own_a), (net_a, own_a, net_b, own_b))
                 if own[0] == 'peer' and own[1] in positions]
        if cands:
            pos, net, own, other_net, other = max(cands, key=lambda c: c[0])
            field = ('peers[%d].address[%d]' % (pos, own[2])) if bulk else 'address[%d]' % own[2]
            raise PicError("overlaps %s of %s %s" % (other_net, other[0], other[1]), field, str(net))
        raise PicError("addresses overlap: %s of %s %s and %s of %s %s"
                       % (net_a, own_a[0], own_a[1], net_b, own_b[0], own_b[1]))


def public(doc, name):
    record = doc['peers'].get(name)
    if record is None:
        return None
    conn = doc['connections'].get(record.get('connection'))
    return {
        'peer': name,
        'address': list(record['address']),
        'connection': record.get('connection', model.DEFAULT),
        'fail_open': record.get('fail_open'),
        'effective_fail_open': model.effective_fail_open(record, conn) if conn else None,
    }
