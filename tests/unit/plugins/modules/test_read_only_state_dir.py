# -*- coding: utf-8 -*-
"""The read-only modules (pic_health, pic_connectivity_info, pic_commit status) on a
state_dir that holds no cell: a clear error naming state_dir (a mistyped one read as a
healthy cell with no connections), or an empty cell with allow_empty=true."""
import os
import types

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_commit, pic_connectivity_info, pic_health
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry, empty


def _module(state_dir, allow_empty=False, **params):
    base = {'state_dir': str(state_dir), 'allow_empty': allow_empty, 'connection': None, 'max_age': 30,
            'force': False, 'action': 'status', 'id': 'rollout', 'timeout': 300, 'entry_point': '/bin/true'}
    base.update(params)
    return types.SimpleNamespace(params=base, check_mode=True)


def _health(module):
    return pic_health.gather(module)


def _info(module):
    return pic_connectivity_info.gather(module.params, module.check_mode)


def _status(module):
    return pic_commit.apply(module)


READERS = [_health, _info, _status]


def _no_dir(tmp_path):
    return tmp_path / 'mistyped'


def _no_registry(tmp_path):
    state = tmp_path / 'state'
    state.mkdir()
    return state


@pytest.mark.parametrize('reader', READERS)
@pytest.mark.parametrize('where, why', [(_no_dir, 'no such directory'), (_no_registry, 'no registry.json')])
def test_a_state_dir_without_a_cell_is_a_clear_error(tmp_path, reader, where, why):
    state_dir = where(tmp_path)
    with pytest.raises(PicError) as err:
        reader(_module(state_dir))
    assert err.value.field == 'state_dir' and err.value.value == str(state_dir)
    assert why in err.value.msg and 'allow_empty=true' in err.value.msg
    assert not os.path.exists(str(_no_dir(tmp_path)))    # nothing created


@pytest.mark.parametrize('where', [_no_dir, _no_registry])
def test_allow_empty_reports_a_cell_without_connections(tmp_path, where):
    state_dir = where(tmp_path)
    assert _health(_module(state_dir, True))['connections'] == {}
    assert _info(_module(state_dir, True))['connections'] == {}
    status = _status(_module(state_dir, True))
    assert status['registry_sha256'] is None and status['pending'] is None


@pytest.mark.parametrize('reader', READERS)
def test_a_set_up_cell_needs_no_option(tmp_path, reader):
    Registry(str(tmp_path / 'state')).save(empty())
    assert not reader(_module(tmp_path / 'state')).get('failed')


@pytest.mark.parametrize('action', ['confirm', 'rollback'])
def test_a_commit_cannot_be_confirmed_or_rolled_back_in_a_missing_state_dir(tmp_path, action):
    with pytest.raises(PicError) as err:
        _status(_module(_no_dir(tmp_path), action=action))
    assert err.value.field == 'state_dir'
    assert _status(_module(_no_dir(tmp_path), True, action=action))['changed'] is False
    # a commit begun on a new cell (no registry yet) is confirmed as ever
    assert _status(_module(_no_registry(tmp_path), action=action))['changed'] is False


def test_begin_sets_up_a_new_cell(tmp_path):
    assert _status(_module(_no_dir(tmp_path), action='begin'))['changed'] is True
