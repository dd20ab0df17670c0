# -*- coding: utf-8 -*-
"""The tor exit end to end: a private Tor network in the lab (lab/servers/tor.py:
three directory authorities, two relays, one exit relay, TestingTorNetwork),
the cell's Tor run by the tor role through playbooks/site.yml, real packets.

Vars of every run: connection "Tor" (tor, fail-open by default); p1 on it
(fail-open, the tor default), p2 on it with fail_open: false, p3 on the
default gateway.  The file leaves the cell with no connection and every peer
on the default gateway, and stops the Tor network.
"""
import json
import os
import re
import stat
import subprocess
import time

import pytest

from conftest import piclab, wait_for, leak_count, quiet_counters
from exit_helpers import addresses, check_egress_proof, inventory_dir, playbook, run_play
from piclab import sources, via_wan

CONN = 'Tor'
TOR_TIMEOUT = 5      # seconds per request: a Tor circuit is slower than a tunnel
INSTANCE = 'pic-tor'



def _tor_network():
    for plugin in piclab.server_plugins():
        if plugin.__name__.endswith('_tor'):
            return plugin
    raise AssertionError('lab/servers/tor.py is missing')


TORNET = _tor_network()


# -- helpers ---------------------------------------------------------------------
def tor_vars(extra_settings=(), state='present'):
    peers_conn = CONN if state == 'present' else 'default'
    return {
        'pic_connections': [dict({'name': CONN, 'type': 'tor', 'config': {'socks_port': 9050}},
                                 **({'state': 'absent'} if state == 'absent' else {}))],
        'pic_peers': [
            {'name': 'p1', 'address': addresses('p1'), 'connection': peers_conn},
            {'name': 'p2', 'address': addresses('p2'), 'connection': peers_conn,
             'fail_open': False if state == 'present' else None},
            {'name': 'p3', 'address': addresses('p3'), 'connection': 'default'},
        ],
        'pic_purge_peers': True,
        'tor_dir_authorities': TORNET.authority_lines(),
        'tor_extra_settings': ['TestingTorNetwork 1'] + list(extra_settings),
    }


def via_tor(peer):
    return sources(peer, timeout=TOR_TIMEOUT) == (TORNET.exit_address(4), TORNET.exit_address(6))


def dns(peer, server, name='echo.piclab.test', qtype=1):
    cp = piclab.run(piclab.peer_node(peer, 'cell1'), piclab.PYTHON, piclab.DNS_QUERY, server, name, str(qtype), 'udp',
                    check=False, timeout=20)
    return cp.stdout.strip() or ('error ' + cp.stderr.strip()[-200:])




def tor_in_cell():
    """Pids of tor processes in the cell's namespace (the lab's Tor network runs tor too)."""
    out = subprocess.run(['ip', 'netns', 'pids', piclab.ns('cell1')], capture_output=True, text=True,
                         check=False).stdout
    pids = []
    for pid in out.split():
        try:
            with open('/proc/%s/comm' % pid) as handle:
                if handle.read().strip() == 'tor':
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


class Supervisor(object):
    def __init__(self, cell):
        self.cell = cell
        self.conf = os.path.join(cell.state_dir, 'supervisor', 'supervisord.conf')

    def ctl(self, *args):
        return self.cell.sh('supervisorctl', '-c', self.conf, *args, check=False).stdout

    def pid(self, program):
        match = re.search(r'RUNNING\s+pid (\d+)', self.ctl('status', program))
        return int(match.group(1)) if match else None


# -- fixtures ----------------------------------------------------------------------
@pytest.fixture(scope='module')
def tor_network(lab):
    started = time.monotonic()
    TORNET.start()
    ready = TORNET.wait_ready(60)
    print('private Tor network: consensus with the exit after %.1fs' % (time.monotonic() - started))
    yield {'ready_after': ready, 'total': time.monotonic() - started}
    TORNET.stop()


@pytest.fixture(scope='module')
def inventory(tor_network):
    path = inventory_dir()
    yield path
    subprocess.run(['rm', '-rf', path], check=False)


@pytest.fixture(scope='module')
def sup(cell):
    return Supervisor(cell)


# -- tests -------------------------------------------------------------------------
def test_private_tor_network_is_up(tor_network):
    assert tor_network['total'] < 60, tor_network
    assert sorted(TORNET.running()) == sorted(n for n, _h in TORNET.NODES)
    with open(TORNET.authorities_path()) as handle:
        assert len([line for line in handle if line.startswith('DirAuthority ')]) == 3
    assert stat.S_IMODE(os.stat(TORNET.authorities_path()).st_mode) == 0o600
    with open(TORNET.exit_info_path()) as handle:
        assert json.load(handle)['v4'] == TORNET.exit_address(4)


def test_site_converges_the_tor_exit(cell, inventory, sup):
    changed, _out = playbook(inventory, tor_vars())
    assert changed > 0
    assert sup.pid(INSTANCE), sup.ctl('status')
    assert wait_for(lambda: via_tor('p1'), 40, 1), sources('p1', timeout=TOR_TIMEOUT)
    assert via_tor('p2'), sources('p2', timeout=TOR_TIMEOUT)
    assert via_wan('p3'), sources('p3', timeout=TOR_TIMEOUT)
    torrc = os.path.join(cell.state_dir, 'tor', 'torrc')
    assert stat.S_IMODE(os.stat(torrc).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(cell.state_dir, 'tor', 'data')).st_mode) == 0o700
    with open(torrc) as handle:
        text = handle.read()
    conn = json.loads(cell.registry_bytes())['connections']['tor']
    assert 'TransPort 0.0.0.0:%d' % conn['local_port'] in text
    assert 'DNSPort 0.0.0.0:%d' % conn['dns_port'] in text
    assert 'SocksPort 127.0.0.1:9050' in text
    listening = cell.sh('ss', '-Hlntup').stdout
    for port in ('0.0.0.0:%d' % conn['local_port'], '0.0.0.0:%d' % conn['dns_port'], '127.0.0.1:9050'):
        assert re.search(re.escape(port) + r'\s.*"tor"', listening), listening


def test_dns_is_answered_by_tor_through_the_exit(lab):
    """Only the exit relay's resolver knows echo.piclab.test: a Tor peer's query to
    any resolver gets its answer; the same query from p3 goes to the WAN."""
    quiet_counters()
    for peer in ('p1', 'p2'):
        for server in (piclab.SERVER_ROUTER4, piclab.CELL_TUN_V4, piclab.SERVER_ROUTER6):
            assert dns(peer, server) == piclab.SERVER_V4, (peer, server)
        assert dns(peer, piclab.SERVER_ROUTER4, qtype=28) == piclab.SERVER_V6
    # .onion names are mapped by the cell's Tor itself (AutomapHostsOnResolve)
    assert dns('p1', piclab.SERVER_ROUTER4, 'lab.onion').startswith('10.')
    counts = piclab.counters()
    assert counts['v4'] + counts['v6'] == 0, counts
    # p3 (default gateway): the query leaves by the WAN (no answer, or the lab's DNS echo
    # answering with the cell's WAN address), never Tor's answer
    answer = dns('p3', piclab.SERVER_ROUTER4)
    assert answer == piclab.wan_address('cell1', 4) or answer.startswith('error'), answer
    assert piclab.counters()['by_source'].get(piclab.wan_address('cell1', 4), 0) > 0


def test_tor_peers_reach_the_internet_only_as_the_exit_relay(lab):
    exit_relay = set([TORNET.exit_address(4), TORNET.exit_address(6)])
    for peer in ('p1', 'p2'):
        quiet_counters()
        for family in (4, 6):
            piclab.send_probe(peer, family, count=3)   # TCP :80, UDP :53/:443, ICMP
            assert piclab.fetch(peer, family, timeout=10) == TORNET.exit_address(family)
        time.sleep(0.5)
        seen = piclab.counters()['by_source']
        assert seen and set(seen) <= exit_relay, (peer, seen)


def test_unchanged_run_restarts_nothing(inventory, sup):
    before = sup.pid(INSTANCE), sup.pid('pic-monitor')
    changed, out = playbook(inventory, tor_vars())
    assert changed == 0, out[-3000:]
    assert (sup.pid(INSTANCE), sup.pid('pic-monitor')) == before


def changed_tasks(out):
    """Names of the tasks and handlers of a playbook run that reported a change."""
    names, current = set(), None
    for line in out.splitlines():
        match = re.match(r'(?:TASK|RUNNING HANDLER) \[(.*?)\]', line)
        if match:
            current = match.group(1)
        elif line.startswith('changed:') and current:
            names.add(current)
    return names


_LIBRARY = ('module_utils', 'pic_connectivity_lib', 'modules the collection', 'monitor')


def test_changed_settings_restart_only_tor(cell, inventory, sup):
    # the fast path (site.yml's default): tor restarted, the monitor not
    tor_pid, monitor_pid = sup.pid(INSTANCE), sup.pid('pic-monitor')
    changed, out = playbook(inventory, tor_vars(['MaxCircuitDirtiness 200']), '-e', 'pic_fast_path=true')
    assert changed > 0
    assert wait_for(lambda: sup.pid(INSTANCE), 10) not in (None, tor_pid)
    assert sup.pid('pic-monitor') == monitor_pid
    # the role task by task: only Tor's own tasks change
    tor_pid = sup.pid(INSTANCE)
    changed, out = playbook(inventory, tor_vars(['MaxCircuitDirtiness 300']), '-e', 'pic_fast_path=false')
    assert changed > 0
    tasks = changed_tasks(out)
    assert 'pic.connectivity.tor : Install the torrc' in tasks, tasks
    # only Tor's own tasks change, and the cell's library and monitor when the
    # collection's module_utils changed since the last run (a tree being edited)
    others = [t for t in tasks if not t.startswith(('pic.connectivity.tor ', 'pic.connectivity.exit_instance '))]
    assert all(any(word in t for word in _LIBRARY) for t in others), others
    if not others:
        assert sup.pid('pic-monitor') == monitor_pid
    assert wait_for(lambda: sup.pid(INSTANCE), 10) not in (None, tor_pid)
    with open(os.path.join(cell.state_dir, 'tor', 'torrc')) as handle:
        assert 'MaxCircuitDirtiness 300' in handle.read()
    assert wait_for(lambda: via_tor('p2'), 40, 1), sources('p2', timeout=TOR_TIMEOUT)


@pytest.mark.parametrize('variables,message', [
    ({'tor_extra_settings': ['TransPort 9999']}, 'the role manages transport'),
    ({'tor_extra_settings': ['Nickname x\nTransPort 9999']}, 'not torrc lines of the form Keyword value'),
    ({'tor_dir_authorities': ['auth 203.0.113.70:7000 nonsense']}, 'not DirAuthority values'),
])
def test_bad_tor_settings_are_refused_and_change_nothing(cell, inventory, variables, message):
    torrc = os.path.join(cell.state_dir, 'tor', 'torrc')
    with open(torrc) as handle:
        before = handle.read()
    conn = json.loads(cell.registry_bytes())['connections']['tor']
    play = [{'hosts': 'pic_cells', 'gather_facts': False, 'tasks': [
        {'ansible.builtin.include_role': {'name': 'pic.connectivity.tor', 'tasks_from': 'instances'}}]}]
    _changed, out = run_play(inventory, play, dict(variables, pic_exit_connections=[conn]), expect_fail=True)
    assert message in out, out[-2000:]
    with open(torrc) as handle:
        assert handle.read() == before


def test_tor_down_fail_open_falls_back_fail_closed_blocks(sup):
    assert via_tor('p1') and via_tor('p2')
    sup.ctl('stop', INSTANCE)
    started = time.time()
    assert wait_for(lambda: piclab.fetch('p1', 4, timeout=1) == piclab.wan_address('cell1', 4), 15)
    fallback = time.time() - started
    assert via_wan('p1'), sources('p1', timeout=TOR_TIMEOUT)
    assert sources('p2', timeout=2) == (None, None)
    assert dns('p2', piclab.SERVER_ROUTER4).startswith('error')
    assert leak_count('p2') == 0
    assert leak_count('p1') > 0     # positive control: the fail-open peer does reach the internet
    sup.ctl('start', INSTANCE)
    started = time.time()
    assert wait_for(lambda: via_tor('p2'), 40, 1), sources('p2', timeout=TOR_TIMEOUT)
    assert wait_for(lambda: via_tor('p1'), 15, 1), sources('p1', timeout=TOR_TIMEOUT)
    print('tor stopped: fail-open fallback after %.1fs; back through Tor %.1fs after start'
          % (fallback, time.time() - started))


def test_health_working_then_down_within_one_probe_when_tor_stops(cell, sup):
    assert wait_for(lambda: cell.health(CONN)['status'] == 'working', 20), cell.health(CONN)
    sup.ctl('stop', INSTANCE)
    try:
        entry = cell.health(CONN)
        assert entry['status'] == 'down', entry
        assert 'does not answer' in entry['reason'], entry
    finally:
        sup.ctl('start', INSTANCE)
    assert wait_for(lambda: cell.health(CONN)['status'] == 'working', 30), cell.health(CONN)
    assert wait_for(lambda: via_tor('p2'), 40, 1), sources('p2', timeout=TOR_TIMEOUT)


def test_killed_tor_is_restarted_by_its_supervisor(cell, sup):
    pid = sup.pid(INSTANCE)
    assert tor_in_cell() == [pid]
    cell.sh('kill', '-9', str(pid))
    assert wait_for(lambda: sup.pid(INSTANCE) not in (None, pid), 15), sup.ctl('status')
    assert wait_for(lambda: via_tor('p2'), 40, 1), sources('p2', timeout=TOR_TIMEOUT)


def test_health_unknown_without_the_instance(cell, inventory, sup):
    """The torrc is what the role installs: without it (the connection made without
    the role) a silent SOCKS port means unknown, with it down."""
    torrc = os.path.join(cell.state_dir, 'tor', 'torrc')
    sup.ctl('stop', INSTANCE)
    os.rename(torrc, torrc + '.away')
    try:
        entry = cell.health(CONN)
        assert entry['status'] == 'unknown', entry
        assert 'not installed' in entry['reason'], entry
    finally:
        os.rename(torrc + '.away', torrc)
        sup.ctl('start', INSTANCE)
    assert wait_for(lambda: cell.health(CONN)['status'] == 'working', 30), cell.health(CONN)


def test_tor_that_runs_without_its_network_is_down_and_its_fail_open_peer_falls_back(cell, sup):
    """The lab's private Tor network stopped (authorities and relays), the cell's tor
    restarted: it runs and listens, but has no circuit. pic_health says down (its control
    socket: status/circuit-established=0), the monitor holds it down, so the fail-open
    peer leaves by the WAN and the fail-closed one is blocked; back once the network is."""
    assert wait_for(lambda: cell.health(CONN)['status'] == 'working', 30), cell.health(CONN)
    assert 'Tor has a circuit' in cell.health(CONN)['reason']
    TORNET.stop()
    try:
        sup.ctl('restart', INSTANCE)
        started = time.time()
        assert sup.pid(INSTANCE) and tor_in_cell() == [sup.pid(INSTANCE)]      # it runs
        entry = wait_for(lambda: (lambda e: e if 'no circuit' in e['reason'] else None)(cell.health(CONN)), 20)
        assert entry and entry['status'] == 'down', entry
        assert entry['reason'].endswith('Tor runs but has no circuit (status/circuit-established=0)'), entry
        assert 'SOCKS port 9050 and TransPort' in entry['reason'], entry          # its ports answer
        assert wait_for(lambda: piclab.fetch('p1', 4, timeout=1) == piclab.wan_address('cell1', 4), 20)
        fallback = time.time() - started
        assert via_wan('p1'), sources('p1')
        assert sources('p2', timeout=2) == (None, None)
        assert leak_count('p2') == 0
        assert leak_count('p1') > 0     # positive control: the fail-open peer does reach the internet
        print('tor without its network: fail-open fallback %.1fs after its restart' % fallback)
    finally:
        TORNET.start()
        TORNET.wait_ready(60)
        sup.ctl('restart', INSTANCE)
    assert wait_for(lambda: via_tor('p2'), 60, 1), sources('p2')
    assert wait_for(lambda: via_tor("p1"), 60, 1), sources("p1")
    assert wait_for(lambda: cell.health(CONN)['status'] == 'working', 30), cell.health(CONN)


def test_egress_proof_through_tor(cell, sup):
    """The echo URL asked through Tor's SOCKS port: the exit relay's address; expected:
    working; another: down, the fail-open p1 falls back to the WAN, the fail-closed p2 is blocked."""
    def connection(**extra):
        return {'name': CONN, 'type': 'tor', 'config': dict({'socks_port': 9050}, **extra)}
    check_egress_proof(cell, connection, CONN, TORNET.exit_address(4), ('p1', 'p2'), timeout=30)
    assert wait_for(lambda: via_tor('p2'), 40, 1), sources('p2', timeout=TOR_TIMEOUT)
    assert wait_for(lambda: via_tor('p1'), 20, 1), sources('p1', timeout=TOR_TIMEOUT)


def test_removing_the_connection_stops_tor_and_keeps_it_installed(cell, inventory, sup):
    changed, _out = playbook(inventory, tor_vars(state='absent'))
    assert changed > 0
    assert 'tor' not in json.loads(cell.registry_bytes())['connections']
    assert INSTANCE not in sup.ctl('status')
    assert sup.pid('pic-monitor')
    assert wait_for(lambda: not tor_in_cell(), 10), tor_in_cell()
    assert not os.path.exists(os.path.join(cell.state_dir, 'tor', 'torrc'))
    assert os.path.exists('/usr/bin/tor')
    for peer in ('p1', 'p2', 'p3'):
        assert via_wan(peer), sources(peer, timeout=TOR_TIMEOUT)
