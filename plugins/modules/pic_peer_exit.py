#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pic_peer_exit
short_description: Assign the peers of a PIC cell to an internet exit
version_added: 1.0.0
description:
  - Sets the exit (connection) of one peer, or of many peers in one task, with an optional per-peer fail-open
    override. Takes effect at once, for IPv4 and IPv6 alike, with no restart.
  - Peers are mapped to their connection's packet mark by nftables maps keyed by source address, so the number
    of firewall rules does not grow with the number of peers; the whole table is replaced in one atomic
    transaction.
  - Every call also brings the cell's running data plane back to the registry, so a rule, route or nftables
    element deleted by hand is restored.
  - I(state=absent) removes a peer from the cell's registry, its nftables map elements with it, and frees its
    addresses for another peer. A removed peer is unknown to the collection, like any peer the collection does
    not manage, so its traffic (if its WireGuard key still works) uses the cell's default gateway; removing the
    peer from the WireGuard server itself is the cell's business, not this module's.
  - An omitted I(connection) is C(default), the cell's default gateway (the collection's contract). With
    I(keep_connection=true) an item without I(connection) keeps the peer's current connection instead (the API's
    C(PUT .../peers/<peer>/failopen)), so changing only I(fail_open) needs no connection; a new peer without
    one goes on C(default).
  - Connections are identified by their name (their id is the name's slug, see
    M(pic.connectivity.pic_connection)). There is no rename; a connection given a new name is a new connection,
    the old one keeps its peers. To rename, create the new connection, move the peers to it with this module,
    then remove the old one (removing it while peers use it fails and lists them).
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
    description: Shows the assignments of the peers that change, before and after.
  idempotent:
    support: full
    description: A second run with the same assignment changes nothing.
options:
  peer:
    description:
      - Name of the peer (single form). 1-64 letters, digits, C(_), C(.), C(@), C(-).
      - Mutually exclusive with I(peers).
    type: str
  address:
    description:
      - The peer's tunnel addresses (IPv4 and/or IPv6, a single address or a prefix routed to the peer).
        Remembered by the cell (in canonical form); required the first time a peer is named.
      - Each is a single address or a network with its host bits zero, at most a /16 for IPv4 and a /48 for
        IPv6 (a peer is a host or a site, never the internet); C(0.0.0.0/0) and C(::/0) are refused.
      - Refused too are IPv6 scope ids (C(fd00::1%eth0)), IPv4-mapped or IPv4-compatible IPv6 addresses
        (C(::ffff:10.0.0.5); give the IPv4 address), unspecified, loopback, multicast and link-local
        addresses, and addresses that overlap another peer's or service's.
    type: list
    elements: str
  connection:
    description:
      - Name or id of the connection, or C(default) for the cell's default gateway.
      - Omitted, C(default); with I(keep_connection=true), the peer's current connection (C(default) for a peer
        the cell does not know yet).
    type: str
  fail_open:
    description:
      - Per-peer override of the connection's fail mode; C(null) inherits the connection's.
    type: bool
  state:
    description:
      - C(present) puts the peer on its connection; C(absent) removes the peer from the cell (its addresses
        are free again; I(address), I(connection) and I(fail_open) are then ignored). Removing a peer the cell
        does not know changes nothing.
    type: str
    choices: [present, absent]
    default: present
  peers:
    description:
      - Bulk form, one item per peer, applied in one transaction. Mutually exclusive with I(peer).
      - Every item is checked before anything changes; an error names the item and field, for example
        C(peers[3].address[0]). Keys other than the suboptions below are refused.
    type: list
    elements: dict
    suboptions:
      peer:
        description: Name of the peer.
        type: str
        required: true
        aliases: [name]
      address:
        description: The peer's tunnel addresses, with the rules of I(address).
        type: list
        elements: str
      connection:
        description:
          - Connection name or id, or C(default).
          - Omitted, C(default); with I(keep_connection=true), the peer's current connection (C(default) for a
            new peer).
        type: str
      fail_open:
        description: Per-peer fail-open override; C(null) inherits the connection's.
        type: bool
      state:
        description: C(absent) removes the peer, as I(state) does.
        type: str
        choices: [present, absent]
        default: present
  keep_connection:
    description:
      - V(true) makes an item without I(connection) keep the peer's current connection (C(default) for a new peer),
        so a call can change only a peer's I(fail_open) or addresses, as the API's C(PUT .../peers/<peer>/failopen)
        does. V(false) (the default) reads an omitted I(connection) as C(default), as the collection's contract says.
    type: bool
    default: false
  purge:
    description:
      - Bulk form only. Peers the cell knows but I(peers) does not list go back to C(default) (they stay
        known to the cell, their addresses reserved; use I(state=absent) to remove a peer).
    type: bool
    default: false
  planned_connections:
    description:
      - Check mode only (ignored otherwise). Names of the connections that earlier tasks of the same run create,
        which a check-mode run does not (the connectivity role passes those of its I(pic_connections)).
      - In check mode, an item may name one of them although the cell does not have it yet. Everything else of
        the item is checked as in a real run; its new connection is reported in C(changes), the result and the
        diff. Any other unknown connection is an error, as in a real run.
    type: list
    elements: str
    default: []
seealso:
  - module: pic.connectivity.pic_connection
'''

EXAMPLES = r'''
- name: Send alice through Home VPN, blocked if it goes down
  pic.connectivity.pic_peer_exit:
    peer: alice
    address: [10.0.0.2/32, "fd00:10::2/128"]
    connection: Home VPN

- name: Let bob fall back to the default gateway when his exit is down
  pic.connectivity.pic_peer_exit:
    peer: bob
    address: [10.0.0.3/32]
    connection: home-vpn
    fail_open: true

- name: Let bob fail open without restating his connection (the API's PUT .../peers/bob/failopen)
  pic.connectivity.pic_peer_exit:
    peer: bob
    fail_open: true
    keep_connection: true

- name: Remove carol from the cell; her addresses are free for another peer
  pic.connectivity.pic_peer_exit:
    peer: carol
    state: absent

- name: Remove one peer and give its address to a new one, in one transaction
  pic.connectivity.pic_peer_exit:
    peers:
      - peer: carol
        state: absent
      - peer: dave
        address: [10.0.0.4/32]
        connection: Home VPN

- name: Assign every peer from inventory in one task; unlisted peers go back to default
  pic.connectivity.pic_peer_exit:
    peers: "{{ pic_peers }}"
    purge: true
'''

RETURN = r'''
peers:
  description:
    - The assignment, as the cell now runs it, of the named peer (single form) or of every peer the call
      changed (bulk form). A removed peer shows as C(peer) and C(state=absent) only.
  returned: success
  type: list
  elements: dict
  sample:
    - peer: alice
      address: [10.0.0.2/32, "fd00:10::2/128"]
      connection: home-vpn
      fail_open: null
      effective_fail_open: false
changed_peers:
  description: Names of the peers whose assignment changed (or would change in check mode).
  returned: success
  type: list
  elements: str
  sample: [alice]
removed_peers:
  description: Names of the peers the call removed (or would remove in check mode).
  returned: success
  type: list
  elements: str
  sample: [carol]
changes:
  description: What was (or in check mode would be) done on the cell's data plane.
  returned: always
  type: list
  elements: str
  sample: ["replace nftables table inet pic_connectivity"]
'''

from ansible_collections.pic.connectivity.plugins.module_utils import model, peers
from ansible_collections.pic.connectivity.plugins.module_utils.runner import (
    Plan, build_module, cell_argument_spec, planned_argument_spec, planned_connection, run)


def defer_planned(doc, items, planned, check_mode):
    """Check mode: the items whose connection an earlier task of the run creates
    (``planned``) keep their current connection in the plan (everything else of
    theirs is checked as in a real run). Returns (items, {peer: connection id})."""
    deferred, out = {}, []
    for item in items:
        conn_id = planned_connection(doc, item.get('connection'), planned, check_mode)
        if conn_id is not None and isinstance(item.get('peer'), str):
            deferred[item['peer']] = conn_id
            current = (doc['peers'].get(item['peer']) or {}).get('connection') or 'default'
            item = dict(item, connection=current)
        out.append(item)
    return out, deferred


def _deferred_public(new_doc, name, conn_id):
    shown = dict(peers.public(new_doc, name), connection=conn_id)
    if new_doc['peers'][name].get('fail_open') is None:
        shown['effective_fail_open'] = None     # the new connection's default, not known here
    return shown


def _shown(new_doc, name, deferred):
    """What the result and the diff's after show of peer ``name``."""
    if name not in new_doc['peers']:
        return {'peer': name, 'state': 'absent'}
    if name in deferred:
        return _deferred_public(new_doc, name, deferred[name])
    return peers.public(new_doc, name)


def planner(params, check_mode=False):
    bulk = params.get('peers') is not None

    def _plan(doc):
        if bulk:
            items = peers.normalize_items(params['peers'])
        else:
            items = [{'peer': params['peer'], 'address': params['address'], 'connection': params['connection'],
                      'fail_open': params['fail_open'], 'state': params['state']}]
        if not params.get('keep_connection'):
            # the contract: an omitted connection is the default gateway
            items = [dict(item, connection=model.DEFAULT) if item.get('connection') is None else item
                     for item in items]
        items, deferred = defer_planned(doc, items, params.get('planned_connections'), check_mode)
        new_doc, names = peers.plan(doc, items, purge=params['purge'], bulk=bulk)
        removed = sorted(n for n in doc['peers'] if n not in new_doc['peers'])
        changed = sorted(set(n for n in new_doc['peers'] if doc['peers'].get(n) != new_doc['peers'][n])
                         | set(n for n, cid in deferred.items() if (doc['peers'].get(n) or {}).get('connection') != cid)
                         | set(removed))
        # The bulk form returns the peers it changed (a no-op run over thousands of
        # peers returns nothing to echo); the single form returns its peer.
        changed_set = set(changed)
        shown = names if not bulk else [n for n in names if n in changed_set]
        public = dict((n, _shown(new_doc, n, deferred)) for n in set(shown) | set(changed))
        result = {'peers': [public[n] for n in shown], 'changed_peers': changed, 'removed_peers': removed}
        if bulk:
            # What -vvv shows as the task's arguments: the peer list is not echoed
            # back (with thousands of peers, AnsibleModule's walk of it for no_log
            # values and its JSON were a third of a no-op run); `changed_peers`
            # and `peers` say what changed.
            shown_args = dict(params)
            shown_args['peers'] = '(%d peers, not echoed)' % len(params['peers'])
            result['invocation'] = {'module_args': shown_args}
        diff = {'before': dict((n, peers.public(doc, n)) for n in changed),
                'after': dict((n, public[n]) for n in changed)}
        later = ['assign peer %s to connection %s, which an earlier task of this run creates' % (n, deferred[n])
                 for n in changed if n in deferred]
        return Plan(new_doc, result, diff, deferred=later)
    return _plan


def main():
    argument_spec = cell_argument_spec()
    argument_spec.update(
        peer=dict(type='str'),
        address=dict(type='list', elements='str'),
        connection=dict(type='str'),
        fail_open=dict(type='bool'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        # The items are checked by peers.normalize_items(), in one pass, with the
        # dotted path of a bad field (see the documented suboptions).
        peers=dict(type='list', elements='dict'),
        purge=dict(type='bool', default=False),
        keep_connection=dict(type='bool', default=False),
        **planned_argument_spec()
    )
    module = build_module(argument_spec, supports_check_mode=True,
                          mutually_exclusive=[('peer', 'peers')], required_one_of=[('peer', 'peers')])
    if module.params['purge'] and module.params['peers'] is None:
        module.fail_json(msg="purge: only valid with the bulk form (peers)")
    run(module, planner(module.params, module.check_mode))


if __name__ == '__main__':
    main()
