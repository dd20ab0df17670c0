# -*- coding: utf-8 -*-
"""TCP MSS clamping (model.add_mss_clamp): every interface exit's interface gets one rule
in the ``mss`` chain (forward hook, priority mangle) that lowers a SYN's MSS to the route's
MTU; proxy-kind exits get none; the real nft accepts the chain and reads it back as the
model's summary (what the data plane compares), with the expressions meant."""
from ansible_collections.pic.connectivity.plugins.module_utils import connections, links, model, nft, peers
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, keys_wg_text

FACTS = {'peer_networks': ['10.0.0.0/24', 'fd00:10::/64'], 'interfaces': ['pic-exit-wg'], 'down': []}
CLAMP = 'tcp flags syn / syn,rst tcp option maxseg size set rt mtu'


def cell(keys, proxies_only=False):
    """A wireguard_ext exit, a Tor and a proxy exit, a relay over a cell link, and a peer on each."""
    doc = empty()
    doc = connections.plan(doc, {'name': 'Tor', 'type': 'tor', 'config': {}})[0]
    doc = connections.plan(doc, {'name': 'Proxy', 'type': 'proxy', 'config': {'host': '192.0.2.10', 'port': 1080}})[0]
    items = [{'peer': 'a', 'address': ['10.0.0.2'], 'connection': 'tor'},
             {'peer': 'b', 'address': ['10.0.0.3', 'fd00:10::3'], 'connection': 'proxy'}]
    if not proxies_only:
        doc = connections.plan(doc, {'name': 'Exit WG', 'type': 'wireguard_ext',
                                     'config': {'wg_config': keys_wg_text(keys)}})[0]
        doc = links.plan(doc, [{'cell': 'cell-b', 'interface': 'cl-b', 'remote_offers_exit': True}])[0]
        items += [{'peer': 'c', 'address': ['10.0.0.4', 'fd00:10::4'], 'connection': 'exit-wg'},
                  {'peer': 'd', 'address': ['10.0.0.5'], 'connection': 'cell-b'}]
    return peers.plan(doc, items)[0]


def mss_rules(want):
    return [text for text, _comment in want.chains.get('mss', {'rules': []})['rules']]


def test_every_interface_exit_is_clamped_and_no_proxy_exit(keys):
    doc = cell(keys)
    want = model.desired(doc, FACTS)
    assert want.chains['mss']['base'] == {'type': 'filter', 'hook': 'forward', 'priority': 'mangle'}
    assert mss_rules(want) == ['oifname "pic-exit-wg" %s' % CLAMP, 'oifname "cl-b" %s' % CLAMP]
    assert model.MSS_CLAMP == CLAMP
    text = want.render_nft()
    assert '\t\ttype filter hook forward priority mangle; policy accept;' in text
    assert '\t\toifname "cl-b" %s comment "pic:' % CLAMP in text
    # the clamp does not depend on the exit being up: its rule is there while it is held down
    assert mss_rules(model.desired(doc, dict(FACTS, interfaces=[], down=['exit-wg', 'cell-b']))) == mss_rules(want)


def test_a_cell_with_only_proxy_exits_has_no_mss_chain(keys):
    want = model.desired(cell(keys, proxies_only=True), FACTS)
    assert 'mss' not in want.chains and 'mss' not in want.chain_order
    assert 'mss' not in model.desired(empty(), FACTS).chains


def test_each_exit_interface_is_clamped_once(keys):
    doc = cell(keys)
    doc['connections']['cell-b']['interface'] = 'pic-exit-wg'
    assert mss_rules(model.desired(doc, FACTS)) == ['oifname "pic-exit-wg" %s' % CLAMP]


def _listed(want):
    table = nft.Nft()
    table.replace(want.render_nft())
    return table.list_table()


def test_the_clamp_reads_back_from_nft_as_the_model_summary(keys, libnftables):
    want = model.desired(cell(keys), FACTS)
    listed = in_netns(_listed, want)
    assert nft.summary(listed) == want.nft_summary()
    chain, = [o['chain'] for o in listed if 'chain' in o and o['chain']['name'] == 'mss']
    assert (chain['type'], chain['hook'], chain['prio']) == ('filter', 'forward', -150)
    rules = [o['rule'] for o in listed if 'rule' in o and o['rule']['chain'] == 'mss']
    assert [r['comment'] for r in rules] == [c for _t, c in want.chains['mss']['rules']]
    for rule, ifname in zip(rules, ['pic-exit-wg', 'cl-b']):
        match, flags, mangle = rule['expr']
        assert match['match']['left'] == {'meta': {'key': 'oifname'}} and match['match']['right'] == ifname
        assert flags['match']['left'] == {'&': [{'payload': {'protocol': 'tcp', 'field': 'flags'}}, ['syn', 'rst']]}
        assert mangle == {'mangle': {'key': {'tcp option': {'name': 'maxseg', 'field': 'size'}},
                                     'value': {'rt': {'key': 'mtu'}}}}
