# -*- coding: utf-8 -*-
"""model.desired as named stages: peer -> chain -> mark -> rule -> table -> route
can be followed through what the stages build; the data plane uses the stored mark."""
import json
import re

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, links, model, peers
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry, empty

FACTS = {'peer_networks': ['10.0.0.0/24'], 'interfaces': ['pic-exit-wg'], 'down': []}


def wg_text(keys):
    return ('[Interface]\nPrivateKey = %s\nAddress = 10.200.0.11/32, fd00:200::11/128\n\n[Peer]\n'
            'PublicKey = %s\nEndpoint = 203.0.113.20:51820\nAllowedIPs = 0.0.0.0/0, ::/0\n' % (keys[0], keys[1]))


@pytest.fixture
def doc(keys):
    """A wireguard exit with a pinned mark, a Tor exit, a linked cell and peers of each."""
    cell = empty()
    cell, _r, _p, _s, _x = connections.plan(cell, {'name': 'Exit WG', 'type': 'wireguard_ext', 'mark': '0x00050000',
                                                   'config': {'wg_config': wg_text(keys)}})
    cell, _r, _p, _s, _x = connections.plan(cell, {'name': 'Tor', 'type': 'tor', 'config': {}})
    cell, _relays, _orphans = links.plan(cell, [{'cell': 'cell-b', 'interface': 'cl-b', 'offer_exit': True}])
    cell, _res = peers.plan(cell, [{'peer': 'closed', 'address': ['10.0.0.2/32', 'fd00::2/128'],
                                    'connection': 'Exit WG'},
                                   {'peer': 'open', 'address': ['10.0.0.3/32'], 'connection': 'tor'},
                                   {'peer': 'plain', 'address': ['10.0.0.4/32']}])
    return cell


def set_mark(want, chain):
    """The mark a connection chain sets (its only rule)."""
    (text, _comment), = want.chains[chain]['rules']
    return int(re.fullmatch(r'meta mark set meta mark & 0x[0-9a-f]{8} \| (0x[0-9a-f]{8})', text).group(1), 16)


def follow(want, layout, addr):
    """peer address -> chain -> mark -> ip rule -> table -> routes."""
    family = 6 if ':' in addr else 4
    verdict = want.maps['peer%d' % family]['elements'][addr]
    chain = verdict.split(' ', 1)[1]
    mark = set_mark(want, chain)
    rules = [r for r in want.rules if r['action'] == 'table' and r['family'] == family and r['iif'] is None
             and mark & r['fwmask'] == r['fwmark']]
    assert len(rules) == 1
    return chain, mark, rules[0]['table'], want.routes[rules[0]['table']]


def test_a_peer_can_be_followed_from_its_address_to_its_exit_route(doc):
    settings, layout = model.normalize_settings(doc['settings'])
    want = model.desired(doc, FACTS)
    wg = doc['connections']['exit-wg']
    chain, mark, table, routes = follow(want, layout, '10.0.0.2/32')
    assert chain == 'c_exit_wg_closed' and mark == wg['mark'] | layout.kill and table == wg['table']
    assert {'family': 4, 'dst': '0.0.0.0/0', 'type': 'unicast', 'oif': 'pic-exit-wg'} in routes
    chain, mark, table, routes = follow(want, layout, 'fd00::2/128')
    assert (chain, mark, table) == ('c_exit_wg_closed', wg['mark'] | layout.kill, wg['table'])
    tor = doc['connections']['tor']
    chain, mark, table, routes = follow(want, layout, '10.0.0.3/32')
    assert (chain, mark, table, routes) == ('c_tor_open', tor['mark'], tor['table'], [])
    assert '10.0.0.4/32' not in want.maps['peer4']['elements']      # the default gateway: no mark


def test_the_stored_mark_is_the_one_the_data_plane_uses(doc):
    _settings, layout = model.normalize_settings(doc['settings'])
    wg = doc['connections']['exit-wg']
    assert wg['mark'] == 0x00050000
    want = model.desired(doc, dict(FACTS, down=['exit-wg']))
    assert set_mark(want, 'c_exit_wg_open') == 0x00050000 == model.conn_mark(wg, layout)
    assert set_mark(want, 'c_exit_wg_closed') == 0x00850000 == model.conn_mark(wg, layout, True)
    assert want.sets['down_open']['elements'] == {0x00050000}
    assert [r['fwmark'] for r in want.rules if r.get('table') == wg['table']] == [0x00050000, 0x00050000]


def test_the_stages_build_the_chains_in_order(doc):
    want = model.desired(doc, FACTS)
    # connections in index order (Tor took 1, the pinned mark gave Exit WG 5)
    assert want.chain_order == ['c_tor_closed', 'c_tor_open', 'c_exit_wg_closed', 'c_exit_wg_open', 'prerouting',
                                'dstnat', 'input', 'forward', 'postrouting', 'mss', 'output', 'local_redirect',
                                'orphan']
    texts = dict((name, [t for t, _c in chain['rules']]) for name, chain in want.chains.items())
    assert any('redirect to :%d' % doc['connections']['tor']['local_port'] in t for t in texts['dstnat'])
    # the cell's own TCP with Tor's mark takes the same redirect (output hook; the probes through an instance)
    tor, layout = doc['connections']['tor'], model.normalize_settings(doc['settings'])[1]
    assert want.chains['local_redirect']['base'] == {'type': 'nat', 'hook': 'output', 'priority': '-100'}
    assert texts['local_redirect'] == ['meta mark & 0x%08x == 0x%08x meta l4proto tcp redirect to :%d'
                                       % (layout.index_mask, tor['mark'], tor['local_port'])]
    assert texts['input'][-3:] == ['iifname "lo" accept',
                                   'meta l4proto { tcp, udp } th dport @proxy_ports ct status dnat accept',
                                   'meta l4proto { tcp, udp } th dport @proxy_ports drop']
    assert 'oifname "pic-exit-wg" masquerade' in texts['postrouting']
    assert any(t.startswith('iifname "cl-b" oifname != "cl-b"') for t in texts['postrouting'])
    # every rule's comment names it uniquely in its chain (what the monitor compares)
    for chain in want.chains.values():
        comments = [c for _t, c in chain['rules']]
        assert len(comments) == len(set(comments))


def test_each_stage_adds_only_its_part(doc):
    """Stages run on their own build what their name says and nothing else."""
    settings, layout = model.normalize_settings(doc['settings'])
    conns = sorted(doc['connections'].values(), key=lambda c: c['index'])
    want = model.Desired()
    model.add_address_sets(want, doc, FACTS, settings)
    model.add_policy_rules(want, conns, layout, settings)
    assert not want.chains and len(want.rules) == 2 * len(conns)
    assert all(r['priority'] == settings['priority_base'] and r['action'] == 'table' for r in want.rules)
    model.add_peer_maps(want, doc)
    assert model.has_closed_users(want)                       # the peer of Exit WG is fail-closed
    model.add_exit_routes(want, conns, [])
    assert want.routes[doc['connections']['exit-wg']['table']] == []          # its interface does not exist
    assert want.routes[doc['connections']['tor']['table']] == []


def test_an_orphaned_user_is_killed_and_guarded(doc):
    del doc['connections']['tor']
    want = model.desired(doc, FACTS)
    assert want.maps['peer4']['elements']['10.0.0.3/32'] == 'jump orphan'
    _settings, layout = model.normalize_settings(doc['settings'])
    assert set_mark(want, 'orphan') == layout.kill


def test_a_registry_whose_mark_disagrees_with_its_index_gets_the_index_mark_on_load(doc, tmp_path):
    registry = Registry(str(tmp_path))
    doc['connections']['exit-wg']['mark'] = 0x00090000          # edited by hand; index 5 says 0x00050000
    registry.save(doc)
    loaded = registry.load()
    assert loaded['connections']['exit-wg']['mark'] == 0x00050000
    assert loaded['connections']['tor']['mark'] == doc['connections']['tor']['mark']


def test_settings_are_normalized_once_and_each_caller_gets_a_copy():
    given = {'local_networks': ['192.0.2.0/24'], 'mark_mask': '0x00ff0000'}
    first, layout = model.normalize_settings(given)
    first['local_networks'].append('198.51.100.0/24')
    again, layout2 = model.normalize_settings(dict(given))
    assert again['local_networks'] == ['192.0.2.0/24'] and again['mark_mask'] == 0x00ff0000
    assert layout2 is layout                                      # validated once
    assert json.dumps(given, sort_keys=True) in model._NORMALIZED
    for _attempt in range(2):                                    # a refusal is never remembered
        with pytest.raises(PicError):
            model.normalize_settings({'mark_mask': '0x00050000'}, 'settings.')


@pytest.mark.parametrize('given', [
    {},
    {'mark_mask': '0x0000ff00', 'table_base': '20000', 'local_networks': ['192.0.2.0/24', 'fd00::/64', '10.9.0.1']},
    {'peer_interface': 'wg1', 'priority_base': 5000, 'port_base': 20000, 'mark_mask': 0xf0},
])
def test_normalized_settings_normalize_to_themselves(given):
    """What the cache keeps under the normalized settings' own text (the form the registry stores)."""
    once, layout = model._normalize_settings(given, '')
    twice, again = model._normalize_settings(once, '')
    assert twice == once and vars(again) == vars(layout)


def test_the_local_redirect_exists_only_with_proxy_kind_exits(doc):
    _settings, layout = model.normalize_settings(doc['settings'])
    want = model.Desired()
    model.add_local_redirects(want, [doc['connections']['exit-wg']], layout)
    assert not want.chains and not want.chain_order
