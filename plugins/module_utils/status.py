# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``pic-connectivity status`` on the cell: the connections and their health,
what carries each peer and service now (its exit, the WAN as the fail-open
fallback or the default gateway, or nothing: blocked), the address each exit
interface holds, and the monitor's state. ``gather`` builds it as a dict
(``--json``), ``render`` as tables for a person."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import shutil
import subprocess
import time

from . import model
from .connections import users_of
from .health import DOWN, WORKING, HealthCache, carrier, report, upstream
from .registry import Registry

# Seconds without a monitor pass after which the monitor may not be running.
MONITOR_STALE = 30


def interface_addresses(ifname):
    """The addresses on ``ifname`` (what the exit gave the cell): a list, or None
    when unknown (no such interface, no ``ip`` command)."""
    ip = shutil.which('ip')
    if not ifname or not ip:
        return None
    proc = subprocess.run([ip, '-j', 'addr', 'show', 'dev', ifname], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    try:
        links = json.loads(proc.stdout or '[]')
    except ValueError:
        return None
    return ['%s/%s' % (a['local'], a['prefixlen']) for link in links for a in link.get('addr_info', [])
            if a.get('scope') != 'link' and 'local' in a and 'prefixlen' in a]


def _exit(conn, addresses_of):
    """(addresses or None, text): where the exit leaves the cell."""
    if conn['type'] in model.INTERFACE_TYPES:
        addresses = addresses_of(conn.get('interface'))
        if addresses is None:
            return None, '%s (missing)' % conn.get('interface')
        return addresses, ' '.join([conn['interface']] + (addresses or ['(no address)']))
    server = upstream(conn)
    if server:
        return None, 'upstream %s:%d' % server
    return None, 'the Tor network' if conn['type'] == 'tor' else conn['type']


def _monitor(runtime, now):
    at = runtime.get('monitor_at')
    age = None if at is None else max(0, int(now - at))
    state = 'never ran' if age is None else ('running' if age <= MONITOR_STALE else 'stale')
    return {'state': state, 'last_pass_seconds': age, 'monitor_at': at,
            'down': sorted(runtime.get('down') or []), 'reasons': runtime.get('reasons') or {}}


def _connection(cid, conn, doc, entry, down, addresses_of):
    addresses, via = _exit(conn, addresses_of)
    if 'egress' in entry:   # the egress proof: the public address the echo URL saw through the exit
        via += '; public %s' % (entry['egress'] or 'unknown')
    return {'name': conn['name'], 'type': conn['type'], 'fail_open': conn['fail_open'],
            'interface': conn.get('interface'), 'status': entry['status'], 'reason': entry['reason'],
            'checked_at': entry.get('checked_at'), 'held_down': cid in down, 'exit': via, 'addresses': addresses,
            'egress': entry.get('egress'), 'users': users_of(doc, cid)}


def _user(doc, user, conns, down, runtime):
    """One peer or service: its connection and what carries it now."""
    cid = user.get('connection') or model.DEFAULT
    conn = doc['connections'].get(cid)
    status = DOWN if cid in down else (conns[cid]['status'] if cid in conns else None)
    # ordered failover: the fallback that carries the users of a connection held down
    fallback = model.carriers(doc, down).get(cid) if cid in down else None
    return {'address': list(user.get('address', [])), 'connection': cid,
            'fail_open': model.effective_fail_open(user, conn) if conn else None,
            'carried_by': 'exit' if fallback else carrier(doc, user, status, runtime), 'fallback': fallback}


def gather(state_dir, max_age=30, force=False, allow_empty=False, now=None, addresses_of=None):
    """The cell's status as a dict; health from the shared cache when fresher
    than ``max_age`` seconds (probed now otherwise, or with ``force``);
    ``addresses_of(ifname)`` reads an exit interface's addresses."""
    now = now or time.time()
    addresses_of = addresses_of or interface_addresses
    registry = Registry(state_dir)
    registry.require_set_up(allow_empty, hint='give --allow-empty')
    doc = registry.load()
    runtime = registry.load_runtime()
    health = report(doc, runtime, HealthCache(state_dir), sorted(doc['connections']), max_age=max_age,
                    force=force, now=now)
    down = set(runtime.get('down') or [])
    conns = dict((cid, _connection(cid, conn, doc, health[cid], down, addresses_of))
                 for cid, conn in doc['connections'].items())
    return {
        'state_dir': state_dir,
        'checked_at': now,
        'registry': registry.never_set_up() is None,
        'pending_apply': registry.has_pending(),
        'monitor': _monitor(runtime, now),
        'connections': conns,
        'peers': dict((n, _user(doc, p, conns, down, runtime)) for n, p in doc['peers'].items()),
        'services': dict((n, _user(doc, s, conns, down, runtime)) for n, s in doc.get('services', {}).items()),
    }


# -- the tables ---------------------------------------------------------------------------------------------
def ago(seconds):
    """3s, 5m, 2h, 3d."""
    seconds = max(0, int(seconds))
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
        if seconds >= size:
            return '%d%s' % (seconds // size, unit)
    return '%ds' % seconds


def table(headers, rows):
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    lines = []
    for row in [headers] + rows:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths)] + [str(row[-1])]
        lines.append('  '.join(cells).rstrip())
    return lines


def _monitor_line(mon):
    held = ', '.join('%s (%s)' % (cid, mon['reasons'].get(cid, 'no reason kept')) for cid in mon['down'])
    if mon['state'] == 'never ran':
        when = 'never ran on this cell (no monitor state)'
    elif mon['state'] == 'stale':
        when = 'NOT RUNNING? last pass %s ago' % ago(mon['last_pass_seconds'])
    else:
        when = 'running, last pass %s ago' % ago(mon['last_pass_seconds'])
    return 'Monitor: %s; holds down: %s' % (when, held or 'none')


def _carried(user, status):
    """What carries a peer or service, in words."""
    cid = user['connection']
    name = status['connections'][cid]['name'] if cid in status['connections'] else cid
    how = user['carried_by']
    fallback = user.get('fallback')
    if fallback:
        return 'exit %s (fallback: %s is down)' % (status['connections'].get(fallback, {}).get('name', fallback), name)
    if how == 'exit':
        return 'exit %s' % name
    if cid == model.DEFAULT:
        return 'WAN (default gateway)'
    if cid not in status['connections']:
        return 'BLOCKED (connection %s does not exist)' % cid
    if how == 'default':
        return 'WAN (fail-open fallback: %s is down)' % name
    return 'BLOCKED (fail-closed: %s is down)' % name


def _connection_rows(status):
    rows = []
    for cid, conn in sorted(status['connections'].items()):
        users = conn['users']
        checked = ' (checked %s ago)' % ago(status['checked_at'] - conn['checked_at']) if conn['checked_at'] else ''
        rows.append([cid, conn['type'], conn['status'] + (' (held)' if conn['held_down'] else ''), conn['exit'],
                     'open' if conn['fail_open'] else 'closed', len(users['peers']) + len(users['services']),
                     conn['reason'] + checked])
    return rows


def _user_rows(status, section):
    return [[name, ' '.join(user['address']) or '-', user['connection'], _carried(user, status)]
            for name, user in sorted(status[section].items())]


def totals(status):
    conns = list(status['connections'].values())
    users = list(status['peers'].values()) + list(status['services'].values())
    count = dict((key, sum(1 for u in users if u['carried_by'] == key)) for key in ('exit', 'default', 'blocked'))
    fallback = sum(1 for u in users if u['carried_by'] == 'default' and u['connection'] != model.DEFAULT)
    return ('Totals: %d connections (%d working, %d down, %d unknown); %d peers and services: %d on an exit, '
            '%d on the WAN as fail-open fallback, %d on the default gateway, %d blocked'
            % (len(conns), sum(1 for c in conns if c['status'] == WORKING),
               sum(1 for c in conns if c['status'] == DOWN),
               sum(1 for c in conns if c['status'] not in (WORKING, DOWN)), len(users), count['exit'], fallback,
               count['default'] - fallback, count['blocked']))


def render(status):
    """The status as text: monitor, connections, peers, services, totals."""
    lines = ['Cell state: %s%s' % (status['state_dir'], '' if status['registry'] else ' (no registry: nothing set up)'),
             _monitor_line(status['monitor'])]
    if status['pending_apply']:
        lines.append('WARNING: a run saved the registry and did not finish applying it; the next run applies it')
    lines += ['', 'Connections (%d)' % len(status['connections'])]
    lines += table(['ID', 'TYPE', 'HEALTH', 'EXIT', 'FAIL', 'USERS', 'REASON'], _connection_rows(status)) \
        if status['connections'] else ['  none']
    for section, title in (('peers', 'Peers'), ('services', 'Services')):
        if section == 'services' and not status['services']:
            continue
        lines += ['', '%s (%d)' % (title, len(status[section]))]
        lines += table(['NAME', 'ADDRESS', 'CONNECTION', 'CARRIED BY'], _user_rows(status, section)) \
            if status[section] else ['  none']
    return '\n'.join(lines + ['', totals(status)]) + '\n'
