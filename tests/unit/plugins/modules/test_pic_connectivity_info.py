# -*- coding: utf-8 -*-
"""pic_connectivity_info's main(), run as Ansible runs it, against a saved registry in a
throwaway network namespace: connections with their users, peers and what carries them,
an unfinished apply reported with a warning, nothing changed, check mode writing nothing."""
import os

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_connectivity_info
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, run_module, saved_registry


@pytest.fixture
def state_dir(tmp_path):
    path = str(tmp_path / 'state')
    saved_registry(path, {'name': 'Tor', 'type': 'tor', 'config': {}},
                   alice=('10.0.0.2', 'Tor'), bob=('10.0.0.3', 'default'))
    return path


def info(state_dir, check_mode=False, **args):
    args['state_dir'] = state_dir
    return in_netns(run_module, pic_connectivity_info, args, check_mode=check_mode)


def test_connections_peers_and_carriers(state_dir):
    result = info(state_dir)
    assert result['changed'] is False and result['pending_apply'] is False
    tor = result['connections']['tor']
    assert (tor['name'], tor['type'], tor['fail_open'], tor['mark']) == ('Tor', 'tor', True, '0x00010000')
    assert tor['users'] == {'peers': ['alice'], 'services': []}
    assert tor['health']['status'] == 'unknown'
    alice = result['peers']['alice']
    assert alice['address'] == ['10.0.0.2/32'] and alice['connection'] == 'tor' and alice['fail_open'] is True
    assert alice['fail_open_override'] is None and alice['health'] == 'unknown'
    assert result['peers']['bob']['connection'] == 'default' and result['peers']['bob']['health'] is None
    assert result['services'] == {}
    assert 'warnings' not in result


def test_an_unfinished_apply_is_reported_with_a_warning(state_dir):
    with open(os.path.join(state_dir, 'registry.applying'), 'w') as handle:
        handle.write('{"pid": 1, "registry_existed": true}\n')
    result = info(state_dir)
    assert result['pending_apply'] is True and result['changed'] is False
    assert any('did not finish applying' in warning for warning in result['warnings'])


def test_check_mode_writes_no_health_cache(state_dir):
    info(state_dir, check_mode=True)
    assert not os.path.exists(os.path.join(state_dir, 'health.json'))
    info(state_dir)
    assert os.path.exists(os.path.join(state_dir, 'health.json'))


def test_an_empty_state_dir_is_an_empty_cell_only_when_allowed(tmp_path):
    refused = info(str(tmp_path / 'nothing'))
    assert refused['failed'] is True and 'state_dir' in refused['msg']
    result = info(str(tmp_path / 'nothing'), allow_empty=True)
    assert (result['connections'], result['peers'], result['services']) == ({}, {}, {})
    assert not os.path.exists(str(tmp_path / 'nothing'))


def test_a_registry_that_is_no_utf8_fails_with_its_path(tmp_path):
    state_dir = tmp_path / 'state'
    state_dir.mkdir()
    (state_dir / 'registry.json').write_bytes(b'\xff\xfe')
    result = info(str(state_dir))
    assert result['failed'] is True and 'not UTF-8' in result['msg']
