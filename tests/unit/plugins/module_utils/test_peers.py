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
