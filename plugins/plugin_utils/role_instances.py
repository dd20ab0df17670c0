# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an exit service role writes and runs, read from its own tasks (the role is the
one place per exit type; the pic_cell action plugin renders from this, so the fast path
and the role cannot drift apart).

From ``roles/<role>/tasks/instances.yml`` (blocks flattened, their ``when`` and ``vars``
carried to their tasks):

- ``asserts``: its ``ansible.builtin.assert`` tasks (the role's input grammar);
- ``files``: its ``ansible.builtin.template`` and ``ansible.builtin.copy`` tasks (what
  each connection's instance gets; ``validate`` kept);
- ``directories``: its ``ansible.builtin.file`` tasks with ``state: directory`` (say Tor's
  DataDirectory, which tor needs before it starts);
- ``instances``: its includes of ``pic.connectivity.exit_instance`` with
  ``exit_instance_state: present`` (the program: name, command, description);
- ``removals``: its ``ansible.builtin.file`` tasks with ``state: absent`` and its includes
  of ``exit_instance`` with ``exit_instance_state: absent`` (what a removed connection
  leaves behind).

From ``roles/exit_instance/tasks/main.yml``: the program files per service manager
(``programs``). Nothing here is templated; the action plugin evaluates the raw
expressions with the role's variables."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

TEMPLATE, COPY, FILE, ASSERT = 'ansible.builtin.template', 'ansible.builtin.copy', 'ansible.builtin.file', \
    'ansible.builtin.assert'
INCLUDE_ROLE = 'ansible.builtin.include_role'
EXIT_INSTANCE = 'pic.connectivity.exit_instance'
MANAGER_VAR = 'exit_instance_manager'
# what an instances.yml may hold besides the above: nothing the fast path must render
IGNORED = ('ansible.builtin.debug',)
# task keywords that are not the module
KEYWORDS = ('name', 'when', 'vars', 'loop', 'loop_control', 'register', 'no_log', 'notify', 'tags', 'block',
            'changed_when', 'failed_when', 'check_mode')


class UnknownTask(ValueError):
    """A task the fast path cannot render as the role runs it: the role changed, the reader must learn it."""


def _module_of(task):
    found = [key for key in task if key not in KEYWORDS]
    if len(found) != 1:
        raise UnknownTask('a task with modules %s' % (', '.join(found) or 'none'))
    return found[0]


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def flatten(tasks, when=(), variables=()):
    """(task, [conditions], [vars dicts]) of every task, blocks opened: a block's
    conditions and variables come before its tasks' own."""
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        inner_when = list(when) + _as_list(task.get('when'))
        inner_vars = list(variables) + ([task['vars']] if isinstance(task.get('vars'), dict) else [])
        if 'block' in task:
            yield from flatten(task['block'], inner_when, inner_vars)
            continue
        yield task, inner_when, inner_vars


def _file_entry(task, args, when, variables):
    if TEMPLATE in task:
        kind, source = 'template', args.get('src')
    elif 'content' in args:
        kind, source = 'content', args.get('content')
    else:
        kind, source = 'file', args.get('src')
    return {'kind': kind, 'source': source, 'dest': args.get('dest'), 'mode': args.get('mode', '0600'),
            'validate': args.get('validate'), 'loop': task.get('loop'), 'when': when, 'vars': variables}


def _owned_by_root(task, args):
    if any(args.get(key, 'root') != 'root' for key in ('owner', 'group')):
        raise UnknownTask('task %r: a file not owned by root' % task.get('name'))


def instance_spec(tasks):
    """The asserts, files, instances and removals of a role's instances.yml (parsed).
    Any task it does not know (another module, a file state, an include of another
    role) is refused: the fast path must never silently leave out what the role does."""
    spec = {'asserts': [], 'directories': [], 'files': [], 'instances': [], 'removals': []}
    for task, when, variables in flatten(tasks):
        module = _module_of(task)
        args = task[module] if isinstance(task[module], dict) else {}
        if module == ASSERT:
            spec['asserts'].append({'that': _as_list(args.get('that')), 'fail_msg': args.get('fail_msg'),
                                    'when': when, 'vars': variables})
        elif module in (TEMPLATE, COPY):
            _owned_by_root(task, args)
            if args.get('remote_src') or args.get('state'):
                raise UnknownTask('task %r: a copy the fast path does not render' % task.get('name'))
            spec['files'].append(_file_entry(task, args, when, variables))
        elif module == FILE and args.get('state') == 'absent':
            spec['removals'].append({'path': args.get('path'), 'loop': task.get('loop'), 'when': when,
                                     'vars': variables})
        elif module == FILE and args.get('state') == 'directory':
            _owned_by_root(task, args)
            spec['directories'].append({'path': args.get('path'), 'mode': args.get('mode', '0755'),
                                        'loop': task.get('loop'), 'when': when, 'vars': variables})
        elif module == INCLUDE_ROLE and args.get('name') == EXIT_INSTANCE:
            own = dict(task.get('vars') or {})
            # (the include's own helpers, say sshuttle_upstream, without exit_instance's parameters)
            helpers = dict((k, v) for k, v in own.items() if not k.startswith('exit_instance_'))
            scope = (variables[:-1] if task.get('vars') else variables) + [helpers]
            entry = {'name': own.get('exit_instance_name'), 'command': own.get('exit_instance_command'),
                     'description': own.get('exit_instance_description'), 'loop': task.get('loop'),
                     'when': when, 'vars': scope}
            if own.get('exit_instance_state') == 'present':
                spec['instances'].append(entry)
            elif own.get('exit_instance_state') == 'absent':
                spec['removals'].append({'instance': entry['name'], 'loop': entry['loop'], 'when': when,
                                         'vars': entry['vars']})
            else:
                raise UnknownTask('task %r: exit_instance_state must be present or absent' % task.get('name'))
        elif module not in IGNORED:
            raise UnknownTask('task %r: module %s' % (task.get('name'), module))
    return spec


def program_spec(tasks):
    """{manager: {'present': [file entries], 'absent': [paths]}} of exit_instance's tasks:
    the program files it installs per service manager (the block's condition on
    ``exit_instance_manager`` names the manager)."""
    out = {}
    for task, when, _variables in flatten(tasks):
        manager = _manager_of(when)
        if manager is None:
            continue
        entry = out.setdefault(manager, {'present': [], 'absent': []})
        if TEMPLATE in task:
            args = task[TEMPLATE]
            entry['present'].append({'kind': 'template', 'source': args.get('src'), 'dest': args.get('dest'),
                                     'mode': args.get('mode', '0600')})
        elif FILE in task and (task[FILE] or {}).get('state') == 'absent':
            entry['absent'].append(task[FILE].get('path'))
    return out


def _manager_of(when):
    for condition in when:
        if isinstance(condition, str) and condition.replace(' ', '').startswith(MANAGER_VAR + "=='"):
            return condition.split("'")[1]
    return None


class RoleInstances(object):
    """The specs of the roles under ``roles_dir``, read once per role with ``load``
    (a callable: path -> parsed YAML)."""

    def __init__(self, roles_dir, load):
        self.roles_dir = roles_dir
        self.load = load
        self._cache = {}

    def _tasks(self, role, name):
        path = os.path.join(self.roles_dir, role, 'tasks', name)
        if path not in self._cache:
            self._cache[path] = self.load(path) if os.path.exists(path) else []
        return self._cache[path]

    def instances(self, role):
        key = ('instances', role)
        if key not in self._cache:
            self._cache[key] = instance_spec(self._tasks(role, 'instances.yml'))
        return self._cache[key]

    def programs(self):
        if 'programs' not in self._cache:
            self._cache['programs'] = program_spec(self._tasks('exit_instance', 'main.yml'))
        return self._cache['programs']
