# -*- coding: utf-8 -*-
import ipaddress

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, model, peers, wgconf
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.tests.unit.helpers import keys_wg_text as wg_text, new_cell


def test_mark_layout_default():
    layout = model.MarkLayout(0x00ff0000)
    assert layout.kill == 0x00800000
    assert layout.mark(1, False) == 0x00010000
    assert layout.mark(1, True) == 0x00810000
    assert layout.max_index == 127
    assert layout.index_of(0x00830000) == 3


@pytest.mark.parametrize('mask', [0, 0x00010000, 0x00ff00ff, '0xzz', -1])
def test_bad_mark_mask(mask):
    with pytest.raises(PicError) as err:
        model.normalize_settings({'mark_mask': mask})
    assert 'mark_mask' in str(err.value)


def test_table_range_must_avoid_kernel_tables():
    with pytest.raises(PicError) as err:
        model.normalize_settings({'table_base': 200})
    assert 'table_base' in str(err.value) and '253' in str(err.value)


def test_create_wireguard_connection(keys):
    doc, record = new_cell(keys)
    assert record['id'] == 'exit-wg'
    assert record['interface'] == 'pic-exit-wg'
    assert record['fail_open'] is False
    assert record['table'] == 10001 and record['mark'] == 0x00010000
    assert record['routes'] == {'4': ['0.0.0.0/0'], '6': ['::/0']}
    # the registry record never holds the private key
    assert keys[0] not in repr(doc)


def test_tor_fails_open_by_default_and_only_once():
    doc = empty()
    doc, record, payload, secrets, removed = connections.plan(doc, {'name': 'Tor', 'type': 'tor', 'config': {}})
    assert record['fail_open'] is True
    with pytest.raises(PicError) as err:
        connections.plan(doc, {'name': 'Tor 2', 'type': 'tor', 'config': {}})
    assert 'one tor connection' in str(err.value)


def test_cell_relay_cannot_be_created():
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': 'B', 'type': 'cell_relay', 'config': {}})
    assert 'derived from cell links' in str(err.value)


def test_unknown_type():
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': 'B', 'type': 'ipsec', 'config': {}})
    assert "type" in str(err.value) and 'ipsec' in str(err.value)


@pytest.mark.parametrize('name', ['a;rm -rf /', 'two\nlines', 'x' * 65, '$(id)', '   ', 'a`b`'])
def test_bad_names(name):
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': name, 'type': 'tor', 'config': {}})
    assert str(err.value).startswith('name:')


def test_bad_wireguard_key_is_named_and_hidden(keys):
    bad = 'A' * 43 + '='   # 44 chars, 32 bytes? no: decodes to 32 bytes only if valid padding
    text = wg_text(['not-a-key-but-secret-ish', keys[1]])
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': 'X', 'type': 'wireguard_ext', 'config': {'wg_config': text}})
    assert 'config.wg_config.private_key' in str(err.value)
    assert 'not-a-key-but-secret-ish' not in str(err.value)
    text = wg_text([keys[0], 'bad-public'])
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': 'X', 'type': 'wireguard_ext', 'config': {'wg_config': text}})
    assert 'peers[0].public_key' in str(err.value) and 'bad-public' in str(err.value)
    assert bad


@pytest.mark.parametrize('text,expect', [
    ('[Interface]\nPrivateKey = @KEY@\n', 'Address'),
    ('garbage', 'expected'),
    ('[Interface]\nPostUp = iptables -F\n', 'PostUp is not supported'),
    ('[Wat]\n', 'unknown section'),
])
def test_malformed_wg_config(text, expect, keys):
    text = text.replace('@KEY@', keys[0])
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': 'X', 'type': 'wireguard_ext', 'config': {'wg_config': text}})
    assert expect in str(err.value)


def test_bad_endpoint(keys):
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': 'X', 'type': 'wireguard_ext', 'config': {
            'private_key': keys[0], 'address': ['10.1.0.2/32'], 'peer_public_key': keys[1],
            'endpoint': 'bad host:99999'}})
    assert 'config.peers[0].endpoint' in str(err.value)


@pytest.mark.parametrize('ctype,config,field', [
    ('openvpn', {'ovpn_config': 'client\ndev tun\n'}, 'config.ovpn_config'),
    ('sshuttle', {'user': 'x'}, 'config.host'),
    ('proxy', {'host': '203.0.113.50'}, 'config.port'),
])
def test_per_type_validation(ctype, config, field):
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': 'X', 'type': ctype, 'config': config})
    assert str(err.value).startswith(field)


@pytest.mark.parametrize('mark,table,field', [
    (0x00800000, None, 'mark'), (0x01000000, None, 'mark'), (0x00010001, None, 'mark'),
    (None, 10000, 'table'), (None, 10128, 'table'), (None, 254, 'table'),
])
def test_pins_outside_reserved_range(keys, mark, table, field):
    with pytest.raises(PicError) as err:
        new_cell(keys, mark=mark, table=table)
    assert str(err.value).startswith(field)


def test_pins_inside_range(keys):
    _doc, record = new_cell(keys, mark=0x00050000, table=10100)
    assert record['index'] == 5 and record['table'] == 10100


def test_delete_in_use_lists_users(keys):
    doc, dummy = new_cell(keys)
    doc, dummy = peers.plan(doc, [{'peer': 'alice', 'address': ['10.0.0.2/32'], 'connection': 'Exit WG'}])
    with pytest.raises(PicError) as err:
        connections.plan(doc, {'name': 'Exit WG', 'state': 'absent'})
    assert err.value.details['users'] == {'peers': ['alice'], 'services': []}
    assert 'alice' in str(err.value)
    doc, dummy = peers.plan(doc, [{'peer': 'alice', 'connection': 'default'}])
    doc, record, payload, secrets, removed = connections.plan(doc, {'name': 'Exit WG', 'state': 'absent'})
    assert record is None and removed['id'] == 'exit-wg' and not doc['connections']


def test_peer_errors(keys):
    doc, dummy = new_cell(keys)
    cases = [
        ([{'peer': 'a', 'address': ['10.0.0.2/32'], 'connection': 'Nope'}], 'peers[0].connection'),
        ([{'peer': 'a;b', 'address': ['10.0.0.2/32']}], 'peers[0].peer'),
        ([{'peer': 'a', 'address': ['10.0.0.300/32']}], 'peers[0].address[0]'),
        ([{'peer': 'a', 'address': ['10.0.0.1/24']}], 'peers[0].address[0]'),
        ([{'peer': 'a', 'address': ['10.0.0.2/32']}, {'peer': 'b', 'address': ['10.0.0.0/30']}],
         'peers[1].address[0]'),
        ([{'peer': 'a'}], 'peers[0].address'),
        ([{'peer': 'a', 'address': ['10.0.0.2/32']}, {'peer': 'a', 'address': ['10.0.0.3/32']}], 'peers[1].peer'),
    ]
    for items, field in cases:
        with pytest.raises(PicError) as err:
            peers.plan(doc, items, bulk=True)
        assert str(err.value).startswith(field), (field, str(err.value))


def _peers(n, conn='exit-wg'):
    net = ipaddress.ip_network('10.64.0.0/10')
    return [{'peer': 'p%d' % i, 'address': ['%s/32' % (net.network_address + i + 1), 'fd00:64::%x/128' % (i + 1)],
             'connection': conn, 'fail_open': (i % 3 == 0) or None} for i in range(n)]


def test_rule_count_independent_of_peer_count(keys):
    doc, dummy = new_cell(keys)
    sizes = []
    for n in (10, 2000):
        d, dummy = peers.plan(doc, _peers(n), bulk=True)
        want = model.desired(d, {'peer_networks': ['10.0.0.0/24'], 'interfaces': ['pic-exit-wg']})
        sizes.append((len(want.rules), sum(len(c['rules']) for c in want.chains.values())))
        assert len(want.maps['peer4']['elements']) == n
        assert len(want.maps['peer6']['elements']) == n
    assert sizes[0] == sizes[1]


def test_desired_fail_modes_and_routes(keys):
    doc, dummy = new_cell(keys)
    doc, dummy = peers.plan(doc, [
        {'peer': 'closed', 'address': ['10.0.0.11/32', 'fd00:10::11/128'], 'connection': 'exit-wg'},
        {'peer': 'open', 'address': ['10.0.0.12/32'], 'connection': 'exit-wg', 'fail_open': True},
        {'peer': 'direct', 'address': ['10.0.0.13/32']},
    ])
    want = model.desired(doc, {'peer_networks': ['10.0.0.0/24'], 'interfaces': ['pic-exit-wg'], 'down': []})
    m4 = want.maps['peer4']['elements']
    assert m4 == {'10.0.0.11/32': 'jump c_exit_wg_closed', '10.0.0.12/32': 'jump c_exit_wg_open'}
    assert want.maps['peer6']['elements'] == {'fd00:10::11/128': 'jump c_exit_wg_closed'}
    assert {'family': 4, 'dst': '0.0.0.0/0', 'type': 'unicast', 'oif': 'pic-exit-wg'} in want.routes[10001]
    kill = [r for r in want.rules if r['action'] == 'unreachable' and not r['iif']]
    assert len(kill) == 2 and all(r['fwmark'] == 0x00800000 for r in kill)
    script = want.render_nft()
    assert 'oifname != "pic-exit-wg" counter drop' in script
    assert script.splitlines()[1] == 'delete table inet pic_connectivity'
    # exit interface gone: no route through it, only the rules remain
    gone = model.desired(doc, {'peer_networks': [], 'interfaces': []})
    assert gone.routes[10001] == []


def test_ipv4_only_exit_blocks_ipv6(keys):
    doc = empty()
    doc, record, payload, secrets, removed = connections.plan(doc, {'name': 'V4', 'type': 'wireguard_ext', 'config': {
        'wg_config': wg_text(keys, allowed='0.0.0.0/0', address='10.200.0.11/32')}})
    want = model.desired(doc, {'interfaces': ['pic-v4']})
    assert {'family': 6, 'dst': '::/0', 'type': 'unreachable', 'oif': None} in want.routes[record['table']]


def test_monitor_down_set(keys):
    doc, dummy = new_cell(keys)
    want = model.desired(doc, {'interfaces': ['pic-exit-wg'], 'down': ['exit-wg']})
    assert want.sets['down_open']['elements'] == set([0x00010000])


def test_secrets_never_in_public_view(keys):
    wg = wgconf.parse({'wg_config': wg_text(keys, extra='')})
    view = wgconf.public_view(wg)
    assert keys[0] not in repr(view)
    assert wgconf.secrets(wg) == [keys[0]]
    assert keys[0] in connections.secrets_in({'wg_config': 'PrivateKey = %s' % keys[0]})
