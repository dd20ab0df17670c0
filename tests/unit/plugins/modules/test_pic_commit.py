# -*- coding: utf-8 -*-
"""pic_commit: a timeout out of range is a PicError naming it, before anything is
snapshotted or started (10**400 seconds was an OverflowError traceback)."""
import os
import types

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_commit
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError


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
