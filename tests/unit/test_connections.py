# -*- coding: utf-8 -*-
"""Connections, WireGuard files, peers and links: the strict grammar at the level of a module call.

Regressions of issue 11: each case was accepted (or echoed a secret, or
replaced a connection) before the grammar was made strict.
"""
import base64
import json
import re

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, links, model, peers, wgconf
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty

PRIV = base64.b64encode(bytes([7]) * 32).decode()
PUB = base64.b64encode(bytes([8]) * 32).decode()
PSK = base64.b64encode(bytes([9]) * 32).decode()
# Decodes to 32 bytes with a lenient decoder, but is not what `wg` prints: refused by wg.
NONCANONICAL = PUB[:42] + 'j='


def wg_text(extra_iface='', extra_peer='', allowed='0.0.0.0/0, ::/0', address='10.200.0.11/32, fd00:200::11/128'):
    return ('[Interface]\nPrivateKey = %s\nAddress = %s\n%s\n[Peer]\nPublicKey = %s\nEndpoint = 203.0.113.20:51820\n'
            'AllowedIPs = %s\n%s' % (PRIV, address, extra_iface, PUB, allowed, extra_peer))


def keyed(**over):
    config = {'private_key': PRIV, 'address': ['10.1.0.2/32'], 'peer_public_key': PUB,
              'endpoint': '203.0.113.20:51820'}
    config.update(over)
    return config


def refused(ctype, config, name='X', doc=None):
    with pytest.raises(PicError) as err:
        connections.plan(doc or empty(), {'name': name, 'type': ctype, 'config': config})
    return err.value


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


@pytest.mark.parametrize('line', ['PrivateKey: %s' % PSK, 'PrivateKey %s' % PSK, '%s' % PSK,
                                  'Private-Key = %s' % PSK, 'PresharedKey: %s' % PSK, 'Privatekey_ = %s' % PSK])
def test_misspelt_key_line_is_not_echoed(line):
    for text in (wg_text(extra_iface=line), wg_text(extra_peer=line)):
        err = refused('wireguard_ext', {'wg_config': text})
        assert err.field == 'config.wg_config' and 'line ' in str(err)
        assert PSK not in str(err) and PSK[:20] not in str(err)


def test_unknown_word_key_is_named_with_its_line():
    err = refused('wireguard_ext', {'wg_config': wg_text(extra_iface='Wat = 1')})
    assert 'line 4: unknown key Wat' in str(err)


@pytest.mark.parametrize('sep', ['\x0b', '\x0c', '\x1c', '\x85', '\u2028', '\x00'])
def test_wg_config_line_separators_are_refused(sep):
    err = refused('wireguard_ext', {'wg_config': wg_text(allowed='0.0.0.0/0%s[Peer]' % sep)})
    assert err.field == 'config.wg_config' and 'control character' in str(err)


def test_wg_values_are_stored_canonical():
    _doc, record, payload, _s, _r = connections.plan(empty(), {'name': 'X', 'type': 'wireguard_ext', 'config': keyed(
        endpoint='[2001:DB8:0::1]:51820', allowed_ips=['10.9.9.9/8', '::/0'], dns=['FD00::53'])})
    assert payload['peers'][0]['endpoint'] == '[2001:db8::1]:51820'
    assert payload['peers'][0]['allowed_ips'] == ['10.0.0.0/8', '::/0']
    assert record['dns'] == ['fd00::53']
    rendered = wgconf.render_setconf(payload)
    assert rendered.count('[Peer]') == 1 and '%' not in rendered


def test_long_names_get_distinct_ids():
    one, two = 'Commercial provider exit in Frankfurt 1', 'Commercial provider exit in Frankfurt 2'
    doc, first, _p, _s, _r = connections.plan(empty(), {'name': one, 'type': 'proxy',
                                                         'config': {'host': '203.0.113.5', 'port': 1080}})
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


# -- peers ---------------------------------------------------------------------------------------

PEER_CASES = [
    ('0.0.0.0/0', '/0'), ('::/0', '/0'), ('::ffff:10.0.0.5', 'IPv4-mapped'), ('::ffff:10.0.0.5/128', 'IPv4-mapped'),
    ('fd00::5%wg0', 'scope id'), ('10.0.0.5%\n', 'control'), ('10.0.0.0/8', 'too wide'), ('fd00::/16', 'too wide'),
    ('10.0.0.5\n', 'control'), (' 10.0.0.5', 'no blanks'), ('127.0.0.1', 'loopback'), ('fe80::1', 'link-local'),
    ('224.0.0.5', 'unicast'), ('10.0.0.5/24', 'host bits'),
]


@pytest.mark.parametrize('addr,words', PEER_CASES)
def test_bad_peer_addresses(addr, words):
    items = [{'peer': 'bob', 'address': ['10.0.0.9'], 'connection': 'default', 'fail_open': None},
             {'peer': 'alice', 'address': ['10.0.0.7', addr], 'connection': 'default', 'fail_open': None}]
    with pytest.raises(PicError) as err:
        peers.plan(empty(), items, bulk=True)
    assert err.value.field == 'peers[1].address[1]' and err.value.value == addr
    assert words in str(err.value), str(err.value)


def test_peer_address_canonical():
    doc, _r = peers.plan(empty(), [{'peer': 'a', 'address': ['FD00:0::7'], 'connection': None}])
    assert doc['peers']['a']['address'] == ['fd00::7/128']


@pytest.mark.parametrize('name', ['alice\n', '-alice', 'al ice', 'alice\u2028'])
def test_bad_peer_names(name):
    with pytest.raises(PicError) as err:
        peers.plan(empty(), [{'peer': 'ok', 'address': ['10.0.0.2']}, {'peer': name, 'address': ['10.0.0.3']}],
                   bulk=True)
    assert err.value.field == 'peers[1].peer' and err.value.value == name


# -- settings and links --------------------------------------------------------------------------

@pytest.mark.parametrize('nets,field', [(['0.0.0.0/0'], 'local_networks[0]'), (['192.168.0.0/16', '::/0'],
                                                                                'local_networks[1]'),
                                        (['192.168.0.0/16', '192.168.1.0/24'], 'local_networks[1]'),
                                        (['192.168.1.0/24\n'], 'local_networks[0]')])
def test_bad_local_networks(nets, field):
    with pytest.raises(PicError) as err:
        model.normalize_settings({'local_networks': nets})
    assert err.value.field == field


@pytest.mark.parametrize('link,field', [
    ({'cell': 'cell-b\n', 'interface': 'cl-b'}, 'links[0].cell'),
    ({'cell': 'cell-b', 'interface': 'cl-b\n'}, 'links[0].interface'),
    ({'cell': 'cell-b', 'interface': 'wg0'}, 'links[0].interface'),
])
def test_bad_links(link, field):
    with pytest.raises(PicError) as err:
        links.plan(empty(), [link])
    assert err.value.field == field


def test_relays_of_look_alike_cells_do_not_share_an_id():
    with pytest.raises(PicError) as err:
        links.plan(empty(), [{'cell': 'cell.b', 'interface': 'cl-1', 'remote_offers_exit': True},
                             {'cell': 'cell-b', 'interface': 'cl-2', 'remote_offers_exit': True}])
    assert 'cell.b' in str(err.value) and 'cell-b' in str(err.value)


def test_a_misspelt_secret_line_masks_the_key_not_its_separator():
    found = connections.secrets_in({'wg_config': wg_text(extra_iface='PrivateKey: %s' % PSK)})
    assert PSK in found and ':' not in found
    assert all(len(s) >= 8 for s in found)


# -- property-based: hostile values in every field of a connection's config ------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from test_validation import CONTROL, HOSTILE  # noqa: E402

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


@settings(max_examples=300, deadline=None, database=None)
@given(HOSTILE)
def test_fuzz_endpoint(value):
    try:
        out = wgconf.check_endpoint(value, 'e')
    except PicError as exc:
        assert exc.field == 'e' and exc.value == value
        return
    assert re.fullmatch(r'(\[[0-9a-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}', out) and not out.startswith('-')
