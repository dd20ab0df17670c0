# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A whole cell as one ``config`` (pic_cell): its connections, peers, services and
links in the form of the role's variables, planned onto the registry with the
resource-module states (merged, replaced, overridden, deleted) by the planners of
connections, peers, services and links, read back from a registry (gathered,
parsed) and rendered offline. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from . import connections, links, model, peers, services
from .errors import PicError
from .registry import check_shape, empty

SECTIONS = ('connections', 'peers', 'services', 'links')
CHANGING_STATES = ('merged', 'replaced', 'overridden', 'deleted')
STATES = CHANGING_STATES + ('gathered', 'rendered', 'parsed')
CONNECTION_KEYS = ('name', 'type', 'config', 'fail_open', 'mark', 'table', 'fallback', 'state')
SERVICE_KEYS = ('service', 'address', 'interface', 'manifest', 'connection', 'fail_open', 'state')
LINK_KEYS = ('cell', 'interface', 'offer_exit', 'remote_offers_exit', 'remote_dns')


# -- the config's shape ------------------------------------------------------------------------

def _check_items(value, section, keys):
    if value is None:
        return None
    if not isinstance(value, list):
        raise PicError("must be a list", 'config.' + section, None if isinstance(value, str) else value)
    for i, item in enumerate(value):
        where = 'config.%s[%d]' % (section, i)
        if not isinstance(item, dict):
            raise PicError("must be a dict", where, None)
        for key in item:
            if keys is not None and key not in keys:
                raise PicError("is not a supported key (supported: %s)" % ', '.join(keys), '%s.%s' % (where, key))
    return list(value)


def check_config(config):
    """``config`` as {section: list or None}: a dict with only the four sections, each
    a list of dicts with known keys (peers are checked by peers.normalize_items)."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise PicError("must be a dict with connections, peers, services and links", 'config')
    for key in config:
        if key not in SECTIONS:
            raise PicError("is not a section of a cell (sections: %s)" % ', '.join(SECTIONS), 'config.%s' % key)
    return {
        'connections': _check_items(config.get('connections'), 'connections', CONNECTION_KEYS),
        'peers': _check_items(config.get('peers'), 'peers', None),
        'services': _check_items(config.get('services'), 'services', SERVICE_KEYS),
        'links': _check_items(config.get('links'), 'links', LINK_KEYS),
    }


def secrets_in(config):
    """Every string of the config's connection configs that could be a secret
    (connections.secrets_in of each), before any validation."""
    out = []
    if not isinstance(config, dict) or not isinstance(config.get('connections'), list):
        return out
    for item in config['connections']:
        if isinstance(item, dict):
            out.extend(connections.secrets_in(item.get('config')))
    return out


def _prefixed(prefix, exc):
    """``exc`` with its field under ``prefix`` (``config.connections[2].``)."""
    field = prefix + exc.field if exc.field is not None else prefix.rstrip('.')
    new = PicError('x', details=exc.details)
    new.field, new.value = field, exc.value
    new.msg = prefix + exc.msg if exc.field is not None and exc.msg.startswith(exc.field) \
        else '%s: %s' % (field, exc.msg)
    new.args = (new.msg,)
    return new


def _at(prefix, func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except PicError as exc:
        raise _prefixed(prefix, exc)


# -- gathered / parsed: a registry as a config ---------------------------------------------------

def _conn_name(doc, cid):
    if not cid or cid == model.DEFAULT:
        return model.DEFAULT
    conn = doc['connections'].get(cid)
    return conn['name'] if conn else cid


def _gathered_connection(doc, conn):
    fallback = [_conn_name(doc, f) for f in model.fallback_ids(conn)]
    if conn['type'] == 'cell_relay':
        return {'name': conn['name'], 'fallback': fallback}
    return {'name': conn['name'], 'type': conn['type'], 'fail_open': conn['fail_open'],
            'mark': conn['mark'], 'table': conn['table'], 'fallback': fallback}


def gather(doc):
    """The cell's config as pic_cell takes it, from a registry document. Connection
    configs are left out (the secrets never leave the cell); a config without them
    keeps the stored one, so the result given back to pic_cell changes nothing."""
    conns = sorted(doc['connections'].values(), key=lambda c: c['index'])
    gathered_conns = [_gathered_connection(doc, c) for c in conns
                      if c['type'] != 'cell_relay' or model.fallback_ids(c)]
    gathered_peers = [{'name': name, 'address': list(p['address']), 'connection': _conn_name(doc, p.get('connection')),
                       'fail_open': p.get('fail_open')} for name, p in sorted(doc['peers'].items())]
    gathered_services = [{'service': name, 'address': list(s['address']), 'interface': s.get('interface'),
                          'connection': _conn_name(doc, s.get('connection')), 'fail_open': s.get('fail_open')}
                         for name, s in sorted(doc.get('services', {}).items())]
    gathered_links = [{'cell': cell, 'interface': link['interface'], 'offer_exit': bool(link.get('offer')),
                       'remote_offers_exit': bool(link.get('remote_offers')),
                       'remote_dns': list(link.get('remote_dns') or [])}
                      for cell, link in sorted(doc.get('links', {}).items())]
    return {'connections': gathered_conns, 'peers': gathered_peers, 'services': gathered_services,
            'links': gathered_links}


def load_running(text, field='running_config'):
    """A running config given as text: a registry document (registry.json), or the
    ``config`` of a gathered run (JSON, with or without a top ``config`` key). Returns
    (registry document or None, config)."""
    if not isinstance(text, str) or not text.strip():
        raise PicError("must be the text of a registry.json or of a gathered config", field)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PicError("is not JSON (line %d, column %d)" % (getattr(exc, 'lineno', 0), getattr(exc, 'colno', 0)),
                       field)
    if isinstance(data, dict) and isinstance(data.get('gathered'), dict):
        data = data['gathered']
    if isinstance(data, dict) and isinstance(data.get('config'), dict):
        data = data['config']
    if isinstance(data, dict) and isinstance(data.get('connections'), dict):
        doc = check_shape(data, field)
        return doc, gather(doc)
    config = check_config(data)
    return None, dict((k, v) for k, v in config.items() if v is not None)


def parse(text):
    """``parsed``: the structured config of a running config's text."""
    return load_running(text)[1]


def base_of(text):
    """``rendered``: the registry a rendering starts from (an empty cell without one)."""
    if text is None:
        return empty()
    doc, _config = load_running(text)
    if doc is None:
        raise PicError("must be a registry.json to render on (a gathered config has no marks and tables to "
                       "start from)", 'running_config')
    return doc


# -- merged / replaced / overridden / deleted ------------------------------------------------------

class CellPlan(object):
    """What a whole-cell plan gives the runner: the new registry, the WireGuard
    payloads to store ({id: payload}), the removed connection records, the secrets."""

    def __init__(self, doc):
        self.doc = doc
        self.wg = {}
        self.removed = []
        self.secrets = []


def _connection_params(doc, item, replace):
    """The pic_connection parameters of one item (without its fallbacks). ``replace``:
    what the item leaves out goes back to its default (the fail mode of its type)."""
    params = dict((k, item.get(k)) for k in ('name', 'type', 'config', 'fail_open', 'mark', 'table'))
    if replace and params['fail_open'] is None:
        current = _by_name(doc, item.get('name'))
        ctype = params['type'] or (current or {}).get('type')
        if ctype in model.DEFAULT_FAIL_OPEN and ctype != 'cell_relay':
            params['fail_open'] = model.DEFAULT_FAIL_OPEN[ctype]
    return params


def _by_name(doc, name):
    for conn in doc['connections'].values():
        if conn['name'] == name:
            return conn
    return None


def _is_relay_item(doc, item):
    current = _by_name(doc, item.get('name'))
    return current is not None and current['type'] == 'cell_relay' and item.get('type') is None


def _fallback_only(doc, item):
    """An item that only names a connection's fallbacks (a relay that this run's links
    create): set in the fallback pass, once the relay exists."""
    return _by_name(doc, item.get('name')) is None and item.get('fallback') is not None and \
        all(item.get(k) is None for k in ('type', 'config', 'fail_open', 'mark', 'table'))


def _plan_connections(cplan, items, replace):
    """Create or update the present connections, in the order given."""
    from .exits import cell_runs_wireguard
    for i, item in enumerate(items):
        if item.get('state') == 'absent' or _is_relay_item(cplan.doc, item) or _fallback_only(cplan.doc, item):
            continue
        params = _connection_params(cplan.doc, item, replace)
        doc, record, payload, secrets, _removed = _at('config.connections[%d].' % i, connections.plan,
                                                      cplan.doc, params)
        cplan.doc = doc
        cplan.secrets.extend(secrets)
        if payload and cell_runs_wireguard(record['type']):
            cplan.wg[record['id']] = payload


def _plan_fallbacks(cplan, items, replace):
    """The fallbacks, once every connection and relay exists, whatever their order."""
    for i, item in enumerate(items):
        if item.get('state') == 'absent':
            continue
        fallback = item.get('fallback')
        if fallback is None and replace:
            fallback = []
        current = _by_name(cplan.doc, item.get('name'))
        if fallback is None or (current is not None and not fallback and not model.fallback_ids(current)):
            continue
        params = {'name': item['name'], 'fallback': fallback}
        cplan.doc = _at('config.connections[%d].' % i, connections.plan, cplan.doc, params)[0]


def _remove_connections(cplan, names):
    for where, name in names:
        doc, _record, _payload, _secrets, removed = _at(where, connections.plan, cplan.doc,
                                                        {'name': name, 'state': 'absent'})
        cplan.doc = doc
        if removed:
            cplan.removed.append(removed)


def _plan_peers(cplan, items, purge):
    normalized = _at('config.', peers.normalize_items, items)
    normalized = [dict(item, connection=model.DEFAULT) if item.get('connection') is None else item
                  for item in normalized]
    cplan.doc = _at('config.', peers.plan, cplan.doc, normalized, purge=purge, bulk=True)[0]


def _service_params(doc, item, replace):
    """pic_service_egress parameters of one item. The manifest is checked when the
    service's connection changes; one that keeps its connection was checked then."""
    params = dict((k, item.get(k)) for k in SERVICE_KEYS)
    params['connection'] = params['connection'] or model.DEFAULT
    current = doc.get('services', {}).get(item.get('service')) if isinstance(item.get('service'), str) else None
    if params['manifest'] is None and current is not None and params['state'] != 'absent':
        try:
            same = connections.resolve(doc, params['connection'], 'connection') == current.get('connection')
        except PicError:
            same = False
        if same:
            params['manifest'] = {'has_egress': True}
    if replace and 'fail_open' not in item:
        params['fail_open'] = None
    return params


def _plan_services(cplan, items, replace):
    for i, item in enumerate(items):
        params = _service_params(cplan.doc, item, replace)
        doc, name = _at('config.services[%d].' % i, services.plan, cplan.doc, params)
        if replace and params['state'] != 'absent' and name in doc.get('services', {}):
            doc['services'][name]['fail_open'] = params['fail_open']
        cplan.doc = doc


def _plan_links(cplan, items, known_cells):
    if not items and not cplan.doc.get('links'):
        return {}   # no links, and none wanted: a registry that never had any stays without the section
    doc, _relays, orphans = _at('config.', links.plan, cplan.doc, items, known_cells)
    cplan.doc = doc
    return orphans


def _absent_names(items):
    return [('config.connections[%d].' % i, item.get('name')) for i, item in enumerate(items)
            if item.get('state') == 'absent']


def _unlisted(doc, config):
    """``overridden``: what the config does not list, as removals."""
    listed = set(item.get('name') for item in config['connections'] or [])
    conns = [('config.connections', c['name']) for c in sorted(doc['connections'].values(), key=lambda c: c['index'])
             if c['type'] != 'cell_relay' and c['name'] not in listed]
    listed_peers = set(item.get('peer', item.get('name')) for item in config['peers'] or [])
    gone_peers = [{'peer': n, 'state': 'absent'} for n in sorted(doc['peers']) if n not in listed_peers]
    listed_services = set(item.get('service') for item in config['services'] or [])
    gone_services = [{'service': n, 'state': 'absent'} for n in sorted(doc.get('services', {}))
                     if n not in listed_services]
    return conns, gone_peers, gone_services


def plan_merge(doc, config, state='merged', purge_peers=False, known_cells=None):
    """merged, replaced, overridden: the cell's config onto a copy of ``doc``, in the
    role's order (connections present, links, fallbacks, peers, services, removals)."""
    replace = state in ('replaced', 'overridden')
    cplan = CellPlan(json.loads(json.dumps(doc)))
    conn_items = config['connections'] or []
    removals, gone_peers, gone_services = _unlisted(doc, config) if state == 'overridden' else ([], [], [])
    _plan_connections(cplan, conn_items, replace)
    orphans = _plan_links(cplan, config['links'], known_cells) if config['links'] is not None else {}
    _plan_fallbacks(cplan, conn_items, replace)
    if config['peers'] or gone_peers or purge_peers:
        _plan_peers(cplan, list(config['peers'] or []) + gone_peers, purge_peers)
    if config['services'] or gone_services:
        _plan_services(cplan, list(config['services'] or []) + gone_services, replace)
    _remove_connections(cplan, _absent_names(conn_items) + removals)
    return cplan, orphans


def plan_delete(doc, config):
    """deleted: the listed peers, services, links and connections, or everything
    when the config lists nothing."""
    everything = not any(config[section] for section in SECTIONS)
    if everything:
        config = {'connections': [], 'peers': [], 'services': [], 'links': []}
        return plan_merge(doc, config, 'overridden')
    cplan = CellPlan(json.loads(json.dumps(doc)))
    if config['peers']:
        names = [dict(item, state='absent') for item in _at('config.', peers.normalize_items, config['peers'])]
        cplan.doc = _at('config.', peers.plan, cplan.doc, names, bulk=True)[0]
    if config['services']:
        _plan_services(cplan, [{'service': item.get('service'), 'state': 'absent'} for item in config['services']],
                       False)
    orphans = {}
    if config['links']:
        gone = set(item.get('cell') for item in config['links'])
        kept = [link for link in gather(cplan.doc)['links'] if link['cell'] not in gone]
        orphans = _plan_links(cplan, kept, None)
    _remove_connections(cplan, [('config.connections[%d].' % i, item.get('name'))
                                for i, item in enumerate(config['connections'] or [])])
    return cplan, orphans


def plan(doc, config, state, purge_peers=False, known_cells=None):
    """The new registry for ``state`` (one of CHANGING_STATES). Returns (CellPlan, orphans)."""
    config = check_config(config)
    if state == 'deleted':
        return plan_delete(doc, config)
    return plan_merge(doc, config, state, purge_peers, known_cells)


# -- rendered: what the cell would get, without the cell ------------------------------------------

def render(doc):
    """The data plane of ``doc`` as a cell would run it (every exit interface up, no
    exit down): the nftables ruleset, the ip rules and the routes, as text."""
    from .dataplane import _fmt_route, _fmt_rule
    settings, layout = model.normalize_settings(doc.get('settings'))
    facts = {'peer_networks': [], 'down': [], 'present': [settings['peer_interface']],
             'interfaces': sorted(c['interface'] for c in doc['connections'].values() if c.get('interface'))}
    want = model.desired(doc, facts, (settings, layout))
    routes = [dict(r, table=t) for t, rs in sorted(want.routes.items()) for r in rs]
    return {'nftables': want.render_nft(), 'rules': [_fmt_rule(r) for r in want.rules],
            'routes': [_fmt_route(r) for r in routes]}
