# -*- coding: utf-8 -*-
"""The no-op fast paths: what they skip must give the same answer as the slow path."""
import ipaddress
import random
import socket
import sys

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, model, nft, peers
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.tests.unit.helpers import COLLECTIONS


def _random_v6(rng):
    # runs of zero groups of every length, where RFC 5952 compression matters
    groups = [rng.choice([0, 0, 0, 1, 0xabc, 0xffff, rng.randrange(0x10000)]) for _group in range(8)]
    return ipaddress.IPv6Address(b''.join(g.to_bytes(2, 'big') for g in groups))


def test_nft_addresses_map_to_the_canonical_network_string():
    """nft prints addresses with inet_ntop; the fast key must equal str(ip_network) for each."""
    rng = random.Random(5952)
    for _round in range(3000):
        v4 = ipaddress.IPv4Address(rng.randrange(1 << 32))
        v6 = _random_v6(rng)
        for addr, packed, family in ((v4, v4.packed, socket.AF_INET), (v6, v6.packed, socket.AF_INET6)):
            printed = socket.inet_ntop(family, packed)          # what nft -j shows
            assert nft._elem_key(printed) == str(ipaddress.ip_network(addr)), printed
            length = rng.randrange(addr.max_prefixlen + 1)
            net = ipaddress.ip_network('%s/%d' % (addr, length), strict=False)
            elem = {'prefix': {'addr': socket.inet_ntop(family, net.network_address.packed), 'len': length}}
            assert nft._elem_key(elem) == str(net)


@pytest.mark.parametrize('printed, key', [
    ('::ffff:192.0.2.1', '::ffff:c000:201/128'),     # embedded IPv4: parsed, not taken as printed
    ('wg0', 'wg0'),                                   # interface names are not addresses
    (0x00010000, 0x00010000),                         # marks
])
def test_nft_keys_that_take_the_slow_path(printed, key):
    assert nft._elem_key(printed) == key


def test_summary_compares_regardless_of_element_order():
    want = model.Desired()
    want.maps['peer4'] = {'type': 'ipv4_addr', 'flags': ['interval'],
                          'elements': {'10.0.0.2/32': 'jump c_a_closed', '10.0.0.3/32': 'jump c_a_open'}}
    want.sets['ingress'] = {'type': 'ifname', 'flags': [], 'elements': {'wg0', 'svc0'}}
    listed = [{'set': {'name': 'ingress', 'elem': ['svc0', 'wg0']}},
              {'map': {'name': 'peer4', 'elem': [['10.0.0.3', {'jump': {'target': 'c_a_open'}}],
                                                 ['10.0.0.2', {'jump': {'target': 'c_a_closed'}}]]}}]
    assert nft.summary(listed) == want.nft_summary()
    listed[1]['map']['elem'][0][1] = {'jump': {'target': 'c_a_closed'}}
    assert nft.summary(listed) != want.nft_summary()


def _cell_with_peers():
    doc = empty()
    doc, _record, _payload, _secrets, _removed = connections.plan(doc, {'name': 'Tor', 'type': 'tor', 'config': {}})
    items = [{'peer': 'p%d' % i, 'address': ['10.0.%d.%d' % (i // 200, i % 200 + 2), 'fd00::%x' % (i + 2)],
              'connection': 'tor', 'fail_open': None} for i in range(50)]
    doc, _names = peers.plan(doc, items, bulk=True)
    return doc, items


def test_a_rerun_with_the_stored_addresses_gives_the_same_document():
    doc, items = _cell_with_peers()
    again = [dict(item, address=list(doc['peers'][item['peer']]['address'])) for item in items]
    new, _names = peers.plan(doc, again, bulk=True)
    assert new == doc


def test_a_changed_address_is_still_validated_and_checked_for_overlaps():
    doc, items = _cell_with_peers()
    again = [dict(item, address=list(doc['peers'][item['peer']]['address'])) for item in items]
    again[7]['address'] = ['10.0.0.0/24']
    with pytest.raises(PicError) as err:
        peers.plan(doc, again, bulk=True)
    assert err.value.field == 'peers[7].address[0]'
    again[7]['address'] = ['10.0.0.999']
    with pytest.raises(PicError) as err:
        peers.plan(doc, again, bulk=True)
    assert err.value.field == 'peers[7].address[0]' and err.value.value == '10.0.0.999'


def test_bulk_items_are_read_as_ansible_would():
    items = peers.normalize_items([
        {'name': 'a', 'address': '10.0.0.2', 'fail_open': 'yes'},
        {'peer': 'b', 'connection': 'Tor', 'fail_open': 0},
        {'peer': 'c', 'name': 'c', 'fail_open': None},
    ])
    # issue 13: an item without connection keeps the peer's (None here; peers.plan() resolves it to the
    # peer's current connection, 'default' for a new peer); state defaults to present
    assert items == [
        {'peer': 'a', 'address': '10.0.0.2', 'connection': None, 'fail_open': True, 'state': 'present'},
        {'peer': 'b', 'address': None, 'connection': 'Tor', 'fail_open': False, 'state': 'present'},
        {'peer': 'c', 'address': None, 'connection': None, 'fail_open': None, 'state': 'present'},
    ]


@pytest.mark.parametrize('raw, field, value', [
    ({'peer': 'a'}, 'peers', {'peer': 'a'}),
    (['a'], 'peers[0]', 'a'),
    ([{'peer': 'a'}, {'peer': 'b', 'adress': ['10.0.0.3']}], 'peers[1].adress', ['10.0.0.3']),
    ([{'address': ['10.0.0.3']}], 'peers[0].peer', None),
    ([{'peer': 'a', 'name': 'b'}], 'peers[0].peer', 'a'),
    ([{'peer': 'a', 'fail_open': 'maybe'}], 'peers[0].fail_open', 'maybe'),
    ([{'peer': 'a', 'connection': ['x']}], 'peers[0].connection', ['x']),
])
def test_bad_bulk_items_name_the_field(raw, field, value):
    with pytest.raises(PicError) as err:
        peers.normalize_items(raw)
    assert err.value.field == field and err.value.value == value


_IMPORT_ROUTING = '''
import sys
sys.path.insert(0, %r)
%s
from ansible_collections.pic.connectivity.plugins.module_utils import routing
import pyroute2
print(routing.IPRoute.__module__, routing.IPRoute.__name__, routing.NetlinkError.__name__,
      routing.HAS_PYROUTE2, hasattr(pyroute2, 'IPRoute'))
'''


def _routing_imported(python, before=''):
    import subprocess
    code = _IMPORT_ROUTING % (COLLECTIONS, before)
    return subprocess.run([python, '-c', code], capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.parametrize('python', ['/usr/bin/python3', sys.executable])
def test_routing_loads_only_iproute_of_pyroute2(python):
    """The short import path gives pyroute2's own IPRoute without running the package __init__.

    /usr/bin/python3 has Debian's pyroute2 0.7 (what cells run), the venv a 0.9 from PyPI."""
    assert _routing_imported(python) == ['pyroute2.iproute.linux', 'IPRoute', 'NetlinkError', 'True', 'False']


@pytest.mark.parametrize('before', [
    'import pyroute2',                                                  # already imported: used as it is
    'import importlib.util\nimportlib.util.find_spec = lambda name, *a: None',   # short path fails: full import
])
def test_routing_falls_back_to_the_documented_import(before):
    got = _routing_imported(sys.executable, before)
    assert got == ['pyroute2.iproute.linux', 'IPRoute', 'NetlinkError', 'True', 'True']
