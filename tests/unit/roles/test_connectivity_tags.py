# -*- coding: utf-8 -*-
"""The connectivity role: every task of its main tasks file has a tag, so that a part of the
role (--tags peers, --tags connections, ...) runs alone, and the pic modules take the shared
options from the module_defaults group instead of each task."""
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MAIN = os.path.join(ROOT, 'roles', 'connectivity', 'tasks', 'main.yml')
TAGS = {'always', 'packages', 'library', 'monitor', 'exit_services', 'connections', 'links', 'peers', 'egress'}
SHARED = ('state_dir', 'peer_interface', 'local_networks', 'mark_mask', 'table_base', 'priority_base')


def tasks():
    with open(MAIN) as handle:
        top = yaml.safe_load(handle)
    for task in top:
        if 'block' in task:
            yield task, task['block']
        else:
            yield None, [task]


def test_every_task_has_a_known_tag():
    for _block, children in tasks():
        for task in children:
            tags = set(task.get('tags') or [])
            assert tags and tags <= TAGS, (task['name'], tags)


def test_included_roles_apply_their_tags_to_their_tasks():
    for _block, children in tasks():
        for task in children:
            include = task.get('ansible.builtin.include_role')
            if include:
                assert set(include['apply']['tags']) == set(task['tags']), task['name']


def test_the_pic_modules_take_the_shared_options_from_the_group():
    seen = 0
    for block, children in tasks():
        for task in children:
            module = [key for key in task if key.startswith('pic.connectivity.')]
            if not module:
                continue
            seen += 1
            assert block is not None, task['name']
            assert set(block['module_defaults']['group/pic.connectivity.cell']) >= set(SHARED)
            assert not set(task[module[0]]) & set(SHARED), task['name']
    assert seen >= 5
