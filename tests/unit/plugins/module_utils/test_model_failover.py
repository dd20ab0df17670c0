# -*- coding: utf-8 -*-
"""Ordered failover (issue 13 item 3): a connection's ``fallback`` list, validated when stored;
the ``carry`` map that gives a down connection's users the marks of its first working fallback,
followed through every stage; the monitor's one-transaction change of it; deletion refused."""
import re

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, dataplane, model, nft, peers
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry, check_shape, empty
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, saved_registry

IFACES = ['pic-primary', 'pic-second', 'pic-third']


def wg_text(keys, n):
    return ('[Interface]\nPrivateKey = %s\nAddress = 10.20%d.0.11/32\nDNS = 10.20%d.0.1\n\n[Peer]\n'
            'PublicKey = %s\nEndpoint = 203.0.113.2%d:51820\nAllowedIPs = 0.0.0.0/0\n' % (keys[0], n, n, keys[1], n))


def wg(keys, name, n, **extra):
    return dict({'name': name, 'type': 'wireguard_ext', 'config': {'wg_config': wg_text(keys, n)}}, **extra)


PROXY = {'name': 'Proxy', 'type': 'proxy', 'config': {'host': '192.0.2.10', 'port': 1080}, 'fail_open': False}


@pytest.fixture
def doc(keys):
    """Primary (fallbacks: Second, Third), Second, Third, a proxy; a fail-closed and a fail-open peer of Primary."""
    cell = empty()
    for params in (wg(keys, 'Primary', 1), wg(keys, 'Second', 2), wg(keys, 'Third', 3), PROXY):
        cell = connections.plan(cell, params)[0]
    cell = connections.plan(cell, {'name': 'Primary', 'fallback': ['Second', 'third']})[0]
    cell = peers.plan(cell, [{'peer': 'closed', 'address': ['10.0.0.2/32'], 'connection': 'Primary'},
                             {'peer': 'open', 'address': ['10.0.0.3/32'], 'connection': 'Primary',
                              'fail_open': True}])[0]
    return cell


def facts(down):
    return {'peer_networks': ['10.0.0.0/24'], 'interfaces': IFACES, 'down': down}


def set_mark(want, chain):
    (text, _comment), = want.chains[chain]['rules']
    return int(re.fullmatch(r'meta mark set meta mark & 0x[0-9a-f]{8} \| (0x[0-9a-f]{8})', text).group(1), 16)


def carried_mark(want, layout, addr):
    """The mark a peer's packet leaves prerouting with (peer map, then the carry map)."""
    mark = set_mark(want, want.maps['peer4']['elements'][addr].split(' ', 1)[1])
    verdict = want.maps['carry']['elements'].get(mark & layout.mask)
    return set_mark(want, verdict.split(' ', 1)[1]) if verdict else mark


# -- validation ------------------------------------------------------------------------------
def test_the_fallbacks_are_stored_as_ids_in_order(doc):
    assert doc['connections']['primary']['fallback'] == ['second', 'third']
    result = connections.public_result(doc['connections']['primary'], doc['settings'])
    assert result['fallback'] == ['second', 'third']
    # omitted: kept; []: removed
    kept = connections.plan(doc, {'name': 'Primary', 'fail_open': True})[0]
    assert kept['connections']['primary']['fallback'] == ['second', 'third']
    cleared = connections.plan(doc, {'name': 'Primary', 'fallback': []})[0]
    assert cleared['connections']['primary']['fallback'] == []
    assert check_shape(cleared, 'registry.json')['connections']['primary']['fallback'] == []


@pytest.mark.parametrize('value, field, words', [
    ('Second', 'fallback', 'must be a list'),
    (['Nowhere'], 'fallback[0]', 'unknown connection'),
    (['default'], 'fallback[0]', 'is not a connection'),
    (['Primary'], 'fallback[0]', 'the connection itself'),
    (['primary'], 'fallback[0]', 'the connection itself'),
    (['Second', 'second'], 'fallback[1]', 'named twice'),
    ([3], 'fallback[0]', 'must be a connection name'),
    (['Sec\nond'], 'fallback[0]', ''),
    (['Second'] * 9, 'fallback', 'at most 8'),
])
def test_a_bad_fallback_is_refused_with_its_field(doc, value, field, words):
    with pytest.raises(PicError) as err:
        connections.plan(doc, {'name': 'Primary', 'fallback': value})
    assert err.value.field == field and words in str(err.value)


def test_a_new_connection_cannot_name_itself(keys):
    with pytest.raises(PicError) as err:
        connections.plan(empty(), dict(wg(keys, 'Alone', 1), fallback=['Alone']))
    assert 'the connection itself' in str(err.value)


def test_a_cycle_is_refused_and_a_chain_is_not(doc):
    with pytest.raises(PicError, match='a cycle'):        # Second -> Primary -> Second
        connections.plan(doc, {'name': 'Second', 'fallback': ['Primary']})
    doc = connections.plan(doc, {'name': 'Second', 'fallback': ['Third']})[0]
    with pytest.raises(PicError, match='a cycle'):        # Third -> Second -> Third
        connections.plan(doc, {'name': 'Third', 'fallback': ['Second']})
    doc = connections.plan(doc, {'name': 'Proxy', 'fallback': ['Second']})[0]
    with pytest.raises(PicError, match='a cycle'):        # Third -> Proxy -> Second -> Third
        connections.plan(doc, {'name': 'Third', 'fallback': ['Proxy']})
    doc = connections.plan(doc, {'name': 'Primary', 'fallback': ['Proxy', 'Second']})[0]   # a chain, no cycle
    assert doc['connections']['primary']['fallback'] == ['proxy', 'second']


def test_a_fallback_in_use_cannot_be_deleted(doc):
    with pytest.raises(PicError) as err:
        connections.plan(doc, {'name': 'Third', 'state': 'absent'})
    assert "is the fallback of 'Primary'" in str(err.value)
    assert err.value.details['fallback_of'] == ['primary']
    doc = connections.plan(doc, {'name': 'Primary', 'fallback': ['Second']})[0]
    assert connections.plan(doc, {'name': 'Third', 'state': 'absent'})[4]['id'] == 'third'


def test_a_registry_with_a_fallback_of_the_wrong_type_is_damaged(doc):
    doc['connections']['primary']['fallback'] = 'second'
    with pytest.raises(PicError, match='primary.fallback has the wrong type'):
        check_shape(doc, 'registry.json')


# -- the model -------------------------------------------------------------------------------
def test_up_nothing_is_carried(doc):
    want = model.desired(doc, facts([]))
    assert want.maps['carry']['elements'] == {} and model.carriers(doc, []) == {}
    assert 'meta mark & 0x00ff0000 vmap @carry' in [t for t, _c in want.chains['prerouting']['rules']]


def test_the_first_working_fallback_carries_both_fail_modes(doc):
    _settings, layout = model.normalize_settings(doc['settings'])
    conns = doc['connections']
    for down, carrier in ((['primary'], 'second'), (['primary', 'second'], 'third'),
                          (['primary', 'third'], 'second')):
        want = model.desired(doc, facts(down))
        assert model.carriers(doc, down) == {'primary': carrier}
        assert carried_mark(want, layout, '10.0.0.2/32') == model.conn_mark(conns[carrier], layout, True)
        assert carried_mark(want, layout, '10.0.0.3/32') == model.conn_mark(conns[carrier], layout)
        # the carrier's own table and kill switch apply: out of its interface or not at all
        forward = [t for t, _c in want.chains['forward']['rules']]
        assert 'meta mark & 0x00ff0000 == 0x%08x oifname != "pic-%s" counter drop' \
            % (model.conn_mark(conns[carrier], layout, True), carrier) in forward
        # the carrier's DNS pinning catches the carried peer's queries
        dstnat = [t for t, _c in want.chains['dstnat']['rules']]
        assert any(('0x%08x' % conns[carrier]['mark']) in t and 'dnat ip to %s' % conns[carrier]['dns'][0] in t
                   for t in dstnat)


def test_with_no_working_fallback_the_fail_mode_applies(doc):
    _settings, layout = model.normalize_settings(doc['settings'])
    down = ['primary', 'second', 'third']
    want = model.desired(doc, facts(down))
    assert want.maps['carry']['elements'] == {}
    primary = doc['connections']['primary']
    # fail-closed keeps the primary's kill mark (blocked); fail-open is in down_open (the WAN)
    assert carried_mark(want, layout, '10.0.0.2/32') == model.conn_mark(primary, layout, True)
    assert model.conn_mark(primary, layout) in want.sets['down_open']['elements']


def test_a_fallback_that_went_away_is_skipped(doc):
    del doc['connections']['second']      # (a relay whose link stopped offering)
    assert model.carriers(doc, ['primary']) == {'primary': 'third'}


def test_the_monitor_script_changes_the_map_and_the_set_in_one_transaction(doc):
    _settings, layout = model.normalize_settings(doc['settings'])
    carry = model.carry_elements(doc, layout, ['primary'])
    script = nft.render_down_set([doc['connections']['primary']['mark']], carry)
    lines = script.splitlines()
    assert lines[0] == 'flush map inet pic_connectivity carry'
    assert lines[1] == 'add element inet pic_connectivity carry { 0x00010000 : jump c_second_open, ' \
                       '0x00810000 : jump c_second_closed }'
    assert lines[2:] == ['flush set inet pic_connectivity down_open',
                         'add element inet pic_connectivity down_open { 0x00010000 }']
    # a table without the map (before this version): the set only, as before
    assert nft.render_down_set([0x10000]).startswith('flush set')


# -- the kernel ------------------------------------------------------------------------------
def test_the_cell_switches_the_carrier_and_lists_it_back(tmp_path, libnftables, keys):
    registry = saved_registry(str(tmp_path / 'state'), PROXY, {'name': 'Tor', 'type': 'tor', 'config': {}},
                              alice=('10.0.0.2', 'Tor'))
    doc = registry.load()
    doc = connections.plan(doc, {'name': 'Tor', 'fallback': ['Proxy']})[0]
    registry.save(doc)

    def scenario():
        cell = dataplane.Cell(Registry(registry.state_dir))
        try:
            cell.converge(doc)
            down = cell.set_down(doc, ['tor'])
            listed = nft.summary(cell.nft.list_table())
            again = cell.set_down(doc, ['tor'])
            both = cell.set_down(doc, ['tor', 'proxy'])
            after = nft.summary(cell.nft.list_table())
            return down, listed, again, both, after
        finally:
            cell.close()
    down, listed, again, both, after = in_netns(scenario)
    _settings, layout = model.normalize_settings(doc['settings'])
    assert down == ['down connections now: tor', 'tor carried by proxy'] and again == []
    assert listed['maps']['carry'] == model.carry_elements(doc, layout, ['tor'])
    assert listed['sets']['down_open'] == set([doc['connections']['tor']['mark']])
    assert both == ['down connections now: tor, proxy'] and after['maps']['carry'] == {}


def test_status_says_which_fallback_carries_a_peer(doc, tmp_path):
    from ansible_collections.pic.connectivity.plugins.module_utils import status
    registry = Registry(str(tmp_path / 'state'))
    registry.save(doc)
    registry.save_runtime({'down': ['primary'], 'monitor_at': 1000.0})
    data = status.gather(registry.state_dir, now=1001.0, addresses_of=lambda _i: None)
    assert data['peers']['closed']['fallback'] == 'second' and data['peers']['closed']['carried_by'] == 'exit'
    assert 'exit Second (fallback: Primary is down)' in status.render(data)
    registry.save_runtime({'down': ['primary', 'second', 'third'], 'monitor_at': 1000.0})
    data = status.gather(registry.state_dir, now=1001.0, addresses_of=lambda _i: None)
    assert data['peers']['closed']['fallback'] is None and data['peers']['closed']['carried_by'] == 'blocked'


def test_check_mode_defers_fallbacks_an_earlier_task_creates(doc):
    from ansible_collections.pic.connectivity.plugins.modules import pic_connection
    params = {'name': 'Primary', 'fallback': ['Later', 'Second'], 'planned_connections': ['Later']}
    plan = pic_connection.planner(params, check_mode=True)(doc)
    assert plan.doc['connections']['primary']['fallback'] == ['second']
    assert plan.deferred == ['fall back to connection Later, which an earlier task of this run creates']
    plan = pic_connection.planner(dict(params, name='Later'), check_mode=True)(doc)
    assert plan.doc is doc and plan.deferred[0].startswith('set the fallbacks of connection Later')
    with pytest.raises(PicError, match='unknown connection'):      # a real run
        pic_connection.planner(params, check_mode=False)(doc)


def test_a_relay_takes_a_fallback_and_nothing_else_by_hand(doc):
    from ansible_collections.pic.connectivity.plugins.module_utils import links
    doc = links.plan(doc, [{'cell': 'cell-b', 'interface': 'cl-b', 'offer_exit': True, 'remote_offers_exit': True}])[0]
    relay = doc['connections']['cell-b']
    doc = connections.plan(doc, {'name': 'cell-b', 'fallback': ['Second']})[0]
    assert doc['connections']['cell-b']['fallback'] == ['second']
    assert dict(doc['connections']['cell-b'], fallback=None) == dict(relay, fallback=None)
    with pytest.raises(PicError, match='only their fallback'):
        connections.plan(doc, {'name': 'cell-b', 'fallback': ['Second'], 'fail_open': True})
    # re-derived from its link, it keeps its fallbacks
    doc = links.plan(doc, [{'cell': 'cell-b', 'interface': 'cl-b', 'offer_exit': True, 'remote_offers_exit': True}])[0]
    assert doc['connections']['cell-b']['fallback'] == ['second']


def test_fail_closed_users_of_a_connection_held_down_without_a_carrier_are_dropped(doc):
    """Blocked even when the exit still carries packets (held down for leaving from a wrong
    address): their marks are in ``down_closed``, dropped in prerouting (DNS too), local
    destinations aside; a carried connection's are not (its carrier takes them)."""
    _settings, layout = model.normalize_settings(doc['settings'])
    primary = doc['connections']['primary']
    held = model.desired(doc, facts(['primary', 'second', 'third']))
    assert model.conn_mark(primary, layout, True) in held.sets['down_closed']['elements']
    assert model.conn_mark(primary, layout) not in held.sets['down_closed']['elements']
    pre = [t for t, _c in held.chains['prerouting']['rules']]
    drop = 'meta mark & 0x%08x @down_closed drop' % layout.mask
    dns = 'meta mark & 0x%08x @down_closed meta l4proto { tcp, udp } th dport 53 drop' % layout.mask
    assert pre.index(dns) < pre.index('meta l4proto { tcp, udp } th dport 53 return')
    assert pre.index(drop) > pre.index('ip6 daddr @local6 meta mark set meta mark & 0x%08x | 0x%08x'
                                       % (0xffffffff & ~layout.mask, layout.direct))
    carried = model.desired(doc, facts(['primary']))
    assert carried.sets['down_closed']['elements'] == set()
    assert model.held_closed(doc, layout, []) == set()
    script = nft.render_down_set([primary['mark']], {}, [model.conn_mark(primary, layout, True)])
    assert script.splitlines()[:2] == ['flush set inet pic_connectivity down_closed',
                                       'add element inet pic_connectivity down_closed { 0x%08x }'
                                       % model.conn_mark(primary, layout, True)]
