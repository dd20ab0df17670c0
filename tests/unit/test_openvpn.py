# -*- coding: utf-8 -*-
"""The openvpn exit type's pure helpers: validation of the .ovpn text, the
connection record, and the up hook's plan."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, model, openvpn
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty

OVPN = """# a provider's file
client
dev tun
proto udp
remote vpn.example.net 1194
remote 198.51.100.7 1194
nobind
remote-cert-tls server
<ca>
-----BEGIN CERTIFICATE-----
up this line is inside a block and is not a directive
-----END CERTIFICATE-----
</ca>
<key>
remote not-a-remote
</key>
"""


def test_a_providers_file_is_accepted_and_its_remotes_listed():
    assert openvpn.validate({'ovpn_config': OVPN}) == ['vpn.example.net', '198.51.100.7']


def test_directives_skip_comments_and_inline_blocks_but_read_connection_blocks():
    text = "; comment\n# up x\n<connection>\nremote a.example 1194 udp\n</connection>\n<ca>\ndaemon\n</ca>\n"
    assert openvpn.directives(text) == [(4, 'remote', ['a.example', '1194', 'udp'])]
    assert openvpn.validate({'ovpn_config': text}) == ['a.example']


def test_quoted_arguments_are_one_word():
    assert openvpn.directives('pull-filter ignore "route 10.0.0.0"\n') == \
        [(1, 'pull-filter', ['ignore', 'route 10.0.0.0'])]


@pytest.mark.parametrize('extra,words', [
    ('up /etc/openvpn/update-resolv-conf', ["line 17", "'up' is not allowed", "runs a command"]),
    ('down /etc/openvpn/update-resolv-conf', ["'down' is not allowed"]),
    ('route-up "/bin/sh -c x"', ["'route-up' is not allowed"]),
    ('script-security 2', ["'script-security' is not allowed"]),
    ('plugin /usr/lib/x.so', ["'plugin' is not allowed"]),
    ('daemon', ["'daemon' is not allowed", "foreground"]),
    ('config other.conf', ["'config' is not allowed", "inline"]),
    ('mode server', ["'mode' is not allowed", "client"]),
    ('dev tap', ["'dev tap'", "tun devices"]),
    ('dev-type tap', ["'dev-type tap'", "tun devices"]),
    ('--up /bin/true', ["'up' is not allowed"]),
    ('auth-user-pass', ["'auth-user-pass' without a file", "username and password"]),
    ('remote', ["line 17", "'remote' takes 1 to 3 argument(s), not 0"]),
])
def test_refused_lines_are_named(extra, words):
    with pytest.raises(PicError) as err:
        openvpn.validate({'ovpn_config': OVPN + extra + '\n'})
    assert str(err.value).startswith('config.ovpn_config: ')
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize('text', ['client\ndev tun\n', '# remote a.example\nclient\n'])
def test_a_config_without_remote_is_refused(text):
    with pytest.raises(PicError) as err:
        openvpn.validate({'ovpn_config': text})
    assert "no 'remote' line" in str(err.value)


@pytest.mark.parametrize('config,field', [
    ({}, 'config.ovpn_config'),
    ({'ovpn_config': '   '}, 'config.ovpn_config'),
    ({'ovpn_config': 'remote a\n<cert>\nxx\n'}, 'config.ovpn_config'),
    ({'ovpn_config': OVPN, 'username': 'u'}, 'config.password'),
    ({'ovpn_config': OVPN, 'password': 'p'}, 'config.username'),
    ({'ovpn_config': OVPN, 'username': 'u', 'password': 'a\nb'}, 'config.password'),
    ({'ovpn_config': OVPN, 'username': '', 'password': 'p'}, 'config.username'),
])
def test_bad_settings_name_their_field(config, field):
    with pytest.raises(PicError) as err:
        openvpn.validate(config)
    assert str(err.value).startswith(field + ':'), str(err.value)


def test_accepted_lines_that_the_role_replaces():
    text = OVPN + 'dev tun0\ndev-type tun\n'
    assert openvpn.validate({'ovpn_config': text}) == ['vpn.example.net', '198.51.100.7']
    assert 'dev' not in openvpn.render(text).split()
    assert openvpn.validate({'ovpn_config': OVPN + 'auth-user-pass\n', 'username': 'u', 'password': 'p'})


def test_connection_record_carries_everything_into_the_tunnel_and_hides_the_password():
    public, payload, secrets, routes = connections.validate_config(
        'openvpn', {'ovpn_config': OVPN, 'username': 'u', 'password': 'hunter2', 'health_target': '10.8.0.1'})
    assert routes == {'4': ['0.0.0.0/0'], '6': ['::/0']}
    assert public['remote'] == ['vpn.example.net', '198.51.100.7']
    assert public['health_target'] == '10.8.0.1'
    assert 'hunter2' not in repr(public) and 'BEGIN CERTIFICATE' not in repr(public)
    assert 'hunter2' in secrets
    assert payload['ovpn_config'] == OVPN


def test_connection_is_routed_into_its_table_only_while_its_interface_exists():
    doc = empty()
    doc, record, _payload, _secrets, _removed = connections.plan(
        doc, {'name': 'Home VPN', 'type': 'openvpn', 'config': {'ovpn_config': OVPN}})
    assert record['interface'] == 'pic-home-vpn' and record['fail_open'] is False
    up = model.desired(doc, {'interfaces': ['pic-home-vpn']})
    assert sorted((r['family'], r['dst'], r['type'], r['oif']) for r in up.routes[record['table']]) == [
        (4, '0.0.0.0/0', 'unicast', 'pic-home-vpn'), (6, '::/0', 'unicast', 'pic-home-vpn')]
    down = model.desired(doc, {'interfaces': []})
    assert down.routes[record['table']] == []
    # and nothing of the tunnel's ever goes to the main table
    assert all(t == record['table'] for t in up.routes)


ENV = {'dev': 'pic-home-vpn', 'ifconfig_local': '10.8.0.6', 'ifconfig_netmask': '255.255.255.0',
       'ifconfig_ipv6_local': 'fd00:8::1000', 'ifconfig_ipv6_netbits': '64', 'tun_mtu': '1500',
       'script_type': 'up', 'foreign_option_1': 'dhcp-option DNS 10.8.0.1', 'route_gateway_1': '10.8.0.1'}


def test_up_hook_sets_host_addresses_without_prefix_routes():
    plan = openvpn.hook_plan(ENV, 'pic-home-vpn')
    assert ['-4', 'addr', 'replace', '10.8.0.6/32', 'dev', 'pic-home-vpn', 'noprefixroute'] in plan
    assert ['-6', 'addr', 'replace', 'fd00:8::1000/128', 'dev', 'pic-home-vpn', 'noprefixroute'] in plan
    assert ['link', 'set', 'dev', 'pic-home-vpn', 'mtu', '1500'] in plan
    assert ['link', 'set', 'dev', 'pic-home-vpn', 'addrgenmode', 'none'] in plan
    assert plan[-1] == ['link', 'set', 'dev', 'pic-home-vpn', 'up']
    assert not [argv for argv in plan if 'route' in argv]     # routes: the connection's table, by heal()
    assert not [argv for argv in plan if '10.8.0.1' in argv]  # pushed DNS and gateway: ignored


def test_up_hook_ipv4_only_and_ipv6_only():
    v4 = dict(ENV)
    del v4['ifconfig_ipv6_local']
    assert not [argv for argv in openvpn.hook_plan(v4, 'pic-home-vpn') if '-6' in argv and 'replace' in argv]
    v6 = dict(ENV)
    del v6['ifconfig_local']
    assert not [argv for argv in openvpn.hook_plan(v6, 'pic-home-vpn') if '-4' in argv and 'replace' in argv]


@pytest.mark.parametrize('change,words', [
    ({'dev': 'tun0'}, ["'tun0'", "'pic-home-vpn'"]),
    ({'ifconfig_local': '10.8.0.300'}, ['invalid ifconfig_local']),
    ({'ifconfig_local': 'fd00::1'}, ['wrong family']),
    ({'ifconfig_local': '', 'ifconfig_ipv6_local': ''}, ['no address']),
    ({'tun_mtu': '9x'}, ['invalid tun_mtu']),
])
def test_up_hook_refuses_what_it_cannot_trust(change, words):
    with pytest.raises(PicError) as err:
        openvpn.hook_plan(dict(ENV, **change), 'pic-home-vpn')
    for word in words:
        assert word in str(err.value)


def test_down_hook_does_nothing():
    assert openvpn.hook_plan(dict(ENV, script_type='down'), 'pic-home-vpn') == []


def test_no_orphan_without_a_pid_file(tmp_path):
    assert openvpn.orphaned_pid(str(tmp_path), 'home-vpn') is None
    (tmp_path / 'openvpn').mkdir()
    (tmp_path / 'openvpn' / 'home-vpn.pid').write_text('1\n')    # pid 1 is not an openvpn
    assert openvpn.orphaned_pid(str(tmp_path), 'home-vpn') is None
