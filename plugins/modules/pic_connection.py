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
  - A connection is identified by its I(name); its id is the name's slug (C(Home VPN) gives C(home-vpn)), and
    peers and services refer to the id. There is no rename. A different name is a different connection (the
    old one keeps its peers), and a name whose slug is another connection's id (C(home vpn) next to
    C(Home VPN)) is refused with a message saying so. To rename, create the new connection, move its peers
    (M(pic.connectivity.pic_peer_exit)) and services, then delete the old one.
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
  idempotent:
    support: full
    description: A second run with the same options changes nothing.
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
      - Type-specific settings; the keys are listed below, each with the types that take it. A key of another type
        is refused (named, its value never shown), and so is a misspelt one.
      - Secrets in it (private and preshared keys, passwords, the WireGuard and OpenVPN files) are masked in every
        output and stored in 0600 files under I(state_dir); the registry keeps the rest, with a fingerprint that
        changes when a secret changes.
      - Required to create a connection, except one of type C(tor) (whose keys all have defaults). When omitted on
        an existing connection, its stored configuration is kept.
      - The module takes C(config) as a plain dict and validates it per type itself, so that a refused value is
        never shown and a misspelt key holding a secret is masked too.
    type: dict
    suboptions:
      address:
        description:
          - Only for type C(wireguard_ext).
          - The tunnel addresses (a list, or one string of comma-separated addresses); required with C(private_key).
        type: raw
      allowed_ips:
        description:
          - Only for type C(wireguard_ext).
          - What the tunnel carries; defaults to C(0.0.0.0/0) and C(::/0).
        type: raw
      dns:
        description:
          - Only for types C(wireguard_ext) and C(sshuttle).
          - C(wireguard_ext) - DNS servers of the exit (a list, or one string of comma-separated addresses); the
            peers' DNS is pinned to them.
          - C(sshuttle) - One DNS server (an address, or a list holding one) that sshuttle forwards the peers'
            DNS to.
        type: raw
      dns_port:
        description:
          - Only for type C(tor).
          - Tor's DNSPort setting (1-65535; default 9053).
        type: int
      egress_url:
        description:
          - For every type. An echo URL (C(http://HOST[:PORT][/PATH]), HOST an IP address, IPv6 in brackets, or
            a host name the cell resolves; no credentials, no https) whose answer is the caller's source address.
            The health check and the monitor ask it through the exit (interface types, a connection with the connection's
            mark; C(tor), through its SOCKS port; C(proxy), through the proxy server; C(sshuttle), through the
            instance, by the redirect its peers' TCP takes) and report the public address the exit gives as C(egress).
        type: str
      endpoint:
        description:
          - Only for type C(wireguard_ext).
          - The server as C(host:port); required with C(private_key).
        type: str
      expect_egress:
        description:
          - For every type. The addresses or networks (IPv4, IPv6) the exit may leave from; needs C(egress_url).
            An exit whose echo answer is outside them is down (a wrong exit is a leak too; the monitor holds it
            down, its fail-open peers fall back to the WAN, fail-closed ones are blocked); no answer leaves the
            egress part unknown.
        elements: str
        type: list
      health_fail_after:
        description:
          - For every type. Failed probes (1-100) after which the monitor holds the connection down.
        type: int
      health_handshake_max_age:
        description:
          - Only for type C(wireguard_ext).
          - Seconds (1-86400; default 180, the guide's 3 minutes) after the newest WireGuard handshake of the
            exit's interface after which the health check and the monitor call it down. WireGuard renews the handshake
            every 2 minutes while traffic flows (set C(persistent_keepalive) to keep it flowing), so less than
            150 calls a working tunnel down now and then.
        type: int
      health_port:
        description:
          - Only for types C(sshuttle) and C(proxy).
          - C(sshuttle) - The TCP port (1-65535; default 80) of C(health_target) that the health check and the
            monitor connect to through the instance (from the cell, with the connection's mark, so that it takes
            the redirect of its peers' TCP) and send a request (an HTTP C(HEAD /)); the exit is down unless the
            target answers, so a server that cannot reach it or an SSH session that carries nothing is down while
            sshuttle runs.
          - C(proxy) - The TCP port (1-65535; default 80) of C(health_target) that the health check and the monitor
            ask the proxy to connect to (a SOCKS5 or HTTP CONNECT request from the cell to the proxy server, with
            its login); the exit is down when the proxy cannot reach it.
        type: int
      health_recover_after:
        description:
          - For every type. Answered probes (1-100) after which the monitor brings the connection back.
        type: int
      health_target:
        description:
          - For every type. An IP address probed through the exit by the cell's monitor and pic_health (interface
            types, a ping through the exit; C(proxy), a request through the proxy server to its C(health_port);
            C(sshuttle), a request to its C(health_port) through the instance, which must be answered).
        type: str
      host:
        description:
          - Only for types C(sshuttle) and C(proxy). Required for types C(sshuttle) and C(proxy).
          - C(sshuttle) - The SSH server (a host name or an IP address).
          - C(proxy) - The proxy server's IPv4 address.
        type: str
      interface:
        description:
          - For every type. Interface name override of an interface type's exit (proxy types take no interface
            and ignore it); the interface is the collection's own and is deleted with the connection, so it must
            start with C(pic-) (1-15 characters of C(a-z), C(0-9) and C(-)); C(eth0), C(wg0) or any other interface
            of the cell is refused, and so is a name that already exists on the cell and is not this connection's
            interface in the registry.
        type: str
      known_hosts:
        description:
          - Only for type C(sshuttle).
          - The text of the known_hosts file that holds the server's key.
        type: str
      listen_port:
        description:
          - Only for type C(wireguard_ext).
          - The tunnel's local UDP port (1-65535).
        type: int
      mtu:
        description:
          - Only for type C(wireguard_ext).
          - The interface MTU (1280-9000).
        type: int
      ovpn_config:
        description:
          - Only for type C(openvpn). Required for type C(openvpn).
          - The text of the .ovpn file (checked against the client allow-list; inline keys are masked).
          - 'Holds secrets: masked whole in every output and log, and kept only in a 0600 file under I(state_dir).'
        type: str
      password:
        description:
          - Only for types C(openvpn) and C(proxy).
          - C(openvpn) - The C(auth-user-pass) password; goes with C(username).
          - C(proxy) - The proxy password.
          - 'A secret: masked in every output and log, and kept only in a 0600 file under I(state_dir).'
        type: str
      peer_public_key:
        description:
          - Only for type C(wireguard_ext).
          - The server's public key; required with C(private_key).
        type: str
      persistent_keepalive:
        description:
          - Only for type C(wireguard_ext).
          - Keepalive interval in seconds (0-65535).
        type: int
      port:
        description:
          - Only for types C(sshuttle) and C(proxy). Required for type C(proxy).
          - C(sshuttle) - The SSH port (1-65535; default 22).
          - C(proxy) - The proxy server's port (1-65535).
        type: int
      preshared_key:
        description:
          - Only for type C(wireguard_ext).
          - The peer's preshared key (base64).
          - 'A secret: masked in every output and log, and kept only in a 0600 file under I(state_dir).'
        type: str
      private_key:
        description:
          - Only for type C(wireguard_ext).
          - The tunnel's private key (base64), instead of C(wg_config).
          - 'A secret: masked in every output and log, and kept only in a 0600 file under I(state_dir).'
        type: str
      proxy_type:
        description:
          - Only for type C(proxy).
          - C(socks5) (default) or C(http-connect).
        type: str
      python:
        description:
          - Only for type C(sshuttle).
          - The Python command on the server (one word, for example C(python3)).
        type: str
      socks_port:
        description:
          - Only for type C(tor).
          - Tor's SOCKS port (1-65535; default 9050), probed by the health check.
        type: int
      ssh_key:
        description:
          - Only for type C(sshuttle).
          - The text of the SSH private key.
          - 'A secret: masked in every output and log, and kept only in a 0600 file under I(state_dir).'
        type: str
      subnets:
        description:
          - Only for type C(sshuttle).
          - 'Refused: an sshuttle exit carries every TCP connection of its peers.'
        type: raw
      trans_port:
        description:
          - Only for type C(tor).
          - Tor's TransPort setting (1-65535; default 9040).
        type: int
      user:
        description:
          - Only for type C(sshuttle).
          - The SSH user (default C(root)).
        type: str
      username:
        description:
          - Only for types C(openvpn) and C(proxy).
          - C(openvpn) - The C(auth-user-pass) user name (1-256 characters); goes with C(password).
          - C(proxy) - The proxy user name; required with C(password).
        type: str
      wg_config:
        description:
          - Only for type C(wireguard_ext).
          - The text of a WireGuard file as a provider hands it out (C([Interface]) with C(PrivateKey) and C(Address),
            one or more C([Peer]) with C(PublicKey), C(Endpoint) and C(AllowedIPs)); C(PostUp)-style commands
            and C(Table) are refused. Required unless C(private_key) is given.
          - 'Holds secrets: masked whole in every output and log, and kept only in a 0600 file under I(state_dir).'
        type: str

  fail_open:
    description:
      - What peers of this connection get when the exit is down. C(false) blocks them (fail-closed), C(true)
        lets them fall back to the default gateway.
      - Defaults to C(true) for C(tor) and C(false) for every other type when the connection is created;
        when omitted later, the stored value is kept. Peers can override it with M(pic.connectivity.pic_peer_exit).
    type: bool
  fallback:
    description:
      - Ordered failover. The connections (names or ids) that carry this connection's peers and services, in
        this order, while the cell's monitor holds it down. The first of them that is not down itself carries
        them, with its own exit, DNS and kill switch (a fail-closed peer leaves by that fallback's interface or
        not at all); only when none works does the fail mode apply (blocked, or the default gateway for fail-open
        users). When the connection is up again (the monitor's I(health_recover_after)), they go back to it.
      - The monitor switches at runtime, without a playbook run, in one nftables transaction.
      - Each must exist, not be this connection nor C(default), be named once, and not fall back to this
        connection (directly or through its own fallbacks). Fallbacks are not transitive - a fallback's own
        fallbacks are not used for this connection's peers.
      - A connection that is another's fallback cannot be deleted until it is removed from that list.
      - A C(cell_relay) connection (derived from a cell link) takes this option alone - a call with I(name) and
        I(fallback) and nothing else; a relay that goes away with its link is skipped where it is named.
      - When omitted, the stored list is kept; C([]) removes it.
    type: list
    elements: str
  planned_connections:
    description:
      - Check mode only. Connections that earlier tasks of the run create, which I(fallback) may name (or which
        this call may be, setting only I(fallback)) although the check-mode run did not create them; they are
        reported as deferred. Any other unknown connection is an error, as in a real run.
    type: list
    elements: str
    default: []
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

- name: A second exit that carries the peers of Home VPN while it is down, before they are blocked
  pic.connectivity.pic_connection:
    name: Home VPN
    fallback: [US Exit]

- name: A WireGuard exit that is down after 5 minutes without a handshake (the guide's default is 3)
  pic.connectivity.pic_connection:
    name: Exit WG
    type: wireguard_ext
    config:
      wg_config: "{{ lookup('ansible.builtin.file', 'files/exit-wg.conf') }}"
      persistent_keepalive: 25
      health_handshake_max_age: 300

- name: A SOCKS5 proxy exit, down when it cannot reach the health target's HTTPS port
  pic.connectivity.pic_connection:
    name: Exit SOCKS
    type: proxy
    config:
      host: 203.0.113.50
      port: 1080
      username: cell1
      password: "{{ vault_socks_password }}"
      health_target: 198.51.100.80
      health_port: 443
      health_fail_after: 3
      health_recover_after: 5

- name: An exit proven to leave from the provider's addresses (down, and its fail-closed peers blocked, otherwise)
  pic.connectivity.pic_connection:
    name: Exit NL
    type: wireguard_ext
    config:
      wg_config: "{{ lookup('ansible.builtin.file', 'files/exit-nl.conf') }}"
      egress_url: http://198.51.100.80/ip
      expect_egress:
        - 203.0.113.20
        - 2001:db8:1::/64

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
    fallback:
      description: The ids of the connections that carry its users while it is down, in order.
      type: list
      elements: str
      sample: ["us-exit"]
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
    Plan, build_module, cell_argument_spec, config_secrets, planned_argument_spec, planned_connection, run)


def defer_planned_fallbacks(doc, params, check_mode):
    """Check mode: the connection, or fallbacks of it, that an earlier task of the run
    creates (``planned_connections``) are not on the cell yet. Returns (params to
    plan with, what is deferred); a deferred connection is not planned at all (None)."""
    planned = params.get('planned_connections')
    if params.get('fallback') is None or not check_mode or not planned:
        return params, []
    if params.get('type') is None and planned_connection(doc, params.get('name'), planned, check_mode):
        return None, ['set the fallbacks of connection %s, which an earlier task of this run creates'
                      % params['name']]
    kept = [f for f in params['fallback'] if not planned_connection(doc, f, planned, check_mode)]
    later = ['fall back to connection %s, which an earlier task of this run creates' % f
             for f in params['fallback'] if f not in kept]
    return dict(params, fallback=kept), later


def planner(params, check_mode=False):
    def _plan(doc):
        planning, later = defer_planned_fallbacks(doc, params, check_mode)
        if planning is None:
            return Plan(doc, {'connection': None}, {'before': {}, 'after': {}}, deferred=later)
        return _plan_call(doc, planning, later)

    def _plan_call(doc, params, later):
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
        wg = {record['id']: payload} if record and exits.cell_runs_wireguard(record['type']) and payload else {}
        return Plan(new_doc, result, diff, wg=wg, removed=[removed] if removed else [], secrets=secrets,
                    deferred=later)
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
        fallback=dict(type='list', elements='str'),
        **planned_argument_spec()
    )
    module = build_module(argument_spec, secrets_of=config_secrets(connections.secrets_in), supports_check_mode=True)
    run(module, planner(module.params, module.check_mode))


if __name__ == '__main__':
    main()
