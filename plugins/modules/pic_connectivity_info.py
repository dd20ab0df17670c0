#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pic_connectivity_info
short_description: Gather a PIC cell's connectivity as it runs
version_added: 1.0.0
description:
  - Returns the cell's connections (with their health and users), and every peer and service with the connection
    assigned, the fail mode in force and what carries its traffic now (C(exit), C(default) or C(blocked)).
  - Uses the shared health cache (see M(pic.connectivity.pic_health)); I(max_age) and I(force) as there.
author:
  - PIC connectivity developers (@pic-cells)
extends_documentation_fragment:
  - pic.connectivity.cell
  - pic.connectivity.cell.read_only
notes:
  - This module only reads the cell. It accepts the data plane options of the C(pic.connectivity.cell) group
    (I(peer_interface), I(local_networks), I(mark_mask), I(table_base), I(priority_base), I(port_base)) so that
    one C(module_defaults) group serves every module of the collection, and ignores them.
attributes:
  check_mode:
    support: full
    description: Read-only.
  diff_mode:
    support: none
    description: Read-only.
  idempotent:
    support: full
    description: Never changes anything.
options:
  max_age:
    description: Seconds a cached health result may be reused.
    type: int
    default: 30
  force:
    description: Probe every connection now.
    type: bool
    default: false
  audit_entries:
    description:
      - How many of the most recent entries of the cell's audit journal (C(audit.jsonl) in I(state_dir)) to
        return in RV(audit); C(0) returns none.
    type: int
    default: 20
'''

EXAMPLES = r'''
- name: What carries each peer now
  pic.connectivity.pic_connectivity_info:
  register: conn_info

- name: Who changed what on the cell, the last 5 changes
  pic.connectivity.pic_connectivity_info:
    audit_entries: 5
  register: conn_info

- name: Show blocked peers
  ansible.builtin.debug:
    msg: "{{ conn_info.peers | dict2items | selectattr('value.carried_by', 'equalto', 'blocked') | map(attribute='key') }}"
'''

RETURN = r'''
connections:
  description:
    - Per connection id.
    - C(health) is as in M(pic.connectivity.pic_health), with C(egress) (the public address the exit leaves from)
      for a connection with C(egress_url).
  returned: success
  type: dict
  sample:
    home-vpn: {name: Home VPN, type: wireguard_ext, fail_open: false, interface: pic-home-vpn, table: 10001,
               mark: "0x00010000", health: {status: working, reason: last handshake 3s ago, egress: 203.0.113.20},
               users: {peers: [alice],
               services: []}}
peers:
  description: Per peer name.
  returned: success
  type: dict
  sample:
    alice: {address: [10.0.0.2/32], connection: home-vpn, fail_open: false, carried_by: exit}
services:
  description: Per service name, as for peers.
  returned: success
  type: dict
  sample: {}
pending_apply:
  description:
    - True when a run saved the registry and was stopped before it finished applying it (the cell may not run
      what the registry says); the next run of a pic module (or the monitor) applies it first.
  returned: success
  type: bool
  sample: false
monitor:
  description: The cell monitor's last state (connections it holds down and why, and when it last ran).
  returned: success
  type: dict
  sample: {down: [], reasons: {home-vpn: probe of 10.200.0.1 answered}, monitor_at: 1764003071.2}
audit:
  description:
    - The last I(audit_entries) entries of the cell's audit journal, oldest first. Each holds C(time) (UTC),
      C(source) (the module, a commit revert or C(monitor)), C(actor) (the I(audit_actor) the controller gave,
      or null), C(cell_user) (the user on the cell and sudo's C(SUDO_USER)), C(changed) (per registry record,
      C(before) and C(after); never secrets), C(secrets_changed) (names of connections whose secrets changed)
      and C(changes) (what was done on the data plane).
  returned: success
  type: list
  elements: dict
  sample:
    - time: '2026-11-30T05:20:01Z'
      source: pic_peer_exit
      actor: alice@laptop
      cell_user: {user: root, sudo_user: admin}
      changed: {peers.carol: {before: {name: carol, address: [10.0.0.4/32], connection: tor, fail_open: null},
                              after: null}}
      changes: [replace nftables table inet pic_connectivity]
'''

from ansible_collections.pic.connectivity.plugins.module_utils import audit, model
from ansible_collections.pic.connectivity.plugins.module_utils.connections import users_of
from ansible_collections.pic.connectivity.plugins.module_utils.health import HealthCache, report, carrier
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.plugins.module_utils.runner import build_module, read_only_argument_spec, read_only


PENDING_WARNING = ("a run saved the registry and did not finish applying it (%s): the cell may not run what "
                   "the registry says until the next run of a pic module or the monitor applies it")


def gather(params, check_mode):
    registry = Registry(params['state_dir'])
    registry.require_set_up(params.get('allow_empty'))
    doc = registry.load()
    runtime = registry.load_runtime()
    health = report(doc, runtime, HealthCache(registry.state_dir), sorted(doc['connections']),
                    max_age=params['max_age'], force=params['force'], write=not check_mode)
    conns = {}
    for cid, conn in doc['connections'].items():
        conns[cid] = {
            'name': conn['name'], 'type': conn['type'], 'fail_open': conn['fail_open'],
            'interface': conn.get('interface'), 'table': conn['table'], 'mark': '0x%08x' % conn['mark'],
            'health': health[cid], 'users': users_of(doc, cid),
        }

    def describe(user):
        cid = user.get('connection') or model.DEFAULT
        conn = doc['connections'].get(cid)
        status = health[cid]['status'] if cid in health else None
        return {
            'address': list(user.get('address', [])),
            'connection': cid,
            'fail_open': model.effective_fail_open(user, conn) if conn else None,
            'fail_open_override': user.get('fail_open'),
            'carried_by': carrier(doc, user, status, runtime),
            'health': status,
        }
    pending = registry.has_pending()
    return {
        'pending_apply': pending,
        'warnings': [PENDING_WARNING % registry.pending_path] if pending else [],
        'connections': conns,
        'peers': dict((n, describe(p)) for n, p in doc['peers'].items()),
        'services': dict((n, describe(s)) for n, s in doc.get('services', {}).items()),
        'monitor': runtime,
        'audit': audit.Journal(registry.state_dir).recent(params.get('audit_entries')),
    }


def main():
    argument_spec = read_only_argument_spec()
    argument_spec.update(
        max_age=dict(type='int', default=30),
        force=dict(type='bool', default=False),
        audit_entries=dict(type='int', default=20),
    )
    module = build_module(argument_spec, supports_check_mode=True)
    read_only(module, lambda mod: dict(gather(mod.params, mod.check_mode), changed=False))


if __name__ == '__main__':
    main()
