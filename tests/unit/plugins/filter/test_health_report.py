# -*- coding: utf-8 -*-
"""pic.connectivity.health_report: the rows, cells and totals of playbooks/health.yml."""
import re

from ansible_collections.pic.connectivity.plugins.filter.health_report import FilterModule, health_report

NOW = 1764475200.0   # 2025-11-30 04:00:00 UTC


def info(connections=None, peers=None, monitor=None):
    return {'changed': False, 'connections': connections or {}, 'peers': peers or {}, 'services': {},
            'monitor': monitor if monitor is not None else {'down': []}}


def conn(name, status, users=(), reason='why', checked=NOW - 5, cached=False):
    return {'name': name, 'type': 'wireguard_ext', 'health': {'status': status, 'reason': reason,
                                                              'checked_at': checked, 'cached': cached},
            'users': {'peers': list(users), 'services': []}}


def fleet():
    return {
        'cell1': info({'home': conn('Home VPN', 'down', ['p1', 'p2']), 'tor': conn('Tor', 'working', ['p3'])},
                      {'p1': {'carried_by': 'blocked'}, 'p2': {'carried_by': 'default'},
                       'p3': {'carried_by': 'exit'}},
                      {'down': ['home'], 'reasons': {'home': 'probe of 10.64.0.1 failed'}, 'monitor_at': NOW - 2}),
        'cell2': info(),
        'cell3': {'failed': True, 'msg': 'Task failed: Module failed: unknown connection'},
        'cell4': {'unreachable': True, 'msg': 'Failed to connect to the host via ssh: refused', 'changed': False},
        'cell5': {},
    }


def test_the_filter_is_exported():
    assert FilterModule().filters()['health_report'] is health_report


def test_rows_per_connection_with_monitor_and_affected_peers():
    report = health_report(fleet(), now=NOW)
    rows = [r for r in report['rows'] if r['cell'] == 'cell1']
    assert [(r['connection'], r['status']) for r in rows] == [('Home VPN', 'down'), ('Tor', 'working')]
    home = rows[0]
    assert home['peers'] == 'p1 (blocked), p2 (default)'
    assert (home['affected'], home['blocked']) == (2, 1)
    assert home['monitor'].startswith('down: fail-open users on the default gateway')
    assert 'probe of 10.64.0.1 failed' in home['monitor']
    assert rows[1]['affected'] == 0 and rows[1]['monitor'] == 'up'
    assert re.match(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$', home['checked'])


def test_failed_and_unreachable_are_told_apart_with_their_reason():
    cells = dict((c['cell'], c) for c in health_report(fleet(), now=NOW)['cells'])
    assert cells['cell3']['state'] == 'failed'
    assert cells['cell3']['reason'] == 'Module failed: unknown connection'
    assert cells['cell4']['state'] == 'unreachable'
    assert 'refused' in cells['cell4']['reason']
    assert cells['cell5']['state'] == 'failed' and 'did not run' in cells['cell5']['reason']
    assert cells['cell2']['state'] == 'ok' and cells['cell2']['monitor'].startswith('not running')
    assert cells['cell1']['monitor'].startswith('running (last pass 2 s ago), holds 1 connection(s) down')


def test_a_stopped_monitor_shows_as_such():
    report = health_report({'c': info(monitor={'down': [], 'monitor_at': NOW - 3600})}, now=NOW)
    assert report['cells'][0]['monitor'].startswith('stopped? last pass')


def test_totals():
    totals = health_report(fleet(), now=NOW)['totals']
    assert totals == {'cells': 5, 'ok': 2, 'failed': 2, 'unreachable': 1, 'connections': 2, 'working': 1,
                      'down': 1, 'unknown': 0, 'affected': 2, 'blocked': 1}


def test_a_report_when_every_cell_fails():
    report = health_report({'a': {'unreachable': True, 'msg': 'x'}, 'b': {'failed': True, 'msg': 'y'}}, now=NOW)
    assert [r['status'] for r in report['rows']] == ['unreachable', 'failed']
    assert report['totals']['cells'] == 2 and report['totals']['connections'] == 0


def test_the_time_carries_its_zone():
    assert re.search(r' [+-]\d{4}$', health_report({}, now=NOW)['generated_at'])


def test_messages_stay_on_one_line():
    report = health_report({'a': {'failed': True, 'msg': 'line one\nline two'}}, now=NOW)
    assert report['cells'][0]['reason'] == 'line one line two'


def test_rows_show_the_address_each_exit_gives():
    results = fleet()
    results['cell1']['connections']['tor']['health']['egress'] = '198.51.100.9'
    rows = dict((r['connection'], r) for r in health_report(results, now=NOW)['rows'] if r['cell'] == 'cell1')
    assert rows['Tor']['egress'] == '198.51.100.9'
    assert rows['Home VPN']['egress'] == '-'
