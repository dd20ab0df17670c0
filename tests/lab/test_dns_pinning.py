# -*- coding: utf-8 -*-
"""DNS pinned for every interface exit type (issue 11, Deliver 7), with packets.

cell1 runs its own resolver as a PIC cell does (exit_helpers.wan_resolver: on
10.0.0.1 / fd00:10::1, resolving through the cell's WAN: the internet's DNS
echo then answers with the cell's WAN address).  Peers ask that resolver:

* p1 on a WireGuard exit whose file has no ``DNS =`` line: refused (the peer's
  resolver moves on to one it reaches through the tunnel);
* p2 on an OpenVPN exit: the DNS the server pushes (10.201.0.53, a DNS echo on
  the OpenVPN server), through the tunnel;
* p3 on the relay through cell2: cell2's resolver at its link address (a DNS
  echo on cell2's 10.254.0.2), through the link.

Each answer is the source address the answering server saw; the WAN-side
resolver never sees a query of theirs, and neither does the internet from
cell1's WAN address, also while the exits are down (fail-closed).
"""
import os
import sys

import pytest

from conftest import Cell, ROOT, piclab, quiet_counters, wait_for
from exit_helpers import (addresses, dns_echo, dns_query, inventory_dir, playbook, server_plugin,
                          wan_resolver)

sys.path.insert(0, os.path.join(ROOT, 'lab', 'servers'))
import links as lablinks  # noqa: E402

OVPN = server_plugin('openvpn')
WG, OV = 'Exit WG', 'Exit OVPN'
LINK4, LINK6 = lablinks.address(1, 2), lablinks.address(1, 2, 6)     # cell2 side of the cell1-cell2 link (index 1)


def wireguard_config():
    with open(piclab.exit_config_path('cell1')) as handle:
        text = handle.read()
    assert 'DNS' not in text
    return text


def run_vars(state='present'):
    if state == 'absent':
        return {'pic_connections': [{'name': WG, 'state': 'absent'}, {'name': OV, 'state': 'absent'}],
                'pic_peers': [{'name': p, 'address': addresses(p), 'connection': 'default'} for p in piclab.PEERS],
                'pic_purge_peers': True}
    return {'pic_connections': [
        {'name': WG, 'type': 'wireguard_ext', 'config': {'wg_config': wireguard_config()}},
        {'name': OV, 'type': 'openvpn', 'config': {'ovpn_config': OVPN.client_config('cell1')}}],
        'pic_peers': [{'name': 'p1', 'address': addresses('p1'), 'connection': WG},
                      {'name': 'p2', 'address': addresses('p2'), 'connection': OV},
                      {'name': 'p3', 'address': addresses('p3')}],
        'pic_purge_peers': True}


def link(cells, remote_dns):
    cells['cell2'].module('pic_cell_link', {'links': [{'cell': 'cell1', 'interface': 'cl-cell1',
                                                       'offer_exit': True}]})
    return cells['cell1'].module('pic_cell_link', {'links': [
        {'cell': 'cell2', 'interface': 'cl-cell2', 'remote_offers_exit': True, 'remote_dns': remote_dns}]})


def wan_saw():
    """Packets that reached the internet from cell1's WAN address."""
    counts = piclab.counters()['by_source']
    return counts.get(piclab.wan_address('cell1', 4), 0) + counts.get(piclab.wan_address('cell1', 6), 0)


@pytest.fixture(scope='module')
def cells(lab):
    cells = dict((name, Cell(name)) for name in ('cell1', 'cell2'))
    resolvers = wan_resolver('cell1')
    # the pushed DNS server answers inside the OpenVPN server; cell2's resolver on its link address
    piclab.run(OVPN.NODE, 'ip', 'addr', 'replace', OVPN.PUSHED_DNS + '/32', 'dev', 'lo')
    dns_echo(OVPN.NODE, 'pusheddns', [OVPN.PUSHED_DNS])
    dns_echo('cell2', 'linkdns', [LINK4, LINK6])
    inventory = inventory_dir()
    playbook(inventory, run_vars())
    link(cells, [LINK4, LINK6])
    cells['cell1'].module('pic_peer_exit', {'peer': 'p3', 'connection': 'cell2'})
    yield cells
    cells['cell1'].module('pic_peer_exit', {'peer': 'p3', 'connection': 'default'})
    cells['cell1'].module('pic_cell_link', {'links': []})
    cells['cell2'].module('pic_cell_link', {'links': []})
    playbook(inventory, run_vars('absent'))
    for node, daemon in [('cell1', d) for d in resolvers] + [(OVPN.NODE, 'pusheddns'), ('cell2', 'linkdns')]:
        piclab.stop(node, daemon)


def test_the_cell_resolver_resolves_through_the_wan(cells):
    """The leak that is pinned below exists: a peer on the default gateway asking the cell."""
    cells['cell1'].module('pic_peer_exit', {'peer': 'p3', 'connection': 'default'})
    try:
        assert dns_query('p3', piclab.CELL_TUN_V4) == piclab.wan_address('cell1', 4)
        assert dns_query('p3', piclab.CELL_TUN_V6, family=6) == piclab.wan_address('cell1', 6)
    finally:
        cells['cell1'].module('pic_peer_exit', {'peer': 'p3', 'connection': 'cell2'})


def test_openvpn_peer_dns_goes_to_the_pushed_server_through_the_tunnel(cells):
    info = cells['cell1'].module('pic_connectivity_info', {})
    assert wait_for(lambda: dns_query('p2', piclab.CELL_TUN_V4).startswith('10.201.0.'), 20), \
        dns_query('p2', piclab.CELL_TUN_V4)
    quiet_counters()
    for tcp in (False, True):
        answer = dns_query('p2', piclab.CELL_TUN_V4, tcp=tcp)
        assert answer.startswith('10.201.0.') and answer != OVPN.PUSHED_DNS, (tcp, answer, info)
    # only IPv4 DNS is pushed: a query over IPv6 to the cell is refused, not resolved by the cell
    assert dns_query('p2', piclab.CELL_TUN_V6, family=6).startswith('error')
    assert wan_saw() == 0


def test_wireguard_peer_without_dns_line_is_refused_and_uses_the_tunnel(cells):
    quiet_counters()
    for family, server in ((4, piclab.CELL_TUN_V4), (6, piclab.CELL_TUN_V6)):
        for tcp in (False, True):
            answer = dns_query('p1', server, family=family, tcp=tcp)
            assert answer.startswith('error'), (family, tcp, answer)
    assert wan_saw() == 0
    # a resolver out on the internet is reached through the exit
    assert dns_query('p1') == piclab.exit_address(4)
    assert dns_query('p1', family=6) == piclab.exit_address(6)
    assert wan_saw() == 0


def test_relay_peer_dns_goes_to_the_remote_cell_resolver(cells):
    quiet_counters()
    assert dns_query('p3', piclab.CELL_TUN_V4) == lablinks.address(1, 1)
    assert dns_query('p3', piclab.CELL_TUN_V4, tcp=True) == lablinks.address(1, 1)
    assert dns_query('p3', piclab.CELL_TUN_V6, family=6) == lablinks.address(1, 1, 6)
    assert wan_saw() == 0


def test_relay_without_remote_resolver_refuses(cells):
    link(cells, None)
    try:
        quiet_counters()
        assert dns_query('p3', piclab.CELL_TUN_V4).startswith('error')
        assert wan_saw() == 0
    finally:
        link(cells, [LINK4, LINK6])


def test_fail_closed_dns_never_reaches_the_wan_while_the_exits_are_down(cells):
    piclab.exit_stop()
    OVPN.stop()
    lablinks.link_down(1, 2)
    try:
        quiet_counters()
        for peer in ('p1', 'p2', 'p3'):
            for family, server in ((4, piclab.CELL_TUN_V4), (6, piclab.CELL_TUN_V6)):
                answer = dns_query(peer, server, family=family)
                assert answer.startswith('error'), (peer, family, answer)
            assert dns_query(peer).startswith('error'), peer
        assert wan_saw() == 0
    finally:
        piclab.exit_start()
        OVPN.start()
        lablinks.up(3)                      # the cut link back
        cells['cell1'].cli('restore')       # its relay's routes with it
    assert wait_for(lambda: dns_query('p3', piclab.CELL_TUN_V4) == lablinks.address(1, 1), 30)
    assert wait_for(lambda: dns_query('p2', piclab.CELL_TUN_V4).startswith('10.201.0.'), 60)
