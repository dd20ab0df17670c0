# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pic_cell's controller side: renders the exit services' files from the service roles'
own templates (roles/<role>/templates, the same variables as the roles) and the cell
stamp, then runs the module once with them. The files' contents are secrets: they are
passed with no_log and never shown (the module returns only paths). The values the cell
allocates (a connection's interface and local ports) are written as tokens that the module
fills in from the registry it converges to (module_utils/exitfiles.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.unsafe_proxy import wrap_var

try:
    from ansible.template import trust_as_template
    UNTRUSTED_BY_DEFAULT = True
except ImportError:   # ansible-core < 2.19: every template string is trusted
    UNTRUSTED_BY_DEFAULT = False

    def trust_as_template(value):
        return value

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exits, stamp
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exitfiles import REMOVED_ID, TOKENS
from ansible_collections.pic.connectivity.plugins.module_utils.validation import slugify
from ansible_collections.pic.connectivity.plugins.plugin_utils import library
from ansible_collections.pic.connectivity.plugins.plugin_utils.role_instances import RoleInstances, UnknownTask

COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = os.path.join(COLLECTION, 'roles')
MODULE_UTILS = os.path.join(COLLECTION, 'plugins', 'module_utils')
TOKEN = dict((key, token) for token, key in TOKENS.items())
RENDERING_STATES = ('merged', 'replaced', 'overridden', 'rendered')

MANAGERS = ('supervisord', 'systemd')


def _kinds(manager):
    """The service managers to render programs for (``auto``: both, the module picks)."""
    return MANAGERS if manager == 'auto' else (manager,)


def _manager(task_vars):
    """The service manager as the roles resolve it; ``auto`` without the fact: both
    programs are rendered and the module picks the cell's."""
    wanted = task_vars.get('pic_service_manager', 'auto')
    if wanted != 'auto':
        return wanted
    fact = task_vars.get('ansible_service_mgr') or (task_vars.get('ansible_facts') or {}).get('service_mgr')
    if not fact:
        return 'auto'
    return 'systemd' if fact == 'systemd' else 'supervisord'


def library_payload():
    """{relative path: bytes} of the module_utils files the library step installs."""
    return library.payload(MODULE_UTILS)


class ActionModule(ActionBase):
    """Render the exit service files and the stamp, then run pic_cell once."""

    TRANSFERS_FILES = False

    @property
    def _roles(self):
        """The exit service roles' own tasks, read once per run of the action."""
        if getattr(self, '_role_specs', None) is None:
            self._role_specs = RoleInstances(ROLES, self._loader.load_from_file)
        return self._role_specs

    def _load_vars(self, path):
        if not os.path.exists(path):
            return {}
        try:
            data = self._loader.load_from_file(path, trusted_as_template=True)
        except TypeError:   # ansible-core < 2.19
            data = self._loader.load_from_file(path)
        return dict(data or {})

    def _role_vars(self, role, task_vars, extra):
        """Variables as a role's tasks see them: its defaults and exit_instance's, the
        play's variables, its vars, the extra vars (-e: above a role's vars, as in a role
        run), then ``extra`` (the item and its helpers)."""
        merged = {}
        merged.update(self._load_vars(os.path.join(ROLES, 'exit_instance', 'defaults', 'main.yml')))
        merged.update(self._load_vars(os.path.join(ROLES, role, 'defaults', 'main.yml')))
        merged.update(task_vars)
        merged.update(self._load_vars(os.path.join(ROLES, role, 'vars', 'main.yml')))
        manager = getattr(self._task, 'get_variable_manager', lambda: None)()
        merged.update(getattr(manager, 'extra_vars', None) or {})
        merged.update(extra)
        return merged

    def _templar_for(self, role, variables):
        search = [os.path.join(ROLES, role, 'templates'), os.path.join(ROLES, 'exit_instance', 'templates')]
        return self._templar.copy_with_new_env(searchpath=search, available_variables=variables)

    def _expr(self, templar, text):
        return templar.template(trust_as_template(text) if isinstance(text, str) else text)

    def _template_file(self, templar, role, name, dest):
        from ansible.template import generate_ansible_template_vars
        path = os.path.join(ROLES, role, 'templates', name)
        if not os.path.exists(path):
            path = os.path.join(ROLES, 'exit_instance', 'templates', name)
        with open(path) as handle:
            text = handle.read()
        variables = dict(templar.available_variables)
        if 'ansible_managed' not in variables:
            variables.update(generate_ansible_template_vars(name, path, dest))
        local = self._templar.copy_with_new_env(searchpath=[os.path.dirname(path)], available_variables=variables)
        return local.template(trust_as_template(text), escape_backslashes=False) or ''

    def _item(self, conn, position):
        """The connection as the role's instances see it (pic_connection's result), with
        the values the cell allocates as tokens; ``settings``: its config with secrets."""
        ctype = conn.get('type')
        try:
            public = connections.validate_config(ctype, conn.get('config') or {},
                                                 'config.connections[%d].config' % position)[0]
        except PicError as exc:
            raise AnsibleActionFail(exc.msg)
        item = {'id': slugify(conn['name']), 'name': conn['name'], 'type': ctype, 'config': public,
                'settings': conn.get('config') or {}, 'interface': TOKEN['interface'],
                'local_port': TOKEN['local_port'], 'dns_port': TOKEN['dns_port']}
        # (before 2.19 a plain string is templated: the connection's values stay data)
        return item if UNTRUSTED_BY_DEFAULT else wrap_var(item)

    # -- evaluating the role's own tasks (plugin_utils/role_instances.py) ---------------------------
    def _scoped(self, role, variables, entry):
        """``variables`` with the entry's block and task vars evaluated in order; None when
        one of its conditions is false."""
        scoped = dict(variables)
        for layer in entry.get('vars') or []:
            templar = self._templar_for(role, scoped)
            evaluated = dict((key, self._expr(templar, value)) for key, value in layer.items())
            scoped.update(evaluated)
        templar = self._templar_for(role, scoped)
        for condition in entry.get('when') or []:
            if not self._true(templar, condition):
                return None
        return scoped

    def _true(self, templar, condition):
        """A ``when`` or ``that`` condition, evaluated as Ansible evaluates it."""
        if isinstance(condition, bool):
            return condition
        if hasattr(templar, 'evaluate_conditional'):   # ansible-core 2.19
            return templar.evaluate_conditional(trust_as_template(condition))
        return boolean(self._expr(templar, '{{ %s }}' % condition), strict=True)

    def _loop(self, role, variables, entry, allowed):
        """The items the entry runs for: its loop evaluated (None: once, with ``item`` as given)."""
        if entry.get('loop') is None:
            return [variables.get('item')]
        if isinstance(entry['loop'], list):   # (a list written out, say Tor's two directories)
            if '[' not in allowed:
                raise AnsibleActionFail('roles/%s/tasks/instances.yml: the fast path cannot render a task looping '
                                        'over a list here' % role)
            templar = self._templar_for(role, variables)
            return [self._expr(templar, each) for each in entry['loop']]
        compact = entry['loop'].replace(' ', '')
        if not any(compact.startswith(prefix) for prefix in allowed):
            raise AnsibleActionFail('roles/%s/tasks/instances.yml: the fast path cannot render a task looping '
                                    'over %s' % (role, entry['loop']))
        if compact == '{{pic_exit_connections}}' and variables.get('item') is not None:
            return [variables['item']]   # (rendered per connection: its own item)
        return list(self._expr(self._templar_for(role, variables), entry['loop']) or [])

    def _check_asserts(self, role, spec, variables):
        """The role's input grammar (its assert tasks), as the role run would check it."""
        for entry in spec['asserts']:
            scoped = self._scoped(role, variables, entry)
            if scoped is None:
                continue
            templar = self._templar_for(role, scoped)
            if not all(self._true(templar, c) for c in entry['that']):
                raise AnsibleActionFail(self._expr(templar, entry['fail_msg'] or 'roles/%s: assertion failed' % role))

    def _type_files(self, ctype, conns, task_vars, manager, seen):
        """The files of the instances of the present connections of one exit type."""
        role = exits.provider(ctype).service_role
        spec = self._roles.instances(role)
        items = [self._item(conn, position) for position, conn in conns]
        base = self._role_vars(role, task_vars, {'pic_exit_connections': items, 'pic_exit_removed': []})
        self._check_asserts(role, spec, base)
        out = []
        for item in items:
            variables = dict(base, item=item)
            for entry in spec['directories']:
                out.extend(self._directories_of(role, variables, entry, item, seen))
            for entry in spec['files']:
                out.extend(self._files_of(role, variables, entry, item, seen))
            for entry in spec['instances']:
                scoped = self._scoped(role, variables, entry)
                if scoped is not None:
                    out.extend(self._programs(role, scoped, entry, item['name'], manager))
        return out

    def _files_of(self, role, variables, entry, item, seen):
        out = []
        for each in self._loop(role, variables, entry, ('{{pic_exit_connections}}',)):
            scoped = self._scoped(role, dict(variables, item=each), entry)
            if scoped is None:
                continue
            templar = self._templar_for(role, scoped)
            dest, instance = self._expr(templar, entry['dest']), self._instance_of(role, scoped)
            if dest in seen:
                # a file several instances run (sshuttle's launcher): a change restarts them all
                shared = seen[dest]
                if instance != shared['instance'] and instance not in shared.setdefault('also', []):
                    shared['also'].append(instance)
                continue
            found = {'path': dest, 'content': self._content(templar, role, entry['kind'], entry['source'], dest),
                     'mode': str(entry['mode']), 'instance': instance, 'connection': item['name']}
            if entry.get('validate'):
                found['validate'] = self._expr(templar, entry['validate'])
            seen[dest] = found
            out.append(found)
        return out

    def _directories_of(self, role, variables, entry, item, seen):
        """The directories a role task makes (its loop: the connections, or a list of paths)."""
        instance = self._instance_of(role, variables)
        out = []
        for each in self._loop(role, variables, entry, ('{{', '[')):
            scoped = self._scoped(role, dict(variables, item=each), entry)
            if scoped is None:
                continue
            path = self._expr(self._templar_for(role, scoped), entry['path'])
            if path not in seen:
                seen[path] = {'path': path, 'directory': True, 'mode': str(entry['mode']), 'instance': instance,
                              'connection': item['name']}
                out.append(seen[path])
        return out

    def _instance_of(self, role, variables):
        """The name of the program the file belongs to (the role's present include)."""
        instances = self._roles.instances(role)['instances']
        if not instances:
            raise AnsibleActionFail('roles/%s/tasks/instances.yml runs no pic.connectivity.exit_instance' % role)
        scoped = self._scoped(role, variables, dict(instances[0], when=[]))
        return self._expr(self._templar_for(role, scoped), instances[0]['name'])

    def _content(self, templar, role, kind, src, dest):
        if kind == 'template':
            return self._template_file(templar, role, src, dest)
        if kind == 'file':
            with open(os.path.join(ROLES, role, 'files', src)) as handle:
                return handle.read()
        return self._expr(templar, src)

    def _programs(self, role, variables, entry, conn_name, manager):
        """The instance's program file (supervisord) or unit (systemd), from exit_instance's templates."""
        if manager == 'none':
            return []
        templar = self._templar_for(role, variables)
        name = self._expr(templar, entry['name'])
        variables = dict(variables, exit_instance_state='present',
                         exit_instance_command=self._expr(templar, entry['command']),
                         exit_instance_description=self._expr(templar, entry['description']))
        out = []
        for kind, program_templar, program in self._each_program(role, variables, name, manager, 'present'):
            dest = self._expr(program_templar, program['dest'])
            out.append({'path': dest, 'mode': str(program['mode']), 'instance': name, 'program': True,
                        'manager': kind, 'connection': conn_name,
                        'content': self._template_file(program_templar, 'exit_instance', program['source'], dest)})
        return out

    def _each_program(self, role, variables, name, manager, state):
        """(manager kind, its templar, exit_instance's entry) for every program file of the
        instance ``name`` under each manager to render for: ``state`` 'present', the files
        written; 'absent', the paths its removal deletes."""
        for kind in _kinds(manager):
            templar = self._templar_for(role, dict(variables, exit_instance_name=name, exit_instance_manager=kind))
            for program in self._roles.programs().get(kind, {}).get(state, []):
                yield kind, templar, program

    def _cleanup(self, ctype, present, task_vars, manager):
        """What a removed connection of ``ctype`` leaves behind, as its role's removal tasks
        name it (its id as REMOVED_ID): files, and instances with their program files."""
        role = exits.provider(ctype).service_role
        spec = self._roles.instances(role)
        items = [self._item(conn, position) for position, conn in present]
        variables = self._role_vars(role, task_vars, {'pic_exit_connections': items, 'pic_exit_removed': [REMOVED_ID],
                                                      'item': None})
        out = []
        for entry in spec['removals']:
            loops = ('{{pic_exit_removed}}', '{{pic_exit_removed|product(', '{{pic_exit_connections}}')
            for each in self._loop(role, variables, entry, loops):
                scoped = self._scoped(role, dict(variables, item=each), entry)
                if scoped is None:
                    continue
                templar = self._templar_for(role, scoped)
                if entry.get('path'):
                    # (a file of a present connection it no longer needs, say its credentials:
                    # removed whenever it is not among the files; else: when one of ctype goes)
                    present_item = entry.get('loop') and 'pic_exit_connections' in entry['loop']
                    out.append({'type': ctype, 'path': self._expr(templar, entry['path']),
                                'when': 'unwanted' if present_item else 'removed'})
                    continue
                name = self._expr(templar, entry['instance'])
                out.extend({'type': ctype, 'path': self._expr(program_templar, path), 'instance': name,
                            'manager': kind, 'when': 'removed'}
                           for kind, program_templar, path in self._each_program(role, scoped, name, manager, 'absent'))
        return out

    def render_files(self, conns, task_vars, manager):
        """(every exit service file of the present connections, in order; what removed
        connections leave behind, per type). Files None when a connection of a type with a
        service comes without its config (a gathered config): the files cannot be
        rendered, the exit services are left alone."""
        present = [(position, conn) for position, conn in enumerate(conns or [])
                   if isinstance(conn, dict) and conn.get('state') != 'absent' and conn.get('type') in exits.SERVICE_ROLES]
        if any(conn.get('config') is None and conn['type'] in exits.CONFIG_REQUIRED_TYPES for _p, conn in present):
            return None, []
        files, seen, cleanup = [], {}, []
        for ctype in sorted(exits.SERVICE_ROLES):
            of_type = [(position, conn) for position, conn in present if conn['type'] == ctype]
            try:
                if of_type:
                    files.extend(self._type_files(ctype, of_type, task_vars, manager, seen))
                cleanup.extend(self._cleanup(ctype, of_type, task_vars, manager))
            except UnknownTask as exc:
                raise AnsibleActionFail('roles/%s/tasks/instances.yml: %s, which the fast path cannot render'
                                        % (exits.SERVICE_ROLES[ctype], exc))
        return files, cleanup

    def cell_stamp(self, task_vars):
        """The stamp of what the role's packages and library steps install: the collection
        version, the library payload, the packages (with the exit types' service roles)."""
        packages = list(self._expr(self._templar_for('exit_instance', dict(task_vars)),
                                   '{{ pic_packages | default([]) }}') or [])
        types = self._expr(self._templar_for('exit_instance', dict(task_vars)),
                           "{{ pic_connections | default([]) | selectattr('type', 'defined') "
                           "| map(attribute='type') | unique | sort | list }}")
        extra = dict((key, self._expr(self._templar_for('exit_instance', dict(task_vars)),
                                      '{{ %s | default(None) }}' % key))
                     for key in ('pic_lib_dir', 'pic_entry_point', 'pic_service_manager', 'pic_install_packages'))
        extra['types'] = types
        return stamp.compute(_collection_version(), stamp.library_digest(library_payload()),
                             packages, extra)

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        for rendered in ('files', 'cleanup'):
            if rendered in args:
                # what reaches unit files and supervisord programs comes from the roles' own tasks only
                raise AnsibleActionFail("%s: is rendered from the exit service roles' tasks and cannot be given"
                                        % rendered)
        state = args.get('state', 'merged')
        manager = args.get('service_manager') or _manager(task_vars)
        config = args.get('config') or {}
        if state in RENDERING_STATES and 'files' not in args and isinstance(config, dict) \
                and config.get('connections') is not None:
            files, cleanup = self.render_files(config['connections'], task_vars, manager)
            if files is not None:
                args['files'] = files
                args['cleanup'] = cleanup
            args.setdefault('supervisor_dir', self._expr(self._templar_for('exit_instance', self._role_vars(
                'exit_instance', task_vars, {})), '{{ pic_supervisor_dir }}'))
        if 'files' in args:
            args['service_manager'] = manager
        if args.get('stamp') == 'auto':
            args['stamp'] = self.cell_stamp(task_vars)
            args['library_digest'] = stamp.library_digest(library_payload())
            lib_dir = self._expr(self._templar_for('exit_instance', dict(task_vars)), '{{ pic_lib_dir | default(None) }}')
            if lib_dir:
                args.setdefault('library_dir', os.path.join(lib_dir, 'pic_connectivity_lib'))
        result.update(self._execute_module(module_name='pic.connectivity.pic_cell', module_args=args,
                                           task_vars=task_vars))
        return result


def _collection_version():
    """The collection's version (galaxy.yml in a tree, MANIFEST.json when installed)."""
    import json
    manifest = os.path.join(COLLECTION, 'MANIFEST.json')
    if os.path.exists(manifest):
        with open(manifest) as handle:
            return json.load(handle).get('collection_info', {}).get('version')
    galaxy = os.path.join(COLLECTION, 'galaxy.yml')
    if os.path.exists(galaxy):
        with open(galaxy) as handle:
            for line in handle:
                if line.startswith('version:'):
                    return line.split(':', 1)[1].strip()
    return None
