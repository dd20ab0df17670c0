# -*- coding: utf-8 -*-
import multiprocessing
import os
import stat
import time

from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry, write_atomic


def test_atomic_write_mode_and_content(tmp_path):
    path = str(tmp_path / 'f')
    write_atomic(path, 'one')
    write_atomic(path, 'two', 0o600)
    assert open(path).read() == 'two'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ['f']


def _hold(state_dir, seconds):
    with Registry(state_dir):
        time.sleep(seconds)


def test_lock_serializes(tmp_path):
    state = str(tmp_path / 'state')
    proc = multiprocessing.Process(target=_hold, args=(state, 0.6))
    proc.start()
    time.sleep(0.2)
    started = time.time()
    with Registry(state) as reg:
        waited = time.time() - started
        doc = reg.load()
        doc['peers']['a'] = {'name': 'a', 'address': ['10.0.0.2/32']}
        reg.save(doc)
    proc.join()
    assert waited > 0.2
    assert Registry(state).load()['peers']['a']['address'] == ['10.0.0.2/32']
    assert stat.S_IMODE(os.stat(os.path.join(state, 'registry.json')).st_mode) == 0o600


def test_secret_files_are_0600(tmp_path):
    reg = Registry(str(tmp_path / 's'))
    reg.write_secret('exit', 'PrivateKey = x')
    assert stat.S_IMODE(os.stat(reg.secret_path('exit')).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(reg.secrets_dir).st_mode) == 0o700
