# -*- coding: utf-8 -*-
"""The sshuttle provider: an SSH server, its defaults, its secret key; the health
check's upstream is the SSH server; its deep probe, a request from the cell with the
connection's mark (which the data plane redirects to the instance, as its peers' TCP)
to ``health_target``:``health_port`` that the target must answer."""
import socket

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exits, health
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exits import sshuttle
from ansible_collections.pic.connectivity.tests.unit.helpers import FakeServer, echo, in_netns


def test_declares():
    prov = exits.provider('sshuttle')
    assert prov.kind == exits.PROXY and not prov.fail_open and not prov.singleton and prov.needs_config
    assert (prov.service_role, prov.instance_file) == ('sshuttle', ('sshuttle', '%s.conf'))
    assert [o.name for o in prov.options if o.secret] == ['ssh_key']
    assert [o.name for o in prov.options if o.required] == ['host']


def test_defaults_secrets_and_upstream():
    public, _payload, secrets, _routes = connections.validate_config(
        'sshuttle', {'host': 'ssh.example', 'ssh_key': 'KEY-TEXT\n', 'dns': '192.0.2.53'})
    assert public == {'host': 'ssh.example', 'port': 22, 'user': 'root', 'dns': ['192.0.2.53']}
    assert secrets == ['KEY-TEXT\n']
    assert exits.provider('sshuttle').upstream({'config': public}) == ('ssh.example', 22)


def test_refuses_subnets():
    with pytest.raises(PicError) as err:
        connections.validate_config('sshuttle', {'host': 'ssh.example', 'subnets': ['10.0.0.0/8']})
    assert err.value.field == 'config.subnets'


# -- the deep probe: a request through the instance to health_target --------------------------------
def _conn(**config):
    base = {'host': 'ssh.example', 'port': 22, 'user': 'root', 'health_target': '198.51.100.7'}
    base.update(config)
    return {'id': 'ssh', 'type': 'sshuttle', 'mark': 0x30000, 'local_port': 12300, 'config': base}


def _through(monkeypatch, server):
    """Marked connections (the redirect to the instance) go to ``server`` instead; returns what was asked."""
    made = []

    def marked(host, port, mark, timeout):
        made.append((host, port, mark))
        if server is None:
            raise OSError('[Errno 111] Connection refused')
        return socket.create_connection(('127.0.0.1', server.port), timeout=timeout)
    monkeypatch.setattr(sshuttle, 'marked_connection', marked)
    return made


def test_an_answer_of_the_target_through_the_instance_is_working(monkeypatch):
    server = FakeServer(echo)
    try:
        made = _through(monkeypatch, server)
        assert sshuttle.Sshuttle.deep_check(_conn(health_port=8080), None, 2.0) == (
            True, 'sshuttle reaches 198.51.100.7:8080')
    finally:
        server.close()
    assert made == [('198.51.100.7', 8080, 0x30000)]
    assert server.requests[0].startswith('HEAD / HTTP/1.0\r\nHost: 198.51.100.7\r\n')


def test_a_connection_closed_without_an_answer_is_down(monkeypatch):
    """sshuttle accepts every redirected connection at once and closes it when its server
    cannot connect: the accept alone proves nothing."""
    server = FakeServer(lambda srv, conn: srv.requests.append(conn.recv(100)))
    try:
        _through(monkeypatch, server)
        working, why = sshuttle.Sshuttle.deep_check(_conn(), None, 2.0)
    finally:
        server.close()
    assert working is False, why
    assert why == 'sshuttle cannot reach 198.51.100.7:80 (no answer: closed without an answer)'


def test_a_session_that_carries_nothing_is_down(monkeypatch):
    """Accepted, then nothing (the SSH session is dead while sshuttle runs): down after the timeout."""
    silent = socket.socket()
    silent.bind(('127.0.0.1', 0))
    silent.listen(1)
    try:
        _through(monkeypatch, type('S', (), {'port': silent.getsockname()[1]}))
        working, why = sshuttle.Sshuttle.deep_check(_conn(), None, 0.5)
    finally:
        silent.close()
    assert working is False and why.startswith('sshuttle cannot reach 198.51.100.7:80 (no answer: '), why


def test_a_refused_connection_is_down_and_nothing_is_asked_without_target_or_mark(monkeypatch):
    made = _through(monkeypatch, None)
    assert sshuttle.Sshuttle.deep_check(_conn(), None, 1.0) == (
        False, 'sshuttle cannot reach 198.51.100.7:80 (no answer: [Errno 111] Connection refused)')
    assert sshuttle.Sshuttle.deep_check(_conn(health_target=None), None, 1.0) is None
    assert sshuttle.Sshuttle.deep_check(dict(_conn(), mark=None), None, 1.0) is None
    assert len(made) == 1


def test_the_health_check_of_sshuttle_whose_ports_answer_asks_through_the_instance(monkeypatch):
    server = FakeServer(echo)
    ports = {('127.0.0.1', 12300): (True, 'connected'), ('ssh.example', 22): (True, 'connected')}
    try:
        _through(monkeypatch, server)
        status, reason = health.guide_check(_conn(), connect=lambda host, port, timeout: ports[(host, port)])
        server.close()
        down = health.guide_check(_conn(), connect=lambda host, port, timeout: ports[(host, port)])
    finally:
        server.close()
    assert status == health.WORKING and reason.endswith('; sshuttle reaches 198.51.100.7:80'), reason
    assert down[0] == health.DOWN and 'sshuttle cannot reach 198.51.100.7:80' in down[1], down


def test_health_port_is_validated():
    config = {'host': 'ssh.example', 'health_target': '192.0.2.9'}
    assert connections.validate_config('sshuttle', dict(config, health_port=443))[0]['health_port'] == 443
    for bad in (0, 65536, 'http'):
        with pytest.raises(PicError) as err:
            connections.validate_config('sshuttle', dict(config, health_port=bad))
        assert 'health_port' in str(err.value)


# -- with the kernel: the data plane's local_redirect takes the marked probe to the instance ----------
SO_ORIGINAL_DST = 80


def _transparent(server, conn):
    """A transparent instance as sshuttle is: it learns where the connection was going
    (SO_ORIGINAL_DST) and answers only for the echo server 198.51.100.80:80, as the SSH
    server 203.0.113.40 would see it."""
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    original = (socket.inet_ntoa(raw[4:8]), int.from_bytes(raw[2:4], 'big'))
    server.requests.append(original)
    if original == ('198.51.100.80', 80):
        echo(server, conn, '203.0.113.40')
    else:
        # read the request before closing: closed with it unread, the kernel resets the
        # connection instead (a race with the prober's read, not what sshuttle does)
        conn.settimeout(2.0)
        try:
            conn.recv(4096)
        except OSError:
            pass


def _probe_in_a_cell():
    import subprocess
    from ansible_collections.pic.connectivity.plugins.module_utils import egress, model
    from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
    doc, record = connections.plan(empty(), {'name': 'Exit SSH', 'type': 'sshuttle', 'config': {
        'host': '203.0.113.40', 'health_target': '198.51.100.80', 'egress_url': 'http://198.51.100.80/'}})[:2]
    for cmd in (['ip', 'link', 'add', 'wan0', 'type', 'veth', 'peer', 'name', 'wan1'],
                ['ip', 'addr', 'add', '192.0.2.1/24', 'dev', 'wan0'], ['ip', 'link', 'set', 'wan0', 'up'],
                ['ip', 'route', 'add', 'default', 'via', '192.0.2.254']):
        subprocess.run(cmd, check=True)
    want = model.desired(doc, {'peer_networks': ['10.0.0.0/24'], 'interfaces': [], 'down': [], 'present': []})
    subprocess.run(['nft', '-f', '-'], input=want.render_nft(), text=True, check=True)
    server = FakeServer(_transparent, ('0.0.0.0', record['local_port']))     # the instance: every address
    try:
        deep = sshuttle.Sshuttle.deep_check(record, None, 2.0)
        address = egress.probe(record, None, None, 2.0)
        wrong_port = sshuttle.Sshuttle.deep_check(dict(record, config=dict(record['config'], health_port=81)), None,
                                                  2.0)
    finally:
        server.close()
    return deep, address, wrong_port, server.requests


def test_the_cells_marked_probe_takes_the_redirect_of_its_peers():
    deep, address, wrong_port, asked = in_netns(_probe_in_a_cell)
    assert deep == (True, 'sshuttle reaches 198.51.100.80:80')
    assert address == ('203.0.113.40', None)
    assert wrong_port[0] is False and 'closed without an answer' in wrong_port[1]
    assert [a for a in asked if isinstance(a, tuple)] == [('198.51.100.80', 80)] * 2 + [('198.51.100.80', 81)]
