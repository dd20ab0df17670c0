# -*- coding: utf-8 -*-
"""The connectivity role's library tasks, run with ansible-playbook against
localhost with temporary directories: a missing or incomplete collection on
the controller stops the play before the cell's library is touched."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.pic.connectivity.tests.unit.helpers import COLLECTIONS, ROOT

PLAYBOOK = '''
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: pic.connectivity.connectivity
        tasks_from: library
'''

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='the role installs files owned by root')


def _play(tmp_path, source):
    (tmp_path / 'play.yml').write_text(PLAYBOOK)
    extra = {'connectivity_module_utils_dir': source, 'pic_lib_dir': str(tmp_path / 'lib'),
             'pic_state_dir': str(tmp_path / 'state'), 'pic_entry_point': str(tmp_path / 'sbin' / 'pic'),
             'pic_service_manager': 'none', 'ansible_python_interpreter': sys.executable}
    (tmp_path / 'extra.json').write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_RETRY_FILES_ENABLED='0')
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    return subprocess.run([playbook, '-i', 'localhost,', str(tmp_path / 'play.yml'),
                           '-e', '@' + str(tmp_path / 'extra.json')],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def _library(tmp_path):
    """{path inside the package: content} of every installed file, subpackages (exits/) included."""
    lib = tmp_path / 'lib' / 'pic_connectivity_lib'
    return dict((str(path.relative_to(lib)), path.read_bytes()) for path in sorted(lib.rglob('*')) if path.is_file())


def test_a_missing_or_incomplete_source_never_shrinks_the_cells_library(tmp_path):
    source = os.path.join(ROOT, 'plugins', 'module_utils')
    proc = _play(tmp_path, source)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = _library(tmp_path)
    assert 'cli.py' in installed and 'registry.py' in installed
    assert 'exits/__init__.py' in installed and 'exits/tor.py' in installed

    for broken in ('missing', 'partial', 'truncated'):
        src = tmp_path / broken
        if broken != 'missing':
            src.mkdir()
            names = ['errors.py', 'registry.py'] if broken == 'partial' else \
                [n for n in os.listdir(source) if n.endswith('.py')]
            for name in names:
                shutil.copy(os.path.join(source, name), str(src / name))
            if broken == 'truncated':
                (src / 'dataplane.py').write_text('')
        proc = _play(tmp_path, str(src))
        assert proc.returncode != 0, proc.stdout
        assert 'missing or incomplete' in proc.stdout, proc.stdout
        assert "the cell's installed library was left as it is" in proc.stdout
        assert _library(tmp_path) == installed, broken
