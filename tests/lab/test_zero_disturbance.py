# -*- coding: utf-8 -*-
"""Zero disturbance (issue 14 item 3): changing other peers and other exits never interrupts
an untouched peer's established flows through an untouched exit.

p1 uses "Steady" (wireguard_ext, the lab's exit server) and keeps, over IPv4 and IPv6 at
once, a long-running TCP stream from the internet (lab/piclab/steady_server.py: a paced
pattern, every byte checked by lab/piclab/steady_client.py, which reports a reset, an early
end, a corrupt byte and the longest wait between two reads) and a steady UDP and ICMP echo
flow with sequence numbers (25 a second each), whose echoes from the internet are counted.
While they run, one change is made to everything else of the cell; afterwards not one UDP
datagram or ICMP echo may be missing, the TCP stream must be intact and never stalled.

The changes:

* the incremental path (only set and map elements change): 100 other peers moved between
  two other connections ("Other", wireguard_ext with the v4-only config of the exit server,
  and "Third", a proxy exit), and 100 peers added and removed;
* the full-replace path (chains and rules change): a new connection created and 100 peers
  moved onto it, then removed again;
* another exit reconfigured: "Other" gets a new config (its WireGuard interface is set up again).

A negative shows the measurement sees an interruption: Steady's interface down for a second
loses echoes and stalls the stream; a control run (no change) shows the flows alone lose nothing.
Known: the element-update run lost echoes twice on a heavily loaded lab (reported as XFAIL with
the counts and the module runs' times, see the test).
"""
import json
import os
import select
import subprocess
import time

import pytest

from conftest import Cell, piclab, reset_cell

STEADY, OTHER, THIRD, FOURTH = 'Steady', 'Other', 'Third', 'Fourth'
PORT = 9300
RATE = 25           # UDP datagrams and ICMP echoes per second, each family
SETTLE = 3          # seconds of flow before the change, and after it
MAX_SECONDS = 600   # the flows' own limit (they stop when the test says so)
MAX_STALL = 2.5     # seconds without a byte of the 800 kB/s stream (TCP's retransmission backoff after a loss
                    # grows past it; a CPU-starved wireguard-go on a loaded 2-core machine stays below)
MOVED = 100
LAB_DIR = os.path.dirname(piclab.__file__)
SERVER = os.path.join(LAB_DIR, 'steady_server.py')
CLIENT = os.path.join(LAB_DIR, 'steady_client.py')
UPDATE = 'update nftables elements of inet pic_connectivity'
REPLACE = 'replace nftables table inet pic_connectivity'


def exit_conf(v4only=False):
    with open(piclab.exit_config_path('cell1', v4only=v4only)) as handle:
        return handle.read()


def others(count=MOVED, first=150):
    """Peers that only exist in the registry (addresses of the peer network no lab peer uses)."""
    return [{'peer': 'z%d' % i, 'address': ['10.0.0.%d/32' % (first + i)]} for i in range(count)]


def assign(cell, items, connection):
    """``cell``: a Cell or Windows."""
    return cell.module('pic_peer_exit', {'peers': [dict(item, connection=connection) for item in items]})


@pytest.fixture(scope='module')
def server(lab):
    piclab.spawn('inet', 'steadyflow', ['python3', SERVER, str(PORT), piclab.SERVER_V4, piclab.SERVER_V6])
    time.sleep(0.5)
    yield
    piclab.stop('inet', 'steadyflow')


@pytest.fixture
def steady(lab, server):
    cell = reset_cell(Cell('cell1'))
    cell.module('pic_connection', {'name': STEADY, 'type': 'wireguard_ext', 'config': {'wg_config': exit_conf()}})
    cell.module('pic_connection', {'name': OTHER, 'type': 'wireguard_ext', 'config': {'wg_config': exit_conf(True)}})
    cell.module('pic_connection', {'name': THIRD, 'type': 'proxy', 'config': {'host': '192.0.2.10', 'port': 1080}})
    cell.module('pic_peer_exit', {'peers': [{'peer': 'p1', 'connection': STEADY,
                                             'address': [piclab.peer_address('p1', 4) + '/32',
                                                         piclab.peer_address('p1', 6) + '/128']}]})
    assign(cell, others(), OTHER)
    try:
        yield cell
    finally:
        reset_cell(cell)


class Flows(object):
    """steady_client in p1, one per family, started and waited for."""

    def __init__(self):
        node = piclab.peer_node('p1', 'cell1')
        self.procs = [subprocess.Popen([piclab.NSEXEC, node, piclab.PYTHON, CLIENT, piclab.server_address(family),
                                        str(PORT), str(MAX_SECONDS), str(RATE)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       start_new_session=True) for family in (4, 6)]
        deadline = time.time() + 60
        for proc in self.procs:
            ready, _w, _x = select.select([proc.stderr], [], [], max(0.1, deadline - time.time()))
            line = proc.stderr.readline() if ready else ''
            assert line.strip() == 'ready', 'the steady flow did not start: %r' % line
        self.started = time.time()

    def results(self):
        out = []
        for proc in self.procs:
            proc.stdin.close()   # both stop sending now
            proc.stdin = None
        for proc in self.procs:
            stdout, stderr = proc.communicate(timeout=60)
            assert proc.returncode == 0, stderr
            out.append(json.loads(stdout))
        return dict(zip((4, 6), out))


def lost_at(res, kind):
    """When the first lost echoes of ``kind`` were sent (wall clock, as the change windows)."""
    return ['%.2f' % (res['started'] + seq / res['rate']) for seq in res['%s_lost' % kind][:5]]


def undisturbed(results):
    """What went wrong with the flows (nothing: [])."""
    wrong = []
    for family, res in sorted(results.items()):
        if res['sent'] < RATE * SETTLE:
            wrong.append('ipv%d: only %d echoes sent' % (family, res['sent']))
        for kind in ('udp', 'icmp'):
            if res['%s_lost' % kind]:
                wrong.append('ipv%d: %d of %d %s echoes lost (seq %s, sent at %s)'
                             % (family, len(res['%s_lost' % kind]), res['sent'], kind, res['%s_lost' % kind][:10],
                                ', '.join(lost_at(res, kind))))
        if res['tcp_error'] or res['tcp_ended'] or res['tcp_corrupt']:
            wrong.append('ipv%d: TCP stream broken: %s' % (family, res))
        if res['tcp_max_gap'] > MAX_STALL:
            wrong.append('ipv%d: TCP stream stalled for %.2f s' % (family, res['tcp_max_gap']))
    return wrong


def during_flows(change):
    """Start p1's flows, make ``change()`` once they settled; (its result, the flows' results)."""
    flows = Flows()
    time.sleep(SETTLE)
    outcome = change()
    time.sleep(SETTLE)
    return outcome, flows.results()


class Windows(object):
    """The wall-clock windows of the module runs of a change (to tell when a loss happened)."""

    def __init__(self, cell):
        self.cell, self.spans = cell, []

    def module(self, name, args):
        start = time.time()
        result = self.cell.module(name, args)
        self.spans.append('%s %.2f-%.2f' % (name, start, time.time()))
        return result


def changes_of(*results):
    return [line for result in results for line in result['changes']]


def test_the_flows_alone_lose_nothing(steady):
    """The control: the same flows for as long, nothing changed."""
    _none, results = during_flows(lambda: time.sleep(10))
    assert undisturbed(results) == [], results


def test_moving_100_peers_is_an_element_update_that_disturbs_nobody(steady):
    cell = Windows(steady)

    def change():
        moved = assign(cell, others(), THIRD)
        added = assign(cell, others(MOVED, 50), OTHER)
        back = assign(cell, others(), OTHER)
        removed = cell.module('pic_peer_exit', {'peers': [{'peer': i['peer'], 'state': 'absent'}
                                                          for i in others(MOVED, 50)]})
        return changes_of(moved, added, back, removed)
    changes, results = during_flows(change)
    assert changes and all(line.startswith(UPDATE) for line in changes), changes
    # (strict since two full lab runs on a quiet machine lost nothing; under a load of 40-70 echoes were
    # once lost for 0.5-1.8 s during the first run, the TCP stream intact: the senders starved)
    assert undisturbed(results) == [], (undisturbed(results), cell.spans)


def test_a_new_connection_replaces_the_table_and_disturbs_nobody(steady):
    cell = Windows(steady)

    def change():
        created = cell.module('pic_connection', {'name': FOURTH, 'type': 'proxy',
                                                 'config': {'host': '192.0.2.11', 'port': 1080}})
        moved = assign(cell, others(), FOURTH)
        back = assign(cell, others(), OTHER)
        removed = cell.module('pic_connection', {'name': FOURTH, 'state': 'absent'})
        return changes_of(created, moved, back, removed)
    changes, results = during_flows(change)
    assert sum(1 for line in changes if line.startswith(REPLACE)) >= 2, changes
    assert undisturbed(results) == [], (results, cell.spans)


def test_reconfiguring_another_exit_disturbs_nobody(steady):
    cell = Windows(steady)
    other_if = json.loads(steady.registry_bytes())['connections']['other']['interface']

    def change():
        conf = exit_conf(True).replace('[Interface]\n', '[Interface]\nMTU = 1380\n', 1)
        return changes_of(cell.module('pic_connection', {'name': OTHER, 'config': {'wg_config': conf}}))
    changes, results = during_flows(change)
    assert any(other_if in line for line in changes), changes
    assert undisturbed(results) == [], (results, cell.spans)


def test_the_measurement_sees_an_interruption(steady):
    """The negative: Steady's own interface down for a second."""
    cell = steady
    steady_if = json.loads(cell.registry_bytes())['connections']['steady']['interface']

    def change():
        cell.sh('ip', 'link', 'set', steady_if, 'down')
        time.sleep(1)
        cell.sh('ip', 'link', 'set', steady_if, 'up')
        cell.module('pic_peer_exit', {'peers': []})   # the routes of its table back (the kernel dropped them)
    _none, results = during_flows(change)
    wrong = undisturbed(results)
    assert any('udp echoes lost' in w for w in wrong) and any('icmp echoes lost' in w for w in wrong), results
