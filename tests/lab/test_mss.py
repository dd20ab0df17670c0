# -*- coding: utf-8 -*-
"""TCP MSS clamping (model.add_mss_clamp) with real packets: a peer moves a few MB each way
over TCP through an exit whose path to the internet is narrower than the peer's own MTU,
with no ICMP to tell anyone (PMTUD broken), and completes; with the clamp rule removed by
hand the same transfer stalls.

The narrow path: the exit side forwards nothing larger than 1280 bytes between its tunnel
and the internet (locked route MTUs of 1280 to the internet's servers and back to the
cell's tunnel address), and its ICMP "fragmentation needed" / "packet too big" is dropped
(a lab table of its own): a hop with a 1280 MTU behind an ICMP blackhole. (Lowering the
MTU of the exit's WAN veth itself would also shrink the tunnel's own encrypted packets,
which cross the same veth, and test something else; a ``meta length`` drop in nftables
sees GSO aggregates, not segments.) The
cell declares the narrow path as its exit's MTU (``MTU = 1280`` in wireguard_ext's config; the cell
link's MTU for a relay), which the clamp follows; the peers' own MTU stays WireGuard's 1420
(MSS 1380), so without the clamp every full-sized segment of a download is lost.

Exits: wireguard_ext (the lab's exit server) and cell_relay (cell1 -> link -> cell2 -> its
WAN; the nested WireGuard case: the peer's tunnel inside the cell link's), both with the
negative; nested tunnels (cell1's relay into cell2, which carries what cell1 relays through
its own wireguard_ext: each cell clamps into its own exit), with the negative on cell2;
openvpn (``tun-mtu 1280``, the pushed one ignored, the lab's OpenVPN server, through playbooks/site.yml)
and a SOCKS5 proxy exit (no clamp: the instance's own TCP upstream) with the same narrow
path. Uploads complete even without the clamp: the cell itself tells the peer the exit's
MTU (its ICMP to the peer is not blackholed); downloads are what stall.

With the role's monitor running (openvpn, proxy) a clamp removed by hand is back within a
second (shown with openvpn), so the negative is shown on the exits converged by the modules
alone."""
import json
import os
import time

import pytest

from conftest import Cell, piclab, reset_cell, wait_for
from exit_helpers import addresses, inventory_dir, playbook, server_plugin
from test_relay import lablinks, link_all, peers as relay_peers

EXIT = 'Exit MSS'
SIZE = 4 * 1024 * 1024
PORT_DOWN, PORT_UP = 9100, 9101
NARROW = 1280
OK_SECONDS = 20
STALL_SECONDS = 8
LAB_TABLE = 'inet lab_mss'

# The bulk server in the internet and the client in a peer: scripts of the lab package.
BULK_SERVER = os.path.join(os.path.dirname(piclab.__file__), 'bulk_server.py')
BULK_CLIENT = os.path.join(os.path.dirname(piclab.__file__), 'bulk_client.py')


def transfer(peer, mode, family=4, deadline=OK_SECONDS, cell='cell1'):
    """One transfer from a peer with no path MTU learned before (an upload teaches the peer
    the exit's MTU through the cell's ICMP, which would make its next SYN's MSS small)."""
    node = piclab.peer_node(peer, cell)
    # (the internet's server too: a path MTU it learned in an earlier test file, where
    # ICMP got through, would make it send small segments and pass the negative)
    for where in (node, 'inet'):
        piclab.run(where, 'ip', '-4', 'route', 'flush', 'cache')
        piclab.run(where, 'ip', '-6', 'route', 'flush', 'cache')
    proc = piclab.run(node, 'python3', BULK_CLIENT,
                      piclab.server_address(family), str(PORT_DOWN if mode == 'down' else PORT_UP), str(SIZE),
                      str(deadline), mode, timeout=deadline + 10)
    return json.loads(proc.stdout)


def complete(peer, mode, family=4, cell='cell1'):
    result = transfer(peer, mode, family, cell=cell)
    return result['bytes'] == SIZE and result['error'] is None, result


def stalls(peer, mode='down', family=4, cell='cell1'):
    result = transfer(peer, mode, family, deadline=STALL_SECONDS, cell=cell)
    return result['bytes'] < SIZE, result


def narrow_routes(node, tunnel_hosts, tunnel_dev):
    """The routes of NODE's narrow path: to the internet's servers, and back to the
    (masqueraded) tunnel address(es) of the cell behind it."""
    out = [(piclab.SERVER_NET4, 'via %s dev wan0' % piclab.INET_V4),
           (piclab.SERVER_NET6, 'via %s dev wan0' % piclab.INET_V6)]
    return out + [(host, 'dev %s' % tunnel_dev) for host in tunnel_hosts]


def narrow_path(node, routes):
    """NODE forwards nothing larger than NARROW bytes on ``routes`` (route MTU, locked), and
    its ICMP "fragmentation needed" / "packet too big" never leaves: PMTUD is broken."""
    lines = ['route replace %s %s mtu lock %d' % (dst, how, NARROW) for dst, how in routes]
    piclab.run(node, 'ip', '-batch', '-', input='\n'.join(lines) + '\n')
    piclab.run(node, 'nft', '-f', '-', input=(
        'table %s\ndelete table %s\ntable %s {\n\tchain output {\n'
        '\t\ttype filter hook output priority -300; policy accept;\n'
        '\t\ticmp type destination-unreachable icmp code frag-needed counter drop\n'
        '\t\ticmpv6 type packet-too-big counter drop\n\t}\n}\n' % (LAB_TABLE, LAB_TABLE, LAB_TABLE)))


def wide_path(node, routes):
    for dst, _how in routes:
        piclab.run(node, 'ip', 'route', 'del', dst, check=False)
    piclab.run(node, 'nft', 'delete', 'table', *LAB_TABLE.split(), check=False)


def mss_rules(cell):
    table = json.loads(cell.sh('nft', '-j', 'list', 'chain', 'inet', 'pic_connectivity', 'mss').stdout)
    return [o['rule'] for o in table['nftables'] if 'rule' in o]


def remove_clamp(cell):
    cell.sh('nft', 'flush', 'chain', 'inet', 'pic_connectivity', 'mss')
    assert mss_rules(cell) == []


@pytest.fixture(scope='module')
def bulk(lab):
    piclab.spawn('inet', 'mssbulk', ['python3', BULK_SERVER, str(SIZE), str(PORT_DOWN), str(PORT_UP),
                                     piclab.SERVER_V4, piclab.SERVER_V6])
    time.sleep(0.5)
    yield
    piclab.stop('inet', 'mssbulk')


def wg_conf(mtu, cell='cell1'):
    """The lab's exit config of ``cell`` with ``MTU = mtu`` in its [Interface] section."""
    with open(piclab.exit_config_path(cell)) as handle:
        text = handle.read()
    assert text.startswith('[Interface]\n')
    return text.replace('[Interface]\n', '[Interface]\nMTU = %d\n' % mtu, 1)


def converge_wg(cell, mtu=NARROW):
    cell.module('pic_connection', {'name': EXIT, 'type': 'wireguard_ext', 'config': {'wg_config': wg_conf(mtu)}})
    addrs = [piclab.peer_address('p1', 4) + '/32', piclab.peer_address('p1', 6) + '/128']
    cell.module('pic_peer_exit', {'peers': [{'peer': 'p1', 'address': addrs, 'connection': EXIT}]})


@pytest.fixture
def wg_exit(cell, bulk):
    reset_cell(cell)
    converge_wg(cell)
    routes = narrow_routes('wgexit', [piclab.exit_client_address('cell1', 4) + '/32',
                                      piclab.exit_client_address('cell1', 6) + '/128'], 'wg0')
    narrow_path('wgexit', routes)
    yield cell
    wide_path('wgexit', routes)
    reset_cell(cell)
    cell.module('pic_connection', {'name': EXIT, 'state': 'absent'})


@pytest.mark.parametrize('family', [4, 6])
def test_wireguard_exit_with_a_narrow_path_moves_large_transfers(wg_exit, family):
    assert [r['expr'][0]['match']['right'] for r in mss_rules(wg_exit)] == ['pic-exit-mss']
    for mode in ('down', 'up'):
        ok, result = complete('p1', mode, family)
        assert ok, (mode, family, result)


def test_wireguard_exit_stalls_without_the_clamp_and_recovers_on_the_next_run(wg_exit):
    assert complete('p1', 'down')[0]
    remove_clamp(wg_exit)
    stalled, result = stalls('p1', 'down')
    assert stalled, ('the transfer completed without the clamp: the test proves nothing', result)
    converge_wg(wg_exit)       # the next run finds the table changed and restores it
    assert len(mss_rules(wg_exit)) == 1
    ok, result = complete('p1', 'down')
    assert ok, result


@pytest.fixture
def relay(lab, bulk):
    cells = dict((name, Cell(name)) for name in ('cell1', 'cell2', 'cell3'))
    for cell in cells.values():
        reset_cell(cell)   # (no monitor of an earlier file may put a removed clamp back)
    link_all(cells)
    cells['cell1'].module('pic_peer_exit', relay_peers('cell2'))
    piclab.run('cell1', 'ip', 'link', 'set', 'cl-cell2', 'mtu', str(NARROW))
    routes = narrow_routes('cell2', [lablinks.address(1, 1, 4) + '/32', lablinks.address(1, 1, 6) + '/128'],
                           'cl-cell1')
    narrow_path('cell2', routes)
    yield cells['cell1']
    wide_path('cell2', routes)
    piclab.run('cell1', 'ip', 'link', 'set', 'cl-cell2', 'mtu', '1420')
    cells['cell1'].module('pic_peer_exit', relay_peers('default'))


def test_relay_with_a_narrow_path_behind_the_remote_cell_moves_large_transfers(relay):
    assert [r['expr'][0]['match']['right'] for r in mss_rules(relay)] == ['cl-cell2']
    for family in (4, 6):
        for mode in ('down', 'up'):
            ok, result = complete('p1', mode, family)
            assert ok, (mode, family, result)
    remove_clamp(relay)
    stalled, result = stalls('p1', 'down')
    assert stalled, ('the transfer completed without the clamp: the test proves nothing', result)
    relay.module('pic_peer_exit', relay_peers('default'))
    relay.module('pic_peer_exit', relay_peers('cell2'))
    assert len(mss_rules(relay)) == 1 and complete('p1', 'down')[0]


# -- nested: cell1's relay to cell2, whose own wireguard_ext carries what cell1 relays -------
RELAYED = 'relayed-cell1'


def nested_service(state='present'):
    """On cell2, what cell1 relays (its link address, masqueraded by cell1) is a service on the
    link interface, routed through cell2's own wireguard_ext exit."""
    if state == 'absent':
        return {'service': RELAYED, 'state': 'absent'}
    return {'service': RELAYED, 'interface': 'cl-cell1', 'connection': EXIT,
            'address': [lablinks.address(1, 1, 4) + '/32', lablinks.address(1, 1, 6) + '/128'],
            'manifest': {'name': RELAYED, 'has_egress': True}}


@pytest.fixture
def nested(lab, bulk):
    cells = dict((name, Cell(name)) for name in ('cell1', 'cell2', 'cell3'))
    for cell in cells.values():
        reset_cell(cell)   # (no monitor of an earlier file may put a removed clamp back)
    link_all(cells)
    cells['cell2'].module('pic_connection', {'name': EXIT, 'type': 'wireguard_ext',
                                             'config': {'wg_config': wg_conf(NARROW, 'cell2')}})
    cells['cell2'].module('pic_service_egress', nested_service())
    cells['cell1'].module('pic_peer_exit', relay_peers('cell2'))
    routes = narrow_routes('wgexit', [piclab.exit_client_address('cell2', 4) + '/32',
                                      piclab.exit_client_address('cell2', 6) + '/128'], 'wg0')
    narrow_path('wgexit', routes)
    yield cells
    wide_path('wgexit', routes)
    cells['cell1'].module('pic_peer_exit', relay_peers('default'))
    cells['cell2'].module('pic_service_egress', nested_service('absent'))
    cells['cell2'].module('pic_connection', {'name': EXIT, 'state': 'absent'})


def test_nested_tunnels_relay_into_the_remote_cells_tunnel_exit(nested):
    """peer -(WireGuard)-> cell1 -(cell link, WireGuard)-> cell2 -(wireguard_ext)-> wgexit -> internet:
    each cell clamps into its own exit (cell1 to the link's 1420, cell2 to its exit's 1280)."""
    cell1, cell2 = nested['cell1'], nested['cell2']
    assert piclab.fetch('p1', 4) == piclab.EXIT_V4 and piclab.fetch('p1', 6) == piclab.EXIT_V6
    assert [r['expr'][0]['match']['right'] for r in mss_rules(cell1)] == ['cl-cell2']
    assert [r['expr'][0]['match']['right'] for r in mss_rules(cell2)] == ['pic-exit-mss']
    for family in (4, 6):
        for mode in ('down', 'up'):
            ok, result = complete('p1', mode, family)
            assert ok, (mode, family, result)
    remove_clamp(cell2)
    stalled, result = stalls('p1', 'down')
    assert mss_rules(cell2) == [], 'something put the clamp back during the negative'
    assert stalled, ('the transfer completed without the clamp: the test proves nothing', result)
    cell2.module('pic_service_egress', nested_service('absent'))
    cell2.module('pic_service_egress', nested_service())
    assert len(mss_rules(cell2)) == 1 and complete('p1', 'down')[0]


# -- exits run by the role: openvpn, and a SOCKS5 proxy ----------------------------------
OVPN, SOCKS = 'MSS OVPN', 'MSS SOCKS'


def role_vars():
    ovpn, proxies = server_plugin('openvpn'), server_plugin('proxies')
    socks = proxies.info(proxies.SOCKS_NODE)
    # the lab's server pushes its own tun-mtu (1500, OpenVPN 2.6): the client keeps its 1280
    ovpn_conf = ovpn.client_config('cell1') + 'tun-mtu %d\npull-filter ignore "tun-mtu"\n' % NARROW
    return {'pic_connections': [
        {'name': OVPN, 'type': 'openvpn', 'config': {'ovpn_config': ovpn_conf}},
        {'name': SOCKS, 'type': 'proxy', 'config': dict((k, socks[k]) for k in ('host', 'port', 'proxy_type',
                                                                                 'username', 'password'))}],
        'pic_peers': [{'name': 'p1', 'address': addresses('p1'), 'connection': OVPN},
                      {'name': 'p2', 'address': addresses('p2'), 'connection': SOCKS},
                      {'name': 'p3', 'address': addresses('p3')}],
        'pic_purge_peers': True}


@pytest.fixture(scope='module')
def role_exits(lab, cell, bulk):
    ovpn, proxies = server_plugin('openvpn'), server_plugin('proxies')
    reset_cell(cell)
    proxies.start_socks()
    playbook(inventory_dir(), role_vars())
    ovpn_routes = narrow_routes(ovpn.NODE, ['10.201.0.0/25', '10.201.0.128/25', 'fd00:201::/65',
                                           'fd00:201::8000:0:0:0/65'], 'ovpn0')
    socks_routes = narrow_routes(proxies.SOCKS_NODE, [piclab.wan_address('cell1', 4) + '/32'], 'wan0')
    narrow_path(ovpn.NODE, ovpn_routes)
    narrow_path(proxies.SOCKS_NODE, socks_routes)
    yield cell
    wide_path(ovpn.NODE, ovpn_routes)
    wide_path(proxies.SOCKS_NODE, socks_routes)
    reset_cell(cell)


def exit_mtu(cell, ifname):
    return int(cell.sh('cat', '/sys/class/net/%s/mtu' % ifname).stdout)


def test_openvpn_exit_with_a_narrow_path_moves_large_transfers(role_exits):
    assert wait_for(lambda: piclab.fetch('p1', 4) == server_plugin('openvpn').address(4), 20)
    assert exit_mtu(role_exits, 'pic-mss-ovpn') == NARROW
    assert [r['expr'][0]['match']['right'] for r in mss_rules(role_exits)] == ['pic-mss-ovpn']
    for family in (4, 6):
        for mode in ('down', 'up'):
            ok, result = complete('p1', mode, family)
            assert ok, (mode, family, result)
    # the monitor (run by the role) finds the clamp removed by hand and puts it back
    remove_clamp(role_exits)
    assert wait_for(lambda: len(mss_rules(role_exits)) == 1, 10)
    assert complete('p1', 'down')[0]


def test_proxy_exit_with_a_narrow_path_moves_large_transfers(role_exits):
    proxies = server_plugin('proxies')
    assert wait_for(lambda: piclab.fetch('p2', 4) == proxies.address(proxies.SOCKS_NODE, 4), 20)
    for mode in ('down', 'up'):       # IPv4: the lab's redsocks carries no IPv6
        ok, result = complete('p2', mode, 4)
        assert ok, (mode, result)
