# -*- coding: utf-8 -*-
"""pic_library on this machine (root): only files that differ are written (content, mode,
owner), files the collection no longer has are removed, check mode changes nothing, and a
payload that is empty or names a path outside the package is refused."""
import os

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_library

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='the library is owned by root')


class Module(object):
    def __init__(self, dest, files, check_mode=False, diff=False):
        self.params = {'dest': dest, 'files': files}
        self.check_mode = check_mode
        self._diff = diff

    def fail_json(self, msg):
        raise AssertionError(msg)


FILES = {'__init__.py': '', 'cli.py': 'print(1)\n', 'exits/__init__.py': 'X = 1\n'}


def test_installs_then_changes_only_what_differs(tmp_path):
    dest = str(tmp_path / 'lib' / 'pic_connectivity_lib')
    first = pic_library.install(Module(dest, FILES))
    assert first['changed'] and first['written'] == sorted(FILES) and first['removed'] == []
    assert os.stat(os.path.join(dest, 'exits', '__init__.py')).st_mode & 0o7777 == 0o644
    assert pic_library.install(Module(dest, FILES)) == {'changed': False, 'written': [], 'removed': []}
    os.chmod(os.path.join(dest, 'cli.py'), 0o666)
    with open(os.path.join(dest, 'old.py'), 'w') as handle:
        handle.write('gone')
    os.makedirs(os.path.join(dest, '__pycache__'))
    with open(os.path.join(dest, '__pycache__', 'x.py'), 'w') as handle:
        handle.write('cache')
    planned = pic_library.install(Module(dest, FILES, check_mode=True, diff=True))
    assert (planned['written'], planned['removed']) == (['cli.py'], ['old.py']) and planned['diff']
    assert os.path.exists(os.path.join(dest, 'old.py'))   # check mode
    pic_library.install(Module(dest, FILES))
    assert not os.path.exists(os.path.join(dest, 'old.py'))
    assert os.stat(os.path.join(dest, 'cli.py')).st_mode & 0o7777 == 0o644
    assert os.path.exists(os.path.join(dest, '__pycache__', 'x.py'))


@pytest.mark.parametrize('files', [{}, {'../evil.py': 'x'}, {'/etc/x.py': 'x'}, {'a/b/c.py': 'x'}, {'cli.sh': 'x'}])
def test_bad_payloads_are_refused(tmp_path, files):
    with pytest.raises(AssertionError):
        pic_library.install(Module(str(tmp_path / 'pic_connectivity_lib'), files))
    assert not os.path.exists(str(tmp_path / 'pic_connectivity_lib'))


def test_a_loose_package_directory_is_put_back_to_root_0755(tmp_path):
    """A package directory others may write would let them swap a module that root imports."""
    dest = str(tmp_path / 'pic_connectivity_lib')
    pic_library.install(Module(dest, FILES))
    for directory in (dest, os.path.join(dest, 'exits')):
        os.chmod(directory, 0o777)
        os.chown(directory, 65534, 65534)
    result = pic_library.install(Module(dest, FILES))
    assert result['changed'] and result['written'] == []
    for directory in (dest, os.path.join(dest, 'exits')):
        st = os.stat(directory)
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o755, 0, 0)
    assert not pic_library.install(Module(dest, FILES))['changed']


@pytest.mark.parametrize('where', ['lib', '/etc', 'rel/pic_connectivity_lib', '../pic_connectivity_lib'])
def test_a_dest_that_is_not_a_package_directory_is_refused(tmp_path, where):
    dest = where if not where.startswith('lib') else str(tmp_path / where)
    with pytest.raises(AssertionError) as err:
        pic_library.install(Module(dest, FILES))
    assert 'dest:' in str(err.value)


def test_a_linked_dest_or_subpackage_is_refused(tmp_path):
    real = tmp_path / 'real'
    real.mkdir()
    dest = tmp_path / 'pic_connectivity_lib'
    dest.symlink_to(real)
    with pytest.raises(AssertionError):
        pic_library.install(Module(str(dest), FILES))
    dest.unlink()
    dest.mkdir()
    (dest / 'exits').symlink_to(real)
    with pytest.raises(AssertionError):
        pic_library.install(Module(str(dest), FILES))
    assert list(real.iterdir()) == []
