# -*- coding: utf-8 -*-
"""cellconfig: the whole-cell plan with the resource-module states, pure (no cell)."""
import json

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import cellconfig
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.tests.unit.helpers import PRIV, keyed

CONFIG = {
    'connections': [{'name': 'Home VPN', 'type': 'wireguard_ext', 'config': keyed(), 'fallback': ['c2']},
                    {'name': 'Tor', 'type': 'tor'},
                    {'name': 'c2', 'fallback': ['Tor']}],
    'peers': [{'name': 'alice', 'address': ['10.0.0.2'], 'connection': 'Home VPN'},
              {'name': 'bob', 'address': ['10.0.0.3']}],
    'links': [{'cell': 'c2', 'interface': 'picl-c2', 'remote_offers_exit': True}],
}


def converged():
    return cellconfig.plan(empty(), CONFIG, 'merged')[0]


def test_merged_creates_connections_relays_fallbacks_and_peers_in_one_plan():
    cplan = converged()
    doc = cplan.doc
    assert sorted(doc['connections']) == ['c2', 'home-vpn', 'tor']
    assert doc['connections']['home-vpn']['fallback'] == ['c2'] and doc['connections']['c2']['fallback'] == ['tor']
    assert doc['peers']['alice']['connection'] == 'home-vpn' and doc['peers']['bob']['connection'] == 'default'
    assert list(cplan.wg) == ['home-vpn'] and PRIV in json.dumps(cplan.wg)
    assert PRIV in cplan.secrets


@pytest.mark.parametrize('state', ['merged', 'replaced', 'overridden'])
def test_the_gathered_config_is_a_no_op_in_every_state(state):
    doc = converged().doc
    gathered = cellconfig.gather(doc)
    assert 'config' not in json.dumps(gathered['connections']) and PRIV not in json.dumps(gathered)
    assert cellconfig.plan(doc, gathered, state)[0].doc == doc


def test_deleted_without_config_empties_the_cell_and_with_config_only_what_it_lists():
    doc = converged().doc
    everything = cellconfig.plan(doc, None, 'deleted')[0]
    assert everything.doc['connections'] == {} and everything.doc['peers'] == {}
    assert sorted(r['id'] for r in everything.removed) == ['home-vpn', 'tor']
    some = cellconfig.plan(doc, {'peers': [{'name': 'bob'}]}, 'deleted')[0].doc
    assert sorted(some['peers']) == ['alice'] and len(some['connections']) == 3


def test_a_connection_in_use_is_not_deleted():
    with pytest.raises(PicError) as err:
        cellconfig.plan(converged().doc, {'connections': [{'name': 'Home VPN'}]}, 'deleted')
    assert err.value.details['status'] == 409


@pytest.mark.parametrize('config, field', [
    ({'nodes': []}, 'config.nodes'),
    ({'connections': [{'name': 'X', 'type': 'proxy', 'config': {'host': '192.0.2.1'}}]}, 'config.connections[0].config.port'),
    ({'peers': [{'name': 'a', 'address': ['10.0.0.9', 'nope']}]}, 'config.peers[0].address[1]'),
    ({'services': [{'service': 'mail', 'address': ['10.9.0.1'], 'interface': 'svc0', 'connection': 'Tor'}]},
     'config.services[0].manifest'),
    ({'links': [{'cell': 'c\n2', 'interface': 'x'}]}, 'config.links[0].cell'),
])
def test_errors_name_the_dotted_path(config, field):
    with pytest.raises(PicError) as err:
        cellconfig.plan(converged().doc, config, 'merged')
    assert err.value.msg.startswith(field) and err.value.field == field, err.value.msg


def test_render_and_parse_need_no_cell():
    doc = converged().doc
    rendered = cellconfig.render(doc)
    assert 'table inet pic_connectivity' in rendered['nftables']
    assert 'ipv4 route 0.0.0.0/0 dev picl-c2 table 10003' in rendered['routes']
    assert cellconfig.parse(json.dumps(doc)) == cellconfig.gather(doc)
    assert cellconfig.base_of(json.dumps(doc)) == doc
    with pytest.raises(PicError):
        cellconfig.base_of(json.dumps({'config': cellconfig.gather(doc)}))


def test_secrets_in_reads_every_connection_config():
    assert PRIV in cellconfig.secrets_in(CONFIG)
    assert cellconfig.secrets_in({'connections': 'x'}) == []
