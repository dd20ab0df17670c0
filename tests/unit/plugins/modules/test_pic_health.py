# -*- coding: utf-8 -*-
"""pic_health's main(), run as Ansible runs it, against a saved registry in a throwaway
network namespace (no interface of the host's counts): the report, the cache, check mode
leaving the cache alone, and bad inputs failing with the field named."""
import os

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_health
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, run_module, saved_registry

TOR = {'name': 'Tor', 'type': 'tor', 'config': {}}


@pytest.fixture
def state_dir(tmp_path):
    path = str(tmp_path / 'state')
    saved_registry(path, TOR)
    return path


def health(state_dir, check_mode=False, **args):
    return in_netns(run_module, pic_health, dict(args, state_dir=state_dir), check_mode=check_mode)


def test_every_connection_is_reported_and_cached(state_dir):
    first = health(state_dir)
    assert first['changed'] is False
    tor = first['connections']['tor']
    assert (tor['name'], tor['type'], tor['status'], tor['cached']) == ('Tor', 'tor', 'unknown', False)
    assert 'not installed' in tor['reason']   # no torrc under the state dir
    assert first['monitor'] == {'down': []}
    assert os.path.exists(os.path.join(state_dir, 'health.json'))
    again = health(state_dir)
    assert again['connections']['tor']['cached'] is True and again['probe_seconds'] == 0
    forced = health(state_dir, force=True)
    assert forced['connections']['tor']['cached'] is False


def test_check_mode_leaves_the_cache_alone(state_dir):
    result = health(state_dir, check_mode=True)
    assert result['connections']['tor']['status'] == 'unknown'
    assert not os.path.exists(os.path.join(state_dir, 'health.json'))


def test_one_connection_by_name(state_dir):
    result = health(state_dir, connection='Tor')
    assert list(result['connections']) == ['tor']


@pytest.mark.parametrize('args, field', [
    ({'max_age': -1}, 'max_age'),
    ({'connection': 'default'}, 'connection'),
    ({'connection': 'nowhere'}, 'connection'),
    ({'connection': 'no\nwhere'}, 'connection'),
])
def test_a_bad_input_fails_naming_the_field(state_dir, args, field):
    result = health(state_dir, **args)
    assert result['failed'] is True
    assert result['msg'].startswith(field + ':'), result['msg']
    assert not os.path.exists(os.path.join(state_dir, 'health.json'))


def test_a_damaged_registry_fails_with_its_path(tmp_path):
    state_dir = tmp_path / 'state'
    state_dir.mkdir()
    (state_dir / 'registry.json').write_text('{"connections": ')
    result = health(str(state_dir))
    assert result['failed'] is True
    assert str(state_dir / 'registry.json') in result['msg'] and 'not valid JSON' in result['msg']
