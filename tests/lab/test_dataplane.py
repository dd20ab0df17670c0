# -*- coding: utf-8 -*-
"""The foundation's behaviour, proven with real packets in the lab.

Baseline after every test: connection "Exit WG" (wireguard_ext, fail-closed) to
the lab's WireGuard exit server; p1 on it (fail-closed), p2 on it with a
per-peer fail_open override, p3 on the default gateway.
"""
import json
import os
import stat
import time

import pytest

from conftest import piclab, wait_for, leak_count, quiet_counters
from piclab import sources, via_exit, via_wan

EXIT = 'Exit WG'


def exit_conf(v4only=False):
    with open(piclab.exit_config_path('cell1', v4only=v4only)) as handle:
        return handle.read()


def peers_baseline():
    return [
        {'peer': 'p1', 'address': [piclab.peer_address('p1', 4) + '/32', piclab.peer_address('p1', 6) + '/128'],
         'connection': EXIT},
        {'peer': 'p2', 'address': [piclab.peer_address('p2', 4) + '/32', piclab.peer_address('p2', 6) + '/128'],
         'connection': EXIT, 'fail_open': True},
        {'peer': 'p3', 'address': [piclab.peer_address('p3', 4) + '/32', piclab.peer_address('p3', 6) + '/128'],
         'connection': 'default'},
    ]


def converge(cell):
    conn = cell.module('pic_connection', {'name': EXIT, 'type': 'wireguard_ext',
                                          'config': {'wg_config': exit_conf(), 'health_target': piclab.EXIT_TUN_V4}})
    peers = cell.module('pic_peer_exit', {'peers': peers_baseline(), 'purge': True})
    return conn, peers




@pytest.fixture(scope='module', autouse=True)
def foreign_state(cell):
    """Things the collection must leave alone: another nft table, rule and routing table."""
    cell.sh('nft', 'add table inet someone_else; add chain inet someone_else someone_fwd '
            '{ type filter hook forward priority 10; policy accept; }')
    cell.sh('ip', 'rule', 'add', 'pref', '5000', 'fwmark', '0x1', 'lookup', '777')
    cell.sh('ip', 'route', 'add', 'blackhole', '192.0.2.0/24', 'table', '777')
    yield
    assert 'someone_else' in cell.sh('nft', 'list', 'tables').stdout
    assert '5000:' in cell.sh('ip', 'rule').stdout
    assert 'blackhole 192.0.2.0/24' in cell.sh('ip', 'route', 'show', 'table', '777').stdout


def test_before_any_connection_peers_use_the_wan(lab, cell):
    for peer in ('p1', 'p2', 'p3'):
        assert via_wan(peer), sources(peer)


def test_converge_routes_assigned_peers_through_the_exit(cell):
    conn, peers = converge(cell)
    assert conn['changed'] and peers['changed']
    assert conn['connection']['interface'] == 'pic-exit-wg'
    assert conn['connection']['table'] == 10001
    assert wait_for(lambda: via_exit('p1'), 15), sources('p1')
    assert via_exit('p2'), sources('p2')
    assert via_wan('p3'), sources('p3')


def test_second_run_reports_no_change(cell):
    conn, peers = converge(cell)
    assert not conn['changed'], conn['changes']
    assert not peers['changed'], peers['changes']


def test_secrets_stay_secret(cell):
    conn, _ = converge(cell)
    key = [line.split('=', 1)[1].strip() for line in exit_conf().splitlines() if line.startswith('PrivateKey')][0]
    assert key not in conn['_stdout']
    diff = cell.module('pic_connection', {'name': EXIT, 'config': {'wg_config': exit_conf(),
                                                                   'health_target': piclab.EXIT_TUN_V4},
                                          'fail_open': True}, check=True, diff=True)
    assert diff['changed'] and diff['diff']['after']['fail_open'] is True
    assert key not in diff['_stdout']
    for root, _dirs, files in os.walk(cell.state_dir):
        for name in files:
            path = os.path.join(root, name)
            with open(path) as handle:
                if key in handle.read():
                    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
                    assert 'secrets' in path, path
    assert stat.S_IMODE(os.stat(os.path.join(cell.state_dir, 'registry.json')).st_mode) == 0o600


def test_check_mode_changes_nothing_and_reports(cell):
    before = cell.registry_bytes(), cell.nft_table()
    result = cell.module('pic_peer_exit', {'peer': 'p3', 'connection': EXIT}, check=True, diff=True)
    assert result['changed']
    assert result['diff']['before']['p3']['connection'] == 'default'
    assert result['diff']['after']['p3']['connection'] == 'exit-wg'
    assert any('nftables' in c for c in result['changes'])
    assert (cell.registry_bytes(), cell.nft_table()) == before
    assert via_wan('p3')


def test_single_form_moves_a_peer_at_once(cell):
    result = cell.module('pic_peer_exit', {'peer': 'p3', 'connection': 'exit-wg'})
    assert result['changed']
    assert via_exit('p3'), sources('p3')
    result = cell.module('pic_peer_exit', {'peer': 'p3', 'connection': 'default'})
    assert via_wan('p3'), sources('p3')


@pytest.mark.parametrize('damage', [
    ('ip', 'rule', 'del', 'pref', '10000'),
    ('ip', '-6', 'rule', 'del', 'pref', '10001'),
    ('ip', 'route', 'del', 'default', 'table', '10001'),
    ('nft', 'delete element inet pic_connectivity peer4 { 10.0.0.11 }'),
    ('nft', 'flush chain inet pic_connectivity forward'),
    ('nft', 'delete table inet pic_connectivity'),
])
def test_hand_deleted_state_is_restored(cell, damage):
    cell.sh(*damage)
    _conn, peers = converge(cell)
    assert peers['changed'] or _conn['changed']
    _conn, peers = converge(cell)
    assert not peers['changed'] and not _conn['changed']
    assert via_exit('p1'), sources('p1')


def test_interface_deleted_fail_closed_blocks_fail_open_falls_back(cell):
    assert via_exit('p1') and via_exit('p2')
    cell.sh('ip', 'link', 'del', 'pic-exit-wg')
    # the per-peer override (p2) falls back at once; the connection's own mode (p1) blocks
    assert via_wan('p2'), sources('p2')
    assert sources('p1') == (None, None)
    assert leak_count('p1') == 0
    # a positive control: the same probe from a fail-open peer does reach the internet
    assert leak_count('p2') > 0
    # the exit comes back without a playbook: the cell's restore entry point (boot, monitor)
    proc = cell.cli('restore')
    assert proc.returncode == 0, proc.stderr
    assert wait_for(lambda: via_exit('p1'), 15), sources('p1')
    assert via_exit('p2')


def test_exit_server_stopped_then_back_without_a_run(cell):
    monitor = cell.cli('monitor', '--interval', '0.5', background=True)
    try:
        assert wait_for(lambda: via_exit('p2'), 10)
        piclab.exit_stop()
        started = time.time()
        assert wait_for(lambda: piclab.fetch('p2', 4, timeout=1) == piclab.wan_address('cell1', 4), 10)
        fallback = time.time() - started
        assert via_wan('p2')
        assert sources('p1') == (None, None)
        assert leak_count('p1') == 0
        health = cell.module('pic_health', {'connection': EXIT, 'force': True})
        assert health['connections']['exit-wg']['status'] == 'down'
        info = cell.module('pic_connectivity_info', {})
        assert info['peers']['p1']['carried_by'] == 'blocked'
        assert info['peers']['p2']['carried_by'] == 'default'
        assert info['peers']['p3']['carried_by'] == 'default'
        piclab.exit_start()
        assert wait_for(lambda: via_exit('p1'), 20), sources('p1')
        assert wait_for(lambda: via_exit('p2'), 10), sources('p2')
        print('fail-open fallback after exit server stop: %.1fs' % fallback)
    finally:
        monitor.terminate()
        monitor.wait(10)


def test_ipv6_never_leaks_through_an_ipv4_only_exit(cell):
    result = cell.module('pic_connection', {'name': 'V4 Only', 'type': 'wireguard_ext',
                                            'config': {'wg_config': exit_conf(v4only=True)}})
    assert result['connection']['table'] == 10002
    for fail_open in (None, True):
        cell.module('pic_peer_exit', {'peer': 'p3', 'connection': 'V4 Only', 'fail_open': fail_open})
        assert wait_for(lambda: piclab.fetch('p3', 4) == piclab.exit_address(4), 15)
        assert piclab.fetch('p3', 6) is None
        quiet_counters()
        piclab.send_probe('p3', 6, count=3)
        time.sleep(0.5)
        assert piclab.counters()['v6'] == 0
    cell.module('pic_peer_exit', {'peer': 'p3', 'connection': 'default'})
    cell.module('pic_connection', {'name': 'V4 Only', 'state': 'absent'})
    assert via_wan('p3')


def test_delete_in_use_fails_lists_users_and_changes_nothing(cell):
    before = cell.registry_bytes(), cell.nft_table()
    result = cell.module('pic_connection', {'name': EXIT, 'state': 'absent'}, expect_fail=True)
    assert result['users'] == {'peers': ['p1', 'p2'], 'services': []}
    assert 'p1' in result['msg'] and 'p2' in result['msg']
    assert (cell.registry_bytes(), cell.nft_table()) == before
    assert via_exit('p1')


@pytest.mark.parametrize('module,args,field', [
    ('pic_connection', {'name': 'bad;name', 'type': 'tor'}, 'name'),
    ('pic_connection', {'name': 'x' * 65, 'type': 'tor'}, 'name'),
    ('pic_connection', {'name': 'Relay', 'type': 'cell_relay'}, 'type'),
    ('pic_connection', {'name': 'Bad WG', 'type': 'wireguard_ext',
                        'config': {'wg_config': '[Interface]\nPrivateKey = nope\n'}}, 'config.wg_config.private_key'),
    ('pic_connection', {'name': 'Pinned', 'type': 'tor', 'mark': 0x00800000}, 'mark'),
    ('pic_connection', {'name': 'Pinned', 'type': 'tor', 'table': 254}, 'table'),
    ('pic_peer_exit', {'peer': 'p9', 'address': ['10.0.0.11/32'], 'connection': 'default'}, 'address[0]'),
    ('pic_peer_exit', {'peer': 'p9', 'address': ['10.0.0.99/32'], 'connection': 'Nowhere'}, 'connection'),
    ('pic_peer_exit', {'peer': 'p9\nx', 'address': ['10.0.0.99/32']}, 'peer'),
    ('pic_peer_exit', {'peers': [{'peer': 'p9', 'address': ['10.0.0.999/32']}]}, 'peers[0].address[0]'),
])
def test_bad_input_is_named_and_changes_nothing(cell, module, args, field):
    before = cell.registry_bytes(), cell.nft_table()
    result = cell.module(module, args, expect_fail=True)
    assert result['msg'].startswith(field + ':'), result['msg']
    assert (cell.registry_bytes(), cell.nft_table()) == before


def test_second_tor_is_refused(cell):
    cell.module('pic_connection', {'name': 'Tor', 'type': 'tor'})
    result = cell.module('pic_connection', {'name': 'Tor Two', 'type': 'tor'}, expect_fail=True)
    assert 'one tor connection' in result['msg']
    cell.module('pic_connection', {'name': 'Tor', 'state': 'absent'})


def test_bulk_thousand_peers_in_one_task(cell):
    bulk = peers_baseline()
    for i in range(1000):
        bulk.append({'peer': 'bulk%d' % i, 'address': ['10.1.%d.%d/32' % (i // 250, i % 250 + 1)],
                     'connection': EXIT if i % 2 else 'default'})
    started = time.time()
    result = cell.module('pic_peer_exit', {'peers': bulk})
    took = time.time() - started
    assert result['changed'] and len(result['changed_peers']) == 1000
    elements = json.loads(cell.sh('nft', '-j', 'list', 'map', 'inet', 'pic_connectivity', 'peer4').stdout)
    count = [o['map'] for o in elements['nftables'] if 'map' in o][0]
    assert len(count['elem']) == 500 + 2
    again = cell.module('pic_peer_exit', {'peers': bulk})
    assert not again['changed'] and again['changed_peers'] == [] and again['peers'] == []
    # the 1,003-item list is not echoed back in the task's invocation (-vvv)
    assert again['invocation']['module_args']['peers'] == '(1003 peers, not echoed)'
    assert 'bulk17' not in again['_stdout']
    assert via_exit('p1')
    cell.module('pic_peer_exit', {'peers': peers_baseline(), 'purge': True})
    print('1000 peers in one task: %.2fs' % took)


def test_boot_restore_before_forwarding(cell):
    """A reboot loses the kernel state; the restore entry point brings it back
    before forwarding, and a fail-closed peer never reaches the WAN meanwhile."""
    cell.sh('sysctl', '-qw', 'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0')
    cell.sh('ip', 'link', 'del', 'pic-exit-wg')
    cell.sh('nft', 'delete table inet pic_connectivity')
    for family in ('-4', '-6'):
        for pref in ('10000', '10001'):
            cell.sh('ip', family, 'rule', 'del', 'pref', pref)
    proc = cell.cli('restore')
    assert proc.returncode == 0, proc.stderr
    assert 'pic-exit-wg' in proc.stdout
    cell.sh('sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1')
    assert wait_for(lambda: via_exit('p1'), 15), sources('p1')


def test_concurrent_runs_serialize(cell):
    import threading
    results = {}

    def move(peer, conn):
        results[peer] = cell.module('pic_peer_exit', {'peer': peer, 'connection': conn})
    threads = [threading.Thread(target=move, args=('p3', EXIT)), threading.Thread(target=move, args=('p2', EXIT))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results['p3']['changed']
    doc = json.loads(cell.registry_bytes())
    assert doc['peers']['p3']['connection'] == 'exit-wg'
    assert doc['peers']['p2']['connection'] == 'exit-wg'
    cell.module('pic_peer_exit', {'peers': peers_baseline(), 'purge': True})


def test_unassign_then_delete_keeps_the_service_installed(cell):
    cell.module('pic_peer_exit', {'peers': [dict(p, connection='default', fail_open=None)
                                            for p in peers_baseline()]})
    result = cell.module('pic_connection', {'name': EXIT, 'state': 'absent'})
    assert result['changed'] and result['connection'] is None
    assert 'pic-exit-wg' not in cell.sh('ip', 'link').stdout
    assert cell.sh('ip', 'rule').stdout.count('10001') == 0
    assert os.path.exists('/usr/bin/wireguard-go') and os.path.exists('/usr/bin/wg')
    assert not os.path.exists(os.path.join(cell.state_dir, 'secrets', 'exit-wg.conf'))
    for peer in ('p1', 'p2', 'p3'):
        assert via_wan(peer), sources(peer)
    assert not cell.module('pic_connection', {'name': EXIT, 'state': 'absent'})['changed']
