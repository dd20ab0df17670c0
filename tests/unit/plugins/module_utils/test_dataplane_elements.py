# -*- coding: utf-8 -*-
"""dataplane.Cell changes only the set and map elements that differ, in one transaction, when
nothing else of the table differs: at 3,000 peers a one-peer move leaves the kernel's maps
equal to the desired ones and the table (its handle, every rule's handle) the same table;
elements changed behind its back (drift) are repaired the same way; a structural change
(a new connection's chains) still replaces the table. In a throwaway network namespace."""
import json
import subprocess

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import dataplane, model, nft, peers
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, saved_registry

TOR = {'name': 'Tor', 'type': 'tor', 'config': {}}
PROXY = {'name': 'Proxy', 'type': 'proxy', 'config': {'host': '192.0.2.10', 'port': 1080}, 'fail_open': False}
SOCKS = {'name': 'Socks', 'type': 'proxy', 'config': {'host': '192.0.2.11', 'port': 1081}}
PEERS = 3000
UPDATE = 'update nftables elements of inet pic_connectivity: '


def address(i):
    return '10.%d.%d.%d' % (64 + i // 65536, i // 256 % 256, i % 256)


@pytest.fixture
def registry(tmp_path, libnftables):
    many = dict(('p%d' % i, (address(i), 'Tor' if i % 2 else 'Proxy')) for i in range(PEERS))
    return saved_registry(str(tmp_path / 'state'), TOR, PROXY, **many)


def table_identity():
    """The table's handle and (chain, handle, comment) of every rule: a replaced table has a new handle."""
    listing = json.loads(subprocess.run(['nft', '-a', '-j', 'list', 'table', 'inet', 'pic_connectivity'],
                                        capture_output=True, text=True, check=True).stdout)['nftables']
    handle = [o['table']['handle'] for o in listing if 'table' in o]
    return handle, [(o['rule']['chain'], o['rule']['handle'], o['rule'].get('comment')) for o in listing if 'rule' in o]


def running_elements():
    listed = nft.summary(nft.Nft().list_table())
    return {'sets': listed['sets'], 'maps': listed['maps']}


def desired_elements(cell, doc):
    want = model.desired(doc, cell.facts(doc)).nft_summary()
    return {'sets': want['sets'], 'maps': want['maps']}


def on_cell(registry, steps):
    def scenario():
        cell = dataplane.Cell(registry)
        try:
            return steps(cell, registry.load())
        finally:
            cell.close()
    return in_netns(scenario)


def moved(doc, name, connection):
    return peers.plan(doc, [{'peer': name, 'address': None, 'connection': connection, 'fail_open': None}])[0]


def test_a_one_peer_move_at_3000_peers_changes_its_element_only(registry):
    def steps(cell, doc):
        first = cell.converge(doc)
        before = table_identity()
        new_doc = moved(doc, 'p2', 'Tor')
        changes = cell.converge(new_doc)
        return first, changes, before, table_identity(), running_elements(), desired_elements(cell, new_doc), \
            cell.converge(new_doc)
    first, changes, before, after, running, desired, again = on_cell(registry, steps)
    assert 'create nftables table inet pic_connectivity' in first
    assert changes == [UPDATE + 'peer4 -1 +1']
    assert running == desired and running['maps']['peer4']['10.64.0.2/32'] == 'jump c_tor_open'
    assert len(running['maps']['peer4']) == PEERS
    assert after == before            # the same table: no replace
    assert again == []


def test_elements_changed_behind_its_back_are_repaired_by_the_element_update(registry):
    def steps(cell, doc):
        cell.converge(doc)
        before = table_identity()
        subprocess.run(['nft', 'delete element inet pic_connectivity peer4 { 10.64.0.7 }'], check=True)
        subprocess.run(['nft', 'add element inet pic_connectivity peer4 { 10.99.0.1 : jump c_tor_open }'], check=True)
        subprocess.run(['nft', 'add element inet pic_connectivity down_open { 0x00010000 }'], check=True)
        repaired = cell.converge(doc)
        return repaired, before, table_identity(), running_elements(), desired_elements(cell, doc)
    repaired, before, after, running, desired = on_cell(registry, steps)
    assert repaired == [UPDATE + 'down_open -1, peer4 -1 +1']
    assert running == desired and after == before


def test_a_structural_change_replaces_the_table(registry):
    def steps(cell, doc):
        cell.converge(doc)
        before = table_identity()
        from ansible_collections.pic.connectivity.plugins.module_utils import connections
        new_doc = moved(connections.plan(doc, dict(SOCKS))[0], 'p2', 'Socks')
        changes = cell.converge(new_doc)
        return changes, before, table_identity(), running_elements(), desired_elements(cell, new_doc)
    changes, before, after, running, desired = on_cell(registry, steps)
    assert 'replace nftables table inet pic_connectivity' in changes
    assert not any(change.startswith(UPDATE) for change in changes)
    assert running == desired and after[0] != before[0]


def test_check_mode_and_the_dry_run_of_the_batch_change_nothing(registry):
    def steps(cell, doc):
        cell.converge(doc)
        before, elements = table_identity(), running_elements()
        new_doc = moved(doc, 'p2', 'Tor')
        cell.check(new_doc)
        reported = cell.converge(new_doc, check_mode=True)
        return reported, before, table_identity(), elements, running_elements()
    reported, before, after, elements, running = on_cell(registry, steps)
    assert reported == [UPDATE + 'peer4 -1 +1']
    assert after == before and running == elements


def test_a_refused_batch_falls_back_to_the_table_replace(registry, monkeypatch):
    def steps(cell, doc):
        cell.converge(doc)

        def refuse(_commands):
            raise dataplane.PicError('nftables refused the element change: File exists')
        cell.nft.json_cmd = refuse
        new_doc = moved(doc, 'p2', 'Tor')
        return cell.converge(new_doc), running_elements(), desired_elements(cell, new_doc)
    changes, running, desired = on_cell(registry, steps)
    assert changes == ['replace nftables table inet pic_connectivity (nftables refused the element change: File exists)']
    assert running == desired
