# -*- coding: utf-8 -*-
"""nft.py's element planner: given the running table's summary and the desired one, the
batch is exactly the difference (deletes, then adds; a changed map element deleted and
added again), a structural difference is left to the table replace, and, for any
running and desired elements, applying the batch to the running elements yields the
desired ones (the batch read back through the listing parser)."""
import copy
import ipaddress
import json

from hypothesis import given, settings, strategies as st

from ansible_collections.pic.connectivity.plugins.module_utils import model, nft

SHAPES = {'ingress': ('set', 'ifname', ()), 'down_open': ('set', 'mark', ()), 'proxy_ports': ('set', 'inet_service', ()),
          'local4': ('set', 'ipv4_addr', ('interval',)), 'carry': ('map', 'mark', ()),
          'peer4': ('map', 'ipv4_addr', ()), 'peer6': ('map', 'ipv6_addr', ()),
          'net4': ('map', 'ipv4_addr', ('interval',)), 'net6': ('map', 'ipv6_addr', ('interval',))}
CHAINS = {'c_a_open': ['pic:1'], 'c_a_closed': ['pic:2'], 'c_b_open': ['pic:3'], 'c_b_closed': ['pic:4'],
          'prerouting': ['pic:5', 'pic:6']}


def table(peer4=None, peer6=None, down=(), ingress=('wg0',), local4=('10.0.0.0/16',), carry=None, ports=(),
          net4=None, net6=None):
    return {'sets': {'ingress': set(ingress), 'down_open': set(down), 'proxy_ports': set(ports), 'local4': set(local4)},
            'maps': {'carry': dict(carry or {}), 'peer4': dict(peer4 or {}), 'peer6': dict(peer6 or {}),
                     'net4': dict(net4 or {}), 'net6': dict(net6 or {})},
            'chains': copy.deepcopy(CHAINS)}


def apply_batch(have, batch):
    """What the batch does to the running elements, read back as ``nft.summary`` reads a
    listing (every JSON element through the listing's own parser)."""
    out = copy.deepcopy(have)
    for command in batch:
        (verb, body), = command.items()
        spec = body['element']
        assert (spec['family'], spec['table']) == ('inet', 'pic_connectivity')
        name = spec['name']
        kind = 'maps' if name in out['maps'] else 'sets'
        for elem in spec['elem']:
            if kind == 'maps' and verb == 'add':
                key, verdict = elem
                assert nft._elem_key(key) not in out['maps'][name], 'an add over an existing key: refused by nft'
                out['maps'][name][nft._elem_key(key)] = nft._verdict(verdict)
            elif kind == 'maps':
                del out['maps'][name][nft._elem_key(elem)]   # KeyError: a delete of a missing element
            elif verb == 'add':
                out['sets'][name].add(nft._elem_key(elem))
            else:
                out['sets'][name].remove(nft._elem_key(elem))
    return out


def batch_of(have, want):
    assert nft.same_structure(have, SHAPES, want, SHAPES)
    return nft.element_batch(nft.element_diff(have, want), SHAPES)


def test_a_one_peer_move_is_one_delete_and_one_add_of_its_element():
    peers = dict(('10.64.0.%d/32' % i, 'jump c_a_closed') for i in range(1, 200))
    want_peers = dict(peers, **{'10.64.0.7/32': 'jump c_b_closed'})
    batch = batch_of(table(peer4=peers), table(peer4=want_peers))
    assert batch == [
        {'delete': {'element': {'family': 'inet', 'table': 'pic_connectivity', 'name': 'peer4',
                                'elem': ['10.64.0.7']}}},
        {'add': {'element': {'family': 'inet', 'table': 'pic_connectivity', 'name': 'peer4',
                             'elem': [['10.64.0.7', {'jump': {'target': 'c_b_closed'}}]]}}},
    ]
    assert nft.describe_diff(nft.element_diff(table(peer4=peers), table(peer4=want_peers))) == 'peer4 -1 +1'


def test_the_batch_is_exactly_the_difference_deletes_first():
    have = table(peer4={'10.1.0.1/32': 'jump c_a_open', '10.1.0.2/32': 'jump c_a_open'}, net4={'10.2.0.0/24': 'jump c_b_open'},
                 peer6={'fd00::1/128': 'jump c_a_closed'}, down=(0x10000,), ingress=('wg0', 'svc0'), ports=(9040,))
    want = table(peer4={'10.1.0.1/32': 'jump c_a_open', '10.1.0.3/32': 'jump c_b_closed'}, net4={'10.2.0.0/24': 'jump c_b_open'},
                 peer6={'fd00::1/128': 'jump c_a_closed', 'fd00::2/128': 'jump c_a_open'}, down=(0x20000,),
                 ingress=('wg0',), carry={0x10000: 'jump c_b_open'}, ports=(9040,))
    diff = nft.element_diff(have, want)
    assert diff == {'peer4': ({'10.1.0.2/32'}, {'10.1.0.3/32': 'jump c_b_closed'}),
                    'peer6': (set(), {'fd00::2/128': 'jump c_a_open'}),
                    'down_open': ({0x10000}, {0x20000: None}),
                    'ingress': ({'svc0'}, {}),
                    'carry': (set(), {0x10000: 'jump c_b_open'})}
    batch = nft.element_batch(diff, SHAPES)
    verbs = [next(iter(c)) for c in batch]
    assert verbs == ['delete'] * 3 + ['add'] * 4
    assert [(next(iter(c)), next(iter(c.values()))['element']['name']) for c in batch] == [
        ('delete', 'down_open'), ('delete', 'ingress'), ('delete', 'peer4'),
        ('add', 'carry'), ('add', 'down_open'), ('add', 'peer4'), ('add', 'peer6')]
    assert batch[0]['delete']['element']['elem'] == [0x10000]
    assert batch[1]['delete']['element']['elem'] == ['svc0']
    assert batch[3]['add']['element']['elem'] == [[0x10000, {'jump': {'target': 'c_b_open'}}]]
    assert apply_batch(have, batch) == want
    assert nft.describe_diff(diff) == 'carry +1, down_open -1 +1, ingress -1, peer4 -1 +1, peer6 +1'


def test_nothing_differs_nothing_to_do():
    have = table(peer4={'10.1.0.1/32': 'jump c_a_open'})
    assert nft.element_diff(have, copy.deepcopy(have)) == {}
    assert nft.element_batch({}, SHAPES) == []


def test_structural_changes_are_left_to_the_table_replace():
    have, want = table(), table()
    assert nft.same_structure(have, SHAPES, want, SHAPES)
    assert not nft.same_structure(None, None, want, SHAPES)                    # no table yet
    moved = table()
    moved['chains']['prerouting'] = ['pic:6', 'pic:5']                         # a rule changed or moved
    assert not nft.same_structure(have, SHAPES, moved, SHAPES)
    extra = table()
    extra['chains']['c_c_open'] = ['pic:7']                                    # a new connection's chains
    assert not nft.same_structure(have, SHAPES, extra, SHAPES)
    other = dict(SHAPES, local4=('set', 'ipv4_addr', ()))                     # flags differ
    assert not nft.same_structure(have, SHAPES, want, other)
    fewer = dict(SHAPES)
    del fewer['carry']                                                         # a map of an older version missing
    assert not nft.same_structure(have, fewer, want, SHAPES)


def test_shapes_read_back_as_the_model_renders_them():
    want = model.Desired()
    want.sets['ingress'] = {'type': 'ifname', 'flags': [], 'elements': {'wg0'}}
    want.maps['peer4'] = {'type': 'ipv4_addr', 'flags': ['interval'], 'elements': {}}
    listing = [{'set': {'family': 'inet', 'name': 'ingress', 'table': 'pic_connectivity', 'type': 'ifname',
                        'elem': ['wg0']}},
               {'map': {'family': 'inet', 'name': 'peer4', 'table': 'pic_connectivity', 'type': 'ipv4_addr',
                        'map': 'verdict', 'flags': ['interval']}}]
    assert nft.shapes(listing) == want.nft_shapes() == {'ingress': ('set', 'ifname', ()),
                                                        'peer4': ('map', 'ipv4_addr', ('interval',))}
    assert nft.shapes(None) is None


def test_a_dynamic_set_reads_back_as_the_model_renders_it():
    """nft 1.0.6 lists a set declared ``flags dynamic`` (the exit source guard's learned
    addresses) without the flag and with a size: still the same structure, so a change of
    peers on a cell with an interface exit stays an element update."""
    want = model.Desired()
    want.sets['exit_src4'] = {'type': 'ipv4_addr', 'flags': ['dynamic'], 'elements': set()}
    listing = [{'set': {'family': 'inet', 'name': 'exit_src4', 'table': 'pic_connectivity', 'type': 'ipv4_addr',
                        'handle': 2, 'size': 65535}}]
    assert nft.shapes(listing) == want.nft_shapes() == {'exit_src4': ('set', 'ipv4_addr', ())}


def test_elements_and_verdicts_in_json():
    assert nft._elem_json('10.0.0.0/16', 'ipv4_addr') == {'prefix': {'addr': '10.0.0.0', 'len': 16}}
    assert nft._elem_json('fd00::/64', 'ipv6_addr') == {'prefix': {'addr': 'fd00::', 'len': 64}}
    assert nft._elem_json('range:10.0.0.1-10.0.0.5', 'ipv4_addr') == {'range': ['10.0.0.1', '10.0.0.5']}
    assert nft._elem_json(0x10000, 'mark') == 0x10000 and nft._elem_json(53, 'inet_service') == 53
    assert nft._elem_json('wg0', 'ifname') == 'wg0'
    assert nft._verdict_json('jump c_a_open') == {'jump': {'target': 'c_a_open'}}
    assert nft._verdict_json('goto x') == {'goto': {'target': 'x'}}
    assert nft._verdict_json(json.dumps({'accept': None})) == {'accept': None}


def test_the_fast_sort_key_orders_as_the_addresses_do():
    keys = ['10.0.0.10/32', '10.0.0.9/32', '9.255.0.0/16', 'fd00::1/128', '10.0.0.0/8', 'wg0', '::/0', '0.0.0.0/0']
    by_ipaddress = sorted(keys, key=nft._slow_sort_key)
    assert sorted(keys, key=nft._sort_key) == by_ipaddress == [
        '0.0.0.0/0', '9.255.0.0/16', '10.0.0.0/8', '10.0.0.9/32', '10.0.0.10/32', '::/0', 'fd00::1/128', 'wg0']


# -- property: the batch turns the running elements into the desired ones ------------------------
def nets(low, lengths):
    return st.builds(lambda n, p: str(ipaddress.ip_network((n, p), strict=False)), st.integers(low, low + 0xff),
                     st.sampled_from(lengths))


V4, NET4 = nets(0x0a000000, [32]), nets(0x0a000000, [24, 30, 31])
V6, NET6 = nets(0xfd00 << 112, [128]), nets(0xfd00 << 112, [120, 127])
VERDICTS = st.sampled_from(['jump c_a_open', 'jump c_a_closed', 'jump c_b_open', 'jump c_b_closed', 'jump orphan'])
MARKS = st.sets(st.sampled_from([0x10000, 0x20000, 0x30000, 0x810000, 0x820000]))


@st.composite
def elements(draw):
    return table(peer4=draw(st.dictionaries(V4, VERDICTS, max_size=12)),
                 peer6=draw(st.dictionaries(V6, VERDICTS, max_size=12)),
                 net4=draw(st.dictionaries(NET4, VERDICTS, max_size=4)),
                 net6=draw(st.dictionaries(NET6, VERDICTS, max_size=4)),
                 down=draw(MARKS), ingress=draw(st.sets(st.sampled_from(['wg0', 'svc0', 'svc1']))),
                 local4=draw(st.sets(NET4, max_size=3)),
                 carry=draw(st.dictionaries(st.sampled_from([0x10000, 0x810000]), VERDICTS)),
                 ports=draw(st.sets(st.integers(1, 65535), max_size=3)))


@settings(max_examples=300, deadline=None)
@given(elements(), elements())
def test_applying_the_batch_to_the_running_elements_yields_the_desired_ones(have, want):
    batch = batch_of(have, want)
    assert apply_batch(have, batch) == want
    assert (batch == []) == (have == want)
    touched = dict((name, (len(gone), len(new))) for name, (gone, new) in nft.element_diff(have, want).items())
    for name in touched:   # never more than the difference
        kind = 'maps' if name in want['maps'] else 'sets'
        old, new = have[kind][name], want[kind][name]
        if kind == 'sets':
            assert touched[name] == (len(old - new), len(new - old))
        else:
            changed = set(k for k in set(old) & set(new) if old[k] != new[k])
            assert touched[name] == (len(set(old) - set(new)) + len(changed), len(set(new) - set(old)) + len(changed))


def test_host_addresses_go_to_hash_maps_networks_to_interval_maps():
    assert [model.peer_map(a) for a in ('10.0.0.2/32', '10.0.1.0/24', 'fd00::2/128', 'fd00:1::/64', '0.0.0.0/0')] == \
        ['peer4', 'net4', 'peer6', 'net6', 'net4']
    want = model.Desired()
    model.add_address_sets(want, {'services': {}}, {}, {'peer_interface': 'wg0', 'local_networks': []})
    assert [want.maps[n]['flags'] for n in model.PEER_MAPS] == [[], [], ['interval'], ['interval']]


def test_only_changes_of_interval_sets_count_against_the_replace_threshold():
    diff = {'peer4': (set('10.0.0.%d/32' % i for i in range(500)), {}),
            'net4': (set(), dict(('10.%d.0.0/16' % i, 'jump c_a_open') for i in range(3))),
            'local4': ({'10.0.0.0/16'}, {'10.0.0.0/15': None})}
    assert nft.interval_changes(diff, SHAPES) == 5
