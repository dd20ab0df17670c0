# -*- coding: utf-8 -*-
"""The local cell lab itself (lab/piclab): topology, idempotence, counters, exit, clean-up.

Runs its own lab instance (own namespace prefix and run dir), so it neither
needs nor disturbs a lab started with the defaults (make lab-up, the session
fixture in conftest.py).
"""
import json
import os
import signal
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'lab'))
import piclab  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='the lab needs root (network namespaces)')

# its own instance next to the one PICLAB_PREFIX/PICLAB_RUN name (by default
# picltopo in /run/piclab-topology-test)
PREFIX = os.environ.get('PICLAB_PREFIX', 'picl') + 'topo'
RUN = os.path.abspath(os.environ.get('PICLAB_RUN', '/run/piclab')) + '-topology-test'
CELLS = 2


def _lab_processes():
    """Live (non-zombie) processes started by this lab instance."""
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/environ' % pid, 'rb') as handle:
                env = handle.read().split(b'\0')
            with open('/proc/%s/stat' % pid) as handle:
                state = handle.read().rsplit(')', 1)[1].split()[0]
        except (IOError, OSError, IndexError):
            continue
        if state != 'Z' and ('PICLAB_RUN=' + RUN).encode() in env and \
                any(e.startswith(b'PICLAB_DAEMON=') for e in env):
            found.append(int(pid))
    return found


def _namespaces():
    return [n for n in os.listdir('/run/netns') if n.startswith(PREFIX + '-')] \
        if os.path.isdir('/run/netns') else []


@pytest.fixture(scope='module')
def lab():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('PICLAB_PREFIX', PREFIX)
        mp.setenv('PICLAB_RUN', RUN)
        piclab.down()                        # leftovers of an interrupted run
        times = []
        pids = []
        for _ in range(2):                   # up twice: must be idempotent
            start = time.monotonic()
            piclab.up(cells=CELLS)
            times.append(time.monotonic() - start)
            pids.append({n: piclab.daemon_pid(n) for n in piclab.nodes() if n != 'inet'})
        info = {'times': times, 'pids': pids}
        try:
            yield info
        finally:
            piclab.down()


def test_up_is_idempotent_and_fast(lab):
    assert lab['times'][0] < 30, lab['times']
    # the second up restarted nothing and duplicated nothing
    assert lab['pids'][0] == lab['pids'][1]
    assert all(lab['pids'][1].values()), lab['pids'][1]
    assert piclab.cells() == ['cell%d' % k for k in range(1, CELLS + 1)]
    # the core nodes, plus the exit servers and services of lab/servers/*.py
    assert set(piclab.ns(n) for n in piclab.nodes()) <= set(_namespaces())
    for k in range(1, CELLS + 1):
        addrs = json.loads(piclab.run('cell%d' % k, 'ip', '-j', 'addr', 'show', 'wan0').stdout)[0]
        globals_ = sorted(a['local'] for a in addrs['addr_info'] if a.get('scope') == 'global')
        assert globals_ == sorted([piclab.wan_address(k, 4), piclab.wan_address(k, 6)])
        routes = piclab.run('cell%d' % k, 'ip', '-4', 'route', 'show', 'default').stdout
        assert routes.strip().count('\n') == 0, routes


def test_every_peer_reaches_the_internet_as_its_cell(lab):
    for k in range(1, CELLS + 1):
        cell = 'cell%d' % k
        for peer in piclab.PEERS:
            assert piclab.wait_handshake(peer, cell, timeout=5), (cell, peer)
            for family in (4, 6):
                assert piclab.fetch(peer, family, cell) == piclab.wan_address(cell, family), \
                    (cell, peer, family)


def test_nodes_have_private_wireguard_dirs(lab):
    interfaces = piclab.run('cell1', 'wg', 'show', 'interfaces').stdout.split()
    # wg0, and the links to other cells (lab/servers/links.py)
    assert 'wg0' in interfaces and all(i == 'wg0' or i.startswith('cl-') for i in interfaces), interfaces
    assert piclab.run('inet', 'wg', 'show', 'interfaces').stdout.split() == []
    assert not os.path.exists('/run/wireguard/wg0.sock') or \
        os.stat('/run/wireguard/wg0.sock').st_ino != \
        os.stat(os.path.join(RUN, 'nodes', 'cell1', 'wireguard', 'wg0.sock')).st_ino
    # the interpreter wrapper Ansible uses runs inside the cell
    wrapper = piclab.python_wrapper('cell1')
    proc = piclab.sh([wrapper, '-c', 'import os; print(" ".join(sorted(os.listdir("/sys/class/net"))))'])
    assert {'wan0', 'acc0', 'wg0'} <= set(proc.stdout.split())
    # exit client configs for the collection
    for v4only in (False, True):
        path = piclab.exit_config_path('cell2', v4only=v4only)
        assert os.stat(path).st_mode & 0o777 == 0o600
        with open(path) as handle:
            text = handle.read()
        assert 'Endpoint = %s:51820' % piclab.EXIT_V4 in text
        assert ('fd00:200::12/128' in text) is (not v4only)
        assert ('::/0' in text) is (not v4only)


def test_counters_count_a_probe_burst_and_reset(lab):
    piclab.counters_reset()
    assert piclab.counters() == {'v4': 0, 'v6': 0, 'by_source': {}}
    piclab.send_probe('p1', 4)
    piclab.send_probe('p2', 6, cell='cell2')
    time.sleep(0.3)
    counts = piclab.counters()
    assert counts['v4'] > 0 and counts['v6'] > 0, counts
    assert counts['by_source'].get(piclab.wan_address('cell1', 4), 0) > 0, counts
    assert counts['by_source'].get(piclab.wan_address('cell2', 6), 0) > 0, counts
    assert set(counts['by_source']) == {piclab.wan_address('cell1', 4), piclab.wan_address('cell2', 6)}
    piclab.counters_reset()
    assert piclab.counters() == {'v4': 0, 'v6': 0, 'by_source': {}}


def test_exit_stop_and_start(lab):
    before = piclab.daemon_pid('wgexit')
    pub = piclab.run('wgexit', 'wg', 'show', 'wg0', 'public-key').stdout.strip()
    piclab.exit_stop()
    assert piclab.daemon_pid('wgexit') is None
    assert piclab.run('wgexit', 'ip', 'link', 'show', 'wg0', check=False).returncode != 0
    assert piclab.run('cell1', 'ping', '-c1', '-W2', piclab.EXIT_V4, check=False).returncode == 0
    piclab.exit_stop()                                   # idempotent
    after = piclab.exit_start()
    assert after and after != before
    assert piclab.exit_start() == after                  # idempotent
    assert piclab.run('wgexit', 'wg', 'show', 'wg0', 'public-key').stdout.strip() == pub
    peers = piclab.run('wgexit', 'wg', 'show', 'wg0', 'allowed-ips').stdout
    assert '10.200.0.11/32' in peers and 'fd00:200::12/128' in peers
    assert piclab.run('cell1', 'ping', '-c1', '-W2', piclab.EXIT_V4, check=False).returncode == 0


def test_up_restarts_a_dead_daemon(lab):
    old = piclab.daemon_pid('cell2')
    os.kill(old, signal.SIGKILL)
    piclab.up(cells=CELLS)                              # verifies every peer again
    assert piclab.daemon_pid('cell2') not in (None, old)
    assert piclab.fetch('p3', 6, 'cell2') == piclab.wan_address('cell2', 6)


def test_down_leaves_nothing(lab):
    start = time.monotonic()
    piclab.down()
    assert time.monotonic() - start < 15
    assert _namespaces() == []
    assert _lab_processes() == []
    assert not os.path.exists(RUN)
    piclab.down()                                        # idempotent
    assert _namespaces() == [] and not os.path.exists(RUN)
