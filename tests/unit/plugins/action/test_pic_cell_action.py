# -*- coding: utf-8 -*-
"""The pic_cell action plugin, run by ansible-playbook on this machine (state=rendered, no
cell): it renders the exit service files from the roles' templates, the module returns
their paths and modes only, and no secret reaches the output, even at -vvv."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from ansible_collections.pic.connectivity.tests.unit.helpers import COLLECTIONS

PASSWORD = 'proxy-Secret-0815'
SSH_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAsecretmaterial\n-----END OPENSSH PRIVATE KEY-----'


def rendered(tmp_path, manager='supervisord', extra_connections=(), files=None, rc=0, play_vars=None):
    state = str(tmp_path / 'state')
    conns = [{'name': 'Socks', 'type': 'proxy', 'config': {'host': '203.0.113.50', 'port': 1080, 'username': 'u',
                                                           'password': PASSWORD}},
             {'name': 'SSH', 'type': 'sshuttle', 'config': {'host': '198.51.100.9', 'ssh_key': SSH_KEY}},
             {'name': 'Tor', 'type': 'tor'}] + list(extra_connections)
    play = [{'hosts': 'localhost', 'gather_facts': False,
             'vars': dict({'pic_state_dir': state, 'pic_service_manager': manager, 'pic_connections': conns},
                          **(play_vars or {})),
             'tasks': [{'pic.connectivity.pic_cell': dict({'config': {'connections': '{{ pic_connections }}'},
                                                           'state': 'rendered', 'state_dir': state},
                                                          **({'files': files} if files is not None else {})),
                        'register': 'out'},
                       {'ansible.builtin.copy': {'content': '{{ out | to_json }}', 'dest': str(tmp_path / 'out.json')}}]}]
    (tmp_path / 'play.yml').write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1')
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,',
                           '-c', 'local', '-e', 'ansible_python_interpreter=' + sys.executable, '-vvv',
                           str(tmp_path / 'play.yml')], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == rc, proc.stdout[-3000:] + proc.stderr[-2000:]
    if rc:
        return None, proc.stdout + proc.stderr, state
    with open(str(tmp_path / 'out.json')) as handle:
        return json.load(handle), proc.stdout + proc.stderr, state


@pytest.mark.skipif(COLLECTIONS is None, reason='needs the collection importable as ansible_collections')
def test_rendered_lists_the_exit_files_of_every_instance_masked(tmp_path):
    out, text, state = rendered(tmp_path)
    files = dict((f['path'], f) for f in out['rendered']['files'] if not f.get('directory'))
    directories = dict((f['path'], f['mode']) for f in out['rendered']['files'] if f.get('directory'))
    # the directories the roles make (Tor's DataDirectory: tor refuses to start without it)
    assert directories == {state + '/proxy': '0700', state + '/sshuttle': '0700', state + '/tor': '0700',
                           state + '/tor/data': '0700'}
    assert set(files) == {state + '/proxy/socks.conf', state + '/sshuttle/pic-sshuttle', state + '/sshuttle/ssh.key',
                          state + '/sshuttle/ssh.conf', state + '/tor/torrc',
                          state + '/supervisor/conf.d/pic-proxy-socks.conf',
                          state + '/supervisor/conf.d/pic-sshuttle-ssh.conf', state + '/supervisor/conf.d/pic-tor.conf'}
    assert files[state + '/sshuttle/ssh.key']['mode'] == '0600'
    assert files[state + '/sshuttle/pic-sshuttle']['mode'] == '0644'
    assert all(f['content'].startswith('(exit service file') for f in files.values())
    assert PASSWORD not in text and 'secretmaterial' not in text
    assert out['changed'] is False and not os.path.exists(state)


@pytest.mark.skipif(COLLECTIONS is None, reason='needs the collection importable as ansible_collections')
def test_systemd_cells_get_units(tmp_path):
    out, _text, _state = rendered(tmp_path, manager='systemd')
    paths = [f['path'] for f in out['rendered']['files']]
    assert '/etc/systemd/system/pic-proxy-socks.service' in paths
    assert not [p for p in paths if '/conf.d/' in p]


@pytest.mark.skipif(COLLECTIONS is None, reason='needs the collection importable as ansible_collections')
def test_files_given_by_hand_are_refused(tmp_path):
    unit = '[Service]\nExecStart=/bin/sh -c id\n'
    _out, text, state = rendered(tmp_path, files=[{'path': '/etc/systemd/system/pic-x.service', 'content': unit,
                                                   'instance': 'pic-x', 'mode': '0644'}], rc=2)
    assert "files: is rendered from the exit service roles' tasks and cannot be given" in text
    assert 'ExecStart' not in text and not os.path.exists(state)


@pytest.mark.skipif(COLLECTIONS is None, reason='needs the collection importable as ansible_collections')
@pytest.mark.parametrize('settings, message', [
    (['SocksPort 0.0.0.0:9050'], 'tor_extra_settings: the role manages socksport'),
    (['ExitNodes {us}\nSocksPort 0.0.0.0:9050'], 'tor_extra_settings: not torrc lines'),
])
def test_the_roles_own_checks_run_on_the_fast_path(tmp_path, settings, message):
    """The tor role's assert (its grammar of tor_extra_settings) refuses the same input on the
    fast path, before any file is rendered for the cell."""
    _out, text, state = rendered(tmp_path, rc=2, play_vars={'tor_extra_settings': settings})
    assert message in text and not os.path.exists(state)


@pytest.mark.skipif(COLLECTIONS is None, reason='needs the collection importable as ansible_collections')
def test_two_tor_connections_are_refused_as_the_role_refuses_them(tmp_path):
    _out, text, _state = rendered(tmp_path, rc=2, extra_connections=[{'name': 'Tor2', 'type': 'tor'}])
    assert 'a cell runs one tor connection, got Tor, Tor2' in text
