#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pic_cell
short_description: Converge a whole PIC cell (connections, peers, services, links, exit service files) in one run
version_added: 1.1.0
description:
  - A resource module for the whole cell. I(config) holds the cell's connections, peers, services (service egress)
    and links as the C(pic.connectivity.connectivity) role's variables express them (C(pic_connections), C(pic_peers),
    C(pic_service_egress), C(pic_cell_links)), and I(state) says what to do with them, with the meanings of the
    C(ansible.netcommon) resource modules.
  - One module run converges the registry, the data plane (nftables, ip rules, routes, WireGuard exits) and, with
    the C(pic.connectivity.pic_cell) action plugin, the exit services' files (rendered on the controller from the
    service roles' templates), restarting only the instances whose files changed.
  - It plans with the same code as M(pic.connectivity.pic_connection), M(pic.connectivity.pic_peer_exit),
    M(pic.connectivity.pic_service_egress) and M(pic.connectivity.pic_cell_link), so it validates the same way; an
    error names the dotted path of the input (C(config.peers[3].address[0])) and changes nothing.
  - With I(stamp), the module first compares it with the stamp on the cell (the collection version, a hash of the
    cell library and the package list); when they differ it changes nothing and returns C(stamp_stale=true), so
    that the playbook runs the role's packages and library steps once and calls the module again with
    I(write_stamp=true).
author:
  - PIC connectivity developers (@pic-cells)
extends_documentation_fragment:
  - pic.connectivity.cell
attributes:
  check_mode:
    support: full
    description: Reports what would change (registry, data plane, files, restarts) and changes nothing.
  diff_mode:
    support: full
    description: Shows the cell's config before and after; exit service files show as a masked marker.
  idempotent:
    support: full
    description: A second run with the same config changes nothing and restarts nothing.
options:
  config:
    description:
      - The cell. Each section is a list; an omitted section (or C(null)) is left as it is, except with
        I(state=deleted) and no config at all, which deletes everything.
      - C(connections) - items as C(pic_connections) (name, type, config, fail_open, mark, table, fallback, state).
        A connection without C(config) keeps its stored one (secrets are never gathered). A cell_relay connection
        takes C(name) and C(fallback) only.
      - C(peers) - items as C(pic_peers) (name or peer, address, connection, fail_open, state); an omitted
        connection is the default gateway.
      - C(services) - items as C(pic_service_egress) (service, address, interface, manifest, connection,
        fail_open, state). The manifest is needed when a service's connection changes.
      - C(links) - the cell's complete list of links, as M(pic.connectivity.pic_cell_link) takes them (cell,
        interface, offer_exit, remote_offers_exit, remote_dns).
      - Secrets in connection configs are masked in every output and log.
    type: dict
  state:
    description:
      - C(merged) creates and updates what I(config) lists (items with C(state=absent) are removed), leaving the rest.
      - C(replaced) does the same, and what a listed item leaves out goes back to its default (a connection's fail
        mode to its type's, its fallbacks to none; a service's fail mode to its connection's).
      - C(overridden) makes the cell exactly I(config) - connections, peers and services it does not list are
        removed (cell_relay connections follow the links).
      - C(deleted) removes the listed peers, services, links and connections by name, or everything without I(config).
      - C(gathered) reads the cell's registry into the I(config) form (C(gathered)), without connection configs.
      - C(rendered) needs no cell. It returns in C(rendered) the nftables ruleset, ip rules and routes the cell would
        run for I(config) (merged onto I(running_config) when given, a registry.json text) and the exit service
        files it would get (paths and modes; the contents are masked).
      - C(parsed) needs no cell. It returns in C(parsed) the I(config) form of I(running_config) (a registry.json
        text, or the JSON of a gathered result).
    type: str
    choices: [merged, replaced, overridden, deleted, gathered, rendered, parsed]
    default: merged
  running_config:
    description: With C(parsed) (required) and C(rendered) - the text of a registry.json or of a gathered config.
    type: str
  purge_peers:
    description: With C(merged) and C(replaced), peers the cell knows and I(config) does not list go back to the
      default gateway (the role's C(pic_purge_peers)).
    type: bool
    default: false
  known_cells:
    description: Names of the cells that exist; a link to any other cell is refused.
    type: list
    elements: str
  files:
    description:
      - The exit services' files, rendered by the action plugin from the service roles' templates whenever
        I(config) lists connections (not meant to be given by hand) - dicts with path, content, mode, instance,
        program, manager, connection and validate.
      - Written only when they differ, the files of instances no longer listed are removed and those instances
        stopped; only instances whose files changed are restarted. C(null) leaves the exit services alone.
      - A file with C(validate) (the role's own check, say C(tor --verify-config)) is checked on a copy first; a
        content the check refuses stops the run before anything on the cell changes.
    type: list
    elements: dict
  cleanup:
    description:
      - What the service roles' removal tasks remove, rendered by the action plugin from them (not meant to be
        given by hand) - dicts with type, path, instance, manager and when (C(removed) - for each connection of
        that type the run removes, the role's token for its id replaced; C(unwanted) - whenever the path is not
        among I(files)).
      - So a connection converged by the role and removed on the fast path leaves no file and no instance behind.
    type: list
    elements: dict
  service_manager:
    description:
      - How the exit instances run (as the role's C(pic_service_manager) resolves it); C(auto) is systemd when the
        cell runs it, supervisord otherwise. The action plugin sets it.
    type: str
    choices: [auto, systemd, supervisord, none]
    default: none
  supervisor_dir:
    description: The cell's supervisord directory (C(pic_supervisor_dir)).
    type: path
  stamp:
    description:
      - The stamp of the collection version, library and packages; C(auto) makes the action plugin compute it
        (64 hex digits). Without it nothing is compared.
    type: str
  library_dir:
    description: With I(stamp), the cell's installed library (C(pic_lib_dir)/pic_connectivity_lib); set by the action plugin.
    type: path
  library_digest:
    description:
      - With I(stamp) and I(library_dir), the digest of the collection's library payload (set by the action plugin).
      - An installed library that differs (a file edited, removed, added, or not mode 0644 and owned by root)
        makes the stamp stale.
    type: str
  write_stamp:
    description: Record I(stamp) on the cell after a successful run (the playbook's second call, after the role's
      packages and library steps).
    type: bool
    default: false
  monitor:
    description:
      - With I(stamp), the cell runs the collection's monitor (C(pic-connectivity monitor --state-dir) I(state_dir),
        under supervisord or systemd); when none runs, the stamp counts as stale, so the role's steps start it.
      - The role sets it unless C(pic_service_manager=none).
    type: bool
    default: false
seealso:
  - module: pic.connectivity.pic_connection
  - module: pic.connectivity.pic_peer_exit
  - module: pic.connectivity.pic_service_egress
  - module: pic.connectivity.pic_cell_link
'''

EXAMPLES = r'''
- name: Converge the cell in one round trip
  pic.connectivity.pic_cell:
    config:
      connections: "{{ pic_connections }}"
      peers: "{{ pic_peers }}"
      services: "{{ pic_service_egress }}"
      links: "{{ connectivity_links }}"
    state: merged

- name: What would the cell run? (no host needed)
  pic.connectivity.pic_cell:
    config:
      connections:
        - name: Home VPN
          type: wireguard_ext
          config:
            wg_config: "{{ lookup('ansible.builtin.file', 'files/home-vpn.conf') }}"
      peers:
        - name: alice
          address: [10.0.0.2]
          connection: Home VPN
    state: rendered
  delegate_to: localhost

- name: Read the cell
  pic.connectivity.pic_cell:
    state: gathered
  register: cell

- name: Remove every peer, service, link and connection
  pic.connectivity.pic_cell:
    state: deleted
'''

RETURN = r'''
config:
  description: The cell's config after the run, in the I(config) form (no connection configs, no secrets).
  returned: with merged, replaced, overridden and deleted
  type: dict
gathered:
  description: The cell's config as it runs, in the I(config) form.
  returned: with gathered
  type: dict
parsed:
  description: The I(config) form of I(running_config).
  returned: with parsed
  type: dict
rendered:
  description: What the cell would run - C(nftables) (the ruleset text), C(rules), C(routes), C(files) (path, mode,
    instance; content masked).
  returned: with rendered
  type: dict
stamp_stale:
  description: The cell's stamp differs from I(stamp), or I(monitor) and no monitor runs; nothing was changed.
  returned: always
  type: bool
restarted:
  description: The exit instances (re)started because their files changed.
  returned: with files
  type: list
  elements: str
files_changed:
  description: The paths of the exit service files written or removed (never their contents).
  returned: with files
  type: list
  elements: str
orphaned:
  description: Peers and services still assigned to a relay that went away, by connection id (blocked).
  returned: with merged, replaced, overridden and deleted
  type: dict
changes:
  description: What was (or in check mode would be) done on the cell's data plane.
  returned: with merged, replaced, overridden and deleted
  type: list
  elements: str
'''

import os

from ansible_collections.pic.connectivity.plugins.module_utils import cellconfig, stamp as cell_stamp
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exitfiles import (
    ExitFiles, check_cleanup, check_files, detect_manager, for_manager)
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.plugins.module_utils.runner import (
    Plan, build_module, cell_argument_spec, merge_settings, read_only, transact)

MASKED = '(exit service file: contents not shown)'


def file_roots(params):
    roots = [params['state_dir']]
    if params.get('supervisor_dir'):
        roots.append(os.path.join(params['supervisor_dir'], 'conf.d'))
    if params.get('service_manager') in ('systemd', 'auto'):
        roots.append('/etc/systemd/system')
    return roots


def exit_files_of(params):
    """(ExitFiles of the run, its files, its cleanup), or None without files."""
    if params.get('files') is None:
        return None
    manager = detect_manager() if params['service_manager'] == 'auto' else params['service_manager']
    roots = file_roots(params)
    return (ExitFiles(params['state_dir'], manager, params.get('supervisor_dir')),
            for_manager(check_files(params['files'], roots, params.get('supervisor_dir')), manager), check_cleanup(params.get('cleanup'), roots))


def planner(params, holder, check_mode=False):
    """The runner's planner: the whole config onto the registry, and the exit service
    files (checked before anything changes), kept in ``holder``."""
    def _plan(doc):
        cplan, orphans = cellconfig.plan(doc, params.get('config'), params['state'], params['purge_peers'],
                                         params.get('known_cells'))
        holder['doc'] = cplan.doc
        found = exit_files_of(params)
        if found is not None:
            exit_files, files, cleanup = found
            planned = exit_files.plan(cplan.doc, files, cleanup, cplan.removed)
            if not check_mode:   # (the role's validate does not run in check mode either)
                exit_files.check(planned)
            holder['files'] = (exit_files, files, planned)
        after = cellconfig.gather(cplan.doc)
        result = {'config': after, 'orphaned': orphans}
        if orphans:
            result['warnings'] = ['blocked (fail-closed) until reassigned, their relay is gone: %s'
                                  % '; '.join('%s: %s' % (cid, ', '.join(u)) for cid, u in orphans.items())]
        diff = {'before': cellconfig.gather(doc), 'after': after}
        return Plan(cplan.doc, result, diff, wg=cplan.wg, removed=cplan.removed, secrets=cplan.secrets)
    return _plan


def converge_files(module, found, diff):
    """The exit service files of the run: written, removed, instances restarted."""
    exit_files, files, planned = found
    writes, removes, changed, removed = planned
    paths = sorted(set(w[0] for w in writes) | set(r[0] for r in removes))
    if diff is not None and paths:
        diff['before']['exit_files'] = dict((p, MASKED) for p in paths if p not in [w[0] for w in writes])
        diff['before']['exit_files'].update((w[0], MASKED) for w in writes if os.path.exists(w[0]))
        diff['after']['exit_files'] = dict((w[0], MASKED + ' (changed)') for w in writes)
    restarted = changed if module.check_mode else exit_files.apply(files, planned)
    return {'files_changed': paths, 'restarted': sorted(restarted), 'stopped': removed}


def converge(module):
    params = module.params
    if params.get('stamp') and not params['write_stamp'] and (cell_stamp.is_stale(
            params['state_dir'], params['stamp'], params.get('library_dir'), params.get('library_digest'))
            or params['monitor'] and not cell_stamp.monitor_running(params['state_dir'])):
        return {'changed': False, 'stamp_stale': True}
    holder = {}
    result = transact(module, planner(params, holder, module.check_mode))
    result['stamp_stale'] = False
    if 'files' in holder:
        done = converge_files(module, holder['files'], result.get('diff'))
        result.update(done)
        result['changed'] = result['changed'] or bool(done['files_changed'])
    if params.get('stamp') and params['write_stamp'] and not module.check_mode:
        cell_stamp.write(params['state_dir'], params['stamp'])
    return result


def render(module):
    params = module.params
    doc = merge_settings(dict(cellconfig.base_of(params.get('running_config'))), params)
    cplan, _orphans = cellconfig.plan(doc, params.get('config'), 'merged', params['purge_peers'],
                                      params.get('known_cells'))
    module.no_log_values.update(s for s in cplan.secrets if isinstance(s, str) and s)
    rendered = cellconfig.render(cplan.doc)
    files = check_files(params.get('files'), file_roots(params), params.get('supervisor_dir'))
    rendered['files'] = [dict({'path': f['path'], 'mode': '%04o' % f['mode'], 'instance': f['instance']},
                              **({'directory': True} if f['directory'] else {'content': MASKED})) for f in files]
    return {'changed': False, 'rendered': rendered, 'stamp_stale': False}


def gathered(module):
    registry = Registry(module.params['state_dir'])
    return {'changed': False, 'gathered': cellconfig.gather(registry.load()), 'stamp_stale': False}


def dispatch(module):
    state = module.params['state']
    if state == 'parsed':
        if module.params.get('running_config') is None:
            raise PicError("is required with state=parsed", 'running_config')
        return {'changed': False, 'parsed': cellconfig.parse(module.params['running_config']), 'stamp_stale': False}
    if state == 'rendered':
        return render(module)
    if state == 'gathered':
        return gathered(module)
    return converge(module)


def config_secrets(params):
    """The secrets of the connection configs and the exit service files' contents."""
    files = params.get('files') if isinstance(params.get('files'), list) else []
    contents = [f['content'] for f in files if isinstance(f, dict) and isinstance(f.get('content'), str) and f['content']]
    return cellconfig.secrets_in(params.get('config')) + contents


def main():
    argument_spec = cell_argument_spec()
    argument_spec.update(
        config=dict(type='dict'),
        state=dict(type='str', default='merged', choices=list(cellconfig.STATES)),
        running_config=dict(type='str'),
        purge_peers=dict(type='bool', default=False),
        known_cells=dict(type='list', elements='str'),
        files=dict(type='list', elements='dict'),
        cleanup=dict(type='list', elements='dict'),
        service_manager=dict(type='str', default='none', choices=['auto', 'systemd', 'supervisord', 'none']),
        supervisor_dir=dict(type='path'),
        stamp=dict(type='str'),
        write_stamp=dict(type='bool', default=False),
        monitor=dict(type='bool', default=False),
        library_dir=dict(type='path'),
        library_digest=dict(type='str'),
    )
    module = build_module(argument_spec, secrets_of=config_secrets, supports_check_mode=True)
    read_only(module, dispatch)


if __name__ == '__main__':
    main()
