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

At no instant does a packet of the fail-closed peer reach the internet by any other
source than the exit server's. The times go to build/failover-times.json.
"""
import json
import os
import time

import pytest

from conftest import (ROOT, FlowCounter, Senders, VirtualPeer, add_virtual_peers, piclab, remove_virtual_peers,
                      reset_cell, wait_for)

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


def leaked(counter, vpeer):
    """Packets of ``vpeer`` that reached the internet from another source than the exit server."""
    allowed = (piclab.exit_address(4), piclab.exit_address(6))
    return dict((src, n) for (src, dst), n in counter.sample().items()
                if dst in (vpeer.dst4, vpeer.dst6) and src not in allowed and n)


def from_wan(counter, vpeer):
    return counter.sample().get((piclab.wan_address('cell1', 4), vpeer.dst4), 0)


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
def failover(cell):
    reset_cell(cell)
    piclab._nft_replace('wgexit', 'inet failover', _EXIT_TABLE)
    vclosed = VirtualPeer(40, 'cell1', 'p1', 'fo-closed', connection=PRIMARY)
    vopen = VirtualPeer(41, 'cell1', 'p1', 'fo-open', connection=PRIMARY, fail_open=True)
    vpeers = [vclosed, vopen]
    add_virtual_peers(vpeers)
    counter = FlowCounter(vpeers)
    counter.install()
    for name, v4only in ((PRIMARY, False), (FALLBACK, True)):
        cell.module('pic_connection', {'name': name, 'type': 'wireguard_ext',
                                       'config': {'wg_config': exit_conf(v4only), 'health_target': piclab.EXIT_TUN_V4}})
    cell.module('pic_connection', {'name': PRIMARY, 'fallback': [FALLBACK]})
    cell.module('pic_peer_exit', {'peers': [dict(v.record, peer=v.name, address=v.addresses()) for v in vpeers]})
    monitor = cell.cli('monitor', '--interval', '0.5', '--fail-after', '2', '--recover-after', '2', background=True)
    senders = Senders(vpeers, SEND_INTERVAL)
    try:
        yield cell, vclosed, vopen, counter
    finally:
        senders.stop()
        monitor.terminate()
        monitor.wait(10)
        fault([], False)
        cell.module('pic_peer_exit', {'peers': [{'peer': v.name, 'address': v.addresses(), 'connection': 'default'}
                                                for v in vpeers]})
        cell.module('pic_connection', {'name': PRIMARY, 'fallback': []})
        for name in (PRIMARY, FALLBACK):
            cell.module('pic_connection', {'name': name, 'state': 'absent'})
        counter.remove()
        remove_virtual_peers(vpeers)
        piclab.run('wgexit', 'nft', 'delete', 'table', 'inet', 'failover', check=False)


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
    record(times)


def record(times):
    print('failover times (s): %s' % json.dumps(times, sort_keys=True))
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, 'failover-times.json')
    data = {}
    if os.path.exists(path):
        with open(path) as handle:
            data = json.load(handle)
    data['wireguard_ext->wireguard_ext'] = dict(times, monitor='interval 0.5 s, fail after 2, recover after 2',
                                                at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    with open(path, 'w') as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
