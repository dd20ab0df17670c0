#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pic_service_egress
short_description: Route the outbound traffic of a PIC cell service through a connection
version_added: 1.0.0
description:
  - Routes the outbound traffic of a cell service (a container on the cell's service network, typically the
    email service) through a connection, with the same marks, tables and kill switch as peers.
  - Works with every connection type (C(wireguard_ext), C(openvpn), C(tor), C(sshuttle), C(proxy), C(cell_relay)).
    The service's traffic arrives by I(interface) and is forwarded by the cell (a process on the cell itself is not
    a service in this sense); for a proxy-kind type only its TCP and DNS are carried, the rest is rejected, as for peers.
  - Only services whose manifest declares C(has_egress) as C(true) can be routed through a connection; any other is
    refused with a clear message and nothing changes.
  - A connection a service uses cannot be deleted; M(pic.connectivity.pic_connection) names the service.
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
    description: Shows the service's assignment before and after.
  idempotent:
    support: full
    description: A second run with the same assignment changes nothing.
options:
  service:
    description: Name of the service (letters, digits, C(_), C(.), C(@), C(-)).
    type: str
    required: true
  connection:
    description: Name or id of the connection, or C(default) for the cell's default gateway.
    type: str
    default: default
  address:
    description: The service's source addresses (IPv4 and/or IPv6). Required the first time.
    type: list
    elements: str
  manifest:
    description:
      - The service's manifest, as a dict or as the path of its YAML or JSON manifest file on the cell.
      - Required to route the service through a connection; it must declare C(has_egress) as C(true).
    type: raw
  interface:
    description: The interface the service's traffic arrives by (the cell's service network). Required the first time.
    type: str
  fail_open:
    description: Per-service override of the connection's fail mode; C(null) inherits it.
    type: bool
  state:
    description: C(present) assigns the service, C(absent) forgets it (its traffic takes the default gateway).
    type: str
    choices: [present, absent]
    default: present
  planned_connections:
    description:
      - Check mode only (ignored otherwise). Names of the connections that earlier tasks of the same run create,
        which a check-mode run does not (the connectivity role passes those of its I(pic_connections)).
      - In check mode, I(connection) may name one of them although the cell does not have it yet. Everything else
        is checked as in a real run; the new connection is reported in C(changes), the result and the diff. Any
        other unknown connection is an error, as in a real run.
    type: list
    elements: str
    default: []
seealso:
  - module: pic.connectivity.pic_connection
'''

EXAMPLES = r'''
- name: Send the email service's outbound mail through Home VPN
  pic.connectivity.pic_service_egress:
    service: email
    address: [172.31.0.10/32, "fd00:31::10/128"]
    interface: svc0
    manifest: /opt/pic/services/email/manifest.yml
    connection: Home VPN

- name: Back to the default gateway
  pic.connectivity.pic_service_egress:
    service: email
    connection: default
'''

RETURN = r'''
service:
  description: The service's assignment as the cell now runs it; null after C(state=absent).
  returned: success
  type: dict
  sample: {service: email, address: [172.31.0.10/32], interface: svc0, connection: home-vpn, fail_open: null}
changes:
  description: What was (or in check mode would be) done on the cell's data plane.
  returned: always
  type: list
  elements: str
  sample: ["replace nftables table inet pic_connectivity"]
'''

from ansible_collections.pic.connectivity.plugins.module_utils import services
from ansible_collections.pic.connectivity.plugins.module_utils.runner import (
    Plan, build_module, cell_argument_spec, planned_argument_spec, planned_connection, run)
from ansible_collections.pic.connectivity.plugins.module_utils.validation import check_peer_name


def planner(params, check_mode=False):
    def _plan(doc):
        later = None
        if params.get('state') != 'absent':
            later = planned_connection(doc, params.get('connection'), params.get('planned_connections'), check_mode)
        if later is None:
            new_doc, name = services.plan(doc, params)
            result = {'service': services.public(new_doc, name)}
        else:
            # check mode, a connection an earlier task of the run creates: the rest is checked as in a real run
            name = check_peer_name(params.get('service'), 'service')
            services.check_egress(params, name)
            current = (doc.get('services', {}).get(name) or {}).get('connection') or 'default'
            new_doc, name = services.plan(doc, dict(params, connection=current))
            result = {'service': dict(services.public(new_doc, name), connection=later)}
        before = services.public(doc, name) or {}
        deferred = ['route service %s through connection %s, which an earlier task of this run creates'
                    % (name, later)] if later is not None and before.get('connection') != later else []
        return Plan(new_doc, result, {'before': before, 'after': result['service'] or {}}, deferred=deferred)
    return _plan


def main():
    argument_spec = cell_argument_spec()
    argument_spec.update(
        service=dict(type='str', required=True),
        connection=dict(type='str', default='default'),
        address=dict(type='list', elements='str'),
        manifest=dict(type='raw'),
        interface=dict(type='str'),
        fail_open=dict(type='bool'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        **planned_argument_spec()
    )
    module = build_module(argument_spec, supports_check_mode=True)
    run(module, planner(module.params, module.check_mode))


if __name__ == '__main__':
    main()
