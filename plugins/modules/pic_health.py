#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pic_health
short_description: Report the health of a PIC cell's connections
version_added: 1.0.0
description:
  - Probes the connections of a cell with the admin guide's check for each type (WireGuard handshake age,
    down if older than 3 minutes or the connection's C(health_handshake_max_age); OpenVPN interface present;
    TCP connect to the local port of proxy exits) and the verdict of the cell's monitor (a probe through the
    exit when C(health_target) is configured).
  - C(tor) is C(down) when it runs but has no circuit (C(GETINFO status/circuit-established) on the control
    socket the tor role's torrc opens). C(proxy) with C(health_target) is C(down) when the proxy cannot connect
    to C(health_target) on C(health_port) (default 80; a SOCKS5 or HTTP CONNECT request with its login).
    C(sshuttle) with C(health_target) is C(down) unless C(health_target) answers a request on C(health_port)
    (default 80; an HTTP C(HEAD /)) made from the cell with the connection's mark, which the data plane
    redirects to the instance as it does the peers' TCP. sshuttle accepts every connection at once, so only
    the answer proves that its SSH server reaches the target and its SSH session carries traffic.
  - A proxy-type exit is C(working) only when what its port cannot tell answers too. C(tor) also needs its
    TransPort (where peers are redirected); C(sshuttle) and C(proxy) need their upstream, the SSH server or the
    proxy, to accept a TCP connection from the cell (redsocks keeps listening when its proxy is gone, and
    sshuttle listens before its SSH session exists). So a stopped server is C(down) at the next probe.
  - A proxy-type exit whose instance port does not answer is C(down) when the service role installed its
    instance (its configuration file exists under I(state_dir)), and C(unknown) with the reason
    C(instance ... not installed) when it did not (the connection was created without its role).
  - With C(health_target) in a connection's config, a deep probe (an ICMP echo through the exit itself, sent
    with the connection's kill mark so it can never leave by the WAN) catches an exit whose tunnel is up but
    carries nothing.
  - C(unknown) when it cannot tell (a tunnel that never completed a handshake, a missing instance, no C(ping)
    command on the cell for the deep probe), with the reason. A missing tool never makes a connection C(down).
  - All the connections probed are probed at once, so probing many takes about as long as the slowest probe.
  - Results are cached on the cell for I(max_age) seconds and shared by every caller; I(force) probes now.
  - Never changes routing; always reports C(changed=false).
requirements:
  - C(ping) on the cell (Debian C(iputils-ping), which the connectivity role installs) for the deep probe of
    C(health_target); without it that probe reports C(unknown).
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
    description: Probes are read-only; in check mode the shared cache is not written.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
  idempotent:
    support: full
    description: Never changes anything.
options:
  connection:
    description: Name or id of one connection; all connections when omitted.
    type: str
  max_age:
    description: Seconds a cached result may be reused.
    type: int
    default: 30
  force:
    description: Probe now, ignoring the cache (the guide's on-demand probe).
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Health of every connection (cached for 30 s)
  pic.connectivity.pic_health:
  register: health

- name: Probe Home VPN now
  pic.connectivity.pic_health:
    connection: Home VPN
    force: true

- name: Prove where Home VPN leaves (its connection declares egress_url and expect_egress)
  pic.connectivity.pic_health:
    connection: Home VPN
    force: true
  register: home
  failed_when: home.connections['home-vpn'].status != 'working'

- name: Show the public address the exit gives
  ansible.builtin.debug:
    msg: "Home VPN leaves from {{ home.connections['home-vpn'].egress }}"
'''

RETURN = r'''
connections:
  description:
    - Health per connection id.
    - C(egress) (only for a connection with C(egress_url)) is the public address its exit leaves from, as the echo URL
      saw it through the exit (null when it did not answer); an address outside the connection's C(expect_egress)
      makes it C(down).
    - C(status) is C(working), C(down) or C(unknown), and C(reason) says why.
  returned: success
  type: dict
  sample:
    home-vpn:
      name: Home VPN
      type: wireguard_ext
      status: working
      reason: last handshake 12s ago
      checked_at: 1764003071.2
      cached: false
      egress: 203.0.113.20
probe_seconds:
  description: How long probing took in this call (0 when every result came from the cache).
  returned: success
  type: float
  sample: 0.012
monitor:
  description:
    - The cell monitor's state, the same as in M(pic.connectivity.pic_connectivity_info). C(down) lists the
      connections whose fail-open peers it holds on the default gateway.
  returned: success
  type: dict
  sample: {down: [], reasons: {home-vpn: probe of 10.64.0.1 answered}, monitor_at: 1764003071.2}
'''

from ansible_collections.pic.connectivity.plugins.module_utils import connections
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.health import HealthCache, report
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.plugins.module_utils.runner import build_module, read_only_argument_spec, read_only


def gather(module):
    params = module.params
    if params['max_age'] < 0:
        raise PicError("must be 0 or more seconds", 'max_age', params['max_age'])
    registry = Registry(params['state_dir'])
    registry.require_set_up(params['allow_empty'])
    doc = registry.load()
    if params['connection']:
        ids = [connections.resolve(doc, params['connection'], 'connection')]
        if ids == ['default']:
            raise PicError("'default' is the cell's gateway, not a connection", 'connection', 'default')
    else:
        ids = sorted(doc['connections'])
    timing = {}
    results = report(doc, registry.load_runtime(), HealthCache(registry.state_dir), ids,
                     max_age=params['max_age'], force=params['force'], write=not module.check_mode, timing=timing)
    for cid, entry in results.items():
        entry['name'] = doc['connections'][cid]['name']
        entry['type'] = doc['connections'][cid]['type']
    return dict(changed=False, connections=results, probe_seconds=timing['probe_seconds'],
                monitor=registry.load_runtime())


def main():
    argument_spec = read_only_argument_spec()
    argument_spec.update(
        connection=dict(type='str'),
        max_age=dict(type='int', default=30),
        force=dict(type='bool', default=False),
    )
    module = build_module(argument_spec, supports_check_mode=True)
    read_only(module, gather)


if __name__ == '__main__':
    main()
