# -*- coding: utf-8 -*-
"""Peer addresses and names (module_utils/peers.py).

Regressions of issue 11: each case was accepted (or echoed a secret) before the grammar was made strict.
"""
import pytest
from hypothesis import given, settings

from ansible_collections.pic.connectivity.plugins.module_utils import peers
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty

from ansible_collections.pic.connectivity.tests.unit.helpers import CONTROL, HOSTILE

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


@settings(max_examples=200, deadline=None, database=None)
@given(HOSTILE)
def test_fuzz_peer_address_and_name(value):
    for item, field in (({'peer': 'p', 'address': ['10.0.0.2', value]}, 'peers[0].address[1]'),
                        ({'peer': value, 'address': ['10.0.0.2']}, 'peers[0].peer')):
        try:
            doc, _r = peers.plan(empty(), [item], bulk=True)
        except PicError as exc:
            assert exc.field == field and exc.value == value, str(exc)
            continue
        for name, record in doc['peers'].items():
            assert not CONTROL.search(name) and not any(CONTROL.search(a) or '%' in a for a in record['address'])


# -- peer lifecycle (issue 13) ------------------------------------------------------------------

def _with_tor_peer():
    doc = empty()
    doc['connections']['tor'] = {'id': 'tor', 'name': 'Tor', 'type': 'tor', 'index': 0, 'table': 100, 'mark': 1}
    doc, _r = peers.plan(doc, [{'peer': 'a', 'address': ['10.0.0.7'], 'connection': 'Tor'}])
    return doc


def test_absent_removes_the_peer_and_frees_its_address():
    doc = _with_tor_peer()
    new, names = peers.plan(doc, [{'peer': 'a', 'state': 'absent'},
                                  {'peer': 'b', 'address': ['10.0.0.7'], 'connection': 'tor'}])
    assert names == ['a', 'b'] and sorted(new['peers']) == ['b']
    assert 'a' in doc['peers']   # the given document is not changed


def test_absent_of_an_unknown_peer_is_no_change():
    doc = _with_tor_peer()
    new, _names = peers.plan(doc, [{'peer': 'nobody', 'state': 'absent'}])
    assert new['peers'] == doc['peers']


def test_a_missing_connection_keeps_the_peers_and_a_new_peer_gets_default():
    doc = _with_tor_peer()
    new, _names = peers.plan(doc, [{'peer': 'a', 'fail_open': True}, {'peer': 'n', 'address': ['10.0.0.8']}])
    assert new['peers']['a']['connection'] == 'tor' and new['peers']['a']['fail_open'] is True
    assert new['peers']['n']['connection'] == 'default'


def test_normalize_items_keeps_a_missing_connection_as_none_and_checks_state():
    items = peers.normalize_items([{'name': 'a', 'fail_open': 'yes'}, {'peer': 'b', 'state': 'absent'}])
    assert items[0]['connection'] is None and items[0]['state'] == 'present' and items[0]['fail_open'] is True
    assert items[1]['state'] == 'absent'
    with pytest.raises(PicError) as err:
        peers.normalize_items([{'peer': 'a', 'state': 'deleted'}])
    assert err.value.msg.startswith('peers[0].state:')
