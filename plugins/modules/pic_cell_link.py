#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pic_cell_link
short_description: Derive cell_relay connections from a PIC cell's links to other cells
version_added: 1.0.0
description:
  - Takes the cell's links to other cells (site-to-site WireGuard tunnels that the cell software manages) and
    whether each side offers its internet exit over the link.
  - When a linked cell offers its exit, a C(cell_relay) connection named after that cell appears, with the link
    as its interface, failing closed; peers can then be assigned to it with M(pic.connectivity.pic_peer_exit).
  - When a linked cell stops offering its exit, its connection goes away; peers still assigned to it stay
    blocked (fail-closed) and are listed in C(orphaned), never moved to another exit.
  - Where this cell offers its exit to a linked cell, traffic relayed from that cell leaves by this cell's
    default gateway, masqueraded; traffic relayed from a linked cell it does not offer its exit to is dropped.
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
    description: Shows the links and relays before and after.
  idempotent:
    support: full
    description: A second run with the same links changes nothing.
options:
  links:
    description: Every link of the cell (links not listed are forgotten).
    type: list
    elements: dict
    required: true
    suboptions:
      cell:
        description: The linked cell's name (its relay connection takes this name).
        type: str
        required: true
      interface:
        description: The link's interface on this cell.
        type: str
        required: true
      offer_exit:
        description: This cell offers its internet exit to the linked cell.
        type: bool
        default: false
      remote_offers_exit:
        description: The linked cell offers its internet exit to this cell.
        type: bool
        default: false
      remote_dns:
        description:
          - The linked cell's resolver on the link (its link address), at most one IPv4 and one IPv6 address.
          - DNS that the relay's peers send to this cell is sent there, through the link. Without it that DNS is
            refused (never answered by this cell's resolver, which resolves through this cell's WAN).
        type: list
        elements: str
  known_cells:
    description: Names of the cells that exist (the inventory's); a link to any other cell is refused.
    type: list
    elements: str
seealso:
  - module: pic.connectivity.pic_peer_exit
  - module: pic.connectivity.pic_connectivity_info
'''

EXAMPLES = r'''
- name: Relay through cell-b, which offers its exit; offer ours to cell-c
  pic.connectivity.pic_cell_link:
    links:
      - cell: cell-b
        interface: cl-cell-b
        remote_offers_exit: true
      - cell: cell-c
        interface: cl-cell-c
        offer_exit: true
    known_cells: "{{ groups[pic_cells_group | default('pic_cells')] }}"
'''

RETURN = r'''
relays:
  description: The cell_relay connections the cell has now (as M(pic.connectivity.pic_connection) returns them).
  returned: success
  type: list
  elements: dict
  sample: [{id: cell-b, name: cell-b, type: cell_relay, interface: cl-cell-b, table: 10002, fail_open: false}]
orphaned:
  description: Peers (and services) still assigned to a relay that went away, by connection id. They are blocked.
  returned: success
  type: dict
  sample: {cell-c: [alice]}
changes:
  description: What was (or in check mode would be) done on the cell's data plane.
  returned: always
  type: list
  elements: str
  sample: ["replace nftables table inet pic_connectivity"]
'''

from ansible_collections.pic.connectivity.plugins.module_utils import connections, links
from ansible_collections.pic.connectivity.plugins.module_utils.runner import Plan, build_module, cell_argument_spec, run


def planner(params):
    def _plan(doc):
        new_doc, relays, orphaned = links.plan(doc, params['links'], params.get('known_cells'))
        result = {'relays': [connections.public_result(new_doc['connections'][cid], new_doc['settings'])
                             for cid in relays],
                  'orphaned': orphaned}
        if orphaned:
            result['warnings'] = ['blocked (fail-closed) until reassigned, their relay is gone: %s'
                                  % '; '.join('%s: %s' % (cid, ', '.join(users)) for cid, users in orphaned.items())]
        diff = {'before': {'links': doc.get('links', {})}, 'after': {'links': new_doc.get('links', {})}}
        return Plan(new_doc, result, diff)
    return _plan


def main():
    argument_spec = cell_argument_spec()
    argument_spec.update(
        links=dict(type='list', elements='dict', required=True, options=dict(
            cell=dict(type='str', required=True),
            interface=dict(type='str', required=True),
            offer_exit=dict(type='bool', default=False),
            remote_offers_exit=dict(type='bool', default=False),
            remote_dns=dict(type='list', elements='str'),
        )),
        known_cells=dict(type='list', elements='str'),
    )
    module = build_module(argument_spec, supports_check_mode=True)
    run(module, planner(module.params))


if __name__ == '__main__':
    main()
