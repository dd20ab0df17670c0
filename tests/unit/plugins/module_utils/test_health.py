# -*- coding: utf-8 -*-
"""pic_health's checks of proxy-type exits (tor, sshuttle, proxy) against local
sockets: a missing instance is unknown, a dead one or a dead upstream down, and
many connections are probed at once."""
import os
import socket

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import health


class Listener(object):
    """A TCP listener on 127.0.0.1 (a stand-in for an instance or an upstream)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def listeners():
    made = []

    def make():
        made.append(Listener())
        return made[-1]
    yield make
    for item in made:
        item.close()


def proxy_conn(cid, local_port, upstream_port, ctype='proxy'):
    return {'id': cid, 'name': cid, 'type': ctype, 'index': 1, 'local_port': local_port,
            'dns_port': local_port + 1, 'config': {'host': '127.0.0.1', 'port': upstream_port}}


def install(state_dir, conn):
    path = health.instance_file(str(state_dir), conn)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write('# instance\n')
    return path


@pytest.mark.parametrize('ctype', ['proxy', 'sshuttle'])
def test_working_only_while_the_upstream_answers(tmp_path, listeners, ctype):
    instance, server = listeners(), listeners()
    conn = proxy_conn('x', instance.port, server.port, ctype)
    install(tmp_path, conn)
    status, reason = health.check(conn, state_dir=str(tmp_path))
    assert status == 'working', reason
    assert 'upstream 127.0.0.1:%d' % server.port in reason
    server.close()        # the proxy / SSH server stops; the instance still listens
    status, reason = health.check(conn, state_dir=str(tmp_path))
    assert status == 'down', reason
    assert 'upstream 127.0.0.1:%d does not' % server.port in reason


@pytest.mark.parametrize('ctype', ['proxy', 'sshuttle', 'tor'])
def test_missing_instance_is_unknown_a_dead_one_down(tmp_path, listeners, ctype):
    server = listeners()
    port = free_port()
    conn = proxy_conn('x', port, server.port, ctype)
    if ctype == 'tor':
        conn['config'] = {'socks_port': free_port()}
    runtime = {'down': ['x'], 'reasons': {'x': 'instance port refused'}}   # the monitor's view
    status, reason = health.check(conn, runtime, state_dir=str(tmp_path))
    assert status == 'unknown', reason
    assert 'not installed' in reason
    path = install(tmp_path, conn)
    assert path.endswith('torrc' if ctype == 'tor' else os.path.join(ctype, 'x.conf'))
    status, reason = health.check(conn, runtime, state_dir=str(tmp_path))
    assert status == 'down', reason
    assert 'does not answer' in reason


def test_tor_needs_its_socks_port_and_its_transport(tmp_path, listeners):
    socks, trans = listeners(), listeners()
    conn = {'id': 'tor', 'name': 'Tor', 'type': 'tor', 'index': 1, 'local_port': trans.port,
            'dns_port': trans.port + 1, 'config': {'socks_port': socks.port}}
    install(tmp_path, conn)
    status, reason = health.check(conn, state_dir=str(tmp_path))
    assert status == 'working', reason
    trans.close()
    status, reason = health.check(conn, state_dir=str(tmp_path))
    assert status == 'down' and 'TransPort' in reason, reason
    socks.close()
    status, reason = health.check(conn, state_dir=str(tmp_path))
    assert status == 'down' and 'does not answer' in reason, reason


def test_report_probes_fifty_connections_at_once(tmp_path, listeners):
    server = listeners()
    conns = {}
    for index in range(50):
        if index % 2:
            conn = proxy_conn('c%02d' % index, listeners().port, server.port)
        else:     # a dead instance whose connect attempt is refused
            conn = proxy_conn('c%02d' % index, free_port(), server.port)
        conn['index'] = index + 1
        install(tmp_path, conn)
        conns[conn['id']] = conn
    doc = {'connections': conns, 'settings': {}}
    cache = health.HealthCache(str(tmp_path))
    timing = {}
    # how fast is bench/health.py's business (speed targets are not unit-tested)
    out = health.report(doc, {}, cache, sorted(conns), force=True, timing=timing)
    assert timing['probe_seconds'] > 0
    assert sorted(set(entry['status'] for entry in out.values())) == ['down', 'working']
    assert sum(entry['status'] == 'working' for entry in out.values()) == 25
    again = health.report(doc, {}, cache, sorted(conns), timing=timing)
    assert all(entry['cached'] for entry in again.values())
    assert timing['probe_seconds'] == 0.0


def test_tcp_connect_many_answers_each_target(listeners):
    alive = listeners()
    dead = free_port()
    out = health.tcp_connect_many([('127.0.0.1', alive.port), ('127.0.0.1', dead), ('localhost', alive.port),
                                   ('127.0.0.1', alive.port)], timeout=1.0)
    assert len(out) == 3
    assert out[('127.0.0.1', alive.port)][0] and out[('localhost', alive.port)][0]
    assert out[('127.0.0.1', dead)] == (False, '[Errno 111] Connection refused')


def test_check_all_keeps_the_order_of_mixed_types(tmp_path, listeners):
    """Interface types are checked in threads while the proxy types' probes run: each answer in its place."""
    server = listeners()
    alive = proxy_conn('alive', listeners().port, server.port)
    dead = proxy_conn('dead', free_port(), server.port)
    for conn in (alive, dead):
        install(tmp_path, conn)
    tunnels = [{'id': 'vpn%d' % i, 'name': 'vpn%d' % i, 'type': 'openvpn', 'index': 3 + i,
                'interface': 'pic-none%d' % i, 'config': {}} for i in range(2)]
    conns = [tunnels[0], alive, tunnels[1], dead]
    got = health.check_all(conns, state_dir=str(tmp_path))
    assert [status for status, _reason in got] == ['down', 'working', 'down', 'down']
    assert 'pic-none0 is missing' in got[0][1] and 'pic-none1 is missing' in got[2][1]
    assert 'upstream' in got[1][1] and 'does not answer' in got[3][1]
