# -*- coding: utf-8 -*-
"""The openvpn exit type end to end: the openvpn_client role through
playbooks/site.yml, the lab's OpenVPN server (lab/servers/openvpn.py), and real
packets.

Baseline: connection "Exit OVPN" (fail-closed) to the lab's OpenVPN server,
p1 on it (fail-closed), p2 on it with a per-peer fail_open override, p3 on the
default gateway; a second connection "Exit OVPN B" (with credentials, no peer)
to the same server shows that instances are restarted one by one.
"""
import importlib.util
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import ROOT, piclab, wait_for, leak_count, quiet_counters
from exit_helpers import addresses, inventory_dir, playbook
from piclab import sources, via_wan

EXIT = 'Exit OVPN'
EXIT_B = 'Exit OVPN B'
CID, CID_B = 'exit-ovpn', 'exit-ovpn-b'
IFACE = 'pic-exit-ovpn'
PROGRAM, PROGRAM_B = 'pic-openvpn-exit-ovpn', 'pic-openvpn-exit-ovpn-b'
PASSWORD = 'ovpn-secret-Pa55word-7c1e'


def _server():
    name = 'piclab_server_openvpn'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'lab', 'servers', 'openvpn.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


server = _server()


# -- converging with the real role -------------------------------------------------
def site(conf_b_extra='', absent=False, verbose=False):
    """Run playbooks/site.yml on cell1 with our connections; returns (changed, output)."""
    ovpn = server.client_config('cell1')
    if absent:
        connections = [{'name': EXIT, 'state': 'absent'}, {'name': EXIT_B, 'state': 'absent'}]
        peers = [{'name': p, 'address': addresses(p), 'connection': 'default'} for p in piclab.PEERS]
    else:
        connections = [
            {'name': EXIT, 'type': 'openvpn', 'config': {'ovpn_config': ovpn, 'health_target': server.TUN_V4}},
            {'name': EXIT_B, 'type': 'openvpn', 'config': {'ovpn_config': ovpn + conf_b_extra,
                                                           'username': 'cell1', 'password': PASSWORD}},
        ]
        peers = [{'name': 'p1', 'address': addresses('p1'), 'connection': EXIT},
                 {'name': 'p2', 'address': addresses('p2'), 'connection': EXIT, 'fail_open': True},
                 {'name': 'p3', 'address': addresses('p3')}]
    inventory = inventory_dir()
    try:
        return playbook(inventory, {'pic_connections': connections, 'pic_peers': peers},
                        *(['-vvv'] if verbose else []))
    finally:
        shutil.rmtree(inventory)


# -- looking at the cell ---------------------------------------------------------------
def supervisorctl(cell, *args):
    conf = os.path.join(cell.state_dir, 'supervisor', 'supervisord.conf')
    return cell.sh('supervisorctl', '-c', conf, *args, check=False).stdout


def instance_pid(cell, program=PROGRAM):
    out = supervisorctl(cell, 'pid', program).strip()
    return int(out) if out.isdigit() and int(out) > 0 else None


def ifindex(cell):
    out = cell.sh('cat', '/sys/class/net/%s/ifindex' % IFACE, check=False).stdout.strip()
    return int(out) if out.isdigit() else None


def via_exit(peer):
    return sources(peer) == (server.address(4), server.address(6))




def stream(peer, seconds):
    """Echo requests from ``peer`` to the echo server every 20 ms for ``seconds``, v4 and v6."""
    procs = []
    for target in (piclab.SERVER_V4, piclab.SERVER_V6):
        procs.append(subprocess.Popen([piclab.NSEXEC, piclab.peer_node(peer), 'ping', '-n', '-q', '-i', '0.02',
                                       '-w', str(seconds), target],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def by_source(counts):
    """(packets seen from the cell's WAN address, packets seen from the exit's), both families."""
    got = counts['by_source']
    wan = got.get(piclab.wan_address('cell1', 4), 0) + got.get(piclab.wan_address('cell1', 6), 0)
    ext = got.get(server.address(4), 0) + got.get(server.address(6), 0)
    return wan, ext


def routes(cell, *args):
    return cell.sh('ip', *args).stdout


# -- the tests ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def before(lab, cell):
    """The cell's main tables before any OpenVPN runs (the server starts with the lab)."""
    assert server.running()
    return {'main4': routes(cell, '-4', 'route', 'show', 'table', 'main'),
            'main6': routes(cell, '-6', 'route', 'show', 'table', 'main'),
            'resolv': cell.sh('cat', '/etc/resolv.conf', check=False).stdout}


def test_converge_routes_assigned_peers_through_the_openvpn_exit(cell, before):
    for peer in piclab.PEERS:
        assert via_wan(peer), sources(peer)
    started = time.time()
    changed, out = site(verbose=True)
    took = time.time() - started
    assert changed > 0
    # secrets never show, even at -vvv
    key = server.client_config('cell1').split('<key>')[1].split('</key>')[0].strip().splitlines()[1]
    assert key not in out and PASSWORD not in out
    assert wait_for(lambda: via_exit('p1'), 20), sources('p1')
    assert via_exit('p2'), sources('p2')
    assert via_wan('p3'), sources('p3')
    assert instance_pid(cell) and instance_pid(cell, PROGRAM_B)
    print('first site.yml run with two openvpn connections: %.1fs' % took)


def test_files_are_private_and_carry_the_forced_directives(cell):
    folder = os.path.join(cell.state_dir, 'openvpn')
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for name in (CID + '.conf', CID_B + '.conf', CID_B + '.auth'):
        assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o600, name
    assert not os.path.exists(os.path.join(folder, CID + '.auth'))
    with open(os.path.join(folder, CID_B + '.auth')) as handle:
        assert handle.read() == 'cell1\n%s\n' % PASSWORD
    with open(os.path.join(folder, CID + '.conf')) as handle:
        conf = handle.read()
    lines = conf.splitlines()
    for forced in ('pull-filter ignore "redirect-gateway"', 'dev %s' % IFACE, 'dev-type tun', 'route-noexec',
                   'ifconfig-noexec', 'script-security 2'):
        assert forced in lines, forced
    assert lines.index('pull-filter ignore "redirect-gateway"') < lines.index('client')
    assert 'dev tun' not in lines and '# replaced by pic.connectivity: dev tun' in lines
    assert [line for line in lines if line.startswith('up "') and 'openvpn-up' in line and CID in line]
    with open(os.path.join(folder, CID_B + '.conf')) as handle:
        assert 'auth-user-pass %s' % os.path.join(folder, CID_B + '.auth') in handle.read().splitlines()


def test_pushed_redirect_gateway_and_dns_are_ignored(cell, before):
    with open(os.path.join(piclab.run_dir(), server.NODE, 'server.conf')) as handle:
        assert 'push "redirect-gateway def1 ipv6 bypass-dhcp"' in handle.read()
    log = os.path.join(cell.state_dir, 'supervisor', PROGRAM + '.log')
    with open(log) as handle:
        text = handle.read()
    assert "Pushed option removed by filter: 'redirect-gateway" in text
    assert 'dhcp-option DNS %s' % server.PUSHED_DNS in text     # it was pushed ...
    assert cell.sh('cat', '/etc/resolv.conf', check=False).stdout == before['resolv']   # ... and ignored
    # the cell's main tables, and so its own default routes, are exactly as before
    assert routes(cell, '-4', 'route', 'show', 'table', 'main') == before['main4']
    assert routes(cell, '-6', 'route', 'show', 'table', 'main') == before['main6']
    assert 'default via %s dev wan0' % piclab.INET_V4 in before['main4']
    # the tunnel's routes are in the connection's table only, its addresses are host addresses
    assert 'default dev %s' % IFACE in routes(cell, '-4', 'route', 'show', 'table', '10001')
    assert 'default dev %s' % IFACE in routes(cell, '-6', 'route', 'show', 'table', '10001')
    for family in ('-4', '-6'):
        for line in routes(cell, family, 'route', 'show', 'table', 'all').splitlines():
            if 'dev %s' % IFACE in line:     # either connection's (Exit OVPN B: table 10002)
                assert re.search(r'table (10001|10002|local) ', line + ' '), line
    addrs = cell.sh('ip', '-o', 'addr', 'show', 'dev', IFACE).stdout
    assert re.search(r'inet 10\.201\.0\.\d+/32 .*noprefixroute', addrs), addrs
    assert re.search(r'inet6 fd00:201::[0-9a-f]+/128 .*noprefixroute', addrs), addrs
    assert 'fe80' not in addrs
    # the cell itself still reaches the internet through its WAN
    assert cell.sh('curl', '-s', '--max-time', '3', 'http://%s/' % piclab.SERVER_V4).stdout.strip() == \
        piclab.wan_address('cell1', 4)


def test_second_run_changes_and_restarts_nothing(cell):
    pids = instance_pid(cell), instance_pid(cell, PROGRAM_B)
    changed, out = site()
    assert changed == 0, out[-3000:]
    assert (instance_pid(cell), instance_pid(cell, PROGRAM_B)) == pids


def test_a_changed_connection_restarts_only_its_own_instance(cell):
    pid, pid_b = instance_pid(cell), instance_pid(cell, PROGRAM_B)
    changed, _out = site(conf_b_extra='# changed: a new line in the file\n')
    assert changed > 0
    assert instance_pid(cell) == pid
    assert wait_for(lambda: instance_pid(cell, PROGRAM_B) not in (None, pid_b), 10)
    assert via_exit('p1')


@pytest.mark.parametrize('peer,fail_open', [('p1', False), ('p2', True)])
def test_instance_killed(cell, peer, fail_open):
    """Kill -9 the instance: supervisord starts it again within about a second.
    While its interface is gone a fail-closed peer sends nothing out of the
    WAN; a fail-open one does; both are back on the exit without a run."""
    assert wait_for(lambda: via_exit(peer), 20), sources(peer)
    pid, index = instance_pid(cell), ifindex(cell)
    quiet_counters()
    procs = stream(peer, 8)
    time.sleep(1.5)
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    assert wait_for(lambda: instance_pid(cell) not in (None, pid), 10)
    assert wait_for(lambda: ifindex(cell) not in (None, index), 15)   # a new device: the old one was gone
    for proc in procs:
        proc.wait(20)
    wan, ext = by_source(piclab.counters())
    assert ext > 0
    if fail_open:
        assert wan > 0
    else:
        assert wan == 0
    assert wait_for(lambda: via_exit(peer), 20), sources(peer)
    print('%s: instance killed, exit back after %.1fs' % (peer, time.time() - killed))


@pytest.mark.parametrize('peer,fail_open', [('p1', False), ('p2', True)])
def test_interface_deleted(cell, peer, fail_open):
    """Deleted under a running OpenVPN (which never recovers by itself): the
    monitor restarts the instance; a fail-closed peer never uses the WAN
    meanwhile, a fail-open one does; both are back on the exit without a run."""
    assert wait_for(lambda: via_exit(peer), 20), sources(peer)
    quiet_counters()
    procs = stream(peer, 8)
    time.sleep(1.5)
    cell.sh('ip', 'link', 'del', IFACE)
    deleted = time.time()
    assert wait_for(lambda: 'default dev %s' % IFACE in routes(cell, 'route', 'show', 'table', '10001'), 15)
    for proc in procs:
        proc.wait(20)
    wan, ext = by_source(piclab.counters())
    assert ext > 0
    if fail_open:
        assert wan > 0
    else:
        assert wan == 0
    assert wait_for(lambda: via_exit(peer), 20), sources(peer)
    print('%s: interface deleted, exit back after %.1fs' % (peer, time.time() - deleted))


def test_server_stopped_then_back_without_a_run(cell):
    assert wait_for(lambda: via_exit('p2'), 20)
    server.stop()
    try:
        stopped = time.time()
        assert wait_for(lambda: piclab.fetch('p2', 4, timeout=1) == piclab.wan_address('cell1', 4), 15)
        fallback = time.time() - stopped
        assert via_wan('p2'), sources('p2')
        assert sources('p1') == (None, None)
        assert leak_count('p1') == 0
        assert leak_count('p2') > 0      # the same probe from the fail-open peer does reach the internet
        health = cell.module('pic_health', {'connection': EXIT, 'force': True})
        assert health['connections'][CID]['status'] == 'down'
        info = cell.module('pic_connectivity_info', {})
        assert info['peers']['p1']['carried_by'] == 'blocked'
        assert info['peers']['p2']['carried_by'] == 'default'
    finally:
        server.start()
    started = time.time()
    assert wait_for(lambda: via_exit('p1'), 40), sources('p1')
    assert wait_for(lambda: via_exit('p2'), 15), sources('p2')
    assert via_wan('p3')
    print('server stopped: fail-open fallback after %.1fs, exit back %.1fs after the server'
          % (fallback, time.time() - started))
    health = cell.module('pic_health', {'connection': EXIT, 'force': True})
    assert health['connections'][CID]['status'] == 'working'


@pytest.mark.parametrize('config,words', [
    ({'ovpn_config': 'client\ndev tun\nproto udp\n'}, ["no 'remote' line"]),
    ({'ovpn_config': 'client\nremote 203.0.113.30 1194\nup /bin/evil.sh\n'}, ["line 3", "'up' is not allowed"]),
    ({'ovpn_config': 'client\nremote 203.0.113.30\nscript-security 3\n'}, ["line 3", "'script-security'"]),
    ({'ovpn_config': 'client\ndev tap0\nremote 203.0.113.30\n'}, ["line 2", "tun devices"]),
    ({'ovpn_config': 'remote 203.0.113.30\n<key>\nabc\n'}, ["<key>", "never closed"]),
    ({'ovpn_config': 'remote 203.0.113.30\nauth-user-pass\n'}, ["line 2", "username and password"]),
    ({'ovpn_config': 'remote 203.0.113.30\n', 'username': 'u'}, ["config.password", "go together"]),
])
def test_bad_openvpn_config_is_refused_clearly_and_changes_nothing(cell, config, words):
    before = cell.registry_bytes(), cell.nft_table()
    result = cell.module('pic_connection', {'name': 'Bad OVPN', 'type': 'openvpn', 'config': config},
                         expect_fail=True)
    for word in words:
        assert word in result['msg'], result['msg']
    assert result['msg'].startswith('config.')
    assert (cell.registry_bytes(), cell.nft_table()) == before


def test_removed_connections_stop_their_instances_the_service_stays(cell):
    changed, out = site(absent=True)
    assert changed > 0
    status = supervisorctl(cell, 'status')
    assert 'pic-openvpn' not in status, status
    assert 'pic-monitor' in status
    assert not os.path.exists(os.path.join(cell.state_dir, 'supervisor', 'conf.d', PROGRAM + '.conf'))
    assert os.listdir(os.path.join(cell.state_dir, 'openvpn')) == []
    assert IFACE not in cell.sh('ip', 'link').stdout
    assert not cell.sh('pgrep', '-f', 'openvpn --cd %s' % cell.state_dir, check=False).stdout.strip()
    assert os.path.exists('/usr/sbin/openvpn')
    for peer in piclab.PEERS:
        assert via_wan(peer), sources(peer)
    changed, out = site(absent=True)
    assert changed == 0, out[-3000:]
