# -*- coding: utf-8 -*-
"""Cell links (module_utils/links.py): plan() of the link list, relays and orphans; and the local networks of the settings (model.normalize_settings).

Regressions of issue 11: each case was accepted (or echoed a secret) before the grammar was made strict.
"""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import links, model
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty


@pytest.mark.parametrize('nets,field', [(['0.0.0.0/0'], 'local_networks[0]'),
                                        (['192.168.0.0/16', '::/0'], 'local_networks[1]'),
                                        (['192.168.0.0/16', '192.168.1.0/24'], 'local_networks[1]'),
                                        (['192.168.1.0/24\n'], 'local_networks[0]')])
def test_bad_local_networks(nets, field):
    with pytest.raises(PicError) as err:
        model.normalize_settings({'local_networks': nets})
    assert err.value.field == field


@pytest.mark.parametrize('link,field', [
    ({'cell': 'cell-b\n', 'interface': 'cl-b'}, 'links[0].cell'),
    ({'cell': 'cell-b', 'interface': 'cl-b\n'}, 'links[0].interface'),
    ({'cell': 'cell-b', 'interface': 'wg0'}, 'links[0].interface'),
])
def test_bad_links(link, field):
    with pytest.raises(PicError) as err:
        links.plan(empty(), [link])
    assert err.value.field == field


def test_relays_of_look_alike_cells_do_not_share_an_id():
    with pytest.raises(PicError) as err:
        links.plan(empty(), [{'cell': 'cell.b', 'interface': 'cl-1', 'remote_offers_exit': True},
                             {'cell': 'cell-b', 'interface': 'cl-2', 'remote_offers_exit': True}])
    assert 'cell.b' in str(err.value) and 'cell-b' in str(err.value)


def test_a_relay_keeps_its_id():
    doc = empty()
    legacy = 'a-cell-with-a-very-long-name-that'
    cell = 'a-cell-with-a-very-long-name-that-was-cut'
    doc['connections'][legacy] = {'id': legacy, 'name': cell, 'cell': cell, 'type': 'cell_relay', 'index': 1,
                                  'table': 10001, 'mark': 0x10000, 'fail_open': False, 'config': {}, 'dns': []}
    doc['peers']['p'] = {'name': 'p', 'address': ['10.0.0.2/32'], 'connection': legacy, 'fail_open': None}
    new, relays, orphans = links.plan(doc, [{'cell': cell, 'interface': 'cl-x', 'remote_offers_exit': True}])
    assert relays == [legacy] and not orphans and list(new['connections']) == [legacy]


# -- plan(): the cell's link list ---------------------------------------------------------------------

B = {'cell': 'cell-b', 'interface': 'cl-b', 'remote_offers_exit': True}
C = {'cell': 'cell-c', 'interface': 'cl-c', 'offer_exit': True}


def test_a_link_the_remote_offers_its_exit_over_is_a_fail_closed_relay():
    doc = empty()
    new, relays, orphans = links.plan(doc, [B, C])
    assert relays == ['cell-b'] and orphans == {}
    relay = new['connections']['cell-b']
    assert (relay['type'], relay['interface'], relay['fail_open']) == ('cell_relay', 'cl-b', False)
    assert sorted(new['links']) == ['cell-b', 'cell-c'] and new['links']['cell-c']['offer'] is True
    assert doc == empty()      # planned on a copy


def test_the_same_list_again_is_the_same_document():
    first = links.plan(empty(), [B, C])[0]
    assert links.plan(first, [B, C])[0] == first


def test_a_link_left_out_goes_and_so_does_its_relay_unless_purge_is_off():
    doc = links.plan(empty(), [B, C])[0]
    purged, relays, _orphans = links.plan(doc, [C])
    assert relays == [] and list(purged['links']) == ['cell-c'] and 'cell-b' not in purged['connections']
    kept, relays, _orphans = links.plan(doc, [C], purge=False)
    assert relays == ['cell-b'] and sorted(kept['links']) == ['cell-b', 'cell-c']


def test_users_of_a_relay_that_goes_are_orphans():
    doc = links.plan(empty(), [B])[0]
    doc['peers']['alice'] = {'name': 'alice', 'address': ['10.0.0.2/32'], 'connection': 'cell-b', 'fail_open': None}
    doc['services'] = {'email': {'name': 'email', 'address': ['172.31.0.10/32'], 'interface': 'svc0',
                                 'connection': 'cell-b', 'fail_open': None}}
    _new, _relays, orphans = links.plan(doc, [])
    assert orphans == {'cell-b': ['alice', 'service email']}


@pytest.mark.parametrize('link_list, known, field', [
    ([B, dict(B, interface='cl-x')], None, 'links[1].cell'),               # linked twice
    ([B, dict(C, interface='cl-b')], None, 'links[1].interface'),          # one interface, two links
    ([dict(B, offer_exit='yes')], None, 'links[0].offer_exit'),
    ([dict(B, remote_offers_exit=1)], None, 'links[0].remote_offers_exit'),
    ([B], ['cell-c'], 'links[0].cell'),                                     # not a known cell
    ([dict(B, remote_dns=['10.0.0.1', '10.0.0.1; x'])], None, 'links[0].remote_dns[1]'),
])
def test_a_bad_link_list_is_refused_naming_the_field(link_list, known, field):
    with pytest.raises(PicError) as err:
        links.plan(empty(), link_list, known_cells=known)
    assert err.value.field == field, err.value.msg
