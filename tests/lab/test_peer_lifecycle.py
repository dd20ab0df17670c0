# -*- coding: utf-8 -*-
"""Peer lifecycle and the audit journal, proven with real packets in the lab (issue 13).

A removed peer (pic_peer_exit state=absent) is unknown to the collection: its traffic
takes the cell's default gateway like any peer the collection does not manage (the
internet sees the cell's WAN address), and its nftables map elements are gone. A new
peer given the freed addresses works through its exit (the internet sees the exit's
address). Changing only fail_open keeps a peer on its exit. Each change is in the
cell's audit journal with its actor, and no secret of the exit is.
"""
import json
import os

import pytest

from conftest import piclab, reset_cell, wait_for

EXIT = 'Exit WG'
ACTOR = 'lab-operator@controller'


def exit_conf():
    with open(piclab.exit_config_path('cell1')) as handle:
        return handle.read()


def p1_addresses():
    return [piclab.peer_address('p1', 4) + '/32', piclab.peer_address('p1', 6) + '/128']


sources, via_exit, via_wan = piclab.sources, piclab.via_exit, piclab.via_wan


def peer_exit(cell, args, **options):
    return cell.module('pic_peer_exit', dict(args, audit_actor=ACTOR), **options)


@pytest.fixture(scope='module', autouse=True)
def on_exit(cell):
    """cell1 with the Exit WG connection and p1 on it (fail-closed); bare again afterwards."""
    reset_cell(cell)
    cell.module('pic_connection', {'name': EXIT, 'type': 'wireguard_ext', 'audit_actor': ACTOR,
                                   'config': {'wg_config': exit_conf(), 'health_target': piclab.EXIT_TUN_V4}})
    peer_exit(cell, {'peers': [{'peer': 'p1', 'address': p1_addresses(), 'connection': EXIT}], 'purge': True})
    assert wait_for(lambda: via_exit('p1'), 15), sources('p1')
    yield
    reset_cell(cell)


def test_changing_only_fail_open_keeps_the_peer_on_its_exit(cell):
    only = {'peer': 'p1', 'fail_open': True, 'keep_connection': True}
    preview = peer_exit(cell, only, check=True, diff=True)
    assert preview['changed'] and preview['diff']['after']['p1']['connection'] == 'exit-wg'
    result = peer_exit(cell, only)
    assert result['changed'] and result['peers'][0]['connection'] == 'exit-wg'
    assert result['peers'][0]['effective_fail_open'] is True
    assert via_exit('p1'), sources('p1')
    assert not peer_exit(cell, only)['changed']


def test_a_removed_peer_uses_the_default_gateway_and_a_new_peer_reuses_its_addresses(cell):
    refused = peer_exit(cell, {'peer': 'newcomer', 'address': p1_addresses(), 'connection': EXIT},
                        expect_fail=True)
    assert 'overlaps' in refused['msg']
    removed = peer_exit(cell, {'peer': 'p1', 'state': 'absent'}, diff=True)
    assert removed['changed'] and removed['removed_peers'] == ['p1']
    table = cell.nft_table()
    assert piclab.peer_address('p1', 4) not in table and piclab.peer_address('p1', 6) not in table
    assert wait_for(lambda: via_wan('p1'), 10), sources('p1')      # unknown: the cell's default gateway
    again = peer_exit(cell, {'peer': 'newcomer', 'address': p1_addresses(), 'connection': EXIT})
    assert again['changed'] and again['peers'][0]['address'] == p1_addresses()
    assert wait_for(lambda: via_exit('p1'), 10), sources('p1')     # the same source, now newcomer's: the exit


def test_the_changes_are_in_the_audit_journal_without_the_exits_key(cell):
    proc = cell.cli('audit', '--json', '-n', '3')
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout)
    assert [e['source'] for e in entries] == ['pic_peer_exit'] * 3
    assert all(e['actor'] == ACTOR for e in entries)
    assert entries[1]['changed']['peers.p1']['after'] is None
    assert entries[2]['changed']['peers.newcomer']['after']['connection'] == 'exit-wg'
    text = cell.cli('audit', '-n', '1').stdout
    assert 'pic_peer_exit  by %s' % ACTOR in text and 'peers.newcomer: (none) -> ' in text
    key = [line.split('=', 1)[1].strip() for line in exit_conf().splitlines() if line.startswith('PrivateKey')][0]
    journal = os.path.join(cell.state_dir, 'audit.jsonl')
    with open(journal) as handle:
        assert key not in handle.read()
    assert oct(os.stat(journal).st_mode & 0o777) == '0o600'
    info = cell.module('pic_connectivity_info', {'audit_entries': 1})
    assert info['audit'] == entries[-1:]
