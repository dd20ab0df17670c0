# -*- coding: utf-8 -*-
"""``pic-connectivity status``: tables a person reads and JSON for scripts, from a
registry, runtime.json and health.json built in a tmp state dir (no probe runs:
every health result is fresh in the cache); ``--help`` for every command."""
import json
import os
import time

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import cli, status
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry, empty

NOW = time.time()


def _conn(cid, name, ctype, index, fail_open, **extra):
    record = {'id': cid, 'name': name, 'type': ctype, 'index': index, 'fail_open': fail_open,
              'table': 10000 + index, 'mark': index << 16, 'config': {}}
    record.update(extra)
    return record


@pytest.fixture
def state_dir(tmp_path):
    """A cell: a WireGuard exit working, a proxy exit down (held by the monitor), peers of each
    (fail-open, fail-closed, default, a missing connection) and one service."""
    doc = empty()
    doc['connections'] = {
        'home-vpn': _conn('home-vpn', 'Home VPN', 'wireguard_ext', 1, False, interface='pic-wg1'),
        'office': _conn('office', 'Office proxy', 'proxy', 2, True, local_port=12304, dns_port=12305,
                        config={'host': '192.0.2.10', 'port': 1080}),
    }
    doc['peers'] = {
        'alice': {'address': ['10.0.0.2/32'], 'connection': 'home-vpn'},
        'bob': {'address': ['10.0.0.3/32', 'fd00:1::3/128'], 'connection': 'office'},
        'carol': {'address': ['10.0.0.4/32'], 'connection': 'office', 'fail_open': False},
        'dave': {'address': ['10.0.0.5/32'], 'connection': 'default'},
    }
    doc['services'] = {'mail': {'address': ['10.1.0.5/32'], 'connection': 'home-vpn', 'interface': 'svc0'}}
    registry = Registry(str(tmp_path / 'state'))
    registry.save(doc)
    registry.save_runtime({'down': ['office'], 'reasons': {'office': 'instance port 12304: refused'},
                           'monitor_at': NOW - 2})
    with open(str(tmp_path / 'state' / 'health.json'), 'w') as handle:
        json.dump({'home-vpn': {'status': 'working', 'reason': 'last handshake 12s ago', 'checked_at': NOW - 5},
                   'office': {'status': 'down', 'reason': 'monitor: instance port 12304: refused',
                              'checked_at': NOW - 5}}, handle)
    return str(tmp_path / 'state')


def _addresses(ifname):
    return {'pic-wg1': ['10.64.0.2/32', 'fd64::2/128']}.get(ifname)


def _status(state_dir):
    return status.gather(state_dir, now=NOW, addresses_of=_addresses)


def _rows(text, title):
    """The rows of the table under ``title`` as {first column: line}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows[line.split()[0]] = line
    return rows


def test_the_table_shows_connections_peers_services_monitor_and_totals(state_dir):
    text = status.render(_status(state_dir))
    assert text.splitlines()[0] == 'Cell state: %s' % state_dir
    assert 'Monitor: running, last pass 2s ago; holds down: office (instance port 12304: refused)' in text
    conns = _rows(text, 'Connections (2)')
    assert conns['home-vpn'].split()[:5] == ['home-vpn', 'wireguard_ext', 'working', 'pic-wg1', '10.64.0.2/32']
    assert 'last handshake 12s ago (checked 5s ago)' in conns['home-vpn']
    assert 'down (held)' in conns['office'] and 'upstream 192.0.2.10:1080' in conns['office']
    peers = _rows(text, 'Peers (4)')
    assert peers['alice'].endswith('exit Home VPN')
    assert peers['bob'].endswith('WAN (fail-open fallback: Office proxy is down)')
    assert '10.0.0.3/32 fd00:1::3/128' in peers['bob']
    assert peers['carol'].endswith('BLOCKED (fail-closed: Office proxy is down)')
    assert peers['dave'].endswith('WAN (default gateway)')
    assert _rows(text, 'Services (1)')['mail'].endswith('exit Home VPN')
    assert text.rstrip().splitlines()[-1] == (
        'Totals: 2 connections (1 working, 1 down, 0 unknown); 5 peers and services: 2 on an exit, '
        '1 on the WAN as fail-open fallback, 1 on the default gateway, 1 blocked')


def test_columns_line_up(state_dir):
    text = status.render(_status(state_dir))
    peers = _rows(text, 'Peers (4)')
    header = text.splitlines()[text.splitlines().index('Peers (4)') + 1]
    column = header.index('CARRIED BY')
    assert all(line[column - 2:column] == '  ' and line[column] != ' ' for line in peers.values())


def test_a_peer_of_a_missing_connection_is_blocked(state_dir):
    registry = Registry(state_dir)
    doc = registry.load()
    doc['peers']['eve'] = {'address': ['10.0.0.6/32'], 'connection': 'gone'}
    registry.save(doc)
    assert _rows(status.render(_status(state_dir)), 'Peers (5)')['eve'].endswith(
        'BLOCKED (connection gone does not exist)')


def test_a_stale_or_absent_monitor_is_said(state_dir):
    registry = Registry(state_dir)
    registry.save_runtime({'down': [], 'monitor_at': NOW - 600})
    assert 'Monitor: NOT RUNNING? last pass 10m ago; holds down: none' in status.render(_status(state_dir))
    registry.save_runtime({})
    assert 'Monitor: never ran on this cell' in status.render(_status(state_dir))


def test_json_for_scripts(state_dir, capsys, monkeypatch):
    monkeypatch.setattr(status, 'interface_addresses', _addresses)
    monkeypatch.setattr(status.time, 'time', lambda: NOW)
    assert cli.main(['status', '--json', '--state-dir', state_dir]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data['peers']['bob']['carried_by'] == 'default'
    assert data['peers']['carol']['carried_by'] == 'blocked'
    assert data['connections']['home-vpn']['addresses'] == ['10.64.0.2/32', 'fd64::2/128']
    assert data['monitor']['down'] == ['office'] and data['monitor']['state'] == 'running'


def test_the_table_is_the_default_output(state_dir, capsys, monkeypatch):
    monkeypatch.setattr(status, 'interface_addresses', _addresses)
    assert cli.main(['status', '--state-dir', state_dir]) == 0
    assert 'CARRIED BY' in capsys.readouterr().out


def test_a_state_dir_without_a_cell_is_an_error_unless_allowed(tmp_path, capsys):
    missing = str(tmp_path / 'mistyped')
    assert cli.main(['status', '--state-dir', missing]) == 1
    err = capsys.readouterr().err
    assert 'no such directory' in err and '--allow-empty' in err
    assert cli.main(['status', '--state-dir', missing, '--allow-empty']) == 0
    out = capsys.readouterr().out
    assert '(no registry: nothing set up)' in out and 'Connections (0)' in out


@pytest.mark.parametrize('command', [[], ['restore'], ['monitor'], ['status'], ['openvpn-up'], ['revert']])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(command + ['--help'])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert '--state-dir' in out or not command
    if not command:
        for name in ('restore', 'monitor', 'status', 'openvpn-up', 'revert'):
            assert name in out
    else:
        assert len(out.splitlines()) > 4


def test_the_exit_column_shows_the_public_address_of_the_egress_proof(state_dir):
    path = os.path.join(state_dir, 'health.json')
    with open(path) as handle:
        cached = json.load(handle)
    cached['home-vpn']['egress'] = '203.0.113.20'
    cached['office']['egress'] = None
    with open(path, 'w') as handle:
        json.dump(cached, handle)
    got = _status(state_dir)
    assert got['connections']['home-vpn']['egress'] == '203.0.113.20'
    assert got['connections']['home-vpn']['exit'] == 'pic-wg1 10.64.0.2/32 fd64::2/128; public 203.0.113.20'
    assert got['connections']['office']['exit'].endswith('; public unknown')
    assert 'public 203.0.113.20' in _rows(status.render(got), 'Connections')['home-vpn']
