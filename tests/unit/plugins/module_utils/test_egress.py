# -*- coding: utf-8 -*-
"""The egress proof: the echo URL's grammar, ``expect_egress``, and the verdict of
health and the monitor against a fake echo server on loopback (asked with the
connection's mark, as through an interface exit and sshuttle's redirect; through
a fake SOCKS5 port, as through Tor; through a fake SOCKS5 or HTTP CONNECT proxy)."""
import socket

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import cli, egress, health, model
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exits.base import common
from ansible_collections.pic.connectivity.plugins.module_utils.exits import sshuttle
from ansible_collections.pic.connectivity.plugins.module_utils.validation import parse_http_url
from ansible_collections.pic.connectivity.tests.unit.helpers import FakeProxy, FakeServer, echo, echo_as

WRONG = '198.51.100.250/32'


@pytest.fixture
def echo_server():
    server = FakeServer(echo)
    yield server
    server.close()


def wg_conn(port, expect=None):
    config = {'egress_url': 'http://127.0.0.1:%d/ip' % port}
    if expect is not None:
        config['expect_egress'] = expect
    return {'id': 'exit-wg', 'type': 'wireguard_ext', 'mark': 0x10000, 'config': config}


LAYOUT = model.normalize_settings(None)[1]


# -- grammar ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('url, canonical', [
    ('http://198.51.100.80', 'http://198.51.100.80/'),
    ('http://198.51.100.80:80/', 'http://198.51.100.80/'),
    ('http://[2001:db8:ff::80]:8080/ip?format=text', 'http://[2001:db8:ff::80]:8080/ip?format=text'),
    ('http://echo.example.net/ip', 'http://echo.example.net/ip'),
])
def test_echo_urls_that_are_taken(url, canonical):
    assert parse_http_url(url, 'egress_url')[0] == canonical


@pytest.mark.parametrize('url', [
    'https://198.51.100.80/', 'ftp://198.51.100.80/', 'HTTP://198.51.100.80/', '198.51.100.80',
    'http://user:secret@198.51.100.80/', 'http://198.51.100.80:0/', 'http://198.51.100.80:70000/',
    'http://127.0.0.1/', 'http://[::1]/', 'http://2001:db8::1/', 'http://-echo.example.net/', 'http://0x7f000001/',
    'http://198.51.100.80/a b', 'http://198.51.100.80/%2e', 'http://198.51.100.80/x\n', 'http://198.51.100.80/#f',
    'http://198.51.100.80/$(id)', 'http:///ip', 'http://[fe80::1]/', 42, None,
])
def test_echo_urls_that_are_refused(url):
    with pytest.raises(PicError):
        parse_http_url(url, 'egress_url')


def test_credentials_in_the_url_are_never_shown():
    with pytest.raises(PicError) as err:
        parse_http_url('http://user:hunter2@198.51.100.80/', 'egress_url')
    assert 'hunter2' not in str(err.value) and 'credentials' in str(err.value)


def test_expect_egress_is_canonical_and_needs_the_url():
    expect = ['203.0.113.20', '2001:db8:1::/64', '203.0.113.20/32']
    public = common({'egress_url': 'http://198.51.100.80', 'expect_egress': expect}, 'config')
    assert public == {'egress_url': 'http://198.51.100.80/',
                      'expect_egress': ['203.0.113.20/32', '2001:db8:1::/64']}
    assert common({'egress_url': 'http://198.51.100.80', 'expect_egress': '203.0.113.20'},
                  'config')['expect_egress'] == ['203.0.113.20/32']
    with pytest.raises(PicError, match='needs egress_url'):
        common({'expect_egress': ['203.0.113.20']}, 'config')
    for bad in ([], ['203.0.113.20/24'], ['0.0.0.0/0'], ['not an address'], [7], {'a': 1}):
        with pytest.raises(PicError):
            common({'egress_url': 'http://198.51.100.80', 'expect_egress': bad}, 'config')


# -- the verdict ------------------------------------------------------------------------------------------
def test_verdict():
    assert egress.verdict('203.0.113.20', ['203.0.113.0/24'])[0] is True
    assert egress.verdict('203.0.113.20', ['2001:db8::/32', '198.51.100.0/24'])[0] is False
    assert egress.verdict('2001:db8::5', ['2001:db8::/32'])[0] is True
    assert egress.verdict('203.0.113.20', [])[0] is None
    assert egress.verdict(None, ['203.0.113.0/24'], 'timed out') == (None, 'egress unknown (timed out)')
    assert egress.read_address(' ::ffff:192.0.2.1\n') == '192.0.2.1'
    assert egress.read_address('<html>') is None


def test_an_exit_leaving_from_the_expected_address_is_working_and_reported(echo_server):
    seen = {}
    status, reason = health.egress_check(wg_conn(echo_server.port, ['127.0.0.1/32']), health.WORKING,
                                         'last handshake 3s ago', LAYOUT, None, seen)
    assert status == health.WORKING, reason
    assert seen == {'exit-wg': '127.0.0.1'} and 'leaves from 127.0.0.1 (expected)' in reason
    assert echo_server.requests[0].startswith('GET /ip HTTP/1.0\r\n')


def test_an_exit_leaving_from_elsewhere_is_down(echo_server):
    seen = {}
    status, reason = health.egress_check(wg_conn(echo_server.port, [WRONG]), health.WORKING, 'ok', LAYOUT,
                                         None, seen)
    assert status == health.DOWN and 'leaves from 127.0.0.1, not from expect_egress %s' % WRONG in reason
    assert seen == {'exit-wg': '127.0.0.1'}


def test_without_expect_egress_the_address_is_only_reported(echo_server):
    seen = {}
    assert health.egress_check(wg_conn(echo_server.port), health.WORKING, 'ok', LAYOUT, None, seen) == (
        health.WORKING, 'ok; leaves from 127.0.0.1')
    assert seen == {'exit-wg': '127.0.0.1'}


def test_no_answer_is_unknown_not_down(echo_server):
    port = echo_server.port
    echo_server.close()
    seen = {}
    status, reason = health.egress_check(wg_conn(port, [WRONG]), health.WORKING, 'ok', LAYOUT, None, seen)
    assert status == health.UNKNOWN and 'egress unknown' in reason
    assert seen == {'exit-wg': None}
    # the guide's unknown stays unknown; nothing expected: the status is the other checks'
    assert health.egress_check(wg_conn(port), health.WORKING, 'ok', LAYOUT, None)[0] == health.WORKING


def test_an_answer_that_is_no_address_is_unknown():
    server = FakeServer(lambda srv, conn: echo(srv, conn, '<html>hello</html>'))
    try:
        status, reason = health.egress_check(wg_conn(server.port, [WRONG]), health.WORKING, 'ok', LAYOUT, None)
    finally:
        server.close()
    assert status == health.UNKNOWN and 'not an address' in reason


def test_a_tor_exit_is_asked_through_its_socks_port():
    server = FakeProxy('socks5', ('echo.example.net', 8080), then=echo_as('192.0.2.7'))
    conn = {'id': 'tor', 'type': 'tor', 'local_port': 9040,
            'config': {'socks_port': server.port, 'egress_url': 'http://echo.example.net:8080/',
                       'expect_egress': ['192.0.2.0/24']}}
    try:
        seen = {}
        status, reason = health.egress_check(conn, health.WORKING, "ok", None, None, seen)
        assert status == health.WORKING, reason
        assert seen == {'tor': '192.0.2.7'}
        # the host name goes to Tor (resolved at the exit, a SOCKS5 name), not to the cell's resolver
        assert server.asked == [('echo.example.net', 8080)]
        assert 'Host: echo.example.net:8080\r\n' in server.requests[0]
    finally:
        server.close()


@pytest.mark.parametrize('kind', ['socks5', 'http-connect'])
def test_a_proxy_exit_is_asked_through_the_proxy_server(kind):
    """The echo URL through the proxy server (as redsocks asks it for a peer): the address
    its echo server saw is the proxy's; an address outside expect_egress is down."""
    server = FakeProxy(kind, ('198.51.100.80', 8080), then=echo_as('203.0.113.50'))
    config = {'host': '127.0.0.1', 'port': server.port, 'proxy_type': kind,
              'egress_url': 'http://198.51.100.80:8080/ip', 'expect_egress': ['203.0.113.50/32']}
    conn = {'id': 'px', 'type': 'proxy', 'local_port': 12345, 'config': config}
    try:
        seen = {}
        assert health.egress_check(conn, health.WORKING, 'ok', None, None, seen) == (
            health.WORKING, 'ok; leaves from 203.0.113.50 (expected)')
        assert seen == {'px': '203.0.113.50'}
        wrong = dict(conn, config=dict(config, expect_egress=[WRONG]))
        status, reason = health.egress_check(wrong, health.WORKING, 'ok', None, None)
        assert status == health.DOWN and 'not from expect_egress %s' % WRONG in reason, reason
        # a proxy that refuses the echo URL: unknown, with what it said
        refused = dict(conn, config=dict(config, egress_url='http://198.51.100.81:8080/ip'))
        status, reason = health.egress_check(refused, health.WORKING, 'ok', None, None)
        assert status == health.UNKNOWN and 'the proxy refused 198.51.100.81:8080' in reason, reason
    finally:
        server.close()
    assert server.asked == [('198.51.100.80', 8080)] * 2 + [('198.51.100.81', 8080)]


def test_sshuttle_is_asked_with_its_mark_by_the_redirect_of_its_peers(echo_server, monkeypatch):
    """From the cell with the connection's mark (SO_MARK): the data plane's local_redirect
    sends it to the instance (tests/unit/.../exits/test_sshuttle.py proves that with the kernel);
    here the marked connection itself is recorded."""
    made = []

    def marked(host, port, mark, timeout):
        made.append((host, port, mark))
        return socket.create_connection(('127.0.0.1', echo_server.port), timeout=timeout)
    monkeypatch.setattr(sshuttle, 'marked_connection', marked)
    config = {'egress_url': 'http://198.51.100.80/', 'expect_egress': ['127.0.0.1/32']}
    conn = {'id': 'ssh', 'type': 'sshuttle', 'mark': 0x30000, 'local_port': 12300, 'config': config}
    seen = {}
    assert health.egress_check(conn, health.WORKING, 'ok', None, None, seen) == (
        health.WORKING, 'ok; leaves from 127.0.0.1 (expected)')
    assert made == [('198.51.100.80', 80, 0x30000)] and seen == {'ssh': '127.0.0.1'}


def test_sshuttle_without_a_mark_is_not_probed():
    config = {'egress_url': 'http://198.51.100.80/', 'expect_egress': [WRONG]}
    conn = {'id': 'ssh', 'type': 'sshuttle', 'config': config}
    assert egress.probe(conn) == (None, 'a sshuttle exit cannot be asked for its egress')


def test_the_monitor_holds_a_wrong_exit_down_and_asks_at_most_every_few_seconds(echo_server, tmp_path):
    monitor = cli.Monitor(str(tmp_path))
    conn = wg_conn(echo_server.port, [WRONG])
    down, reason = monitor._egress_verdict(conn, LAYOUT, None, 'probe of 192.0.2.1 answered')
    assert down is True and 'not from expect_egress' in reason
    assert monitor._egress_verdict(conn, LAYOUT, None, 'again')[0] is True
    assert len(echo_server.requests) == 1
    right = wg_conn(echo_server.port, ['127.0.0.0/8'])
    assert monitor._egress_verdict(right, LAYOUT, None, 'ok') == (None, 'ok; leaves from 127.0.0.1 (expected)')
    # a connection already down is not asked; one without expect_egress is not asked by the monitor
    assert monitor._egress_verdict(conn, LAYOUT, True, 'interface missing') == (True, 'interface missing')
    assert monitor._egress_verdict(wg_conn(echo_server.port), LAYOUT, False, 'ok') == (False, 'ok')
    assert len(echo_server.requests) == 1


def test_the_health_cache_keeps_the_address(echo_server):
    conn = wg_conn(echo_server.port)
    assert health.cache_entry(conn, 'working', 'ok', 5, {'exit-wg': '127.0.0.1'}) == {
        'status': 'working', 'reason': 'ok', 'checked_at': 5, 'egress': '127.0.0.1'}
    assert 'egress' not in health.cache_entry(dict(conn, config={}), 'working', 'ok', 5, {})


def test_a_connection_the_monitor_holds_down_still_reports_its_address(echo_server, monkeypatch):
    monkeypatch.setattr(health, 'guide_check', lambda *args: (health.WORKING, 'last handshake 3s ago'))
    runtime = {'down': ['exit-wg'], 'reasons': {'exit-wg': 'it leaves from 127.0.0.1'}}
    seen = {}
    assert health.check(wg_conn(echo_server.port, [WRONG]), runtime, layout=LAYOUT, egress_out=seen) == (
        health.DOWN, 'monitor: it leaves from 127.0.0.1')
    assert seen == {'exit-wg': '127.0.0.1'}
