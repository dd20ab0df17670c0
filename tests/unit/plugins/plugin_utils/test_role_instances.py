# -*- coding: utf-8 -*-
"""What the exit service roles write and run, read from their own tasks: the roles are the
one place per exit type (the fast path renders from what is read here)."""
import os

import pytest
import yaml

from ansible_collections.pic.connectivity.plugins.module_utils import exits
from ansible_collections.pic.connectivity.plugins.plugin_utils import role_instances as ri
from ansible_collections.pic.connectivity.tests.unit.helpers import ROOT

ROLES = os.path.join(ROOT, 'roles')


def load(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


SPECS = ri.RoleInstances(ROLES, load)


def test_blocks_carry_their_conditions_and_variables_to_their_tasks():
    tasks = [{'name': 'outer', 'when': 'a', 'vars': {'x': 1}, 'block': [
        {'name': 'inner', 'when': ['b'], 'vars': {'y': 2}, 'ansible.builtin.template': {'src': 's', 'dest': 'd'}}]}]
    (task, when, variables), = list(ri.flatten(tasks))
    assert task['name'] == 'inner' and when == ['a', 'b'] and variables == [{'x': 1}, {'y': 2}]


@pytest.mark.parametrize('ctype', sorted(t for t in exits.SERVICE_ROLES if t != 'wireguard_ext'))
def test_every_service_role_declares_its_instance_its_files_and_their_removal(ctype):
    spec = SPECS.instances(exits.SERVICE_ROLES[ctype])
    assert len(spec['instances']) == 1
    instance = spec['instances'][0]
    assert all(instance[k] for k in ('name', 'command', 'description'))
    assert spec['files'] and all(f['dest'] and f['source'] for f in spec['files'])
    assert any(r.get('instance') for r in spec['removals']), 'a removed connection must stop its instance'
    assert any(r.get('path') for r in spec['removals']), 'a removed connection must leave no file'


def test_the_files_are_the_roles_own_tasks():
    openvpn = SPECS.instances('openvpn_client')
    assert [(f['kind'], f['mode']) for f in openvpn['files']] == [('content', '0600'), ('template', '0600')]
    assert [f['source'] for f in SPECS.instances('proxy')['files']] == ['redsocks.conf.j2']
    assert ('file', 'pic-sshuttle', '0644') in [(f['kind'], f['source'], f['mode'])
                                                for f in SPECS.instances('sshuttle')['files']]
    tor = SPECS.instances('tor')
    assert tor['files'][0]['validate'].endswith('--verify-config --hush -f %s')
    assert tor['asserts'] and 'pic_exit_connections | length == 1' in tor['files'][0]['when']


def test_wireguard_ext_runs_no_instance():
    spec = SPECS.instances('wireguard_ext')
    assert spec == {'asserts': [], 'directories': [], 'files': [], 'instances': [], 'removals': []}


def test_an_instance_include_keeps_its_helpers_without_exit_instance_parameters():
    sshuttle = SPECS.instances('sshuttle')['instances'][0]
    helpers = sshuttle['vars'][-1]
    assert 'sshuttle_upstream' in helpers and not [k for k in helpers if k.startswith('exit_instance_')]


def test_exit_instance_program_files_per_manager():
    programs = SPECS.programs()
    assert set(programs) == {'supervisord', 'systemd'}
    assert [p['source'] for p in programs['supervisord']['present']] == ['program.conf.j2']
    assert [p['source'] for p in programs['systemd']['present']] == ['unit.service.j2']
    assert programs['supervisord']['absent'] and programs['systemd']['absent']


def test_a_missing_tasks_file_is_no_instance(tmp_path):
    assert ri.RoleInstances(str(tmp_path), load).instances('nothing')['files'] == []


@pytest.mark.parametrize('task', [
    {'name': 'a command', 'ansible.builtin.command': {'argv': ['id']}},
    {'name': 'short name', 'template': {'src': 'a.j2', 'dest': '/x'}},
    {'name': 'not root', 'ansible.builtin.template': {'src': 'a.j2', 'dest': '/x', 'owner': 'nobody'}},
    {'name': 'remote', 'ansible.builtin.copy': {'src': '/etc/x', 'dest': '/x', 'remote_src': True}},
    {'name': 'restart', 'ansible.builtin.include_role': {'name': 'pic.connectivity.exit_instance'},
     'vars': {'exit_instance_state': 'restarted'}},
    {'name': 'two modules', 'ansible.builtin.debug': {}, 'ansible.builtin.copy': {}},
    {'name': 'another role', 'ansible.builtin.include_role': {'name': 'pic.connectivity.tor'}},
])
def test_a_task_the_fast_path_cannot_render_is_refused_not_left_out(task):
    with pytest.raises(ri.UnknownTask):
        ri.instance_spec([{'name': 'outer', 'block': [task]}])
