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


# -- a hand-edited or damaged registry is refused with a clear error ------------
import json  # noqa: E402

import pytest  # noqa: E402

from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError  # noqa: E402
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty  # noqa: E402


def _with_registry(tmp_path, text):
    state = tmp_path / 'state'
    state.mkdir(mode=0o700)
    (state / 'registry.json').write_text(text)
    return Registry(str(state))


def _conn(**over):
    conn = {'id': 'vpn', 'name': 'vpn', 'type': 'proxy', 'index': 1, 'table': 10001, 'mark': 0x10000,
            'fail_open': False, 'interface': None}
    conn.update(over)
    return conn


BAD_DOCUMENTS = [
    ('', 'not valid JSON'),
    ('null', 'holds NoneType'),
    ('"a string"', 'holds str'),
    ('[]', 'holds list'),
    ('{}', 'version None'),
    ('{"version": true}', 'version True'),
    ('{"version": 1}', 'has no settings'),
    (json.dumps(dict(empty(), connections=[])), 'connections must be a mapping, not list'),
    (json.dumps(dict(empty(), peers='x')), 'peers must be a mapping, not str'),
    (json.dumps(dict(empty(), settings=None)), 'settings must be a mapping'),
    (json.dumps(dict(empty(), settings={'mark_mask': 'lots'})), 'settings.mark_mask'),
    (json.dumps(dict(empty(), settings={'local_networks': 'fd00::/64'})), 'settings.local_networks: must be a list'),
    (json.dumps(dict(empty(), extra={})), "unknown sections 'extra'"),
    (json.dumps(dict(empty(), peers={'a': 'x'})), 'peers.a must be a mapping'),
    (json.dumps(dict(empty(), peers={'a': {'address': '10.0.0.2/32'}})), 'peers.a.address has the wrong type'),
    (json.dumps(dict(empty(), peers={'a': {'address': [7]}})), 'peers.a.address[0] is not a string'),
    (json.dumps(dict(empty(), peers={'a': {}})), 'peers.a has no address'),
    (json.dumps(dict(empty(), connections={'vpn': _conn(index='1')})), 'connections.vpn.index has the wrong type'),
    (json.dumps(dict(empty(), connections={'vpn': _conn(index=True)})), 'connections.vpn.index has the wrong type'),
    (json.dumps(dict(empty(), connections={'vpn': _conn(id='other')})), "holds the id 'other'"),
    (json.dumps(dict(empty(), connections={'vpn': {'id': 'vpn'}})), 'connections.vpn has no name'),
]


@pytest.mark.parametrize('text,expected', BAD_DOCUMENTS, ids=[str(i) for i in range(len(BAD_DOCUMENTS))])
def test_a_damaged_registry_is_refused_naming_path_and_fault(tmp_path, text, expected):
    reg = _with_registry(tmp_path, text)
    with pytest.raises(PicError) as info:
        reg.load()
    assert reg.path in info.value.msg
    assert expected in info.value.msg


def test_a_well_formed_registry_loads(tmp_path):
    peer = {'name': 'a', 'address': ['10.0.0.2/32'], 'connection': 'vpn', 'fail_open': None}
    doc = dict(empty(), connections={'vpn': _conn()}, peers={'a': peer})
    doc.pop('services')
    loaded = _with_registry(tmp_path, json.dumps(doc)).load()
    assert loaded['connections']['vpn']['index'] == 1
    assert loaded['services'] == {}


def test_a_missing_registry_is_empty_only_for_a_state_dir_that_never_held_one(tmp_path):
    reg = Registry(str(tmp_path / 'state'))
    assert reg.load() == empty()
    reg.write_secret('vpn', '{}')
    with pytest.raises(PicError, match='is missing, but the state directory holds secrets'):
        reg.load()


def test_symlinked_state_files_are_refused(tmp_path):
    reg = Registry(str(tmp_path / 'state'))
    reg.ensure_dirs()
    target = tmp_path / 'elsewhere'
    target.write_text(json.dumps(empty()))
    os.symlink(str(target), reg.lock_path)
    with pytest.raises(PicError, match='symbolic link'):
        reg.lock()
    os.unlink(reg.lock_path)
    os.symlink(str(target), reg.path)
    with pytest.raises(PicError, match='symbolic link'):
        reg.load()
    os.symlink(str(target), reg.secret_path('vpn'))
    with pytest.raises(PicError, match='symbolic link'):
        reg.read_secret('vpn')


def test_a_symlinked_state_or_secrets_dir_is_refused(tmp_path):
    real = tmp_path / 'real'
    real.mkdir()
    os.symlink(str(real), str(tmp_path / 'state'))
    with pytest.raises(PicError, match='symbolic link'):
        Registry(str(tmp_path / 'state')).lock()
    reg = Registry(str(tmp_path / 'other'))
    os.makedirs(str(tmp_path / 'other'))
    os.symlink(str(real), reg.secrets_dir)
    with pytest.raises(PicError, match='symbolic link'):
        reg.ensure_dirs()
    with pytest.raises(PicError, match='symbolic link'):
        reg.load()


def test_the_pending_marker(tmp_path):
    reg = Registry(str(tmp_path / 'state'))
    assert not reg.has_pending()
    assert reg.apply_pending() == []
    reg.mark_pending()
    assert reg.has_pending()
    assert stat.S_IMODE(os.stat(reg.pending_path).st_mode) == 0o600
    reg.clear_pending()
    assert not reg.has_pending()


def test_a_manifest_yaml_error_names_only_path_line_and_column(tmp_path):
    from ansible_collections.pic.connectivity.plugins.module_utils.services import load_manifest
    path = tmp_path / 'shadow'
    path.write_text('a: b\nroot:x:SecretHashValue: [\n')
    with pytest.raises(PicError) as info:
        load_manifest(str(path))
    assert 'SecretHashValue' not in info.value.msg
    assert 'line' in info.value.msg and 'column' in info.value.msg
    assert str(path) in info.value.msg
    binary = tmp_path / 'bin'
    binary.write_bytes(b'\xff\xfe secret')
    with pytest.raises(PicError, match='not UTF-8'):
        load_manifest(str(binary))


def test_a_first_save_killed_before_the_registry_was_written_is_an_empty_cell(tmp_path):
    reg = Registry(str(tmp_path / 'state'))
    reg.mark_pending()                 # first run: no registry yet
    reg.write_secret('vpn', '{}')      # killed after storing a secret, before saving
    assert reg.load() == empty()
    reg.save(empty())
    reg.mark_pending()                 # a later run: the registry existed
    os.unlink(reg.path)
    with pytest.raises(PicError, match='is missing'):
        reg.load()


def test_the_saved_registry_is_json_with_one_line_per_record(tmp_path):
    import json
    from ansible_collections.pic.connectivity.plugins.module_utils.registry import dumps
    doc = {'version': 1, 'settings': {'peer_interface': 'wg0', 'local_networks': []}, 'services': {}, 'connections': {},
           'peers': {'b': {'address': ['10.0.0.3/32'], 'connection': 'default', 'fail_open': None},
                     'a': {'address': ['10.0.0.2/32', 'fd00::2/128'], 'connection': 'tor', 'fail_open': True}}}
    text = dumps(doc)
    assert json.loads(text) == doc and text.endswith('}\n')
    assert text.splitlines()[1:5] == [
        ' "connections": {},', ' "peers": {',
        '  "a": {"address": ["10.0.0.2/32", "fd00::2/128"], "connection": "tor", "fail_open": true},',
        '  "b": {"address": ["10.0.0.3/32"], "connection": "default", "fail_open": null}']
    registry = Registry(str(tmp_path / 'state'))
    registry.save(doc)
    assert registry.load()['peers'] == doc['peers']
