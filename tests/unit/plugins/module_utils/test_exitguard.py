# -*- coding: utf-8 -*-
"""sshuttle and proxy connections: config validation, and the exit guard."""
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exitguard
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty


def plan(ctype, config):
    return connections.plan(empty(), {'name': 'X', 'type': ctype, 'config': config})


@pytest.mark.parametrize('ctype,config,field,words', [
    ('sshuttle', {'user': 'x'}, 'config.host', 'needs host'),
    ('sshuttle', {'host': 'ssh.example', 'subnets': ['10.0.0.0/8']}, 'config.subnets', 'every TCP'),
    ('sshuttle', {'host': 'ssh.example', 'dns': 'resolver'}, 'config.dns', 'IP address'),
    ('sshuttle', {'host': 'ssh.example', 'dns': ['192.0.2.1', '192.0.2.2']}, 'config.dns', 'one DNS server'),
    ('sshuttle', {'host': 'ssh.example', 'user': 'root -oProxyCommand=x'}, 'config.user', 'user name'),
    ('sshuttle', {'host': 'ssh.example', 'ssh_key': 42}, 'config.ssh_key', 'string'),
    ('sshuttle', {'host': 'ssh.example', 'port': 70000}, 'config.port', ''),
    ('proxy', {'host': '203.0.113.50'}, 'config.port', 'needs port'),
    ('proxy', {'port': 1080}, 'config.host', 'needs host'),
    ('proxy', {'host': 'proxy.example', 'port': 1080}, 'config.host', 'IPv4'),
    ('proxy', {'host': '2001:db8::1', 'port': 1080}, 'config.host', 'IPv4'),
    ('proxy', {'host': '203.0.113.50', 'port': 1080, 'proxy_type': 'socks4'}, 'config.proxy_type', 'socks5'),
    ('proxy', {'host': '203.0.113.50', 'port': 1080, 'password': 'pw'}, 'config.username', 'username'),
    ('proxy', {'host': '203.0.113.50', 'port': 1080, 'username': 'u', 'password': 'a"b'}, 'config.password',
     'double quotes'),
])
def test_validation_names_the_field(ctype, config, field, words):
    with pytest.raises(PicError) as err:
        plan(ctype, config)
    assert str(err.value).startswith(field), str(err.value)
    assert words in str(err.value)
    assert 'a"b' not in str(err.value)


def test_sshuttle_public_config_and_secrets():
    _doc, record, payload, secrets, _removed = plan('sshuttle', {
        'host': '203.0.113.40', 'ssh_key': 'KEY', 'known_hosts': '203.0.113.40 ssh-ed25519 AAAA', 'dns': ['192.0.2.53']})
    assert record['config'] == {'host': '203.0.113.40', 'port': 22, 'user': 'root', 'dns': ['192.0.2.53']}
    assert secrets == ['KEY'] and payload['ssh_key'] == 'KEY'
    assert record['local_port'] == 12302 and record['dns_port'] == 12303
    assert record['dns'] == ['192.0.2.53']


def test_proxy_public_config_and_secrets():
    _doc, record, _payload, secrets, _removed = plan('proxy', {
        'host': '203.0.113.60', 'port': '3128', 'proxy_type': 'http-connect', 'username': 'u', 'password': 'pw'})
    assert record['config'] == {'host': '203.0.113.60', 'port': 3128, 'proxy_type': 'http-connect', 'username': 'u'}
    assert secrets == ['pw']
    assert 'pw' not in str(connections.public_result(record, None))


@pytest.mark.parametrize('value,expected', [
    ('203.0.113.40:22', ('203.0.113.40', 22)),
    ('[2001:db8::1]:1080', ('2001:db8::1', 1080)),
    ('2001:db8::1:1080', ('2001:db8::1', 1080)),
    ('ssh.example:2222', ('ssh.example', 2222)),
])
def test_parse_hostport(value, expected):
    assert exitguard.parse_hostport(value) == expected


@pytest.mark.parametrize('value', ['203.0.113.40', ':22', 'host:0', 'host:x'])
def test_parse_hostport_refuses(value):
    with pytest.raises(ValueError):
        exitguard.parse_hostport(value)


class FakeProbe(object):
    def __init__(self):
        self.up = True

    def __call__(self, host, port):
        return self.up


def test_guard_runs_the_instance_only_while_the_upstream_answers(tmp_path):
    probe = FakeProbe()
    pidfile = str(tmp_path / 'x.pid')
    guard = exitguard.Guard(('192.0.2.1', 22), [sys.executable, '-c', 'import time; time.sleep(60)'],
                            interval=0, fail_after=2, probe=probe, log=lambda msg: None, pidfile=pidfile)
    try:
        guard.step()
        first = guard.child
        assert first is not None and first.poll() is None
        with open(pidfile) as handle:
            assert int(handle.read()) == first.pid
        probe.up = False
        guard.step()
        assert guard.child is first                  # one failed probe is not enough
        guard.step()
        assert guard.child is None and first.poll() is not None
        assert not os.path.exists(pidfile)
        guard.step()
        assert guard.child is None                   # stays down while the upstream is down
        probe.up = True
        guard.step()
        assert guard.child is not None and guard.child.pid != first.pid
        # an instance that exits by itself is started again at the next step
        guard.child.kill()
        guard.child.wait()
        guard.step()
        assert guard.child is not None and guard.child.poll() is None
    finally:
        guard.stop('test over')


def _started(proc, command):
    deadline = time.time() + 5
    while exitguard._cmdline(proc.pid) != command and time.time() < deadline:
        time.sleep(0.02)


def test_guard_stops_an_instance_a_killed_guard_left_behind(tmp_path):
    command = [sys.executable, '-c', 'import time; time.sleep(60)']
    orphan = subprocess.Popen(command)
    _started(orphan, command)
    pidfile = tmp_path / 'x.pid'
    pidfile.write_text('%d\n' % orphan.pid)
    try:
        assert exitguard.reap_stale(str(pidfile), command) == orphan.pid
        deadline = time.time() + 5
        while orphan.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert orphan.poll() is not None
        # a pid that runs something else is left alone
        other = subprocess.Popen(command + ['other'])
        _started(other, command + ['other'])
        pidfile.write_text('%d\n' % other.pid)
        assert exitguard.reap_stale(str(pidfile), command) is None
        assert other.poll() is None
        other.kill()
        other.wait()
    finally:
        if orphan.poll() is None:
            orphan.kill()
