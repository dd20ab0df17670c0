#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pic_connection
short_description: Manage the alternate internet exits (connections) of a PIC cell
version_added: 1.0.0
description:
  - Creates, updates and deletes a named connection of a PIC cell, an instance of an exit type through which
    peers and services can be routed instead of the cell's default gateway.
  - Each connection gets one packet mark and one routing table in the reserved range; a C(wireguard_ext)
    connection's interface is brought up from the given configuration (kernel WireGuard where the kernel has
    it, C(wireguard-go) otherwise) with its routes in the connection's own table, never in C(main).
  - Deleting a connection that peers or services use fails, changes nothing and lists the users (the API's
    HTTP 409). Deleting a connection leaves its exit service installed.
  - Every call also brings the cell's running data plane back to the registry, so a rule, route or nftables
    element deleted by hand is restored.
author:
  - PIC connectivity developers (@pic-cells)
extends_documentation_fragment:
  - pic.connectivity.cell
attributes:
  check_mode:
    support: full
    description: Reports what would change and changes nothing.
  diff_mode:
    support: full
    description: Shows the connection before and after (secrets are never shown).
options:
  name:
    description:
      - Display name, unique per cell (for example C(Home VPN)). Its slug (C(home-vpn)) is the connection's
        stable id, used in interface and file names.
      - At most 64 characters; control characters and shell metacharacters are refused.
      - A slug longer than 32 characters becomes its first 23 characters, C(-) and 8 hex characters of the
        name's SHA-256, so that two names never share an id; a name whose id is another connection's is refused.
    type: str
    required: true
  type:
    description:
      - The exit type. Required to create a connection; cannot change later.
      - C(tor) is limited to one connection per cell.
      - C(cell_relay) connections are derived from cell links and are refused here.
    type: str
    choices: [wireguard_ext, openvpn, tor, sshuttle, proxy, cell_relay]
  state:
    description:
      - C(present) creates or updates the connection, C(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  config:
    description:
      - Type-specific settings. Secrets in it (private and preshared keys, passwords) are masked in every
        output and stored in 0600 files under I(state_dir).
      - C(wireguard_ext) takes C(wg_config), the text of a WireGuard file as a provider hands it out
        (C([Interface]) with C(PrivateKey) and C(Address), one or more C([Peer]) with C(PublicKey),
        C(Endpoint) and C(AllowedIPs)); or the same as keys C(private_key), C(address), C(peer_public_key),
        C(endpoint), C(allowed_ips), C(preshared_key), C(persistent_keepalive), C(mtu).
        C(PostUp)-style commands and C(Table) are refused.
      - Every type takes C(interface) (interface name override) and C(health_target) (an address probed through
        the exit by the cell's monitor). The interface is the collection's own and is deleted with the connection, so
        it must start with C(pic-) (1-15 characters of C(a-z), C(0-9) and C(-)); C(eth0), C(wg0) or any other
        interface of the cell is refused, and so is a name that already exists on the cell and is not this
        connection's interface in the registry (the collection did not create it).
      - When omitted on an existing connection, its stored configuration is kept.
    type: dict
  fail_open:
    description:
      - What peers of this connection get when the exit is down. C(false) blocks them (fail-closed), C(true)
        lets them fall back to the default gateway.
      - Defaults to C(true) for C(tor) and C(false) for every other type when the connection is created;
        when omitted later, the stored value is kept. Peers can override it with M(pic.connectivity.pic_peer_exit).
    type: bool
  mark:
    description:
      - Pin the connection's packet mark. It must lie inside I(mark_mask) below the kill bit, and may not be the
        direct mark (all those bits set), which the kill switch reserves for peers without an exit
        (C(0x00010000)-C(0x007e0000) in steps of C(0x00010000) with the default mask; C(0x007f0000) is the
        direct mark).
      - When omitted, the first free mark is taken and kept.
    type: int
  table:
    description:
      - Pin the connection's routing table inside the reserved range I(table_base)+1 to I(table_base)+126 with the
        default mask. The last table of the range (I(table_base)+127 with the default mask) is the kill switch's
        guard table and cannot be pinned.
      - When omitted, I(table_base) + the connection's number is used.
    type: int
notes:
  - The connection's interface and routes are part of the cell's running state; the cell's monitor (installed by
    the C(pic.connectivity.connectivity) role) restores them when the interface comes back.
seealso:
  - module: pic.connectivity.pic_peer_exit
  - module: pic.connectivity.pic_health
'''

EXAMPLES = r'''
- name: Route through a commercial WireGuard VPN
  pic.connectivity.pic_connection:
    name: Home VPN
    type: wireguard_ext
    config:
      wg_config: "{{ lookup('ansible.builtin.file', 'files/home-vpn.conf') }}"

- name: The same, as keys, failing open
  pic.connectivity.pic_connection:
    name: US Exit
    type: wireguard_ext
    fail_open: true
    config:
      private_key: "{{ vault_us_exit_key }}"
      address: [10.64.0.2/32, "fc00:bbbb::2/128"]
      peer_public_key: "{{ us_exit_server_pubkey }}"
      endpoint: 198.51.100.7:51820
      allowed_ips: [0.0.0.0/0, "::/0"]

- name: Delete a connection (fails and lists its users while peers still use it)
  pic.connectivity.pic_connection:
    name: US Exit
    state: absent
'''

RETURN = r'''
connection:
  description: The connection as the cell runs it; null after deletion. Never contains secrets.
  returned: success
  type: dict
  contains:
    id:
      description: Stable id (slug of the name).
      type: str
      sample: home-vpn
    name:
      description: Display name.
      type: str
      sample: Home VPN
    type:
      description: Exit type.
      type: str
      sample: wireguard_ext
    fail_open:
      description: The connection's fail mode (peers may override it).
      type: bool
      sample: false
    mark:
      description: Packet mark of the connection's fail-open peers.
      type: str
      sample: "0x00010000"
    kill_mark:
      description: Packet mark of the connection's fail-closed peers (the mark plus the kill bit).
      type: str
      sample: "0x00810000"
    table:
      description: The connection's routing table.
      type: int
      sample: 10001
    interface:
      description: The exit interface (interface types only).
      type: str
      sample: pic-home-vpn
    local_port:
      description: Local port of the exit instance (proxy types only).
      type: int
      sample: 12345
    config:
      description: The configuration without secrets, with a fingerprint that changes when a secret changes.
      type: dict
      sample: {"address": ["10.64.0.2"], "fingerprint": "3f2a9c1d0b7e4a55"}
removed:
  description: The connection this call deleted (as C(connection) was before), so that a role can stop its instance.
  returned: when a connection was deleted
  type: dict
  sample: {"id": "us-exit", "name": "US Exit", "type": "wireguard_ext", "interface": "pic-us-exit"}
users:
  description: Who still uses the connection, when deletion was refused.
  returned: failure
  type: dict
  sample: {"peers": ["alice"], "services": []}
changes:
  description: What was (or in check mode would be) done on the cell.
  returned: always
  type: list
  elements: str
  sample: ["created pic-home-vpn (wireguard-go)", "add ipv4 rule pref 10000 fwmark 0x10000/0x7f0000 lookup 10001"]
'''

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exits
from ansible_collections.pic.connectivity.plugins.module_utils.runner import (
    Plan, build_module, cell_argument_spec, config_secrets, run)


def planner(params):
    def _plan(doc):
        before = doc['connections'].get(connections.slugify(params['name'])) if params.get('name') else None
        for conn in doc['connections'].values():
            if conn['name'] == params.get('name'):
                before = conn
        new_doc, record, payload, secrets, removed = connections.plan(doc, params)
        result = {'connection': connections.public_result(record, new_doc['settings'])}
        if removed:
            result['removed'] = connections.public_result(removed, doc['settings'])
        diff = {'before': connections.public_result(before, doc['settings']) or {},
                'after': result['connection'] or {}}
        wg = {record['id']: payload} if record and record['type'] == 'wireguard_ext' and payload else {}
        return Plan(new_doc, result, diff, wg=wg, removed=[removed] if removed else [], secrets=secrets)
    return _plan


def main():
    argument_spec = cell_argument_spec()
    argument_spec.update(
        name=dict(type='str', required=True),
        type=dict(type='str', choices=list(exits.TYPES)),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        config=dict(type='dict'),
        fail_open=dict(type='bool'),
        mark=dict(type='int'),
        table=dict(type='int'),
    )
    module = build_module(argument_spec, secrets_of=config_secrets(connections.secrets_in), supports_check_mode=True)
    run(module, planner(module.params))


if __name__ == '__main__':
    main()
