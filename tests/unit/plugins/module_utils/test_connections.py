# -*- coding: utf-8 -*-
"""Connections (module_utils/connections.py): the strict grammar at the level of a pic_connection call.

Regressions of issue 11: each case was accepted (or echoed a secret, or
replaced a connection) before the grammar was made strict.
"""
import hashlib
import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.pic.connectivity.plugins.module_utils import connections, wgconf
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty

from ansible_collections.pic.connectivity.tests.unit.helpers import CONTROL, HOSTILE, PRIV, PSK, PUB, keyed, refused, wg_text

# Decodes to 32 bytes with a lenient decoder, but is not what `wg` prints: refused by wg.
NONCANONICAL = PUB[:42] + 'j='


# (type, config, field, value shown in the message or None)
CASES = [
    ('sshuttle', {'host': 'ssh.example', 'dns': 'fd00::1%\n--ssh-cmd=touch /tmp/pwned'}, 'config.dns',
     'fd00::1%\n--ssh-cmd=touch /tmp/pwned'),
    ('sshuttle', {'host': 'ssh.example', 'dns': ['fd00::53%eth0']}, 'config.dns[0]', 'fd00::53%eth0'),
    ('sshuttle', {'host': 'ssh.example\n'}, 'config.host', 'ssh.example\n'),
    ('sshuttle', {'host': '@/etc/shadow'}, 'config.host', '@/etc/shadow'),
    ('sshuttle', {'host': '-oProxyCommand=sh'}, 'config.host', '-oProxyCommand=sh'),
    ('sshuttle', {'host': 'ssh.example', 'user': '-oProxyCommand=sh'}, 'config.user', '-oProxyCommand=sh'),
    ('sshuttle', {'host': 'ssh.example', 'user': 'root:hunter2'}, 'config.user', 'root:hunter2'),
    ('sshuttle', {'host': 'ssh.example', 'user': 'root\n'}, 'config.user', 'root\n'),
    ('sshuttle', {'host': 'ssh.example', 'user': 'root@other'}, 'config.user', 'root@other'),
    ('sshuttle', {'host': 'ssh.example', 'python': 'python3 -c x'}, 'config.python', 'python3 -c x'),
    ('sshuttle', {'host': 'ssh.example', 'python': '-c'}, 'config.python', '-c'),
    ('sshuttle', {'host': 'ssh.example', 'ssh_key': 'k\x00'}, 'config.ssh_key', None),
    ('sshuttle', {'host': 'ssh.example', 'health_target': '192.0.2.1%x'}, 'config.health_target', '192.0.2.1%x'),
    ('sshuttle', {'host': 'ssh.example', 'health_target': '::ffff:192.0.2.1'}, 'config.health_target',
     '::ffff:192.0.2.1'),
    ('tor', {'interface': 'eth0'}, 'config.interface', 'eth0'),
    ('wireguard_ext', keyed(interface='wg0'), 'config.interface', 'wg0'),
    ('wireguard_ext', keyed(interface='lo'), 'config.interface', 'lo'),
    ('wireguard_ext', keyed(interface='pic-x\n'), 'config.interface', 'pic-x\n'),
    ('proxy', {'host': '203.0.113.50\n', 'port': 1080}, 'config.host', '203.0.113.50\n'),
    ('proxy', {'host': '203.0.113.50', 'port': '1080\n'}, 'config.port', '1080\n'),
    ('proxy', {'host': '203.0.113.50', 'port': 1080, 'username': 'u"ser'}, 'config.username', 'u"ser'),
    ('proxy', {'host': '203.0.113.50', 'port': 1080, 'username': '-u'}, 'config.username', '-u'),
    ('proxy', {'host': '203.0.113.50', 'port': 1080, 'username': 'u', 'password': 'pw\nx'}, 'config.password',
     None),
    ('proxy', {'host': '203.0.113.50', 'port': 1080, 'username': 'u', 'password': "pw'x"}, 'config.password',
     None),
    # redsocks reads these as punctuation even quoted: the role's file was refused after the save
    ('proxy', {'host': '203.0.113.50', 'port': 1080, 'username': 'u', 'password': ';'}, 'config.password', None),
    ('proxy', {'host': '203.0.113.50', 'port': 1080, 'username': 'u', 'password': '}'}, 'config.password', None),
    ('proxy', {'host': '203.0.113.50', 'port': 1080, 'username': 'u', 'password': '/*'}, 'config.password', None),
    ('wireguard_ext', keyed(allowed_ips=['0.0.0.0/0%\n[Peer]']), 'config.peers[0].allowed_ips[0]',
     '0.0.0.0/0%\n[Peer]'),
    ('wireguard_ext', keyed(allowed_ips=['0.0.0.0/0', 'fd00::/8%x']), 'config.peers[0].allowed_ips[1]',
     'fd00::/8%x'),
    ('wireguard_ext', keyed(dns=['fd00::53%\nPostUp=sh']), 'config.dns[0]', 'fd00::53%\nPostUp=sh'),
    ('wireguard_ext', keyed(address=['10.1.0.2%x/32']), 'config.address[0]', '10.1.0.2%x/32'),
    ('wireguard_ext', keyed(endpoint='203.0.113.20:51820\n'), 'config.peers[0].endpoint', '203.0.113.20:51820\n'),
    ('wireguard_ext', keyed(endpoint='[fd00::1%eth0]:51820'), 'config.peers[0].endpoint', '[fd00::1%eth0]:51820'),
    ('wireguard_ext', keyed(endpoint='-host.example:51820'), 'config.peers[0].endpoint', '-host.example:51820'),
    ('wireguard_ext', keyed(peer_public_key=NONCANONICAL), 'config.peers[0].public_key', NONCANONICAL),
    ('wireguard_ext', keyed(private_key=PRIV[:42] + chr(ord(PRIV[42]) + 1) + '='), 'config.private_key', None),
    ('wireguard_ext', keyed(preshared_key=PSK[:42] + chr(ord(PSK[42]) + 1) + '='), 'config.peers[0].preshared_key',
     None),
    ('wireguard_ext', keyed(mtu='1420\n'), 'config.mtu', '1420\n'),
    ('wireguard_ext', {'wg_config': wg_text(allowed='0.0.0.0/0, fd00::/8%x')}, 'config.wg_config.peers[0].'
     'allowed_ips[1]', 'fd00::/8%x'),
    ('wireguard_ext', {'wg_config': wg_text(extra_iface='DNS = 10.0.0.53%x')}, 'config.wg_config.dns[0]',
     '10.0.0.53%x'),
]


@pytest.mark.parametrize('ctype,config,field,value', CASES, ids=['%s-%s' % (c[0], c[2]) for c in CASES])
def test_hostile_config_is_refused(ctype, config, field, value):
    err = refused(ctype, config)
    assert err.field == field, str(err)
    if value is None:
        assert err.value is None and 'hidden' in str(err)
    else:
        assert value in (err.value or ''), str(err)
    for secret in (PRIV, PSK, 'pw\nx', "pw'x"):
        assert secret not in str(err)


def test_long_names_get_distinct_ids():
    one, two = 'Commercial provider exit in Frankfurt 1', 'Commercial provider exit in Frankfurt 2'
    proxy = {'host': '203.0.113.5', 'port': 1080}
    doc, first, _p, _s, _r = connections.plan(empty(), {'name': one, 'type': 'proxy', 'config': proxy})
    doc, second, _p, _s, _r = connections.plan(doc, {'name': two, 'type': 'proxy',
                                                     'config': {'host': '203.0.113.6', 'port': 1080}})
    assert first['id'] != second['id']
    assert sorted(c['name'] for c in doc['connections'].values()) == [one, two]
    assert doc['connections'][first['id']]['config']['host'] == '203.0.113.5'


def test_an_existing_truncated_id_is_found_by_name():
    doc = empty()
    legacy = 'commercial-provider-exit-in-fran'
    doc['connections'][legacy] = {'id': legacy, 'name': 'Commercial provider exit in Frankfurt 1', 'type': 'tor',
                                  'index': 1, 'table': 10001, 'mark': 0x10000, 'fail_open': True, 'config': {}}
    doc, record, _p, _s, _r = connections.plan(doc, {'name': 'Commercial provider exit in Frankfurt 1',
                                                     'fail_open': False})
    assert record['id'] == legacy and list(doc['connections']) == [legacy]


def test_a_name_whose_id_is_taken_is_refused():
    doc, _rec, _p, _s, _r = connections.plan(empty(), {'name': 'Home VPN', 'type': 'tor'})
    with pytest.raises(PicError) as err:
        connections.plan(doc, {'name': 'home vpn', 'type': 'proxy', 'config': {'host': '203.0.113.5', 'port': 1}})
    assert err.value.field == 'name' and "'Home VPN'" in str(err.value) and "'home vpn'" in str(err.value)


def test_exit_interface_is_never_a_cell_interface():
    doc = empty()
    doc['services'] = {'mail': {'name': 'mail', 'address': ['10.9.0.2/32'], 'interface': 'pic-svc',
                                'connection': 'default', 'fail_open': None}}
    err = refused('wireguard_ext', keyed(interface='pic-svc'), doc=doc)
    assert err.field == 'config.interface' and 'service mail' in str(err)
    _doc, record, _p, _s, _r = connections.plan(empty(), {'name': 'X', 'type': 'wireguard_ext',
                                                          'config': keyed(interface='pic-mine')})
    assert record['interface'] == 'pic-mine'


# -- property-based: hostile values in every field of a connection's config ------------------------

FIELDS = [('sshuttle', 'host', {}), ('sshuttle', 'user', {'host': 'ssh.example'}),
          ('sshuttle', 'python', {'host': 'ssh.example'}), ('sshuttle', 'dns', {'host': 'ssh.example'}),
          ('sshuttle', 'port', {'host': 'ssh.example'}), ('sshuttle', 'health_target', {'host': 'ssh.example'}),
          ('sshuttle', 'interface', {'host': 'ssh.example'}),
          ('proxy', 'host', {'port': 1080}), ('proxy', 'username', {'host': '203.0.113.5', 'port': 1080}),
          ('proxy', 'password', {'host': '203.0.113.5', 'port': 1080, 'username': 'u'}),
          ('tor', 'socks_port', {}),
          ('wireguard_ext', 'endpoint', keyed()), ('wireguard_ext', 'dns', keyed()),
          ('wireguard_ext', 'mtu', keyed()), ('wireguard_ext', 'peer_public_key', keyed()),
          ('wireguard_ext', 'private_key', keyed()), ('wireguard_ext', 'preshared_key', keyed())]
SECRET_FIELDS = ('password', 'private_key', 'preshared_key')


@settings(max_examples=40, deadline=None, database=None)
@given(st.sampled_from(FIELDS), HOSTILE)
def test_fuzz_config_fields(spec, value):
    ctype, key, base = spec
    config = dict(base)
    config[key] = value
    try:
        _doc, record, payload, _secrets, _r = connections.plan(empty(), {'name': 'X', 'type': ctype,
                                                                         'config': config})
    except PicError as exc:
        assert exc.field.startswith('config.%s' % key) or exc.field.startswith('config.peers[0].'), str(exc)
        if key in SECRET_FIELDS:
            assert exc.value is None and (len(value) < 8 or value not in str(exc))
        elif value == '':
            assert exc.value in ('', None)   # "needs host", "is required"
        else:
            assert exc.value == value or exc.field.endswith(']'), str(exc)
        return
    assert not CONTROL.search(json.dumps(record, ensure_ascii=False))
    if ctype == 'wireguard_ext':
        rendered = wgconf.render_setconf(payload)
        assert rendered.count('[Peer]') == 1 and not CONTROL.search(rendered.replace('\n', ''))
        for line in rendered.splitlines():
            assert line in ('', '[Interface]', '[Peer]') or re.fullmatch(
                r'(PrivateKey|ListenPort|PublicKey|PresharedKey|Endpoint|AllowedIPs|PersistentKeepalive) = '
                r'[A-Za-z0-9+/=:.\[\], -]+', line), line


def test_the_openvpn_fingerprint_is_no_offline_test_of_a_password_guess():
    """The fingerprint shown in results and diffs was sha256 of the config: with a known .ovpn
    file, every password guess could be checked offline against it. It is an HMAC under a
    random key of the connection's record now, stable across runs, never shown."""
    ovpn = 'client\nremote vpn.example.net 1194\n'
    config = {'ovpn_config': ovpn, 'username': 'u', 'password': 'hunter2'}
    doc, record, _p, _s, _r = connections.plan(empty(), {'name': 'Home VPN', 'type': 'openvpn', 'config': config})
    shown = connections.public_result(record, doc['settings'])
    guess = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    assert shown['config']['fingerprint'] != guess
    assert record['fingerprint_key'] not in json.dumps(shown)
    again, same, _p, _s, _r = connections.plan(doc, {'name': 'Home VPN', 'config': dict(config)})
    assert same['config']['fingerprint'] == record['config']['fingerprint'] and again == doc
    _doc, other, _p, _s, _r = connections.plan(doc, {'name': 'Home VPN', 'config': dict(config, password='hunter3')})
    assert other['config']['fingerprint'] != record['config']['fingerprint']


def test_a_look_alike_name_is_refused_saying_connections_are_not_renamed():
    doc, _rec, _p, _s, _r = connections.plan(empty(), {'name': 'Tor exit', 'type': 'tor'})
    with pytest.raises(PicError) as err:
        connections.plan(doc, {'name': 'tor-exit', 'type': 'tor'})
    assert 'not renamed' in err.value.msg and "'Tor exit'" in err.value.msg


def test_a_new_name_is_a_new_connection_and_the_old_keeps_its_peers():
    from ansible_collections.pic.connectivity.plugins.module_utils import peers
    doc, _rec, _p, _s, _r = connections.plan(empty(), {'name': 'Old', 'type': 'proxy',
                                                       'config': {'proxy_type': 'socks5', 'host': '192.0.2.1', 'port': 1080}})
    doc, _names = peers.plan(doc, [{'peer': 'a', 'address': ['10.0.0.7'], 'connection': 'Old'}])
    doc, _rec, _p, _s, _r = connections.plan(doc, {'name': 'New', 'type': 'proxy',
                                                   'config': {'proxy_type': 'socks5', 'host': '192.0.2.1', 'port': 1080}})
    assert sorted(doc['connections']) == ['new', 'old'] and doc['peers']['a']['connection'] == 'old'
    with pytest.raises(PicError) as err:
        connections.plan(doc, {'name': 'Old', 'state': 'absent'})
    assert 'in use by peer a' in err.value.msg
