# -*- coding: utf-8 -*-
"""Light lab cells (``piclab up --light``, the fleet benchmark's scale runs): no WireGuard
peers and no daemon per cell, and still a cell the collection converges against with
real packets from the peers' addresses.

Runs its own lab instance (own namespace prefix and run dir, like test_lab_topology), so it
neither needs nor disturbs the session lab; it is removed at the end.
"""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'lab'))
import piclab  # noqa: E402
from conftest import Cell, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='the lab needs root (network namespaces)')

PREFIX = os.environ.get('PICLAB_PREFIX', 'picl') + 'lite'
RUN = os.path.abspath(os.environ.get('PICLAB_RUN', '/run/piclab')) + '-light-test'
CELLS = 2
EXIT = 'Exit WG'


@pytest.fixture(scope='module')
def light_lab():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('PICLAB_PREFIX', PREFIX)
        mp.setenv('PICLAB_RUN', RUN)
        mp.delenv('PICLAB_LIGHT', raising=False)
        piclab.down()                        # leftovers of an interrupted run
        try:
            result = piclab.up(cells=CELLS, light=True)     # verifies every cell's peers
            yield result
        finally:
            piclab.down()


def _kind(node, ifname):
    out = piclab.run(node, 'ip', '-d', '-j', 'link', 'show', 'dev', ifname).stdout
    return json.loads(out)[0].get('linkinfo', {}).get('info_kind')


def test_light_cells_have_no_daemons(light_lab):
    assert light_lab['light'] is True
    want = ['inet', 'wgexit'] + ['cell%d' % k for k in range(1, CELLS + 1)] + \
        ['cell%d-peers' % k for k in range(1, CELLS + 1)]
    assert sorted(piclab.namespaces()) == sorted(piclab.ns(n) for n in want)
    assert sorted(piclab.nodes()) == sorted(want)
    # the lab's own daemons: the exit server's wireguard-go and the echo server, nothing per cell
    assert sorted(piclab.lab_daemons().values()) == ['inet/echo', 'wgexit/wireguard-go']
    for k in range(1, CELLS + 1):
        assert piclab.namespace_pids('cell%d' % k) == []
        assert _kind('cell%d' % k, piclab.WG_IF) == 'veth'
    assert piclab.status()['light'] is True


def test_light_peers_reach_the_internet_as_their_cell(light_lab):
    for k in range(1, CELLS + 1):
        for peer in piclab.PEERS:
            assert piclab.via_wan(peer, 'cell%d' % k), (k, peer, piclab.sources(peer, 'cell%d' % k))


def test_light_up_keeps_its_mode(light_lab):
    again = piclab.up(cells=CELLS, verify=False)        # as running: light
    assert again['light'] is True
    with pytest.raises(piclab.LabError, match='light cells'):
        piclab.up(cells=CELLS, light=False, verify=False)


def test_collection_converges_a_light_cell(light_lab):
    cell = Cell('cell2')
    with open(piclab.exit_config_path('cell2')) as handle:
        wg_config = handle.read()
    cell.module('pic_connection', {'name': EXIT, 'type': 'wireguard_ext',
                                   'config': {'wg_config': wg_config, 'health_target': piclab.EXIT_TUN_V4}})
    peers = [{'peer': p, 'address': [piclab.peer_address(p, 4) + '/32', piclab.peer_address(p, 6) + '/128'],
              'connection': EXIT if p != 'p3' else 'default'} for p in piclab.PEERS]
    cell.module('pic_peer_exit', {'peers': peers, 'purge': True})
    maps = piclab.run('cell2', 'nft', 'list', 'map', 'inet', 'pic_connectivity', 'peer4').stdout
    assert piclab.peer_address('p1', 4) in maps and piclab.peer_address('p2', 4) in maps, maps
    # real packets from the peers' addresses: p1 and p2 leave by the exit, p3 by the cell's WAN
    assert wait_for(lambda: piclab.via_exit('p1', 'cell2'), timeout=20), piclab.sources('p1', 'cell2')
    assert piclab.via_exit('p2', 'cell2'), piclab.sources('p2', 'cell2')
    assert piclab.via_wan('p3', 'cell2'), piclab.sources('p3', 'cell2')
    # the other cell is untouched
    assert piclab.via_wan('p1', 'cell1')
