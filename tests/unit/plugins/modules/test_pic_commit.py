# -*- coding: utf-8 -*-
"""pic_commit: a timeout out of range is a PicError naming it, before anything is
snapshotted or started (10**400 seconds was an OverflowError traceback)."""
import hashlib
import os
import types

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_commit
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, run_module, saved_registry


def module(tmp_path, timeout, check_mode=False):
    params = {'action': 'begin', 'id': 'rollout', 'timeout': timeout, 'entry_point': '/bin/true',
              'state_dir': str(tmp_path / 'state')}
    os.makedirs(params['state_dir'], exist_ok=True)
    return types.SimpleNamespace(params=params, check_mode=check_mode)


@pytest.mark.parametrize('timeout', [10 ** 400, 10 ** 20, pic_commit.MAX_TIMEOUT + 1, 4, 0, -1])
@pytest.mark.parametrize('check_mode', [False, True])
def test_a_timeout_out_of_range_is_refused_naming_it(tmp_path, timeout, check_mode):
    with pytest.raises(PicError) as err:
        pic_commit.apply(module(tmp_path, timeout, check_mode))
    assert err.value.field == 'timeout'
    assert os.listdir(str(tmp_path / 'state')) == []


def test_a_timeout_in_range_is_accepted_in_check_mode(tmp_path):
    assert pic_commit.apply(module(tmp_path, pic_commit.MAX_TIMEOUT, check_mode=True))['changed'] is True


# -- main(), run as Ansible runs it ------------------------------------------------------------------

def commit(state_dir, action, check_mode=False, **args):
    params = dict(args, action=action, state_dir=state_dir)
    params.setdefault('entry_point', '/bin/true')   # the timer it arms exits at once
    return run_module(pic_commit, params, check_mode=check_mode)


@pytest.fixture
def state_dir(tmp_path):
    path = str(tmp_path / 'state')
    saved_registry(path, {'name': 'Tor', 'type': 'tor', 'config': {}})
    return path


def test_status_of_a_cell_without_a_commit(state_dir):
    result = commit(state_dir, 'status')
    assert result['changed'] is False and result['pending'] is None
    with open(os.path.join(state_dir, 'registry.json'), 'rb') as handle:
        assert result['registry_sha256'] == hashlib.sha256(handle.read()).hexdigest()


def test_begin_then_confirm_once(state_dir):
    begun = commit(state_dir, 'begin', id='r1', timeout=60)
    assert begun['changed'] is True and begun['pending']['id'] == 'r1'
    again = commit(state_dir, 'begin', id='r2', timeout=60)
    assert again['failed'] is True and again['msg'].startswith('id:') and "'r1'" in again['msg']
    assert commit(state_dir, 'status')['pending']['id'] == 'r1'
    confirmed = commit(state_dir, 'confirm', id='r1')
    assert confirmed['changed'] is True and confirmed['pending'] is None
    assert commit(state_dir, 'confirm', id='r1')['changed'] is False
    assert not os.path.exists(os.path.join(state_dir, 'commits', 'r1'))


def test_check_mode_arms_nothing(state_dir):
    assert commit(state_dir, 'begin', check_mode=True, id='r1', timeout=60)['changed'] is True
    assert not os.path.exists(os.path.join(state_dir, 'commits'))
    assert commit(state_dir, 'status')['pending'] is None


@pytest.mark.parametrize('args, field', [
    ({'action': 'begin', 'id': 'r 1'}, 'id'),
    ({'action': 'confirm', 'id': 'r\n1'}, 'id'),
    ({'action': 'begin', 'timeout': 10 ** 20}, 'timeout'),
    ({'action': 'begin', 'entry_point': '/nonexistent/pic-connectivity'}, 'entry_point'),
])
def test_a_bad_input_fails_naming_the_field_and_arms_nothing(state_dir, args, field):
    result = commit(state_dir, **args)
    assert result['failed'] is True
    assert result['msg'].startswith(field + ':'), result['msg']
    assert commit(state_dir, 'status')['pending'] is None


def test_rollback_puts_the_snapshot_back(state_dir, libnftables):
    def scenario():
        began = commit(state_dir, 'begin', id='r1', timeout=60)
        saved_registry(state_dir, {'name': 'Tor', 'type': 'tor', 'config': {}},
                       {'name': 'Proxy', 'type': 'proxy', 'config': {'host': '192.0.2.10', 'port': 1080}})
        rolled = commit(state_dir, 'rollback', id='r1')
        return began, rolled, commit(state_dir, 'rollback', id='r1'), Registry(state_dir).load()
    began, rolled, again, doc = in_netns(scenario)
    assert began['changed'] is True
    assert rolled['changed'] is True and rolled['pending'] is None
    assert again['changed'] is False
    assert sorted(doc['connections']) == ['tor']


def test_a_rollback_is_journalled_with_its_actor(state_dir, libnftables):
    from ansible_collections.pic.connectivity.plugins.module_utils import audit

    def scenario():
        commit(state_dir, 'begin', id='r2', timeout=60)
        saved_registry(state_dir, {'name': 'Tor', 'type': 'tor', 'config': {}},
                       {'name': 'Proxy', 'type': 'proxy', 'config': {'host': '192.0.2.10', 'port': 1080}})
        commit(state_dir, 'rollback', id='r2', audit_actor='bob@ops')
        return audit.Journal(state_dir).recent(5)
    entries = in_netns(scenario)
    last = entries[-1]
    assert last['source'] == 'pic_commit rollback of commit r2' and last['actor'] == 'bob@ops'
    assert last['changed']['connections.proxy']['after'] is None
