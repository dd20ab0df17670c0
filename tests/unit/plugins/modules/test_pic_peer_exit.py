# -*- coding: utf-8 -*-
"""pic_peer_exit's main(), run as Ansible runs it, on a cell that is a throwaway network
namespace with one tor connection: the single and the bulk form, check mode, a bad input
failing with the field named and nothing written, a second run not changed, purge."""
import json

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_connection, pic_peer_exit
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, kernel_state, run_module


@pytest.fixture
def state_dir(tmp_path, libnftables):
    return str(tmp_path / 'state')


def on_cell(state_dir, *calls):
    """In a new namespace: create the tor connection, then ``calls`` (args, options) in order;
    their results, the registry's peers and the kernel's nftables table as text."""
    def scenario():
        created = run_module(pic_connection, {'name': 'Tor', 'type': 'tor', 'state_dir': state_dir})
        assert created['changed'] is True, created
        results = [run_module(pic_peer_exit, dict(args, state_dir=state_dir), **options) for args, options in calls]
        return results, Registry(state_dir).load()['peers'], json.dumps(kernel_state()['table'])
    return in_netns(scenario)


ALICE = {'peer': 'alice', 'address': ['10.0.0.2'], 'connection': 'Tor'}


def test_a_peer_is_assigned_once(state_dir):
    (first, second), peers, table = on_cell(state_dir, (ALICE, {}), (ALICE, {}))
    assert first['changed'] is True and first['changed_peers'] == ['alice']
    assert first['peers'] == [{'peer': 'alice', 'address': ['10.0.0.2/32'], 'connection': 'tor', 'fail_open': None,
                               'effective_fail_open': True}]
    assert second['changed'] is False and second['changed_peers'] == [] and second['changes'] == []
    assert peers['alice']['connection'] == 'tor'
    assert '10.0.0.2' in table


def test_check_mode_changes_neither_registry_nor_kernel(state_dir):
    (result,), peers, table = on_cell(state_dir, (ALICE, {'check_mode': True, 'diff': True}))
    assert result['changed'] is True and result['changed_peers'] == ['alice']
    assert result['diff']['after']['alice']['connection'] == 'tor'
    assert peers == {}
    assert '10.0.0.2' not in table


@pytest.mark.parametrize('args, field', [
    (dict(ALICE, peer='al\nice'), 'peer'),
    (dict(ALICE, address=['0.0.0.0/0']), 'address[0]'),
    (dict(ALICE, address=['10.0.0.2', 'x;y']), 'address[1]'),
    (dict(ALICE, connection='nowhere'), 'connection'),
    ({'peers': [{'peer': 'bob', 'address': ['10.0.0.3']}, {'peer': 'carol', 'address': ['10.0.0.300']}]},
     'peers[1].address[0]'),
])
def test_a_bad_input_fails_naming_the_field_and_changes_nothing(state_dir, args, field):
    (result,), peers, table = on_cell(state_dir, (args, {}))
    assert result['failed'] is True
    assert result['msg'].startswith(field + ':'), result['msg']
    assert peers == {}
    assert '10.0.0.' not in table


def test_bulk_with_purge_sends_the_unlisted_back_to_default(state_dir):
    bulk = {'peers': [{'peer': 'bob', 'address': ['10.0.0.3/32', 'fd00::3'], 'connection': 'tor'}], 'purge': True}
    (single, purged, again), peers, table = on_cell(state_dir, (ALICE, {}), (bulk, {}), (bulk, {}))
    assert single['changed'] is True
    assert purged['changed'] is True and purged['changed_peers'] == ['alice', 'bob']
    assert 'peers' not in purged['invocation']['module_args'] or \
        purged['invocation']['module_args']['peers'] == '(1 peers, not echoed)'
    assert again['changed'] is False and again['changed_peers'] == []
    assert peers['alice']['connection'] == 'default' and peers['bob']['connection'] == 'tor'   # back to default
    assert '10.0.0.3' in table


def test_purge_needs_the_bulk_form(state_dir):
    (result,), peers, _table = on_cell(state_dir, (dict(ALICE, purge=True), {}))
    assert result['failed'] is True and result['msg'].startswith('purge:')
    assert peers == {}
