# -*- coding: utf-8 -*-
"""The proxy exit's deep check: a SOCKS5 or HTTP CONNECT request from the cell to the
proxy server for ``health_target``:``health_port`` (default 80), as redsocks makes for
a peer; down when the proxy cannot reach the target. Stand-in proxies on loopback that
grant or refuse; pic_health's check of a proxy connection whose ports answer."""
import os
import socket

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, health
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exits import proxy
from ansible_collections.pic.connectivity.tests.unit.helpers import FakeProxy


def _conn(port, **config):
    base = {'host': '127.0.0.1', 'port': port, 'proxy_type': 'socks5', 'health_target': '198.51.100.7'}
    base.update(config)
    return {'id': 'px', 'type': 'proxy', 'local_port': 12345, 'config': base}


@pytest.mark.parametrize('kind', ['socks5', 'http-connect'])
def test_a_proxy_that_reaches_the_target_is_working_and_one_that_cannot_is_down(kind):
    fake = FakeProxy(kind, ('198.51.100.7', 80))
    try:
        good = proxy.Proxy.deep_check(_conn(fake.port, proxy_type=kind), None, 2.0)
        bad = proxy.Proxy.deep_check(_conn(fake.port, proxy_type=kind, health_port=8080), None, 2.0)
        six = proxy.Proxy.deep_check(_conn(fake.port, proxy_type=kind, health_target='2001:db8::7'), None, 2.0)
    finally:
        fake.close()
    assert good == (True, 'the proxy reaches 198.51.100.7:80')
    assert bad[0] is False and bad[1].startswith('the proxy cannot reach 198.51.100.7:8080 (it answered ')
    assert six[0] is False and '2001:db8::7:80' in six[1]
    assert fake.asked == [('198.51.100.7', 80), ('198.51.100.7', 8080), ('2001:db8::7', 80)]


def test_a_silent_proxy_is_down():
    silent = socket.socket()
    silent.bind(('127.0.0.1', 0))
    silent.listen(1)
    try:
        working, why = proxy.Proxy.deep_check(_conn(silent.getsockname()[1]), None, 0.5)
    finally:
        silent.close()
    assert working is False and 'no answer' in why


def test_nothing_is_asked_without_a_target_or_without_the_password_of_a_login(tmp_path):
    assert proxy.Proxy.deep_check(_conn(1, health_target=None), None, 1.0) is None
    assert proxy.Proxy.deep_check(_conn(1, username='u'), None, 1.0) is None
    assert proxy.Proxy.deep_check(_conn(1, username='u'), str(tmp_path), 1.0) is None


PASSWORD = 'pa"ss\\word; {x}'


def _instance_file(state_dir, password):
    """The redsocks file the proxy role writes for connection px (the template's lines)."""
    from ansible_collections.pic.connectivity.plugins.filter import render
    os.makedirs(os.path.join(state_dir, 'proxy'))
    with open(os.path.join(state_dir, 'proxy', 'px.conf'), 'w') as handle:
        handle.write('redsocks {\n\tlogin = %s;\n\tpassword = %s;\n}\n'
                     % (render.redsocks_string('user'), render.redsocks_string(password, secret=True)))


@pytest.mark.parametrize('kind', ['socks5', 'http-connect'])
def test_a_proxy_with_a_login_is_asked_with_the_instances_password(tmp_path, kind):
    state_dir = str(tmp_path)
    _instance_file(state_dir, PASSWORD)
    assert proxy.instance_password(state_dir, {'id': 'px'}) == PASSWORD
    fake = FakeProxy(kind, ('198.51.100.7', 80), login=('user', PASSWORD))
    try:
        good = proxy.Proxy.deep_check(_conn(fake.port, proxy_type=kind, username='user'), state_dir, 2.0)
        wrong = proxy.Proxy.deep_check(_conn(fake.port, proxy_type=kind, username='other'), state_dir, 2.0)
    finally:
        fake.close()
    assert good == (True, 'the proxy reaches 198.51.100.7:80')
    assert wrong[0] is False and PASSWORD not in wrong[1], wrong
    assert fake.logins[0] == ('user', PASSWORD)


def test_the_health_check_of_a_proxy_whose_ports_answer_asks_the_proxy():
    fake = FakeProxy('socks5', ('198.51.100.7', 443))
    try:
        conn = _conn(fake.port, health_port=443)
        conn['local_port'] = fake.port           # the "instance port" answers too
        up = health.guide_check(conn)
        down = health.guide_check(dict(conn, config=dict(conn['config'], health_port=444)))
    finally:
        fake.close()
    assert up[0] == health.WORKING and up[1].endswith('; the proxy reaches 198.51.100.7:443'), up
    assert down[0] == health.DOWN and 'the proxy cannot reach 198.51.100.7:444 (it answered connection refused)' \
        in down[1], down


def test_health_port_is_validated():
    config = {'host': '192.0.2.2', 'port': 1080, 'health_target': '192.0.2.9'}
    assert connections.validate_config('proxy', dict(config, health_port=443))[0]['health_port'] == 443
    for bad in (0, 65536, 'http'):
        with pytest.raises(PicError) as err:
            connections.validate_config('proxy', dict(config, health_port=bad))
        assert 'health_port' in str(err.value)
