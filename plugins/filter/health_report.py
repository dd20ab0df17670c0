# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet health report of ``playbooks/health.yml``, as data its templates print.

Filter (FQCN ``pic.connectivity.health_report``):
``{{ results | pic.connectivity.health_report }}`` where ``results`` maps each
cell of the play (after ``--limit``) to its registered result of
M(pic.connectivity.pic_connectivity_info), run with ``ignore_errors`` and
``ignore_unreachable`` (``{}`` when the cell has none). It returns

* ``rows``: one per cell and connection (``cell``, ``connection``, ``type``,
  ``status``: ``working``/``down``/``unknown``, ``egress`` (the public address
  the exit leaves from, ``-`` when unknown or not probed), ``reason``, ``monitor``: what
  the cell's monitor does with it, ``peers``: who uses it and what carries
  each of them now, ``affected``: how many of them its exit does not carry,
  ``checked``: when it was probed, with the time zone); a cell that answered
  with no connection has one row ``(none)``, a cell that did not answer one
  row with status ``failed`` (its module failed: the reason is the module's
  message) or ``unreachable`` (Ansible could not reach it: the reason is the
  connection's message);
* ``cells``: one per cell (``cell``, ``state``: ``ok``/``failed``/``unreachable``,
  ``reason``, ``monitor``: the monitor's state, ``connections``);
* ``totals``: counts of cells by state, connections by status, and peers
  (and services) that their exit does not carry now (``affected``), of which
  ``blocked`` (fail-closed);
* ``generated_at``: the time of the report, with the time zone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import time

from ansible.errors import AnsibleFilterError

STATUSES = ('working', 'down', 'unknown')
CELL_STATES = ('ok', 'failed', 'unreachable')
# A monitor whose last pass is older than this has stopped (it passes every second).
MONITOR_STALE_SECONDS = 60
TASK_FAILED = 'Task failed: '
NO_RESULT = 'no result (the task did not run on this cell)'


def stamp(seconds):
    """A UNIX time as local time with the zone's offset: 2026-11-30 04:15:00 +0000."""
    return datetime.datetime.fromtimestamp(float(seconds)).astimezone().strftime('%Y-%m-%d %H:%M:%S %z')


def one_line(text):
    """A message on one line (the tables have one line per row), without ansible-core's
    C(Task failed: ) prefix."""
    text = ' '.join(str(text).split())
    return text[len(TASK_FAILED):] if text.startswith(TASK_FAILED) else text


def cell_state(result):
    """(state, reason) of a cell from its registered result."""
    if not isinstance(result, dict) or not result:
        return 'failed', NO_RESULT
    if result.get('unreachable'):
        return 'unreachable', one_line(result.get('msg') or 'unreachable')
    if result.get('failed') or not isinstance(result.get('connections'), dict):
        return 'failed', one_line(result.get('msg') or 'the module returned no connections')
    return 'ok', ''


def monitor_state(monitor, now):
    """What the cell's monitor is doing, from the result's ``monitor``."""
    monitor = monitor if isinstance(monitor, dict) else {}
    last = monitor.get('monitor_at')
    if not last:
        return 'not running (no pass recorded)'
    age = max(0, int(now - float(last)))
    down = monitor.get('down') or []
    what = ('holds %d connection(s) down' % len(down)) if down else 'all connections up'
    if age > MONITOR_STALE_SECONDS:
        return 'stopped? last pass %s (%d s ago), %s' % (stamp(last), age, what)
    return 'running (last pass %d s ago), %s' % (age, what)


def connection_monitor(monitor, conn_id):
    """What the monitor does with one connection."""
    monitor = monitor if isinstance(monitor, dict) else {}
    if not monitor.get('monitor_at'):
        return '-'
    reason = (monitor.get('reasons') or {}).get(conn_id)
    if conn_id in (monitor.get('down') or []):
        return one_line('down: fail-open users on the default gateway' + (' (%s)' % reason if reason else ''))
    return one_line('up' + (' (%s)' % reason if reason else ''))


def users_of(result, conn):
    """[(name, carried_by)] of the peers and services on a connection."""
    users = conn.get('users') or {}
    out = []
    for kind, section in (('peers', 'peers'), ('services', 'services')):
        known = result.get(section) or {}
        for name in sorted(users.get(kind) or []):
            out.append((name if kind == 'peers' else 'service ' + name,
                        (known.get(name) or {}).get('carried_by') or 'unknown'))
    return out


def connection_row(cell, result, conn_id, conn):
    health = conn.get('health') or {}
    users = users_of(result, conn)
    checked = health.get('checked_at')
    return {
        'cell': cell, 'connection': one_line(conn.get('name', conn_id)), 'type': conn.get('type', '-'),
        'status': health.get('status', 'unknown'), 'reason': one_line(health.get('reason', '')),
        'egress': one_line(health.get('egress') or '-'),
        'monitor': connection_monitor(result.get('monitor'), conn_id),
        'peers': ', '.join('%s (%s)' % user for user in users) or '-',
        'affected': sum(1 for _name, carried in users if carried != 'exit'),
        'blocked': sum(1 for _name, carried in users if carried == 'blocked'),
        'checked': (stamp(checked) + (' (cached)' if health.get('cached') else '')) if checked else '-',
    }


def cell_rows(cell, result, state, reason):
    if state != 'ok':
        return [{'cell': cell, 'connection': '-', 'type': '-', 'status': state, 'reason': reason, 'egress': '-',
                 'monitor': '-', 'peers': '-', 'affected': 0, 'blocked': 0, 'checked': '-'}]
    conns = result['connections']
    if not conns:
        return [{'cell': cell, 'connection': '(none)', 'type': '-', 'status': '-', 'reason': 'no connections',
                 'egress': '-', 'monitor': '-', 'peers': '-', 'affected': 0, 'blocked': 0, 'checked': '-'}]
    ordered = sorted(conns.items(), key=lambda item: (str(item[1].get('name', item[0])), item[0]))
    return [connection_row(cell, result, conn_id, conn) for conn_id, conn in ordered]


def totals_of(cells, rows):
    totals = dict((state, sum(1 for c in cells if c['state'] == state)) for state in CELL_STATES)
    totals.update((status, sum(1 for r in rows if r['status'] == status)) for status in STATUSES)
    totals['cells'] = len(cells)
    totals['connections'] = sum(totals[status] for status in STATUSES)
    totals['affected'] = sum(r['affected'] for r in rows)
    totals['blocked'] = sum(r['blocked'] for r in rows)
    return totals


def health_report(results, now=None):
    """The report of ``results`` ({cell: registered result}); see the module docstring."""
    if not isinstance(results, dict):
        raise AnsibleFilterError('health_report: expects a dict of cell name to result, got %s'
                                 % type(results).__name__)
    now = time.time() if now is None else float(now)
    cells, rows = [], []
    for cell in sorted(results):
        result = results[cell]
        state, reason = cell_state(result)
        monitor = monitor_state(result.get('monitor'), now) if state == 'ok' else '-'
        cell_lines = cell_rows(cell, result, state, reason)
        cells.append({'cell': cell, 'state': state, 'reason': reason, 'monitor': monitor,
                      'connections': len([r for r in cell_lines if r['status'] in STATUSES])})
        rows.extend(cell_lines)
    return {'generated_at': stamp(now), 'cells': cells, 'rows': rows, 'totals': totals_of(cells, rows)}


class FilterModule:
    """The fleet health report."""

    def filters(self):
        return {'health_report': health_report}
