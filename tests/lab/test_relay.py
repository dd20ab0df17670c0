# -*- coding: utf-8 -*-
"""cell_relay connections derived from cell links, with real packets across three lab cells:
cell1 is linked to cell2 (which offers its exit to cell1) and to cell3 (which does not)."""
import os
import sys

import pytest

from conftest import Cell, ROOT, piclab, wait_for
from test_dataplane import leak_count

sys.path.insert(0, os.path.join(ROOT, 'lab', 'servers'))
import links as lablinks  # noqa: E402

CELLS = ['cell1', 'cell2', 'cell3']


def cells():
    return dict((name, Cell(name)) for name in CELLS)


def link_all(c, cell2_offers=True, cell1_believes=True):
    c['cell2'].module('pic_cell_link', {'links': [{'cell': 'cell1', 'interface': 'cl-cell1',
                                                   'offer_exit': cell2_offers}], 'known_cells': CELLS})
    c['cell3'].module('pic_cell_link', {'links': [{'cell': 'cell1', 'interface': 'cl-cell1'}],
                                        'known_cells': CELLS})
    return c['cell1'].module('pic_cell_link', {'links': [
        {'cell': 'cell2', 'interface': 'cl-cell2', 'remote_offers_exit': cell1_believes},
        {'cell': 'cell3', 'interface': 'cl-cell3', 'remote_offers_exit': False}], 'known_cells': CELLS})


def peers(connection_p1):
    return {'peers': [
        {'peer': 'p1', 'address': [piclab.peer_address('p1', 4) + '/32', piclab.peer_address('p1', 6) + '/128'],
         'connection': connection_p1},
        {'peer': 'p2', 'address': [piclab.peer_address('p2', 4) + '/32', piclab.peer_address('p2', 6) + '/128']},
        {'peer': 'p3', 'address': [piclab.peer_address('p3', 4) + '/32', piclab.peer_address('p3', 6) + '/128']},
    ], 'purge': True}


def seen(peer, cell='cell1'):
    return piclab.fetch(peer, 4, cell=cell), piclab.fetch(peer, 6, cell=cell)


def wan(cell):
    return piclab.wan_address(cell, 4), piclab.wan_address(cell, 6)


@pytest.fixture(scope='module')
def c(lab):
    c = cells()
    result = link_all(c)
    assert [r['id'] for r in result['relays']] == ['cell2']
    assert result['relays'][0]['type'] == 'cell_relay' and result['relays'][0]['interface'] == 'cl-cell2'
    yield c
    c['cell1'].module('pic_peer_exit', peers('default'))


def test_relay_appears_and_carries_a_peer_out_of_the_remote_wan(c):
    assert not link_all(c)['changed']
    c['cell1'].module('pic_peer_exit', peers('cell2'))
    assert wait_for(lambda: seen('p1') == wan('cell2'), 10), seen('p1')
    assert seen('p2') == wan('cell1')
    # the remote cell's own peers are unaffected
    assert seen('p1', 'cell2') == wan('cell2')
    assert seen('p2', 'cell2') == wan('cell2')
    info = c['cell1'].module('pic_connectivity_info', {})
    assert info['peers']['p1']['carried_by'] == 'exit'
    assert info['connections']['cell2']['type'] == 'cell_relay'


def test_bad_input_changes_nothing(c):
    before = c['cell1'].registry_bytes(), c['cell1'].nft_table()
    err = c['cell1'].module('pic_peer_exit', {'peer': 'p2', 'connection': 'cell3'}, expect_fail=True)
    assert err['msg'].startswith('connection:') and 'does not offer' in err['msg']
    err = c['cell1'].module('pic_connection', {'name': 'cell4', 'type': 'cell_relay'}, expect_fail=True)
    assert 'derived from cell links' in err['msg']
    err = c['cell1'].module('pic_cell_link', {'links': [{'cell': 'cell9', 'interface': 'cl-cell9'}],
                                              'known_cells': CELLS}, expect_fail=True)
    assert err['msg'].startswith('links[0].cell:') and 'cell9' in err['msg']
    assert (c['cell1'].registry_bytes(), c['cell1'].nft_table()) == before


def test_link_down_fail_closed_never_leaks(c):
    c['cell1'].module('pic_peer_exit', peers('cell2'))
    assert wait_for(lambda: seen('p1') == wan('cell2'), 10)
    health = c['cell1'].health('cell2')
    assert health['status'] == 'working', health
    lablinks.link_down(1, 2)
    try:
        health = c['cell1'].health('cell2')
        assert health['status'] == 'down' and 'missing' in health['reason'], health
        assert seen('p1') == (None, None)
        assert leak_count('p1') == 0
        assert seen('p2') == wan('cell1')
    finally:
        lablinks.up(3)
        c['cell1'].cli('restore')
    assert wait_for(lambda: seen('p1') == wan('cell2'), 15), seen('p1')
    # working again once the cell's monitor has seen the link recover (two good probes, by design)
    assert wait_for(lambda: c['cell1'].health('cell2')['status'] == 'working', 10), c['cell1'].health('cell2')


def test_a_cell_drops_relays_it_does_not_offer(c):
    c['cell1'].module('pic_peer_exit', peers('cell2'))
    link_all(c, cell2_offers=False, cell1_believes=True)
    try:
        assert seen('p1') == (None, None)
        assert leak_count('p1') == 0
    finally:
        link_all(c)
    assert wait_for(lambda: seen('p1') == wan('cell2'), 10)


def test_withdrawn_offer_blocks_and_reports_peers(c):
    c['cell1'].module('pic_peer_exit', peers('cell2'))
    result = link_all(c, cell2_offers=False, cell1_believes=False)
    assert result['changed'] and result['relays'] == []
    assert result['orphaned'] == {'cell2': ['p1']}
    assert 'blocked' in str(result.get('warnings')) and 'p1' in str(result.get('warnings'))
    info = c['cell1'].module('pic_connectivity_info', {})
    assert info['peers']['p1']['carried_by'] == 'blocked'
    assert 'cell2' not in info['connections']
    assert seen('p1') == (None, None)
    assert leak_count('p1') == 0
    assert seen('p2') == wan('cell1')
    link_all(c)
    assert wait_for(lambda: seen('p1') == wan('cell2'), 10)
