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
from ansible.plugins.action import ActionBase

try:
    from ansible.template import trust_as_template
except ImportError:   # ansible-core < 2.19: every template string is trusted
    def trust_as_template(value):
        return value

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exits, stamp
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exitfiles import TOKENS
from ansible_collections.pic.connectivity.plugins.module_utils.validation import slugify

COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = os.path.join(COLLECTION, 'roles')
MODULE_UTILS = os.path.join(COLLECTION, 'plugins', 'module_utils')
TOKEN = dict((key, token) for token, key in TOKENS.items())
RENDERING_STATES = ('merged', 'replaced', 'overridden', 'rendered')

# Per exit type, what its role's tasks/instances.yml writes and runs (the templates are
# the role's own): files as (template or content expression, dest expression, condition).
INSTANCES = {
    'openvpn': {
        'files': [
            ('content', "{{ openvpn_client_settings.username }}\n{{ openvpn_client_settings.password }}\n",
             "{{ openvpn_client_dir }}/{{ item.id }}.auth", "{{ openvpn_client_credentials | bool }}"),
            ('template', 'client.conf.j2', "{{ openvpn_client_dir }}/{{ item.id }}.conf", None)],
        'name': "pic-openvpn-{{ item.id }}",
        'command': "{{ [openvpn_client_binary, '--cd', openvpn_client_dir, '--config', "
                   "openvpn_client_dir ~ '/' ~ item.id ~ '.conf'] }}",
        'description': "pic.connectivity OpenVPN exit {{ item.name }}",
    },
    'proxy': {
        'files': [('template', 'redsocks.conf.j2', "{{ proxy_dir }}/{{ item.id }}.conf", None)],
        'name': "pic-proxy-{{ item.id }}",
        'command': "{{ [proxy_python, proxy_guard, '--upstream', item.config.host ~ ':' ~ item.config.port, "
                   "'--interval', proxy_guard_interval, '--fail-after', proxy_guard_fail_after, "
                   "'--pidfile', proxy_dir ~ '/' ~ item.id ~ '.pid', '--', proxy_redsocks_binary, '-c', "
                   "proxy_dir ~ '/' ~ item.id ~ '.conf'] | map('string') | list }}",
        'description': "pic.connectivity proxy exit {{ item.name }}",
        'vars': {'proxy_settings': "{{ item.settings }}"},
    },
    'sshuttle': {
        'files': [
            ('file', 'pic-sshuttle', "{{ sshuttle_launcher }}", None),
            ('content', "{{ sshuttle_settings.ssh_key | trim }}\n", "{{ sshuttle_dir }}/{{ item.id }}.key",
             "{{ sshuttle_settings.ssh_key | default('', true) | length > 0 }}"),
            ('content', "{{ sshuttle_settings.known_hosts | trim }}\n", "{{ sshuttle_dir }}/{{ item.id }}.known_hosts",
             "{{ sshuttle_settings.known_hosts | default('', true) | length > 0 }}"),
            ('template', 'sshuttle.conf.j2', "{{ sshuttle_dir }}/{{ item.id }}.conf", None)],
        'name': "pic-sshuttle-{{ item.id }}",
        'command': "{{ [sshuttle_python, sshuttle_guard, '--upstream', sshuttle_upstream, "
                   "'--interval', sshuttle_guard_interval, '--fail-after', sshuttle_guard_fail_after, "
                   "'--pidfile', sshuttle_dir ~ '/' ~ item.id ~ '.pid', '--', sshuttle_python, sshuttle_launcher, "
                   "'--pic-port', item.local_port, '--pic-dns-port', item.dns_port, "
                   "'@' ~ sshuttle_dir ~ '/' ~ item.id ~ '.conf'] | map('string') | list }}",
        'description': "pic.connectivity sshuttle exit {{ item.name }}",
        'vars': {'sshuttle_upstream': "{{ ('[%s]' % item.config.host) if ':' in item.config.host "
                                      "else item.config.host }}:{{ item.config.port }}",
                 'sshuttle_settings': "{{ item.settings }}"},
    },
    'tor': {
        'files': [('template', 'torrc.j2', "{{ tor_dir }}/torrc", None)],
        'name': "{{ tor_instance_name }}",
        'command': "{{ [tor_binary, '-f', tor_dir ~ '/torrc'] }}",
        'description': "pic.connectivity Tor exit ({{ tor_connection.name }})",
        'vars': {'tor_connection': "{{ item }}"},
    },
}
PROGRAMS = {'supervisord': ('program.conf.j2', "{{ pic_supervisor_dir }}/conf.d/{{ exit_instance_name }}.conf"),
            'systemd': ('unit.service.j2', "/etc/systemd/system/{{ exit_instance_name }}.service")}


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
    """{relative path: bytes} of the module_utils files the library step copies."""
    out = {}
    for where, _dirs, names in os.walk(MODULE_UTILS):
        for name in names:
            if name.endswith('.py'):
                path = os.path.join(where, name)
                with open(path, 'rb') as handle:
                    out[os.path.relpath(path, MODULE_UTILS)] = handle.read()
    return out


class ActionModule(ActionBase):
    """Render the exit service files and the stamp, then run pic_cell once."""

    TRANSFERS_FILES = False

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
        play's variables, its vars, then ``extra`` (the item and its helpers)."""
        merged = {}
        merged.update(self._load_vars(os.path.join(ROLES, 'exit_instance', 'defaults', 'main.yml')))
        merged.update(self._load_vars(os.path.join(ROLES, role, 'defaults', 'main.yml')))
        merged.update(task_vars)
        merged.update(self._load_vars(os.path.join(ROLES, role, 'vars', 'main.yml')))
        merged.update(extra)
        return merged

    def _templar_for(self, role, variables):
        search = [os.path.join(ROLES, role, 'templates'), os.path.join(ROLES, 'exit_instance', 'templates')]
        return self._templar.copy_with_new_env(searchpath=search, available_variables=variables)

    def _expr(self, templar, text):
        return templar.template(trust_as_template(text))

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
        return {'id': slugify(conn['name']), 'name': conn['name'], 'type': ctype, 'config': public,
                'settings': conn.get('config') or {}, 'interface': TOKEN['interface'],
                'local_port': TOKEN['local_port'], 'dns_port': TOKEN['dns_port']}

    def _connection_files(self, conn, position, task_vars, manager, seen):
        """The files of one connection's instance: its role's files and its program."""
        spec = INSTANCES[conn['type']]
        role = exits.provider(conn['type']).service_role
        item = self._item(conn, position)
        variables = self._role_vars(role, task_vars, {'item': item})
        templar = self._templar_for(role, variables)
        for key, expr in spec.get('vars', {}).items():
            variables[key] = self._expr(templar, expr)
        templar = self._templar_for(role, variables)
        name = self._expr(templar, spec['name'])
        out = []
        for kind, src, dest_expr, when in spec['files']:
            if when is not None and not self._expr(templar, when):
                continue
            dest = self._expr(templar, dest_expr)
            if dest in seen:
                continue
            seen.add(dest)
            out.append({'path': dest, 'content': self._content(templar, role, kind, src, dest),
                        'mode': '0644' if kind == 'file' else '0600',
                        'instance': name, 'connection': conn['name']})
        out.extend(self._programs(templar, role, spec, name, conn['name'], manager))
        return out

    def _content(self, templar, role, kind, src, dest):
        if kind == 'template':
            return self._template_file(templar, role, src, dest)
        if kind == 'file':
            with open(os.path.join(ROLES, role, 'files', src)) as handle:
                return handle.read()
        return self._expr(templar, src)

    def _programs(self, templar, role, spec, name, conn_name, manager):
        if manager == 'none':
            return []
        variables = dict(templar.available_variables)
        variables.update(exit_instance_name=name, exit_instance_command=self._expr(templar, spec['command']),
                         exit_instance_description=self._expr(templar, spec['description']))
        program_templar = self._templar_for(role, variables)
        out = []
        for kind in (('supervisord', 'systemd') if manager == 'auto' else (manager,)):
            template, dest_expr = PROGRAMS[kind]
            dest = self._expr(program_templar, dest_expr)
            out.append({'path': dest, 'content': self._template_file(program_templar, 'exit_instance', template, dest),
                        'mode': '0600' if kind == 'supervisord' else '0644', 'instance': name, 'program': True,
                        'manager': kind, 'connection': conn_name})
        return out

    def render_files(self, conns, task_vars, manager):
        """Every exit service file of the present connections, in order; None when a
        connection of a type with a service comes without its config (a gathered
        config): the files cannot be rendered, the exit services are left alone."""
        if any(isinstance(c, dict) and c.get('state') != 'absent' and c.get('type') in INSTANCES
               and c.get('config') is None and c.get('type') in exits.CONFIG_REQUIRED_TYPES for c in conns or []):
            return None
        files, seen = [], set()
        for position, conn in enumerate(conns or []):
            if not isinstance(conn, dict) or conn.get('state') == 'absent' or conn.get('type') not in INSTANCES:
                continue
            files.extend(self._connection_files(conn, position, task_vars, manager, seen))
        return files

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
        if 'files' in args:
            # what reaches unit files and supervisord programs comes from the roles' templates only
            raise AnsibleActionFail("files: is rendered from the exit service roles' templates and cannot be given")
        state = args.get('state', 'merged')
        manager = args.get('service_manager') or _manager(task_vars)
        config = args.get('config') or {}
        if state in RENDERING_STATES and 'files' not in args and isinstance(config, dict) \
                and config.get('connections') is not None:
            files = self.render_files(config['connections'], task_vars, manager)
            if files is not None:
                args['files'] = files
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
