# -*- coding: utf-8 -*-
"""Tor that runs but has no circuit is down: pic_health's check and the monitor ask
its control socket (the tor role's torrc: ControlSocket in the DataDirectory,
CookieAuthentication) for ``status/circuit-established``.

* a stand-in control socket that speaks the protocol answers 1 (working), 0 (down),
  refuses the cookie (working, the circuits unknown: never down for a tool's fault);
* the real tor daemon, its torrc rendered by the role's template, in a throwaway
  network namespace where no directory authority can be reached: it runs, its SOCKS
  port and TransPort answer, and it is down (no circuit) to both the check and the monitor."""
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import cli, health
from ansible_collections.pic.connectivity.plugins.module_utils.exits import tor as tor_exit
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, render_template

COOKIE = bytes(range(32))


def _conn(socks_port, trans_port):
    return {'id': 'tor', 'name': 'Tor', 'type': 'tor', 'local_port': trans_port, 'dns_port': trans_port + 1,
            'config': {'socks_port': socks_port, 'trans_port': trans_port, 'dns_port': trans_port + 1}}


class FakeControl(object):
    """A control socket under ``state_dir`` answering ``established`` ('1', '0');
    a wrong cookie gets tor's 515."""

    def __init__(self, state_dir, established):
        self.established = established
        data = os.path.join(state_dir, 'tor', 'data')
        os.makedirs(data)
        with open(os.path.join(data, 'control_auth_cookie'), 'wb') as handle:
            handle.write(COOKIE)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(os.path.join(data, 'control.sock'))
        self.sock.listen(4)
        self.commands = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile('rwb') as stream:
                for raw in stream:
                    line = raw.decode().strip()
                    self.commands.append(line.split(' ')[0])
                    if line.startswith('AUTHENTICATE '):
                        good = line.split(' ', 1)[1] == COOKIE.hex()
                        stream.write(b'250 OK\r\n' if good else b'515 Authentication failed: Wrong length\r\n')
                    elif line == 'GETINFO status/circuit-established':
                        stream.write(b'250-status/circuit-established=%s\r\n250 OK\r\n' % self.established.encode())
                    elif line == 'QUIT':
                        stream.write(b'250 closing connection\r\n')
                        stream.flush()
                        break
                    stream.flush()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize('established, working', [('1', True), ('0', False)])
def test_the_control_socket_tells_the_circuits(tmp_path, established, working):
    control = FakeControl(str(tmp_path), established)
    try:
        got = tor_exit.Tor.deep_check(_conn(9050, 9040), str(tmp_path), 2.0)
    finally:
        control.close()
    assert got == ((True, 'Tor has a circuit') if working else
                   (False, 'Tor runs but has no circuit (status/circuit-established=0)'))
    assert control.commands == ['AUTHENTICATE', 'GETINFO', 'QUIT']


def test_a_refused_cookie_leaves_the_ports_to_decide(tmp_path):
    control = FakeControl(str(tmp_path), '0')
    with open(str(tmp_path / 'tor' / 'data' / 'control_auth_cookie'), 'wb') as handle:
        handle.write(b'wrong')
    try:
        working, why = tor_exit.Tor.deep_check(_conn(9050, 9040), str(tmp_path), 2.0)
    finally:
        control.close()
    assert working is True and why.startswith("Tor's circuits unknown: its control socket said 515"), why


def test_without_a_control_socket_the_ports_decide(tmp_path):
    assert tor_exit.Tor.deep_check(_conn(9050, 9040), str(tmp_path), 2.0) is None
    assert tor_exit.Tor.deep_check(_conn(9050, 9040), None, 2.0) is None


def _listening(port, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if health.tcp_connect('127.0.0.1', port, 0.2)[0]:
            return True
        time.sleep(0.2)
    return False


def _conntrack():
    """Connection tracking in this namespace (a cell's nftables rules always use it): tor
    0.4.9 dies (SIGSEGV) when its TransPort is connected to where conntrack cannot tell
    the original destination, as in a namespace without any ct rule."""
    subprocess.run(['nft', '-f', '-'], input='table ip pic_t_ct {\n chain out {\n type filter hook output priority 0;\n'
                   ' ct state new accept\n }\n}\n', text=True, check=True)


def _tor_without_a_network(state_dir, conn):
    _conntrack()
    data = os.path.join(state_dir, 'tor', 'data')
    os.makedirs(data, 0o700)
    text = render_template('tor', 'torrc.j2', tor_connection=conn, tor_data_dir=data, tor_listen_ipv6=False,
                           tor_virtual_network_v4='10.192.0.0/10', tor_authorities=[], tor_extra_settings=[])
    torrc = os.path.join(state_dir, 'tor', 'torrc')
    with open(torrc, 'w') as handle:
        handle.write(text)
    log = open(os.path.join(state_dir, 'tor.log'), 'w')
    proc = subprocess.Popen(['tor', '-f', torrc], stdout=log, stderr=subprocess.STDOUT)
    try:
        ports = _listening(conn['config']['socks_port'])
        deadline = time.time() + 10
        while not os.path.exists(os.path.join(data, 'control.sock')) and time.time() < deadline:
            time.sleep(0.1)
        # tor 0.4.9.11 dies (SIGSEGV in connection_ap_about_to_close) when its TransPort is
        # connected to in the first moments after its start: the probes wait for it to settle
        time.sleep(2)
        check = health.guide_check(conn, state_dir=state_dir)
        monitor = cli.Monitor(state_dir)
        verdicts = [monitor.verdict(conn, None) for _pass in range(2)]
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    return ports, alive, check, verdicts, monitor.fails.get('tor'), open(log.name).read()


@pytest.mark.skipif(not shutil.which('tor'), reason='tor is not installed')
def test_a_real_tor_that_runs_without_a_network_is_down(tmp_path):
    conn = _conn(19150, 19140)
    outcome = in_netns(_tor_without_a_network, str(tmp_path / 'state'), conn)
    ports, alive, (status, reason), verdicts, fails, log = outcome
    assert ports and alive, log[-2000:]       # it runs and listens
    assert status == health.DOWN, reason
    assert reason == ('SOCKS port 19150 and TransPort 19140 answer; '
                      'Tor runs but has no circuit (status/circuit-established=0)')
    assert [down for down, _why in verdicts] == [None, None] and fails == 2
    assert verdicts[0][1].endswith('Tor runs but has no circuit (status/circuit-established=0)')
