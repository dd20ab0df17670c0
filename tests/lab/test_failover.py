# -*- coding: utf-8 -*-
"""Ordered failover per connection (issue 13 item 3), proven with packets.

"Primary" (wireguard_ext, the lab's full exit config: tunnel address 10.200.0.11)
falls back to "Fallback" (wireguard_ext, the v4-only config of the same exit server:
10.200.1.1). Two virtual peers of Primary send all the time (TCP SYN, UDP, DNS,
ICMP, both families, every 50 ms): one fail-closed, one fail-open. The exit server
(wgexit) counts what each tunnel delivers, by tunnel source and destination; the
internet counts what arrives, by source. A fault is an exit that drops what its
tunnel brings (its interface on the cell stays up: only the monitor's probe of
``health_target`` sees it). Transitions, with the monitor running (interval 0.5 s,
fail after 2, recover after 2):

1. Primary fails: both peers carried by Fallback (the failover time measured from
   the fault to the first packet of the fail-closed peer through Fallback);
2. Fallback fails too: the fail-closed peer is blocked, the fail-open one reaches
   the WAN;
3. Fallback recovers: both carried by it again;
4. Primary recovers: both back on Primary.

At no instant does a packet of the fail-closed peer leave the cell by its WAN interface
(counted there) or reach the internet from another source than an exit. The same for a
proxy primary (the lab's SOCKS server stops) and a relay primary (the link to cell2 goes
away), each with the WireGuard fallback, and for Primary with an openvpn fallback (the
same four transitions; the OpenVPN server drops what its tunnel brings). The times go to
build/failover-times.json.
"""
import contextlib
import json
import os
import sys
import time

import pytest

from conftest import (ROOT, Cell, FlowCounter, Senders, VirtualPeer, add_virtual_peers, exit_path_report, piclab,
                      registry_doc, remove_virtual_peers, reset_cell, wait_for)
from exit_helpers import inventory_dir, playbook, server_plugin

PROXIES = server_plugin('proxies')
OVPN = server_plugin('openvpn')
SOCKS = 'Exit SOCKS'
sys.path.insert(0, os.path.join(ROOT, 'lab', 'servers'))
import links as lablinks  # noqa: E402
RELAY_CELLS = ['cell1', 'cell2', 'cell3']

PRIMARY, FALLBACK = 'Primary', 'Fallback'
PRIMARY_SRC, FALLBACK_SRC = piclab.exit_client_address('cell1', 4), piclab.exit_client_address('cell1', 4, True)
PRIMARY_SRC6 = piclab.exit_client_address('cell1', 6)
OUT_DIR = os.environ.get('PIC_FAILOVER_DIR', os.path.join(ROOT, 'build'))
SEND_INTERVAL = 0.05

# At the exit server: what each tunnel delivers (source . destination), and a chain
# where a fault drops what one tunnel brings.
_EXIT_TABLE = """table inet failover {
    set via4 { type ipv4_addr . ipv4_addr; flags dynamic; counter; size 4096; }
    chain fault {
        type filter hook prerouting priority raw; policy accept;
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname "wg0" update @via4 { ip saddr . ip daddr }
    }
}
"""


def exit_conf(v4only):
    with open(piclab.exit_config_path('cell1', v4only=v4only)) as handle:
        return handle.read()


def via(dst):
    """{tunnel source: packets} the exit server forwarded to ``dst`` so far."""
    out = {}
    cp = piclab.run('wgexit', 'nft', '-j', 'list', 'set', 'inet', 'failover', 'via4', check=False)
    try:
        doc = json.loads(cp.stdout)
    except ValueError:
        return out
    for item in doc.get('nftables', []):
        for elem in (item.get('set') or {}).get('elem', []):
            inner = elem.get('elem', {})
            key = inner.get('val', {}).get('concat')
            if key and key[1] == dst:
                out[key[0]] = (inner.get('counter') or {}).get('packets', 0)
    return out


def fault(src, on):
    """Drop (or stop dropping) at the exit server what the tunnel of ``src`` brings."""
    piclab.run('wgexit', 'nft', 'flush', 'chain', 'inet', 'failover', 'fault')
    for address in src if on else []:
        family = 'ip6' if ':' in address else 'ip'
        piclab.run('wgexit', 'nft', 'add', 'rule', 'inet', 'failover', 'fault',
                   'iifname', 'wg0', family, 'saddr', address, 'drop')


# What leaves the cell by its WAN interface towards a peer's destination: the kill switch
# at the cell itself (a fail-closed peer's count must stay 0).
_CELL_WAN = """table inet fo_wan {
    set out4 { type ipv4_addr; flags dynamic; counter; size 64; }
    set out6 { type ipv6_addr; flags dynamic; counter; size 64; }
    chain postrouting {
        type filter hook postrouting priority 400; policy accept;
        oifname "%s" update @out4 { ip daddr }
        oifname "%s" update @out6 { ip6 daddr }
    }
}
""" % (piclab.WAN_IF, piclab.WAN_IF)


def wan_out(vpeer):
    """Packets the cell sent out of its WAN interface to ``vpeer``'s destinations."""
    cp = piclab.run('cell1', 'nft', '-j', 'list', 'table', 'inet', 'fo_wan', check=False)
    total = 0
    for item in json.loads(cp.stdout or '{}').get('nftables', []):
        for elem in (item.get('set') or {}).get('elem', []):
            inner = elem.get('elem', {})
            if inner.get('val') in (vpeer.dst4, vpeer.dst6):
                total += (inner.get('counter') or {}).get('packets', 0)
    return total


# A packet that went through an exit tunnel reaches the internet from the exit server's
# address, or (the exit server's masquerade skips what its conntrack finds invalid, say the
# late FIN of a flow it forgot while its tunnel was faulted) from the tunnel address.
THROUGH_AN_EXIT = (piclab.exit_address(4), piclab.exit_address(6), PRIMARY_SRC, PRIMARY_SRC6, FALLBACK_SRC)


def leaked(counter, vpeer):
    """Packets of ``vpeer`` out of the cell's WAN interface, and those that reached the
    internet from another source than through an exit (the cell's WAN address, the peer's own)."""
    found = dict((src, n) for (src, dst), n in counter.sample().items()
                 if dst in (vpeer.dst4, vpeer.dst6) and src not in THROUGH_AN_EXIT and n)
    out = wan_out(vpeer)
    if out:
        found['out of the cell\'s WAN interface'] = out
    return found


def from_wan(counter, vpeer):
    return counter.sample().get((piclab.wan_address('cell1', 4), vpeer.dst4), 0)


def arrived(counter, vpeer):
    """A sampler: {source: packets} the internet got for ``vpeer``'s IPv4 destination so far."""
    return lambda: dict((src, n) for (src, dst), n in counter.sample().items() if dst == vpeer.dst4)


def leaks(counter, vpeer, allowed):
    """Packets of ``vpeer`` that reached the internet from a source not in ``allowed``
    (the exits of the test), and those out of the cell's WAN interface."""
    found = dict((k, n) for k, n in counter.sample().items()
                 if k[1] in (vpeer.dst4, vpeer.dst6) and k[0] not in allowed and n)
    if wan_out(vpeer):
        found['out of the cell\'s WAN interface'] = wan_out(vpeer)
    return found


def growing(sample, key, seconds=1.0):
    """Does ``sample()[key]`` grow within ``seconds``?"""
    before = sample().get(key, 0)
    time.sleep(seconds)
    return sample().get(key, 0) > before


def arrival(sample, key, since, timeout=20.0):
    """Seconds from ``since`` until ``sample()[key]`` grows (None if it does not)."""
    before = sample().get(key, 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sample().get(key, 0) > before:
            return round(time.monotonic() - since, 2)
        time.sleep(0.05)
    return None


def held_down(cell):
    try:
        with open(os.path.join(cell.state_dir, 'runtime.json')) as handle:
            return sorted(json.load(handle).get('down') or [])
    except (OSError, ValueError):
        return None


@pytest.fixture(scope='module')
def traffic(lab):
    """A fail-closed and a fail-open virtual peer of p1, counted at the exit server and the internet."""
    piclab.nft_replace('wgexit', 'inet failover', _EXIT_TABLE)
    vclosed = VirtualPeer(40, 'cell1', 'p1', 'fo-closed')
    vopen = VirtualPeer(41, 'cell1', 'p1', 'fo-open', fail_open=True)
    vpeers = [vclosed, vopen]
    add_virtual_peers(vpeers)
    counter = FlowCounter(vpeers)
    counter.install()
    piclab.nft_replace('cell1', 'inet fo_wan', _CELL_WAN)
    try:
        yield vclosed, vopen, counter
    finally:
        piclab.run('cell1', 'nft', 'delete', 'table', 'inet', 'fo_wan', check=False)
        counter.remove()
        remove_virtual_peers(vpeers)
        piclab.run('wgexit', 'nft', 'delete', 'table', 'inet', 'failover', check=False)


def count_from_now(counter):
    """Both counters from zero: what a peer sent while an earlier test left it on the default
    gateway (its kernel still retransmits the FINs of the sender's last connections) is no
    packet of this test."""
    print('counted before this test: %r' % {'wan out': wan_out_all(), 'internet': counter.sample()})
    counter.install()
    piclab.nft_replace('cell1', 'inet fo_wan', _CELL_WAN)


def wan_out_all():
    cp = piclab.run('cell1', 'nft', '-j', 'list', 'table', 'inet', 'fo_wan', check=False)
    return sum((e.get('elem', {}).get('counter') or {}).get('packets', 0)
               for item in json.loads(cp.stdout or '{}').get('nftables', [])
               for e in (item.get('set') or {}).get('elem', []))


def peer_records(vpeers, conn):
    return [dict(v.record, peer=v.name, address=v.addresses(), connection=conn) for v in vpeers]


@contextlib.contextmanager
def sending(cell, counter, vpeers, monitor=True):
    """While in it: the cell's own monitor (interval 0.5 s, fail and recover after 2;
    ``monitor=False``: the role's runs already), both counters from zero and the
    senders of ``vpeers``; stopped on the way out, before the caller's teardown."""
    proc = cell.cli('monitor', '--interval', '0.5', '--fail-after', '2', '--recover-after', '2',
                    background=True) if monitor else None
    senders = None
    try:
        count_from_now(counter)
        senders = Senders(vpeers, SEND_INTERVAL)
        yield
    finally:
        if senders is not None:
            senders.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(10)


def to_default(cell, vpeers):
    cell.module('pic_peer_exit', {'peers': [{'peer': v.name, 'address': v.addresses(), 'connection': 'default'}
                                            for v in vpeers]})


@pytest.fixture
def failover(cell, traffic):
    reset_cell(cell)
    vclosed, vopen, counter = traffic
    vpeers = [vclosed, vopen]
    for name, v4only in ((PRIMARY, False), (FALLBACK, True)):
        cell.module('pic_connection', {'name': name, 'type': 'wireguard_ext',
                                       'config': {'wg_config': exit_conf(v4only), 'health_target': piclab.EXIT_TUN_V4}})
    cell.module('pic_connection', {'name': PRIMARY, 'fallback': [FALLBACK]})
    cell.module('pic_peer_exit', {'peers': peer_records(vpeers, PRIMARY)})
    try:
        with sending(cell, counter, vpeers):
            yield cell, vclosed, vopen, counter
    finally:
        fault([], False)
        to_default(cell, vpeers)
        cell.module('pic_connection', {'name': PRIMARY, 'fallback': []})
        for name in (PRIMARY, FALLBACK):
            cell.module('pic_connection', {'name': name, 'state': 'absent'})


def test_interface_to_interface_failover_and_back_never_leaks(failover):
    cell, vclosed, vopen, counter = failover
    closed_via, open_via = (lambda: via(vclosed.dst4)), (lambda: via(vopen.dst4))
    times = {}
    # 0. both on Primary
    assert wait_for(lambda: growing(closed_via, PRIMARY_SRC) and growing(open_via, PRIMARY_SRC), 20), \
        (closed_via(), open_via(), cell.sh('wg', 'show').stdout)
    assert leaked(counter, vclosed) == {}

    # 1. Primary fails: Fallback carries both
    start = time.monotonic()
    fault([PRIMARY_SRC, PRIMARY_SRC6], True)
    times['primary_down_to_fallback'] = arrival(closed_via, FALLBACK_SRC, start)
    assert times['primary_down_to_fallback'] is not None, (held_down(cell), closed_via(), cell.nft_table())
    assert wait_for(lambda: growing(open_via, FALLBACK_SRC), 10), open_via()
    assert held_down(cell) == ['primary']
    assert not growing(closed_via, PRIMARY_SRC) and leaked(counter, vclosed) == {}
    wan_before = from_wan(counter, vopen)
    assert not growing(lambda: {'wan': from_wan(counter, vopen)}, 'wan'), 'the fail-open peer went to the WAN'

    # 2. Fallback fails too: the fail-closed peer blocked, the fail-open one on the WAN
    start = time.monotonic()
    fault([PRIMARY_SRC, PRIMARY_SRC6, FALLBACK_SRC], True)
    times['both_down_to_wan_fail_open'] = arrival(lambda: {'wan': from_wan(counter, vopen)}, 'wan', start)
    assert times['both_down_to_wan_fail_open'] is not None and from_wan(counter, vopen) > wan_before
    assert held_down(cell) == ['fallback', 'primary']
    assert wan_out(vopen) > 0                          # the cell-side counter counts
    assert leaked(counter, vclosed) == {}

    # 3. Fallback recovers: it carries both again
    start = time.monotonic()
    fault([PRIMARY_SRC, PRIMARY_SRC6], True)
    times['fallback_up_to_fallback'] = arrival(closed_via, FALLBACK_SRC, start)
    assert times['fallback_up_to_fallback'] is not None, (held_down(cell), closed_via())
    assert wait_for(lambda: not growing(lambda: {'wan': from_wan(counter, vopen)}, 'wan'), 10)
    assert leaked(counter, vclosed) == {}

    # 4. Primary recovers: back to Primary
    start = time.monotonic()
    fault([], False)
    times['primary_up_to_primary'] = arrival(closed_via, PRIMARY_SRC, start)
    assert times['primary_up_to_primary'] is not None, (held_down(cell), closed_via())
    assert wait_for(lambda: not growing(closed_via, FALLBACK_SRC), 10), closed_via()
    assert wait_for(lambda: growing(open_via, PRIMARY_SRC), 10), open_via()
    assert held_down(cell) == []

    assert leaked(counter, vclosed) == {}, 'the fail-closed peer leaked'
    assert counter.sample().get((piclab.exit_address(4), vclosed.dst4), 0) > 0     # the counter counts
    record('wireguard_ext->wireguard_ext', times, 'interval 0.5 s, fail after 2, recover after 2')


def proxy_vars(vpeers, state='present'):
    info = PROXIES.info(PROXIES.SOCKS_NODE)
    socks = {'name': SOCKS, 'type': 'proxy', 'fallback': [FALLBACK],
             'config': dict((k, info[k]) for k in ('host', 'port', 'proxy_type', 'username', 'password'))}
    fallback = {'name': FALLBACK, 'type': 'wireguard_ext',
                'config': {'wg_config': exit_conf(True), 'health_target': piclab.EXIT_TUN_V4}}
    if state == 'absent':
        # (a connection before its fallback: a fallback still named is not deleted)
        return {'pic_connections': [{'name': SOCKS, 'state': 'absent'}, {'name': FALLBACK, 'state': 'absent'}],
                'pic_peers': [], 'pic_purge_peers': True}
    return {'pic_connections': [socks, fallback], 'pic_peers': [dict(v.record, name=v.name, address=v.addresses(),
                                                                     connection=SOCKS) for v in vpeers],
            'pic_purge_peers': True}


@pytest.fixture
def proxy_failover(cell, traffic):
    reset_cell(cell)
    vclosed, vopen, counter = traffic
    PROXIES.start_socks()
    inventory = inventory_dir()
    playbook(inventory, proxy_vars([vclosed, vopen]))
    try:
        with sending(cell, counter, [vclosed, vopen], monitor=False):
            yield cell, vclosed, vopen, counter
    finally:
        PROXIES.start_socks()
        playbook(inventory, proxy_vars([vclosed, vopen], 'absent'))


def test_proxy_to_interface_failover_and_back_never_leaks(proxy_failover):
    """The SOCKS proxy stops (its instance's guard stops redsocks, the monitor of the
    role holds the connection down): the peers go through the WireGuard fallback, and
    back through the proxy when it answers again."""
    cell, vclosed, vopen, counter = proxy_failover
    proxy = PROXIES.address(PROXIES.SOCKS_NODE, 4)
    allowed = (proxy, piclab.exit_address(4), piclab.exit_address(6)) + THROUGH_AN_EXIT
    closed_at, open_at = arrived(counter, vclosed), arrived(counter, vopen)

    def proxy_leaks():
        return leaks(counter, vclosed, allowed)
    times = {}
    print('proxy: before: wan_out %d, leaks %r' % (wan_out(vclosed), proxy_leaks()))
    assert wait_for(lambda: growing(closed_at, proxy) and growing(open_at, proxy), 30), \
        (closed_at(), cell.nft_table())
    print('proxy: up: wan_out %d, leaks %r' % (wan_out(vclosed), proxy_leaks()))
    assert proxy_leaks() == {}, (cell.nft_table(), cell.sh('ip', 'rule').stdout, held_down(cell))
    start = time.monotonic()
    PROXIES.stop_socks()
    times['proxy_down_to_fallback'] = arrival(closed_at, piclab.exit_address(4), start, 30)
    assert times['proxy_down_to_fallback'] is not None, (held_down(cell), closed_at())
    assert wait_for(lambda: growing(open_at, piclab.exit_address(4)), 10), open_at()
    assert wait_for(lambda: growing(closed_via_exit(vclosed), FALLBACK_SRC), 10)
    assert not growing(open_at, piclab.wan_address('cell1', 4)), 'the fail-open peer went to the WAN'
    assert proxy_leaks() == {}
    start = time.monotonic()
    PROXIES.start_socks()
    times['proxy_up_to_proxy'] = arrival(closed_at, proxy, start, 30)
    assert times['proxy_up_to_proxy'] is not None, (held_down(cell), closed_at())
    assert wait_for(lambda: not growing(closed_at, piclab.exit_address(4)), 10), closed_at()
    assert proxy_leaks() == {}, 'the fail-closed peer leaked'
    record('proxy->wireguard_ext', times, "the role's monitor (interval 1 s, fail after 2, recover after 2)")


def link_cells(offer=True):
    """cell2 offers its exit to cell1 (the relay "cell2"); cell3 is linked and offers nothing."""
    cells = dict((name, Cell(name)) for name in RELAY_CELLS)
    links = [{'cell': 'cell1', 'interface': 'cl-cell1', 'offer_exit': True}] if offer else []
    cells['cell2'].module('pic_cell_link', {'links': links, 'known_cells': RELAY_CELLS})
    cells['cell3'].module('pic_cell_link', {'links': [{'cell': 'cell1', 'interface': 'cl-cell1'}] if offer else [],
                                            'known_cells': RELAY_CELLS})
    links = [{'cell': 'cell2', 'interface': 'cl-cell2', 'remote_offers_exit': True},
             {'cell': 'cell3', 'interface': 'cl-cell3', 'remote_offers_exit': False}] if offer else []
    return cells['cell1'].module('pic_cell_link', {'links': links, 'known_cells': RELAY_CELLS})


@pytest.fixture
def relay_failover(cell, traffic):
    reset_cell(cell)
    vclosed, vopen, counter = traffic
    vpeers = [vclosed, vopen]
    assert [r['id'] for r in link_cells()['relays']] == ['cell2']
    cell.module('pic_connection', {'name': FALLBACK, 'type': 'wireguard_ext',
                                   'config': {'wg_config': exit_conf(True), 'health_target': piclab.EXIT_TUN_V4}})
    cell.module('pic_connection', {'name': 'cell2', 'fallback': [FALLBACK]})
    cell.module('pic_peer_exit', {'peers': peer_records(vpeers, 'cell2')})
    try:
        with sending(cell, counter, vpeers):
            yield cell, vclosed, vopen, counter
    finally:
        lablinks.up(3)
        to_default(cell, vpeers)
        cell.module('pic_connection', {'name': 'cell2', 'fallback': []})
        cell.module('pic_connection', {'name': FALLBACK, 'state': 'absent'})
        link_cells(offer=False)


def test_relay_to_interface_failover_and_back_never_leaks(relay_failover):
    """The link to cell2 goes away (the relay's interface is missing: down at once): the
    peers go through the WireGuard fallback, and back through cell2 when the link is up."""
    cell, vclosed, vopen, counter = relay_failover
    remote = piclab.wan_address('cell2', 4)
    allowed = (remote, piclab.wan_address('cell2', 6)) + THROUGH_AN_EXIT
    closed_at, open_at = arrived(counter, vclosed), arrived(counter, vopen)

    def relay_leaks():
        return leaks(counter, vclosed, allowed)
    times = {}
    assert wait_for(lambda: growing(closed_at, remote) and growing(open_at, remote), 30), \
        (closed_at(), cell.nft_table())
    assert relay_leaks() == {}
    start = time.monotonic()
    lablinks.link_down(1, 2)
    times['relay_down_to_fallback'] = arrival(closed_at, piclab.exit_address(4), start, 30)
    assert times['relay_down_to_fallback'] is not None, (held_down(cell), closed_at())
    assert wait_for(lambda: growing(open_at, piclab.exit_address(4)), 10), open_at()
    assert not growing(open_at, piclab.wan_address('cell1', 4)), 'the fail-open peer went to the WAN'
    assert relay_leaks() == {}
    start = time.monotonic()
    lablinks.up(3)
    times['relay_up_to_relay'] = arrival(closed_at, remote, start, 30)
    assert times['relay_up_to_relay'] is not None, (held_down(cell), closed_at())
    assert wait_for(lambda: not growing(closed_at, piclab.exit_address(4)), 10), closed_at()
    assert relay_leaks() == {}, 'the fail-closed peer leaked'
    record('cell_relay->wireguard_ext', times, 'interval 0.5 s, fail after 2, recover after 2 (a missing link: '
           'down at once)')


# -- wireguard_ext -> openvpn ----------------------------------------------------------
OVPN_FALLBACK, OVPN_ID = 'Fallback OVPN', 'fallback-ovpn'
# At the OpenVPN server: a chain where a fault drops what the cells' tunnels bring
# (the client's tunnel stays up: only the monitor's probe of health_target sees it).
_OVPN_TABLE = """table inet failover {
    chain fault {
        type filter hook prerouting priority raw; policy accept;
    }
}
"""


def ovpn_fault(on):
    """Drop (or stop dropping) at the OpenVPN server everything its tunnels bring."""
    piclab.run(OVPN.NODE, 'nft', 'flush', 'chain', 'inet', 'failover', 'fault')
    if on:
        piclab.run(OVPN.NODE, 'nft', 'add', 'rule', 'inet', 'failover', 'fault', 'iifname', 'ovpn0', 'drop')


def ovpn_vars(vpeers, state='present'):
    if state == 'absent':
        return {'pic_connections': [{'name': PRIMARY, 'state': 'absent'}, {'name': OVPN_FALLBACK, 'state': 'absent'}],
                'pic_peers': [], 'pic_purge_peers': True}
    primary = {'name': PRIMARY, 'type': 'wireguard_ext', 'fallback': [OVPN_FALLBACK],
               'config': {'wg_config': exit_conf(False), 'health_target': piclab.EXIT_TUN_V4}}
    fallback = {'name': OVPN_FALLBACK, 'type': 'openvpn',
                'config': {'ovpn_config': OVPN.client_config('cell1'), 'health_target': OVPN.TUN_V4}}
    return {'pic_connections': [primary, fallback], 'pic_purge_peers': True,
            'pic_peers': [dict(v.record, name=v.name, address=v.addresses(), connection=PRIMARY) for v in vpeers]}


@pytest.fixture
def openvpn_failover(cell, traffic):
    reset_cell(cell)
    vclosed, vopen, counter = traffic
    piclab.nft_replace(OVPN.NODE, 'inet failover', _OVPN_TABLE)
    inventory = inventory_dir()
    playbook(inventory, ovpn_vars([vclosed, vopen]))
    try:
        with sending(cell, counter, [vclosed, vopen], monitor=False):
            yield cell, vclosed, vopen, counter
    finally:
        fault([], False)
        ovpn_fault(False)
        playbook(inventory, ovpn_vars([vclosed, vopen], 'absent'))
        piclab.run(OVPN.NODE, 'nft', 'delete', 'table', 'inet', 'failover', check=False)


def tunnel_addresses(cell, ifname):
    """The addresses of interface IFNAME on the cell (none while it is missing)."""
    cp = cell.sh('ip', '-j', 'addr', 'show', 'dev', ifname, check=False)
    if cp.returncode != 0 or not cp.stdout.strip():
        return ()
    return tuple(a['local'] for item in json.loads(cp.stdout) for a in item.get('addr_info', [])
                 if a.get('scope') == 'global')


def test_interface_to_openvpn_failover_and_back_never_leaks(openvpn_failover):
    """Primary (wireguard_ext) falls back to an openvpn connection: the exit server drops
    Primary's tunnel (both peers carried by OpenVPN), the OpenVPN server drops its tunnel too
    (the fail-closed peer blocked, the fail-open one on the WAN), OpenVPN recovers (it
    carries both again), Primary recovers (both back on it); the role's monitor."""
    cell, vclosed, vopen, counter = openvpn_failover
    ovpn = OVPN.address(4)
    # a late packet of a flow the server's conntrack forgot may leave it unmasqueraded,
    # from the client's tunnel address (as THROUGH_AN_EXIT for the WireGuard server)
    ifname = registry_doc(cell)['connections'][OVPN_ID]['interface']
    # (the instance connects after the run: its tunnel and addresses come with OpenVPN's up hook)
    tunnel = wait_for(lambda: tunnel_addresses(cell, ifname), 60)
    assert tunnel, 'the OpenVPN instance of %s has no tunnel address' % OVPN_FALLBACK
    allowed = (ovpn, OVPN.address(6)) + tuple(tunnel) + THROUGH_AN_EXIT
    closed_at, open_at, closed_via = arrived(counter, vclosed), arrived(counter, vopen), closed_via_exit(vclosed)
    wan = piclab.wan_address('cell1', 4)
    times = {}
    # 0. both on Primary
    assert wait_for(lambda: growing(closed_via, PRIMARY_SRC) and growing(open_at, piclab.exit_address(4)), 30), \
        (closed_via(), open_at(), held_down(cell))
    assert leaks(counter, vclosed, allowed) == {}

    # 1. Primary fails: OpenVPN carries both
    start = time.monotonic()
    fault([PRIMARY_SRC, PRIMARY_SRC6], True)
    times['primary_down_to_openvpn'] = arrival(closed_at, ovpn, start, 30)
    assert times['primary_down_to_openvpn'] is not None, (held_down(cell), closed_at(), cell.nft_table())
    assert wait_for(lambda: growing(open_at, ovpn), 10), open_at()
    assert held_down(cell) == ['primary']
    assert not growing(closed_via, PRIMARY_SRC) and leaks(counter, vclosed, allowed) == {}
    assert not growing(open_at, wan), 'the fail-open peer went to the WAN'

    # 2. OpenVPN fails too: the fail-closed peer blocked, the fail-open one on the WAN
    start = time.monotonic()
    ovpn_fault(True)
    times['both_down_to_wan_fail_open'] = arrival(open_at, wan, start, 30)
    assert times['both_down_to_wan_fail_open'] is not None, (held_down(cell), open_at())
    assert held_down(cell) == sorted(['primary', OVPN_ID])
    assert not growing(closed_at, ovpn) and leaks(counter, vclosed, allowed) == {}

    # 3. OpenVPN recovers: it carries both again
    start = time.monotonic()
    ovpn_fault(False)
    times['openvpn_up_to_openvpn'] = arrival(closed_at, ovpn, start, 30)
    assert times['openvpn_up_to_openvpn'] is not None, (held_down(cell), closed_at())
    assert wait_for(lambda: not growing(open_at, wan), 10), open_at()
    assert wait_for(lambda: growing(open_at, ovpn), 10), open_at()
    assert leaks(counter, vclosed, allowed) == {}

    # 4. Primary recovers: back to Primary
    start = time.monotonic()
    fault([], False)
    times['primary_up_to_primary'] = arrival(closed_via, PRIMARY_SRC, start, 30)
    assert times['primary_up_to_primary'] is not None, (held_down(cell), closed_via(), exit_path_report(cell))
    assert wait_for(lambda: not growing(closed_at, ovpn), 10), closed_at()
    assert wait_for(lambda: growing(open_at, piclab.exit_address(4)), 10), open_at()
    assert held_down(cell) == []
    assert leaks(counter, vclosed, allowed) == {}, 'the fail-closed peer leaked'
    assert counter.sample().get((ovpn, vclosed.dst4), 0) > 0     # the counter counts
    record('wireguard_ext->openvpn', times, "the role's monitor (interval 1 s, fail after 2, recover after 2)")


def closed_via_exit(vpeer):
    return lambda: via(vpeer.dst4)


def record(transition, times, monitor):
    print('%s failover times (s): %s' % (transition, json.dumps(times, sort_keys=True)))
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, 'failover-times.json')
    data = {}
    if os.path.exists(path):
        with open(path) as handle:
            data = json.load(handle)
    data[transition] = dict(times, monitor=monitor, at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    with open(path, 'w') as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
