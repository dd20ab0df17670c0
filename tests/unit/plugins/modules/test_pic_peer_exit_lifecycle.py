# -*- coding: utf-8 -*-
"""pic_peer_exit's peer lifecycle, run as Ansible runs it on a throwaway network namespace:
state=absent removes a peer (its map elements gone, its address free for a new peer),
an item without connection keeps the peer's connection (check mode and diff included)."""
import json

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_connection, pic_peer_exit
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, kernel_state, run_module


@pytest.fixture
def state_dir(tmp_path, libnftables):
    return str(tmp_path / 'state')


def on_cell(state_dir, *calls):
    """In a new namespace: the tor connection, then ``calls`` (args, options); their results,
    the registry's peers and the nftables table as text."""
    def scenario():
        assert run_module(pic_connection, {'name': 'Tor', 'type': 'tor', 'state_dir': state_dir})['changed']
        results = [run_module(pic_peer_exit, dict(args, state_dir=state_dir), **options) for args, options in calls]
        return results, Registry(state_dir).load()['peers'], json.dumps(kernel_state()['table'])
    return in_netns(scenario)


ALICE = {'peer': 'alice', 'address': ['10.0.0.2', 'fd00::2'], 'connection': 'Tor'}
ABSENT = {'peer': 'alice', 'state': 'absent'}
BOB_ON_ALICES = {'peer': 'bob', 'address': ['10.0.0.2'], 'connection': 'Tor'}


def test_absent_removes_the_peer_and_its_map_elements(state_dir):
    (_a, removed, again), peers, table = on_cell(state_dir, (ALICE, {}), (ABSENT, {'diff': True}), (ABSENT, {}))
    assert removed['changed'] is True and removed['changed_peers'] == ['alice']
    assert removed['removed_peers'] == ['alice']
    assert removed['peers'] == [{'peer': 'alice', 'state': 'absent'}]
    assert removed['diff']['before']['alice']['connection'] == 'tor'
    assert removed['diff']['after']['alice'] == {'peer': 'alice', 'state': 'absent'}
    assert again['changed'] is False and again['removed_peers'] == []
    assert peers == {}
    assert '10.0.0.2' not in table and 'fd00::2' not in table


def test_absent_in_check_mode_changes_nothing(state_dir):
    (_a, removed), peers, table = on_cell(state_dir, (ALICE, {}), (ABSENT, {'check_mode': True, 'diff': True}))
    assert removed['changed'] is True and removed['removed_peers'] == ['alice']
    assert peers['alice']['connection'] == 'tor'
    assert '10.0.0.2' in table


def test_a_removed_peers_address_is_free_for_a_new_peer(state_dir):
    (_a, refused, _r, bob), peers, table = on_cell(state_dir, (ALICE, {}), (BOB_ON_ALICES, {}), (ABSENT, {}),
                                                   (BOB_ON_ALICES, {}))
    assert refused['failed'] is True and 'overlaps' in refused['msg']
    assert bob['changed'] is True, bob
    assert sorted(peers) == ['bob'] and peers['bob']['address'] == ['10.0.0.2/32']
    assert '10.0.0.2' in table


def test_remove_and_reuse_in_one_bulk_call(state_dir):
    bulk = {'peers': [{'name': 'alice', 'state': 'absent'}, BOB_ON_ALICES]}
    (_a, result), peers, _table = on_cell(state_dir, (ALICE, {}), (bulk, {}))
    assert result['changed'] is True and result['changed_peers'] == ['alice', 'bob']
    assert result['removed_peers'] == ['alice']
    assert sorted(peers) == ['bob']


def test_a_bad_state_names_the_item(state_dir):
    (result,), peers, _table = on_cell(state_dir, ({'peers': [{'peer': 'x', 'state': 'gone'}]}, {}))
    assert result['failed'] is True and result['msg'].startswith('peers[0].state:'), result['msg']
    assert peers == {}


@pytest.mark.parametrize('check_mode', [False, True])
def test_fail_open_alone_keeps_the_connection(state_dir, check_mode):
    only = {'peer': 'alice', 'fail_open': False, 'keep_connection': True}
    (_a, result), peers, _table = on_cell(state_dir, (ALICE, {}), (only, {'check_mode': check_mode, 'diff': True}))
    assert result['changed'] is True and result['changed_peers'] == ['alice']
    assert result['diff']['before']['alice']['connection'] == 'tor'
    assert result['diff']['after']['alice']['connection'] == 'tor'
    assert result['diff']['after']['alice']['fail_open'] is False
    assert result['peers'][0]['connection'] == 'tor' and result['peers'][0]['effective_fail_open'] is False
    assert peers['alice']['connection'] == 'tor'
    assert peers['alice']['fail_open'] is (None if check_mode else False)


def test_an_omitted_connection_is_default_without_keep_connection(state_dir):
    (_a, result), peers, _table = on_cell(state_dir, (ALICE, {}), ({'peer': 'alice', 'fail_open': False}, {}))
    assert result['changed'] is True and peers['alice']['connection'] == 'default'
    bulk = {'peers': [{'peer': 'alice', 'fail_open': False}]}
    (_a, result), peers, _table = on_cell(state_dir + '-bulk', (ALICE, {}), (bulk, {}))
    assert result['changed'] is True and peers['alice']['connection'] == 'default'


def test_bulk_item_without_connection_keeps_it_and_a_new_peer_goes_default(state_dir):
    bulk = {'keep_connection': True,
            'peers': [{'peer': 'alice', 'fail_open': False}, {'peer': 'carol', 'address': ['10.0.0.9']}]}
    (_a, result, again), peers, _table = on_cell(state_dir, (ALICE, {}), (bulk, {}), (bulk, {}))
    assert result['changed_peers'] == ['alice', 'carol']
    assert again['changed'] is False
    assert peers['alice']['connection'] == 'tor' and peers['alice']['fail_open'] is False
    assert peers['carol']['connection'] == 'default'


def test_connection_default_still_moves_the_peer_back(state_dir):
    (_a, result), peers, _table = on_cell(state_dir, (ALICE, {}), ({'peer': 'alice', 'connection': 'default'}, {}))
    assert result['changed'] is True and peers['alice']['connection'] == 'default'
