# -*- coding: utf-8 -*-
"""The guide's WireGuard rule, "down when the last handshake is older than 3 minutes",
with its age configurable (``health_handshake_max_age``, default 180 s): the rule
itself, the setting's validation, and both pic_health's check and the monitor on real
WireGuard interfaces (wg and wireguard-go or the kernel's) in a throwaway network
namespace, with a max age of 2 s so that the test is fast: a tunnel whose server
answered and then went away is down once its handshake is older than that; one whose
server never answers is ``unknown`` to the check and down to the monitor once it has
seen no handshake for that long."""
import shutil
import subprocess
import time

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import cli, connections, health, model, routing
from ansible_collections.pic.connectivity.plugins.module_utils import wgconf, wgiface
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.tests.unit.helpers import PUB, in_netns

MAX_AGE = 2


@pytest.mark.parametrize('age, max_age, status', [
    (None, 180, health.UNKNOWN),
    (0, 180, health.WORKING),
    (180, 180, health.WORKING),
    (181, 180, health.DOWN),
    (3, 2, health.DOWN),
    (2, 2, health.WORKING),
    (3600, 7200, health.WORKING),
])
def test_the_rule(age, max_age, status):
    got, reason = health.handshake_verdict(age, max_age, 'pic-x')
    assert got == status, reason
    if status == health.DOWN:
        assert reason == 'last handshake %ds ago (more than %ds)' % (age, max_age)


def test_the_default_is_the_guides_three_minutes():
    assert health.handshake_max_age({'config': {}}) == 180
    assert health.handshake_max_age({}) == 180
    assert health.handshake_max_age({'config': {'health_handshake_max_age': 30}}) == 30


def _wg_config(**over):
    config = {'private_key': PUB, 'address': ['10.200.0.11/32'], 'peer_public_key': PUB,
              'endpoint': '192.0.2.1:51820'}
    config.update(over)
    return config


def test_the_setting_is_validated_and_public():
    public = connections.validate_config('wireguard_ext', _wg_config(health_handshake_max_age=30))[0]
    assert public['health_handshake_max_age'] == 30
    for bad in (0, 86401, 'soon', True):
        with pytest.raises(PicError) as err:
            connections.validate_config('wireguard_ext', _wg_config(health_handshake_max_age=bad))
        assert 'health_handshake_max_age' in str(err.value)


def test_only_handshake_types_take_it():
    with pytest.raises(PicError) as err:
        connections.validate_config('proxy', {'host': '192.0.2.2', 'port': 1080, 'health_handshake_max_age': 30})
    assert 'unknown setting' in str(err.value)


def test_the_monitor_uses_the_connections_max_age(monkeypatch, tmp_path):
    conn = {'id': 'w', 'type': 'wireguard_ext', 'interface': 'lo', 'index': 1, 'config': {}}
    monitor = cli.Monitor(str(tmp_path / 'state'))
    monkeypatch.setattr(cli, 'handshake_age', lambda ifname, now=None: 100)
    assert monitor._handshake_verdict(conn) == (False, 'handshake 100s ago')
    conn['config']['health_handshake_max_age'] = 60
    assert monitor._handshake_verdict(conn) == (True, 'last handshake 100s ago (more than 60s)')


# --- real interfaces -------------------------------------------------------

def _keypair():
    private = subprocess.run(['wg', 'genkey'], stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    public = subprocess.run(['wg', 'pubkey'], input=private, stdout=subprocess.PIPE, text=True,
                            check=True).stdout.strip()
    return private, public


def _up(net, run_dir, ifname, config):
    wg = wgconf.parse(config)
    path = '%s/%s.conf' % (run_dir, ifname)
    with open(path, 'w') as handle:
        handle.write(wgconf.render_setconf(wg))
    iface = wgiface.WgInterface(net, ifname, run_dir)
    iface.ensure(wg, path)
    return iface


def _conn(cid, ifname):
    return {'id': cid, 'type': 'wireguard_ext', 'interface': ifname, 'index': 1,
            'config': {'health_handshake_max_age': MAX_AGE}}


def _wait_for_handshake(ifname, seconds=10):
    deadline = time.time() + seconds
    while wgiface.handshake_age(ifname) is None and time.time() < deadline:
        time.sleep(0.1)
    return wgiface.handshake_age(ifname)


CLONE_NEWNS = 0x00020000


def _own_sysfs():
    """/sys/class/net of this namespace (link_exists reads it): a mount namespace of this
    child's own, private, with sysfs mounted again (the host's /sys is untouched)."""
    import ctypes
    if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), 'unshare(CLONE_NEWNS)')
    subprocess.run(['mount', '--make-rprivate', '/'], check=True)
    subprocess.run(['mount', '-t', 'sysfs', 'sysfs', '/sys'], check=True)


def _a_server_that_goes_away_and_one_that_never_answers(tmp_path):
    _own_sysfs()
    net = routing.Routing()
    run_dir = str(tmp_path)
    # the endpoints' addresses (the collection refuses loopback endpoints)
    for cmd in (['link', 'set', 'lo', 'up'], ['link', 'add', 'pic-t-net', 'type', 'veth', 'peer', 'name', 'pic-t-net2'],
                ['addr', 'add', '10.98.0.1/24', 'dev', 'pic-t-net'], ['addr', 'add', '10.98.0.2/24', 'dev', 'pic-t-net'],
                ['link', 'set', 'pic-t-net', 'up'], ['link', 'set', 'pic-t-net2', 'up']):
        subprocess.run(['ip'] + cmd, check=True)
    (cell_key, cell_pub), (server_key, server_pub), (lone_key, _lone_pub) = _keypair(), _keypair(), _keypair()
    server = _up(net, run_dir, 'pic-t-srv', {
        'private_key': server_key, 'address': ['10.99.0.1/32'], 'peer_public_key': cell_pub,
        'endpoint': '10.98.0.2:51901', 'allowed_ips': ['10.99.0.2/32'], 'listen_port': 51902})
    cell = _up(net, run_dir, 'pic-t-exit', {
        'private_key': cell_key, 'address': ['10.99.0.2/32'], 'peer_public_key': server_pub,
        'endpoint': '10.98.0.1:51902', 'allowed_ips': ['10.99.0.1/32'], 'listen_port': 51901,
        'persistent_keepalive': 1})
    # a server that never answers: nothing holds its endpoint's address
    lone = _up(net, run_dir, 'pic-t-lone', {
        'private_key': lone_key, 'address': ['10.99.1.2/32'], 'peer_public_key': server_pub,
        'endpoint': '10.98.0.3:51999', 'allowed_ips': ['10.99.1.1/32'], 'persistent_keepalive': 1})
    layout = model.normalize_settings(None)[1]
    exit_conn, lone_conn = _conn('exit', 'pic-t-exit'), _conn('lone', 'pic-t-lone')
    monitor = cli.Monitor(str(tmp_path / 'state'))
    try:
        out = {'first_age': _wait_for_handshake('pic-t-exit')}
        out['while_answering'] = (health.check(exit_conn, layout=layout), monitor.verdict(exit_conn, layout))
        out['lone_at_first'] = (health.check(lone_conn, layout=layout), monitor.verdict(lone_conn, layout))
        server.remove()                      # the server goes away; the handshake only gets older
        time.sleep(MAX_AGE + 1.5)
        out['gone'] = (health.check(exit_conn, layout=layout), monitor.verdict(exit_conn, layout))
        out['lone_later'] = (health.check(lone_conn, layout=layout), monitor.verdict(lone_conn, layout),
                             wgiface.handshake_age('pic-t-lone'))
    finally:
        for iface in (server, cell, lone):    # wireguard-go outlives the namespace: stop it
            iface.remove()
    return out


def test_real_interfaces_with_a_short_max_age(tmp_path):
    if not shutil.which('wg') or not shutil.which('wireguard-go'):
        pytest.skip('wg and wireguard-go are needed')
    out = in_netns(_a_server_that_goes_away_and_one_that_never_answers, tmp_path)
    assert out['first_age'] is not None and out['first_age'] <= MAX_AGE, out
    (status, reason), (down, why) = out['while_answering']
    assert status == health.WORKING and reason.startswith('last handshake'), reason
    assert down is False, why
    (status, reason), (down, why) = out['lone_at_first']
    assert (status, reason) == (health.UNKNOWN, 'no handshake yet on pic-t-lone')
    assert (down, why) == (False, 'handshake never')
    (status, reason), (down, why) = out['gone']
    assert status == health.DOWN and reason.endswith('(more than %ds)' % MAX_AGE), reason
    assert down is True and why.endswith('(more than %ds)' % MAX_AGE), why
    (status, reason), (down, why), age = out['lone_later']
    assert age is None                                   # its server never answered
    assert (status, reason) == (health.UNKNOWN, 'no handshake yet on pic-t-lone')
    assert down is True and why.startswith('no handshake in the ') and 'pic-t-lone' in why, why
