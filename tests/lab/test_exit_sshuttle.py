# -*- coding: utf-8 -*-
"""The sshuttle exit end to end: the lab's SSH server (lab/servers/sshd.py, public
host 40), the cell's sshuttle instances run by the sshuttle role through
playbooks/site.yml, real packets.

Vars of every run: connections "Exit SSH" and "Exit SSH 2" (sshuttle,
fail-closed by default, both to the lab's sshd); p1 on "Exit SSH" (fail-closed),
p2 on it with fail_open: true, p3 on the default gateway.  The file leaves the
cell with neither connection and every peer on the default gateway.
"""
import os
import re
import signal
import stat
import time

import pytest

from conftest import piclab, wait_for
from exit_helpers import (Supervisor, addresses, check_egress_proof, dns_query, installed, inventory_dir, leak_count,
                          peers_on, playbook, quiet_counters, server_plugin, uncarried_count, wait_pid, working_entry)
from piclab import sources, via_wan

SSHD = server_plugin('sshd')
CONN, CONN2 = 'Exit SSH', 'Exit SSH 2'
PROGRAM, PROGRAM2 = 'pic-sshuttle-exit-ssh', 'pic-sshuttle-exit-ssh-2'


def exit_addresses():
    return SSHD.address(4), SSHD.address(6)


def via_exit(peer):
    return sources(peer) == exit_addresses()


def connection(name, state='present', **extra):
    info = SSHD.info()
    with open(info['key']) as handle:
        key = handle.read()
    with open(info['known_hosts']) as handle:
        known_hosts = handle.read()
    config = {'host': info['host'], 'port': info['port'], 'user': info['user'], 'ssh_key': key,
              'known_hosts': known_hosts, 'dns': piclab.SERVER_ROUTER4}
    config.update(extra)
    out = {'name': name, 'type': 'sshuttle', 'config': config}
    if state == 'absent':
        out = {'name': name, 'state': 'absent'}
    return out


def run_vars(second=None, state='present'):
    """second: extra config of "Exit SSH 2" (None: as the first)."""
    if state == 'absent':
        return {'pic_connections': [connection(CONN, 'absent'), connection(CONN2, 'absent')],
                'pic_peers': [{'name': p, 'address': addresses(p), 'connection': 'default'}
                              for p in ('p1', 'p2', 'p3')],
                'pic_purge_peers': True}
    return {'pic_connections': [connection(CONN), connection(CONN2, **(second or {}))],
            'pic_peers': peers_on(CONN), 'pic_purge_peers': True}


@pytest.fixture(scope='module')
def site(lab, cell):
    SSHD.start()
    inventory = inventory_dir()
    yield inventory
    SSHD.start()
    if b'"exit-ssh' in (cell.registry_bytes() or b''):      # a test stopped before the removal
        playbook(inventory, run_vars(state='absent'))


def test_config_validation_gives_clear_errors(cell):
    result = cell.module('pic_connection', {'name': 'bad ssh', 'type': 'sshuttle',
                                            'config': {'user': 'root', 'ssh_key': 'SECRET-KEY-TEXT'}},
                         expect_fail=True)
    assert 'config.host' in result['msg'] and 'needs host' in result['msg'], result['msg']
    assert 'SECRET-KEY-TEXT' not in result['_stdout']
    result = cell.module('pic_connection', {'name': 'bad ssh', 'type': 'sshuttle',
                                            'config': {'host': '203.0.113.40', 'subnets': ['0.0.0.0/0']}},
                         expect_fail=True)
    assert 'config.subnets' in result['msg'], result['msg']
    result = cell.module('pic_connection', {'name': 'bad ssh', 'type': 'sshuttle',
                                            'config': {'host': '203.0.113.40', 'dns': 'resolver'}},
                         expect_fail=True)
    assert 'config.dns' in result['msg'], result['msg']


def test_converge_routes_assigned_peers_through_the_ssh_server(site, cell):
    changed, out = playbook(site, run_vars(), '-vvv')
    assert changed > 0
    with open(SSHD.info()['key']) as handle:
        key_lines = [line for line in handle.read().splitlines() if line and not line.startswith('-----')]
    assert not any(line in out for line in key_lines)
    supervisor = Supervisor(cell)
    assert wait_pid(supervisor, PROGRAM) and wait_pid(supervisor, PROGRAM2)
    assert wait_for(lambda: via_exit('p1'), 20), sources('p1')
    assert via_exit('p2'), sources('p2')
    assert via_wan('p3'), sources('p3')


def test_second_run_changes_and_restarts_nothing(site, cell):
    supervisor = Supervisor(cell)
    before = supervisor.pid(PROGRAM), supervisor.pid(PROGRAM2), supervisor.pid('pic-monitor')
    changed, out = playbook(site, run_vars())
    assert changed == 0, out[-3000:]
    assert (supervisor.pid(PROGRAM), supervisor.pid(PROGRAM2), supervisor.pid('pic-monitor')) == before


def test_credentials_are_written_0600(site, cell):
    base = os.path.join(cell.state_dir, 'sshuttle')
    for name in ('exit-ssh.key', 'exit-ssh.known_hosts', 'exit-ssh.conf', 'exit-ssh-2.key'):
        assert stat.S_IMODE(os.stat(os.path.join(base, name)).st_mode) == 0o600, name
    with open(SSHD.info()['key']) as handle:
        key = handle.read().strip()
    with open(os.path.join(base, 'exit-ssh.key')) as handle:
        assert handle.read().strip() == key
    with open(os.path.join(cell.state_dir, 'registry.json')) as handle:
        assert key.splitlines()[1] not in handle.read()


def test_only_the_redirect_feeds_sshuttle(site, cell):
    """sshuttle's own nftables tables capture nothing: the cell's own TCP to the
    internet leaves by the WAN, and only the peers of the connection use the exit."""
    ruleset = cell.sh('nft', 'list', 'ruleset').stdout
    theirs = [block for block in re.split(r'(?m)^table ', ruleset) if block.startswith(('inet sshuttle', 'ip sshuttle'))]
    assert theirs, ruleset                    # sshuttle's firewall did run (nft method)
    assert not [block for block in theirs if 'redirect' in block or 'tproxy' in block], theirs
    out = cell.sh('curl', '-s', '--max-time', '3', 'http://%s/' % piclab.SERVER_V4).stdout.strip()
    assert out == piclab.wan_address('cell1', 4)
    assert via_wan('p3')


def test_dns_is_pinned_to_the_exit(site, cell):
    # UDP DNS to any server (the internet's, the cell's own) is answered through
    # sshuttle by the configured server (config.dns), which sees the SSH server.
    assert dns_query('p1') == SSHD.address(4)
    assert dns_query('p1', server='10.0.0.1') == SSHD.address(4)
    assert dns_query('p2', server='192.0.2.53') == SSHD.address(4)
    assert dns_query('p1', tcp=True) == SSHD.address(4)
    assert dns_query('p3') == piclab.wan_address('cell1', 4)


def test_udp_icmp_quic_never_reach_the_internet(site, cell):
    assert via_exit('p1')
    assert uncarried_count('p1') == 0
    assert uncarried_count('p2') == 0          # fail-open too, while the exit is up
    # a positive control: the same probe from a peer on the default gateway arrives
    assert uncarried_count('p3') > 0
    # whatever p1 sends, nothing reaches the internet from the cell's WAN address
    quiet_counters()
    for family in (4, 6):
        piclab.send_probe('p1', family, count=3)
    time.sleep(0.5)
    seen = piclab.counters()['by_source']
    assert set(seen) <= set(exit_addresses()), seen


def test_a_changed_connection_restarts_only_its_own_instance(site, cell):
    supervisor = Supervisor(cell)
    first, second = supervisor.pid(PROGRAM), supervisor.pid(PROGRAM2)
    monitor = supervisor.pid('pic-monitor')
    changed, _out = playbook(site, run_vars(second={'dns': piclab.SERVER_ROUTER6}))
    assert changed > 0
    assert wait_for(lambda: supervisor.pid(PROGRAM2) not in (None, second), 15)
    assert supervisor.pid(PROGRAM) == first
    assert supervisor.pid('pic-monitor') == monitor
    with open(os.path.join(cell.state_dir, 'sshuttle', 'exit-ssh-2.conf')) as handle:
        assert '--to-ns=[%s]:53' % piclab.SERVER_ROUTER6 in handle.read()
    assert via_exit('p1')


def test_instance_killed_fail_closed_leaks_nothing_and_it_comes_back(site, cell):
    supervisor = Supervisor(cell)
    assert wait_for(lambda: via_exit('p1'), 10)
    pid = supervisor.pid(PROGRAM)
    os.kill(pid, 9)
    # while it restarts, p1's traffic reaches the internet from the exit or not at all
    quiet_counters()
    for family in (4, 6):
        piclab.send_probe('p1', family, count=3)
        piclab.fetch('p1', family, timeout=1)
    time.sleep(0.5)
    seen = piclab.counters()['by_source']
    assert set(seen) <= set(exit_addresses()), seen
    # supervisord starts it again: back through the exit without a playbook run
    assert wait_for(lambda: supervisor.pid(PROGRAM) not in (None, pid), 15)
    assert wait_for(lambda: via_exit('p1'), 20), sources('p1')


def test_ssh_server_stopped_fail_closed_blocks_fail_open_falls_back(site, cell):
    assert wait_for(lambda: via_exit('p2'), 10)
    SSHD.stop()
    try:
        started = time.time()
        assert wait_for(lambda: piclab.fetch('p2', 4, timeout=1) == piclab.wan_address('cell1', 4), 15)
        print('fail-open fallback after %.1fs' % (time.time() - started))
        assert via_wan('p2'), sources('p2')
        assert sources('p1') == (None, None)
        assert dns_query('p1').startswith('error')
        assert leak_count('p1') == 0
        # a positive control: the same probe from the fail-open peer reaches the internet
        assert leak_count('p2') > 0
    finally:
        SSHD.start()
    started = time.time()
    assert wait_for(lambda: via_exit('p1'), 30), sources('p1')
    assert wait_for(lambda: via_exit('p2'), 15), sources('p2')
    print('back through the exit after %.1fs' % (time.time() - started))


def test_health_working_then_down_within_one_probe_when_the_ssh_server_stops(site, cell):
    """sshuttle's port alone says nothing about its SSH session: pic_health also asks the SSH server."""
    assert wait_for(lambda: cell.health(CONN)['status'] == 'working', 20), cell.health(CONN)
    SSHD.stop()
    try:
        entry = cell.health(CONN)
        assert entry['status'] == 'down', entry
        assert 'upstream %s:22' % SSHD.info()['host'] in entry['reason'] or 'does not answer' in entry['reason'], \
            entry
        # the instance killed (stopped by its guard, or dead): still down, not unknown
        assert cell.health(CONN2)['status'] == 'down'
    finally:
        SSHD.start()
    assert wait_for(lambda: cell.health(CONN)['status'] == 'working', 30), cell.health(CONN)


def test_health_unknown_for_an_instance_never_installed(site, cell):
    cell.module('pic_connection', {'name': 'No instance', 'type': 'sshuttle', 'config': {'host': SSHD.info()['host']}})
    try:
        entry = cell.health('No instance')
        assert entry['status'] == 'unknown', entry
        assert 'not installed' in entry['reason'], entry
    finally:
        cell.module('pic_connection', {'name': 'No instance', 'state': 'absent'})


# The SSH server cannot reach the lab's echo server (port 80): its output there is dropped.
NO_REACH = ('add table inet pic_lab_noreach; '
            'add chain inet pic_lab_noreach out { type filter hook output priority 0; }; '
            'add rule inet pic_lab_noreach out ip daddr %s tcp dport 80 drop' % piclab.SERVER_V4)


def sshd_sessions():
    """The processes of the SSH server's node but its listening sshd: the sessions (sshuttle's server side)."""
    out = piclab.run(SSHD.NODE, 'ss', '-Hltnp', 'sport = :%d' % SSHD.PORT, check=False).stdout
    listeners = set(int(pid) for pid in re.findall(r'pid=(\d+)', out))
    assert listeners, out
    cp = piclab.sh(['ip', 'netns', 'pids', piclab.ns(SSHD.NODE)], check=False)
    return [int(pid) for pid in cp.stdout.split() if pid.isdigit() and int(pid) not in listeners]


def test_deep_probe_down_when_the_ssh_server_cannot_reach_the_target(site, cell):
    """The deep probe: a request from the cell with the connection's mark, which the cell
    redirects to the instance as its peers' TCP, to health_target:80 (the lab's echo
    server), answered. The SSH server unable to reach it: down while sshuttle and its
    SSH session run and the server answers on port 22; the monitor holds it down: the
    fail-open peer p2 leaves by the WAN, the fail-closed p1 is blocked; back after."""
    supervisor = Supervisor(cell)
    cell.module('pic_connection', connection(CONN, health_target=piclab.SERVER_V4))
    try:
        entry = working_entry(cell, CONN, 20)
        assert entry and entry['reason'].endswith('sshuttle reaches %s:80' % piclab.SERVER_V4), entry
        pid = supervisor.pid(PROGRAM)
        piclab.run(SSHD.NODE, 'nft', NO_REACH)
        try:
            started = time.time()
            entry = cell.health(CONN)
            assert entry['status'] == 'down', entry
            assert 'sshuttle cannot reach %s:80 (no answer' % piclab.SERVER_V4 in entry['reason'], entry
            assert 'answers and so does its upstream' in entry['reason'], entry      # the SSH server answers
            assert wait_for(lambda: piclab.fetch('p2', 4, timeout=1) == piclab.wan_address('cell1', 4), 20)
            print('health target unreachable from the SSH server: fail-open fallback after %.1fs'
                  % (time.time() - started))
            assert leak_count('p1') == 0, piclab.counters()
            assert supervisor.pid(PROGRAM) == pid                 # sshuttle ran all along
        finally:
            piclab.run(SSHD.NODE, 'nft', 'delete table inet pic_lab_noreach')
        assert working_entry(cell, CONN, 30), cell.health(CONN)
        assert wait_for(lambda: via_exit('p2'), 20), sources('p2')
        assert wait_for(lambda: via_exit('p1'), 20), sources('p1')
    finally:
        cell.module('pic_connection', connection(CONN))


def test_deep_probe_down_when_the_ssh_session_carries_nothing(site, cell):
    """The SSH server's sessions frozen (SIGSTOP; its listener still accepts): sshuttle
    runs and accepts the probe, but nothing comes back through its session: down."""
    supervisor = Supervisor(cell)
    cell.module('pic_connection', connection(CONN, health_target=piclab.SERVER_V4))
    try:
        assert working_entry(cell, CONN, 20), cell.health(CONN)
        pid = supervisor.pid(PROGRAM)
        frozen = sshd_sessions()
        assert frozen
        for session in frozen:
            os.kill(session, signal.SIGSTOP)
        try:
            entry = cell.health(CONN)
            assert entry['status'] == 'down', entry
            assert 'sshuttle cannot reach %s:80 (no answer' % piclab.SERVER_V4 in entry['reason'], entry
            assert 'answers and so does its upstream' in entry['reason'], entry
            assert supervisor.pid(PROGRAM) == pid
        finally:
            for session in frozen:
                os.kill(session, signal.SIGCONT)
        assert working_entry(cell, CONN, 40), cell.health(CONN)
    finally:
        cell.module('pic_connection', connection(CONN))
    assert wait_for(lambda: via_exit('p1'), 30), sources('p1')


def test_egress_proof_through_sshuttle(site, cell):
    """The echo URL asked through the instance (the redirect of its peers' TCP): the SSH
    server's address; expected: working; another: down, p2 falls back, p1 blocked."""
    check_egress_proof(cell, lambda **extra: connection(CONN, **extra), CONN, SSHD.address(4), ('p2', 'p1'))
    assert wait_for(lambda: via_exit('p2'), 20), sources('p2')
    assert wait_for(lambda: via_exit('p1'), 20), sources('p1')


def test_removing_the_connections_stops_and_removes_their_instances(site, cell):
    supervisor = Supervisor(cell)
    changed, _out = playbook(site, run_vars(state='absent'))
    assert changed > 0
    programs = supervisor.programs()
    assert PROGRAM not in programs and PROGRAM2 not in programs, programs
    assert not os.path.exists(supervisor.program_file(PROGRAM))
    base = os.path.join(cell.state_dir, 'sshuttle')
    assert not [n for n in os.listdir(base) if n.startswith('exit-ssh')], os.listdir(base)
    assert not [line for line in cell.sh('ps', '-eo', 'args').stdout.splitlines() if base + '/' in line]
    assert 'sshuttle' not in cell.sh('nft', 'list', 'tables').stdout
    assert installed('sshuttle')
    assert via_wan('p1') and via_wan('p2')
