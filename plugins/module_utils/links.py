# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cell links and the cell_relay connections derived from them. Pure.

A link is a site-to-site WireGuard tunnel to another cell (managed by the
cell software, not here). When the remote cell offers its internet exit over
the link, a ``cell_relay`` connection named after it appears; when it stops
offering, the connection goes away and the peers still assigned to it stay
blocked (fail-closed) and are reported, never moved.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from . import model
from .errors import PicError
from .validation import check_bool, check_ifname, check_peer_name, parse_address, slugify

RELAY_ROUTES = {'4': ['0.0.0.0/0'], '6': ['::/0']}


def relay_id(doc, cell):
    """The id of the relay through ``cell``: the one it has (ids in registries stay), or its slug."""
    for cid, conn in doc['connections'].items():
        if conn['type'] == 'cell_relay' and conn.get('cell', conn['name']) == cell:
            return cid
    return slugify(cell)


def _check_link_interface(doc, settings, ifname, field):
    """A link's interface is the cell software's: never the peer interface or an exit's."""
    if ifname == settings['peer_interface']:
        raise PicError("is the peer interface, not a cell link", field, ifname)
    for conn in doc['connections'].values():
        if conn['type'] != 'cell_relay' and conn.get('interface') == ifname:
            raise PicError("is the interface of connection %r, not a cell link" % conn['name'], field, ifname)


def _relay(doc, settings, layout, cell, link):
    """Create or update the cell_relay connection through ``cell``; returns its id."""
    cid = relay_id(doc, cell)
    current = doc['connections'].get(cid)
    if current is not None and current['type'] == 'cell_relay' and current.get('cell', cell) != cell:
        raise PicError("the relay through cell %s would have the id %r of the relay through cell %s; the two "
                       "cell names differ only in punctuation or case" % (cell, cid, current['cell']),
                       'links', cell)
    if current is not None and current['type'] != 'cell_relay':
        raise PicError("the relay through cell %s would be connection %r, which already exists as a %s "
                       "connection; rename that connection" % (cell, cid, current['type']), 'links', cell)
    record = dict(current) if current else {'id': cid, 'name': cell, 'type': 'cell_relay', 'fail_open': False,
                                            'config': {}, 'dns': []}
    record['interface'] = link['interface']
    # the remote cell's resolver (its link address): the relay's peers' DNS
    # to this cell goes there, through the link (model.pin_dns)
    record['dns'] = list(link.get('remote_dns') or [])
    record['routes'] = RELAY_ROUTES
    record['cell'] = cell
    index, table = model.allocate(doc, layout, settings, cid)
    record.update(index=index, table=table, mark=layout.mark(index, False))
    doc['connections'][cid] = record
    return cid


def _remote_dns(value, field):
    """The remote cell's resolvers on the link: at most one address per family."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 2:
        raise PicError("must be a list of at most two addresses (one IPv4, one IPv6)", field, value)
    out = [parse_address(v, '%s[%d]' % (field, i)) for i, v in enumerate(value)]
    if len(set(':' in v for v in out)) != len(out):
        raise PicError("must hold at most one address per family", field, value)
    return out


def plan(doc, links, known_cells=None, purge=True):
    """Apply the cell's link list to a copy of ``doc``.

    ``links``: dicts with ``cell`` (the remote cell), ``interface`` (the link
    interface on this cell), ``offer_exit`` (this cell offers its exit to the
    remote cell) and ``remote_offers_exit`` (the remote cell offers its exit here).
    Returns (doc, relays: list of connection ids, orphans: {conn id: [peers]}).
    """
    doc = json.loads(json.dumps(doc))
    settings, layout = model.normalize_settings(doc.get('settings'))
    wanted = {}
    seen_if = {}
    for i, link in enumerate(links):
        field = 'links[%d]' % i
        cell = check_peer_name(link.get('cell'), field + '.cell')
        if known_cells is not None and cell not in known_cells:
            raise PicError("is not a known cell (known: %s)" % ', '.join(sorted(known_cells)), field + '.cell', cell)
        if cell in wanted:
            raise PicError("is linked twice", field + '.cell', cell)
        ifname = check_ifname(link.get('interface'), field + '.interface')
        if ifname in seen_if:
            raise PicError("is also the interface of the link to %s" % seen_if[ifname], field + '.interface', ifname)
        _check_link_interface(doc, settings, ifname, field + '.interface')
        seen_if[ifname] = cell
        for key in ('offer_exit', 'remote_offers_exit'):
            check_bool(link.get(key, False), '%s.%s' % (field, key))
        wanted[cell] = {'cell': cell, 'interface': ifname, 'offer': bool(link.get('offer_exit', False)),
                        'remote_offers': bool(link.get('remote_offers_exit', False)),
                        'remote_dns': _remote_dns(link.get('remote_dns'), field + '.remote_dns')}
    links_now = {} if purge else dict(doc.get('links', {}))
    links_now.update(wanted)
    doc['links'] = links_now

    relays = []
    for cell, link in sorted(links_now.items()):
        if not link['remote_offers']:
            continue
        cid = _relay(doc, settings, layout, cell, link)
        relays.append(cid)
    orphans = {}
    for cid, conn in list(doc['connections'].items()):
        if conn['type'] == 'cell_relay' and cid not in relays:
            del doc['connections'][cid]
    for name, peer in doc['peers'].items():
        cid = peer.get('connection') or model.DEFAULT
        if cid != model.DEFAULT and cid not in doc['connections']:
            orphans.setdefault(cid, []).append(name)
    for name, svc in doc.get('services', {}).items():
        cid = svc.get('connection') or model.DEFAULT
        if cid != model.DEFAULT and cid not in doc['connections']:
            orphans.setdefault(cid, []).append('service %s' % name)
    return doc, relays, orphans
