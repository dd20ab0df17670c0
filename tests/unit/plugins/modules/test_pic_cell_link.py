# -*- coding: utf-8 -*-
"""pic_cell_link's main(), run as Ansible runs it, on a cell that is a throwaway network
namespace: a link that offers an exit becomes a relay connection once, check mode, bad
links fail naming the field with nothing written, and a relay in use is orphaned (with a
warning) when its link goes."""
import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_cell_link, pic_peer_exit
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.tests.unit.helpers import files_under, in_netns, kernel_state, run_module

LINK = {'cell': 'cell2', 'interface': 'picl-c2', 'remote_offers_exit': True}


@pytest.fixture
def state_dir(tmp_path, libnftables):
    return str(tmp_path / 'state')


def on_cell(state_dir, *calls):
    def scenario():
        results = [run_module(module, dict(args, state_dir=state_dir), **options) for module, args, options in calls]
        return results, Registry(state_dir).load(), kernel_state()
    return in_netns(scenario)


def test_a_link_offering_an_exit_is_a_relay_once(state_dir):
    (first, second), doc, kernel = on_cell(state_dir, (pic_cell_link, {'links': [LINK]}, {}),
                                           (pic_cell_link, {'links': [LINK]}, {}))
    assert first['changed'] is True and first['orphaned'] == {}
    relay, = first['relays']
    assert relay['type'] == 'cell_relay' and relay['interface'] == 'picl-c2' and relay['fail_open'] is False
    assert second['changed'] is False and second['relays'] == first['relays']
    assert 'cell2' in doc['connections']
    assert 'lookup %d' % relay['table'] in kernel['rules']


def test_check_mode_writes_nothing(state_dir):
    (result,), doc, kernel = on_cell(state_dir, (pic_cell_link, {'links': [LINK]}, {'check_mode': True}))
    assert result['changed'] is True
    assert doc['connections'] == {} and kernel['table'] is None
    assert files_under(state_dir) == []


@pytest.mark.parametrize('link, field', [
    (dict(LINK, cell='cell\n2'), 'links[0].cell'),
    (dict(LINK, interface='picl c2'), 'links[0].interface'),
    (dict(LINK, remote_dns=['10.0.0.1', 'x"y']), 'links[0].remote_dns[1]'),
])
def test_a_bad_link_fails_naming_the_field_and_writes_nothing(state_dir, link, field):
    (result,), doc, kernel = on_cell(state_dir, (pic_cell_link, {'links': [link]}, {}))
    assert result['failed'] is True
    assert result['msg'].startswith(field), result['msg']
    assert doc['connections'] == {} and kernel['table'] is None


def test_a_relay_in_use_is_orphaned_with_a_warning_when_its_link_goes(state_dir):
    alice = {'peer': 'alice', 'address': ['10.0.0.2'], 'connection': 'cell2'}
    (_linked, _assigned, unlinked), doc, _kernel = on_cell(
        state_dir, (pic_cell_link, {'links': [LINK]}, {}), (pic_peer_exit, alice, {}), (pic_cell_link, {'links': []}, {}))
    assert unlinked['changed'] is True
    assert unlinked['orphaned'] == {'cell2': ['alice']}
    assert any('cell2: alice' in warning for warning in unlinked['warnings'])
    assert doc['peers']['alice']['connection'] == 'cell2'
